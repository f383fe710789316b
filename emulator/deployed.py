"""A bundle as the chip runs it: frozen layers + one plastic final layer.

``DeployedNet.load(bundle)`` checks the bundle (``deploy.bundle.load_bundle``),
builds the fast fixed-point engine of its netx file
(``deploy.fixed.FixedPointNet``) and splits it at the adapting layer named in
the manifest: layers ``[0, L)`` stay frozen, layer ``L`` (a dense layer, the
last one) becomes the plastic layer of ``onchip`` with the rule in the manifest.

Time alignment of an episode (the one place it is defined, used by both the
fast engine and the Lava graph). Samples are presented back to back, each for
``T`` steps, after a prefix of ``P`` blank steps. Each synapse delays by one
step, so the plastic layer's output for a sample starting at stream index
``a`` can first change at ``a + D`` with ``D`` = number of synapse layers up to
and including the plastic one. Every layer ``j`` (delay depth ``D_j``) has its
state reset at stream indices ``P + D_j + m T`` (Lava's ``LIFReset`` for the
frozen netx layers, the rule processes' own reset for the plastic layer), so
each layer sees exactly one sample per window. ``P = (-D) mod T`` makes the
plastic layer's windows start at multiples of ``T``, which is where the
``onchip`` processes reset (``k % T == 0``). The readout of sample ``s`` is the
plastic layer's spike count over stream indices ``P + s T + [burn_in, T)``,
the same steps as the slayer readout of an isolated sample (``burn_in >= D``).

Learning window: a support sample's label is presented (so the error neuron
fires and the rule updates) only during its steps ``label_window`` =
``[start, end)`` relative to the sample's start, by default the readout window
``[burn_in, T)``: the steps over which meta-training took its gradients and
over which the class is read out. Outside it the error is zero and nothing
is learned, on Lava and on the fast engine alike.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.deploy.bundle import bundle_rule, load_bundle, rebuild_fix
from neuromaml.deploy.fixed import FixedPointNet, cuba_run, delay
from neuromaml.deploy.manifest import Manifest
from neuromaml.io import fail
from neuromaml.onchip.neuron import CubaParams
from neuromaml.onchip.rule import RuleSpec


PLASTIC_FIX = {      # what the final layer needs to adapt on chip, as the fix for each problem
    "weights": "the plastic layer holds 8-bit weights: quantize the final layer to -256..255",
    "bias": "the plastic neuron process takes one bias: give the final layer one bias (or none)",
    "registers": "give the final layer a CUBA neuron with chip registers",
}


def plastic_layer_problem(netpath, layer) -> tuple[str, str] | None:
    """What keeps the final dense layer ``layer`` (a ``deploy.fixed.FixedLayer``) from being the
    plastic layer: (message, key of PLASTIC_FIX), or None. One check for import and for loading."""
    w0 = _raw_weight(netpath, layer.index)
    where = f"layer/{layer.index}"
    if w0.size and (w0.min() < -256 or w0.max() > 255):
        return (f"{where}/weight spans {w0.min()}..{w0.max()}, outside the plastic weight range -256..255",
                "weights")
    p = layer.neuron
    bias = np.unique(np.asarray(p.bias))
    if bias.size > 1:
        return f"{where}/bias differs per neuron ({bias.size} values)", "bias"
    # the plastic neuron is a Lava LIF with learning: its registers must be the chip's
    # (13-bit bias mantissa, 12-bit voltage decay, 17-bit threshold mantissa)
    for name, val, lo, hi in (("bias", int(bias[0]) if bias.size else 0, -4096, 4095),
                              ("vDecay", p.dv, 0, 4095), ("vThMant", p.vth, 0, 131071)):
        if not lo <= val <= hi:
            return f"{where}/neuron {name} = {val}: the plastic layer's neuron needs {lo}..{hi}", "registers"
    return None


@dataclass
class DeployedNet:
    path: Path                      # bundle directory
    manifest: Manifest               # typed (deploy.manifest); .to_dict() for the JSON
    net: FixedPointNet              # the whole network (fast engine)
    plastic: int                    # index of the plastic layer in net.layers
    w0: np.ndarray                  # (O, I) int64 initial plastic weights as the chip holds them:
                                    # network.net's weights << -weight_exp
    weight_exp: int                 # plastic Dense weight exponent, -8..0 (manifest adapt.weight_exp)
    num_weight_bits: int            # plastic Dense weight bits (8)
    neuron: CubaParams              # plastic layer's CUBA neuron
    rule: RuleSpec
    time_steps: int                 # T
    burn_in: int
    input_chw: tuple                # (C, H, W) of the frames
    label_window: tuple = (0, 0)    # [start, end) steps of a support sample during which its label
                                    # is presented (learning on); default: the readout window

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, bundle: str | Path, rule: RuleSpec | None = None, replaced: tuple = ()) -> "DeployedNet":
        """``rule``: run this rule instead of the bundle's (which is then not checked); ``replaced``:
        ``adapt`` fields read as absent (``deploy.bundle.load_bundle``; calibrate, which rewrites them)."""
        raw, netpath = load_bundle(bundle, check_rule=rule is None, replaced=replaced)
        manifest = Manifest.from_dict(raw)
        man_path = Path(bundle) / "manifest.json"
        net = FixedPointNet.from_netx(netpath)
        if any(L.kind == "input" for L in net.layers):
            raise fail(netpath, "starts with an input neuron layer (driven by its bias, it ignores "
                       "event input)", "export a network whose first layer is conv or dense")
        adapt = manifest.adapt
        L = adapt.engine_layer
        if L is None:
            raise fail(man_path, "field 'adapt.engine_layer' is missing", "re-export the bundle")
        L = int(L)
        if L != len(net.layers) - 1 or net.layers[L].kind != "dense":
            raise fail(man_path, f"field 'adapt.engine_layer' = {L} is not the final dense layer "
                       f"(the network has {len(net.layers)} layers)",
                       "only the final dense layer adapts on chip; re-export with adapt_layer=None")
        layer = net.layers[L]
        # The plastic layer starts from the weights as stored (netx's optimize_weight_bits would
        # choose its own shift; the same synaptic sums), then takes the calibrated exponent below.
        problem = plastic_layer_problem(netpath, layer)
        if problem:
            raise fail(netpath, problem[0], PLASTIC_FIX[problem[1]] + "; " + rebuild_fix(raw, bundle))
        w0 = _raw_weight(netpath, layer.index)
        nbits = 8
        # The plastic layer's weight exponent -k (adapt.weight_exp, set by `neuromaml calibrate`):
        # the chip holds w0 << k and shifts the synaptic sum right by k, which gives exactly the
        # same sums for theta0*, while the rule's 1-LSB steps become 2^-k of a stored weight LSB.
        wexp = adapt.weight_exp
        if isinstance(wexp, bool) or not isinstance(wexp, int) or not -8 <= wexp <= 0:
            raise fail(man_path, f"field 'adapt.weight_exp' = {wexp!r} is not an integer in [-8, 0]",
                       "re-run neuromaml calibrate, or remove the field (0: weights as stored)")
        if not weight_range_ok(w0, -wexp):
            raise fail(man_path, f"field 'adapt.weight_exp' = {wexp}: theta0* << {-wexp} spans "
                       f"{w0.min() << -wexp}..{w0.max() << -wexp}, outside -256..255",
                       "re-run neuromaml calibrate (it chooses an exponent the weights fit)")
        w0 = w0 << -wexp
        p = layer.neuron
        bias = np.unique(np.asarray(p.bias))
        neuron = replace(p, bias=int(bias[0]) if bias.size else 0)
        spec = rule or bundle_rule(raw, man_path)
        T, burn_in = manifest.time_steps, manifest.burn_in
        window = tuple(int(v) for v in adapt.label_window or (burn_in, T))
        dep = cls(Path(bundle), manifest, net, L, w0, int(wexp), int(nbits), neuron, spec, T, burn_in,
                  tuple(int(v) for v in manifest.input.shape_chw or ()), window)
        if not (len(window) == 2 and 0 <= window[0] < window[1] <= T):
            raise fail(man_path, f"field 'adapt.label_window' = {list(window)} is not a [start, end) "
                       f"inside [0, {T}]", f"use [{burn_in}, {T}] (the readout window)")
        if not 0 <= burn_in < T:
            raise fail(man_path, f"field 'output.burn_in' = {burn_in} not in [0, time_steps={T})",
                       "re-export with a valid burn-in")
        if burn_in < dep.depth:
            raise fail(man_path, f"field 'output.burn_in' = {burn_in} is shorter than the network's "
                       f"pipeline depth {dep.depth}: the readout would overlap the previous sample",
                       f"meta-train (or export --model) with model.burn_in >= {dep.depth}, then export again")
        return dep

    # ------------------------------------------------------------------ geometry
    @property
    def n_out(self) -> int:
        return int(self.w0.shape[0])

    @property
    def n_pre(self) -> int:
        return int(self.w0.shape[1])

    @property
    def stored_w0(self) -> np.ndarray:
        """theta0* of the plastic layer in the units network.net stores (weight_exp 0)."""
        return self.w0 >> -self.weight_exp

    def with_weight_exp(self, weight_exp: int) -> "DeployedNet":
        """The same network with the plastic layer held at another weight exponent (<= 0)."""
        import dataclasses

        k = -int(weight_exp)
        w = self.stored_w0
        if not 0 <= k <= 8 or not weight_range_ok(w, k):
            raise ValueError(f"weight_exp {weight_exp} does not fit theta0* ({w.min()}..{w.max()})")
        return dataclasses.replace(self, w0=w << k, weight_exp=-k)

    def delay_depth(self, j: int) -> int:
        """Synapse delays from the input to the output of layer ``j`` (all layers are synaptic)."""
        return j + 1

    @property
    def depth(self) -> int:
        """D: delay depth of the plastic layer."""
        return self.delay_depth(self.plastic)

    def label_window_note(self) -> str | None:
        """Why support labels presented over ``label_window`` miss the sample, where they do: the
        plastic layer's first ``depth`` steps of a sample carry the previous sample's spikes."""
        a, b = self.label_window
        if a >= self.depth:
            return None
        part = "the whole window pairs" if b <= self.depth else f"its first {self.depth - a} step(s) pair"
        return (f"adapt.label_window [{a}, {b}) starts before step {self.depth}, where a sample's spikes reach the "
                f"plastic layer's output (the pipeline depth): {part} each support label with the previous "
                f"sample's spikes (fix: remove adapt.label_window (default [{self.burn_in}, {self.time_steps})), "
                "or run neuromaml calibrate)")

    @property
    def prefix(self) -> int:
        """P: blank steps before the first sample so the plastic windows start at k % T == 0."""
        return (-self.depth) % self.time_steps

    @property
    def netx_reset_offset(self) -> int:
        """``reset_offset`` for ``netx.hdf5.Network``: netx resets its j-th layer (1-based) at
        Lava time steps t with t % T == offset + j, i.e. before stream index P + D_j + m T."""
        return self.prefix + 1

    def stream_length(self, n_samples: int) -> int:
        return self.prefix + n_samples * self.time_steps

    def sample_start(self, s: int) -> int:
        return self.prefix + s * self.time_steps

    # ------------------------------------------------------------------ frozen features
    def check_frames(self, frames: Any, source: Any = None) -> None:
        shape = tuple(np.shape(frames)[1:4])
        src = self.manifest.extra.get("imported_from")
        if self.input_chw and shape != tuple(self.input_chw):
            if src:     # --input-shape was given at import: that may be what is wrong, not the data
                raise fail(self.path, f"imported with --input-shape {','.join(map(str, self.input_chw))} (C,H,W), "
                           f"but the frames of {source} are {shape}", f"if the network was trained on such frames, "
                           f"import it again with --input-shape {','.join(map(str, shape))}; else build the data "
                           "for the network's input")
            raise fail(source, f"frames are (C,H,W) = {shape} but the bundle expects {tuple(self.input_chw)}",
                       "build the data for this network's input shape or export for the data's shape")
        if np.shape(frames)[-1] != self.time_steps:
            if src:
                raise fail(self.path, f"imported with --time-steps {self.time_steps}, but the frames of {source} have "
                           f"{np.shape(frames)[-1]}", f"import it again with --time-steps {np.shape(frames)[-1]}, or "
                           "build the data with the bundle's time steps")
            raise fail(source, f"frames have {np.shape(frames)[-1]} time steps, the bundle {self.time_steps}",
                       "build the data with the bundle's time steps")

    def note_if_silent(self, feats: np.ndarray, data) -> bool:
        """Say (stderr) when no spike reaches the plastic layer on these data: every accuracy is
        then chance, whatever the rule (all-zero frames, a network that cannot fire on them)."""
        if np.asarray(feats).any():
            return False
        import sys

        print(f"note: {data}: no spike reaches the plastic layer of {self.path} on these samples (all-zero "
              "frames, or a network silent on them): every accuracy below is chance (check the data with "
              "`neuromaml data info`)", file=sys.stderr)
        return True

    def frozen_features(self, x_xyf: np.ndarray, batch: int = 64, return_counts: bool = False):
        """Spikes entering the plastic layer for isolated samples.

        x_xyf: (n, T, x, y, f) 0/1 input spikes. Returns (n, T + D - 1, I) int8: the output
        of layer ``L - 1`` over relative indices ``[0, T + D_{L-1})``, with every layer ``j``
        reset before relative index ``D_j`` as in the episode stream. With ``return_counts``
        also each frozen layer ``j``'s spike counts over its window ``[D_j, D_j + T)``
        (a list of (n, *shape_j) int64; ``neuromaml cost`` reads them).
        """
        from neuromaml.deploy.fixed import to_net_input

        x_xyf = to_net_input(x_xyf, tuple(self.net.input_shape), self.path)   # netx's flatten order
        n, T = x_xyf.shape[:2]
        D_last = self.delay_depth(self.plastic - 1) if self.plastic > 0 else 0
        span = T + D_last
        out = np.zeros((n, span, self.n_pre), np.int8)
        counts = [np.zeros((n,) + tuple(self.net.layers[j].shape), np.int64) for j in range(self.plastic)] \
            if return_counts else None
        for a in range(0, n, batch):
            s = np.zeros((min(batch, n - a), span) + x_xyf.shape[2:], np.int64)
            s[:, :T] = x_xyf[a:a + batch]
            for j in range(self.plastic):
                lay = self.net.layers[j]
                rst = np.zeros(span, bool)
                k = self.delay_depth(j)             # reset before index k == after index k - 1
                rst[k - 1::T] = True
                s = cuba_run(delay(lay.synapse(s), 1), lay.neuron, rst).astype(np.int64)
                if counts is not None:
                    counts[j][a:a + batch] = s[:, k:k + T].sum(axis=1)
            if s.ndim > 3:
                # netx's flatten before a dense layer: (x, y, f) -> transpose to (f, y, x) -> C order
                s = s.transpose(0, 1, *range(s.ndim - 1, 1, -1))
            out[a:a + batch] = s.reshape(s.shape[0], span, -1)
        return (out, counts) if return_counts else out

    def assemble_stream(self, feats: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Episode streams of plastic-layer input from per-sample features.

        feats: (n, T + D_{L-1}, I) from ``frozen_features``; order: (B, S) sample indices into
        feats, presented in that order. Returns (B, P + S T, I) int8. Each sample's window
        ``[D_{L-1}, T + D_{L-1})`` lands at ``P + s T + D_{L-1}``; the part before a
        window is the previous sample's tail, exactly as the continuous stream on Lava.
        """
        B, S = order.shape
        T, P = self.time_steps, self.prefix
        D = self.delay_depth(self.plastic - 1) if self.plastic > 0 else 0
        out = np.zeros((B, P + S * T + T, feats.shape[2]), np.int8)
        for s in range(S):
            a = P + s * T + D
            out[:, a:a + T] = feats[order[:, s], D:D + T]
        return out[:, :P + S * T]


def weight_range_ok(w0: np.ndarray, k: int) -> bool:
    """Whether theta0* (stored units) scaled by 2^k fits the plastic range -256..255."""
    w0 = np.asarray(w0, np.int64)
    return not w0.size or (int(w0.min()) << k >= -256 and int(w0.max()) << k <= 255)


def _raw_weight(netpath: Path, index: int) -> np.ndarray:
    import h5py

    with h5py.File(netpath, "r") as f:
        w = np.asarray(f[f"layer/{index}/weight"])
    return w.astype(np.int64).reshape(w.shape[0], -1)
