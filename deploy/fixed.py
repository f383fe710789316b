"""Fast batched fixed-point engine of a netx network, bit-exact to Lava's ``fixed_pt`` models.

``FixedPointNet.from_netx(path)`` builds the layers exactly as
``lava.lib.dl.netx.hdf5.Network`` does (``input``, ``dense``, ``conv`` incl.
grouped, ``flatten``; CUBA/LOIHI neurons) and runs a whole batch of samples
with integer arithmetic (int64 numpy; convolutions and matmuls in float32 or
float64 torch, exact because every partial sum is an integer inside the float's
exact-integer range, see ``FixedLayer._float_type``).

What Lava computes (``lava.proc.dense.models.PyDenseModelBitAcc``,
``lava.proc.conv.models.PyConvModelFixed``, ``lava.proc.lif.models.PyLifModelBitAcc``):

* dense synapse: ``W`` = netx ``optimize_weight_bits`` then Lava's
  ``clip_weights``/``truncate_weights``; ``a = (sum_i W_ji s_i) >> -weight_exp``
  (arithmetic shift, int32 on the wire);
* conv synapse: ``a = conv(s, W)`` (no exponent), wrapped to signed 24 bit;
* neuron, per step (``onchip.neuron.lif_step``; all integers, ``D_u = iDecay``, ``D_v = vDecay``)::

      u = sign(u (4096 - D_u)) (|u (4096 - D_u)| >> 12) + (a << 6)   (wrapped to 24 bit)
      v = clip(sign(v (4096 - D_v)) (|v (4096 - D_v)| >> 12) + u + (bias << 6), +-(2**23 - 1))
      s = v > (vThMant << 6);  v = 0 where s

**The one place where Lava's delay lives** (``SYNAPSE_DELAY``): every Lava
synapse sends at step ``t`` what it accumulated at step ``t - 1``, so a layer
sees the spikes of the layer below one step late: ``s_k[t] = f(W s_{k-1}[t-1])``
(the external input counts as layer 0; an ``input`` neuron layer driven by its
bias has no synapse and no delay). ``run`` returns spikes on Lava's own time
axis: index ``t`` is what Lava's sink records at step ``t + 1``. slayer blocks
with ``delay_shift=True`` (the default) put the same one-step delay after each
block, so block ``k``'s output equals this engine's layer ``k`` at the same index.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from typing import Any

import numpy as np

from neuromaml.deploy.netxfile import NetxLayer, read_layers
from neuromaml.io import fail
from neuromaml.onchip.neuron import CubaParams, CubaState, IntOps, lif_step
from neuromaml.onchip.rule import RuleError

SYNAPSE_DELAY = 1          # steps each Lava synapse (dense, conv) delays its output


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _wrap16(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def delay(a: np.ndarray, steps: int = SYNAPSE_DELAY) -> np.ndarray:
    """Shift ``a`` (B, T, ...) later in time by ``steps``, zeros first: Lava's synapse delay."""
    out = np.zeros_like(a)
    if steps < a.shape[1]:
        out[:, steps:] = a[:, : a.shape[1] - steps]
    return out


def frames_to_xyf(frames: Any) -> np.ndarray:
    """slayer frames (N, C, H, W, T) -> netx/Lava order (N, T, x, y, f) = (N, T, W, H, C)."""
    a = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    return np.ascontiguousarray(a.transpose(0, 4, 3, 2, 1))


def xyf_to_frames(x: np.ndarray) -> np.ndarray:
    """(N, T, x, y, f) -> slayer (N, C, H, W, T); (N, T, n) -> (N, n, T)."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 4, 3, 2, 1) if x.ndim == 5 else x.transpose(0, 2, 1))


def to_net_input(x: np.ndarray, want: tuple[int, ...], source: Any = None) -> np.ndarray:
    """Check (B, T, *want) input; (x, y, f) frames into a flat first layer are flattened
    in netx's order (transpose to (f, y, x), then C order)."""
    x = np.asarray(x)
    if x.ndim >= 3 and tuple(x.shape[2:]) == tuple(want):
        return x
    if len(want) == 1 and x.ndim == 5 and int(np.prod(x.shape[2:])) == want[0]:
        return x.transpose(0, 1, 4, 3, 2).reshape(x.shape[0], x.shape[1], -1)
    raise fail(source, f"input shape {tuple(x.shape)} disagrees with the first layer "
               f"(expects (B, T) + {tuple(want)} in (x, y, f) order)",
               "convert slayer frames (N, C, H, W, T) with neuromaml.deploy.fixed.frames_to_xyf")


def reset_steps(T: int, interval: int | None, offset: int) -> np.ndarray:
    """Boolean (T,): after which steps (0-based index) ``u, v`` are zeroed.

    lava-dl's ``io.reset.Reset(interval, offset)`` zeroes a Var after 1-based step ``t``
    with ``(t - 1) % interval == offset % interval``.
    """
    out = np.zeros(T, bool)
    if interval:
        out[np.arange(T) % interval == offset % interval] = True
    return out


def cuba_run(a: np.ndarray, p: CubaParams, reset_after: np.ndarray | None = None) -> np.ndarray:
    """Run the neuron over time: ``onchip.neuron.lif_step`` (the one CUBA step) per step.
    ``a``: (B, T, *shape) int64 synaptic input -> spikes int8.

    ``reset_after`` (T,) bool zeroes ``u`` and ``v`` after those steps (see ``reset_steps``).
    """
    B, T = a.shape[:2]
    state = CubaState(np.zeros((B,) + a.shape[2:], np.int64), np.zeros((B,) + a.shape[2:], np.int64))
    out = np.zeros(a.shape, np.int8)
    act = _wrap32(_wrap32(a) << 6)
    # int32 wraps can only happen when |act| nears 2**31 (|u|, |v| <= 2**23, |bias << 6| < 2**22)
    ops = IntOps(np, wrap32=int(np.abs(act).max(initial=0)) >= (1 << 30))
    for t in range(T):
        s, _, state = lif_step(act[:, t], state, p, ops)
        out[:, t] = s
        if reset_after is not None and reset_after[t]:
            state = CubaState(np.zeros_like(state.u), np.zeros_like(state.v))
    return out


@dataclasses.dataclass
class FixedLayer:
    """A layer as netx builds it. ``kind`` is ``input``, ``dense`` or ``conv``."""

    kind: str
    index: int                      # index in the netx file
    shape: tuple[int, ...]          # output shape, (x, y, f) or (n,)
    in_shape: tuple[int, ...]       # input shape it expects (after flatten)
    neuron: CubaParams
    flatten_input: bool = False     # netx flatten: (x, y, f) -> transpose (f, y, x) -> flat
    weight: np.ndarray | None = None   # dense (out, in) int64 after Lava's clip/truncate; conv (out, in/g, kh, kw)
    weight_exp: int = 0
    stride: tuple[int, int] = (1, 1)    # conv, (sy, sx) torch order
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def effective_weight(self) -> np.ndarray:
        """Dense: integer weight one input spike adds, ``W * 2**weight_exp`` (float64 if fractional)."""
        w = self.weight.astype(np.float64) * 2.0 ** self.weight_exp
        return w.astype(np.int64) if np.all(w == np.round(w)) else w

    def _float_type(self) -> type:
        """float32 when exact: every partial sum of binary spikes times integer weights is an
        integer bounded by ``fan_in * max|W| < 2**24`` (float32's exact-integer range); else float64."""
        fan_in = int(np.prod(self.weight.shape[1:]))
        return np.float32 if fan_in * int(np.abs(self.weight).max(initial=0)) < (1 << 24) else np.float64

    def synapse(self, s: np.ndarray) -> np.ndarray:
        """Synaptic input from spikes ``s`` (B, T, *in_shape) -> (B, T, *shape) int64, no delay."""
        import torch

        B, T = s.shape[:2]
        if self.flatten_input:
            s = s.transpose(0, 1, *range(s.ndim - 1, 1, -1)).reshape(B, T, -1)
        if self.kind == "dense":
            ft = self._float_type()
            x = torch.from_numpy(s.reshape(B * T, -1).astype(ft))
            acc = (x @ torch.from_numpy(np.ascontiguousarray(self.weight.T).astype(ft))).numpy()
            acc = np.rint(acc).astype(np.int64)
            acc = acc << self.weight_exp if self.weight_exp > 0 else acc >> -self.weight_exp
            return _wrap32(acc).reshape((B, T) + self.shape)
        # conv: (x, y, f) -> torch (N, C, H, W); Lava's scipy convolution with the netx-flipped
        # kernel equals torch's correlation with the kernel as stored in the file
        ft = self._float_type()
        x = torch.from_numpy(np.ascontiguousarray(s.reshape((B * T,) + s.shape[2:]).transpose(0, 3, 2, 1), ft))
        y = torch.nn.functional.conv2d(x, torch.from_numpy(self.weight.astype(ft)),
                                       stride=self.stride, padding=self.padding,
                                       dilation=self.dilation, groups=self.groups)
        acc = np.rint(y.numpy()).astype(np.int64).transpose(0, 3, 2, 1)
        acc = ((acc + (1 << 23)) & 0xFFFFFF) - (1 << 23)   # utils.signed_clamp(x, 24)
        return acc.reshape((B, T) + self.shape)


def _neuron(layer: NetxLayer, path: Any) -> CubaParams:
    nrn = layer.neuron
    if nrn is None:
        # netx's default for dense layers without a neuron ("non-leaky integrator"): iDecay 0,
        # vDecay 4096 and vThMant written `1 << 18 - 1`, which Python reads as 1 << 17
        return CubaParams.from_netx(0, 4096, 1 << 17)
    ntype = str(nrn.get("type"))
    if ntype not in ("CUBA", "LOIHI"):
        raise fail(path, f"layer/{layer.index}/neuron/type = {ntype!r}: only CUBA/LOIHI neurons are supported",
                   "export a network of slayer cuba blocks")
    for key in ("iDecay", "vDecay", "vThMant"):
        if key not in nrn:
            raise fail(path, f"layer/{layer.index}/neuron/{key} missing", "re-export the network")
    try:
        return CubaParams.from_netx(int(nrn["iDecay"]), int(nrn["vDecay"]), int(nrn["vThMant"]))
    except RuleError as exc:
        raise fail(path, f"layer/{layer.index}/neuron: {exc}", "re-export the network") from None


def _bias(layer: NetxLayer, shape: tuple[int, ...], path: Any) -> np.ndarray | None:
    b = layer.bias
    if b is None:
        return None
    b = np.asarray(b).astype(int)              # NetDict: astype(int) truncates
    if len(shape) == 1 or list(b.shape) == list(shape):
        full = np.broadcast_to(b, shape)
    elif shape[-1] == b.shape[0]:
        full = np.broadcast_to(b, shape)       # channel-wise over (x, y, f)
    else:
        raise fail(path, f"layer/{layer.index}/bias shape {b.shape} does not fit neurons {shape}",
                   "re-export the network")
    return _wrap16(full.astype(np.int32).astype(np.int64))   # Lava's bias_mant Var is int16


def netx_weight_bits(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(weights, bits, exponent) as netx computes them for a dense layer
    (``optimize_weight_bits``, all-zero matrices included: ``neuromaml.lavacompat``), quietly."""
    from neuromaml.lavacompat import optimize_weight_bits

    with contextlib.redirect_stdout(io.StringIO()):
        w, nbits, wexp, _ = optimize_weight_bits(np.asarray(w).astype(int))
    return w, int(nbits), int(wexp)


def _dense_weight(w: np.ndarray, out: int) -> tuple[np.ndarray, int]:
    """netx ``optimize_weight_bits`` + Lava's ``clip_weights``/``truncate_weights``."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    w = np.asarray(w).astype(int)
    if w.ndim == 1:
        w = w.reshape(out, -1)
    w, nbits, wexp = netx_weight_bits(w)
    w = w.astype(np.int32)
    mode = determine_sign_mode(w)
    w = clip_weights(w, mode, num_bits=8)
    w = truncate_weights(w, mode, nbits)
    return w.astype(np.int64), int(wexp)


def _expand(v: Any, default: int) -> tuple[int, int]:
    """netx's ``expand`` gives (x, y); return the torch (y, x) order = the stored order."""
    if v is None:
        return (default, default)
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


class FixedPointNet:
    """Batched integer twin of ``netx.hdf5.Network`` on Lava's ``fixed_pt`` models."""

    def __init__(self, layers: list[FixedLayer], input_shape: tuple[int, ...], source: Any = None):
        self.layers = layers
        self.input_shape = input_shape     # (x, y, f) or (n,) of the external input
        self.source = source

    @classmethod
    def from_netx(cls, path: str | os.PathLike) -> "FixedPointNet":
        return cls.from_layers(read_layers(path), path)

    @classmethod
    def from_layers(cls, netx_layers: list[NetxLayer], path: Any = None) -> "FixedPointNet":
        layers: list[FixedLayer] = []
        input_shape: tuple[int, ...] | None = None
        flatten_next = False
        for L in netx_layers:
            if L.type == "input":
                shape = L.shape_xyf
                if L.neuron is not None:
                    p = _neuron(L, path)
                    layers.append(FixedLayer("input", L.index, shape, shape, p))
                input_shape = shape
            elif L.type == "flatten":
                flatten_next = True
            elif L.type in ("dense", "conv"):
                prev = layers[-1].shape if layers else input_shape
                if L.weight is None:
                    raise fail(path, f"layer/{L.index}/weight missing", "re-export the network")
                delays = L.get("delay")
                if delays is not None:
                    arr = np.asarray(delays)
                    if arr.dtype.kind not in "iuf" or not np.isfinite(arr.astype(np.float64)).all() \
                            or (arr < 0).any() or (arr != np.round(arr)).any():
                        raise fail(path, f"layer/{L.index}/delay holds {arr.ravel()[:4].tolist()}...: not whole, "
                                   "non-negative numbers of steps", "write whole delays >= 0, or none: export the "
                                   "network without synaptic delays")
                    if np.any(arr != 0):
                        raise fail(path, f"layer/{L.index}/delay: synaptic delays (up to {int(np.max(arr))} steps), "
                                   "which neither the fixed-point engine nor the plastic layer models (its emulation "
                                   "would differ from Lava's)", "train or export the network without synaptic delays")
                p = _neuron(L, path)
                if L.type == "dense":
                    shape = (int(np.prod(L.shape)),)
                    w, wexp = _dense_weight(L.weight, shape[0])
                    in_shape = (w.shape[1],)
                    flat = flatten_next
                    if prev is not None and len(prev) > 1 and not flatten_next:
                        raise fail(path, f"layer/{L.index}: dense layer after a {len(prev)}-d layer without a "
                                   "flatten layer (netx cannot connect them)", "insert a flatten layer")
                    if prev is not None and int(np.prod(prev)) != w.shape[1]:
                        raise fail(path, f"layer/{L.index}/weight has {w.shape[1]} inputs but the layer below "
                                   f"has {int(np.prod(prev))} neurons", "re-export the network")
                    fl = FixedLayer("dense", L.index, shape, prev or in_shape, p, flat, w, wexp)
                    flatten_next = False
                else:
                    shape = L.shape_xyf
                    groups = int(np.asarray(L.get("groups", 1)))
                    if groups > 127:
                        raise fail(path, f"layer/{L.index}/groups = {groups}: Lava stores conv groups in int8 "
                                   "and computes zeros (128) or crashes (>128)",
                                   "lower the layer with neuromaml.deploy.lower (dense or groups <= 127)")
                    w = np.asarray(L.weight).astype(int)
                    w = w.reshape(w.shape[:4]).astype(np.int64)
                    if prev is None:
                        raise fail(path, f"layer/{L.index}: input shape of the first conv layer is unknown (the "
                                   "file has no input layer)", f"wrap it with neuromaml import {path or 'FILE.net'} "
                                   "--input-shape C,H,W --classes N --out BUNDLE, which adds the input layer, and "
                                   "give the bundle")
                    fl = FixedLayer("conv", L.index, shape, prev, p, False, w, 0,
                                    _expand(L.get("stride"), 1), _expand(L.get("padding"), 0),
                                    _expand(L.get("dilation"), 1), groups)
                    _check_conv_shape(fl, path)
                b = _bias(L, shape, path)
                if b is not None:
                    fl.neuron = dataclasses.replace(fl.neuron, bias=b)
                layers.append(fl)
                if input_shape is None:
                    input_shape = fl.in_shape
            else:
                raise fail(path, f"layer/{L.index}/type = {L.type!r}: netx cannot load this layer",
                           "a slayer network with sum pools: export it with neuromaml export, which lowers pool "
                           "layers to grouped convs" if L.type == "pool" else
                           "netx 0.6 loads input, dense and conv layers only: rebuild the network without "
                           f"{L.type!r} layers (neuromaml export lowers slayer's sum pools, nothing else)")
        if not layers:
            raise fail(path, "no computing layers", "export a network with at least one layer")
        return cls(layers, tuple(input_shape), path)

    def _input(self, x: np.ndarray | None, steps: int | None, batch: int) -> np.ndarray:
        first = self.layers[0]
        if first.kind == "input":
            if x is not None:
                raise fail(self.source, "the network starts with an input neuron layer driven by its bias; "
                           "Lava ignores spikes sent to it", "pass input_bias= instead of x")
            return np.zeros((batch, steps) + first.shape, np.int64)
        # Lava's synapses read unary spikes as booleans (``s_in.astype(bool)``): any non-zero is one spike
        return (to_net_input(x, tuple(self.input_shape), self.source) != 0).astype(np.int64)

    def run(self, x: np.ndarray | None = None, *, steps: int | None = None, input_bias: np.ndarray | None = None,
            return_all: bool = False, start: int = 0, stop: int | None = None,
            reset_interval: int | None = None):
        """Run the batch. ``x``: (B, T, *input_shape) spikes (0/1); returns the last layer's
        spikes (B, T, *shape) int8, or the list of every layer's with ``return_all``.

        ``start``/``stop`` run only layers ``[start, stop)``, ``x`` being the spikes that enter
        layer ``start`` (as ``run_until`` returns them). ``input_bias`` (B or 1, *shape) sets the
        bias mantissa of an ``input`` neuron layer (how lava-dl drives tinynet).
        ``reset_interval``: lava-dl's test protocol, layer ``k`` zeroes ``u, v`` after 1-based steps
        ``t`` with ``(t - 1) % interval == (k - 1) % interval`` (``io.reset.Reset``, offset ``k - 1``).
        """
        stop = len(self.layers) if stop is None else stop
        if start == 0:
            batch = 1 if x is None else np.asarray(x).shape[0]
            if input_bias is not None:
                batch = max(batch, np.asarray(input_bias).shape[0])
            s = self._input(x, steps if x is None else np.asarray(x).shape[1], batch)
        else:
            s = np.asarray(x).astype(np.int64)
        outs = []
        for k in range(start, stop):
            L = self.layers[k]
            rst = reset_steps(s.shape[1], reset_interval, k - 1) if reset_interval else None
            if L.kind == "input":
                p = L.neuron
                if input_bias is not None:
                    b = _wrap16(np.asarray(input_bias).astype(np.int64))[:, None]
                    p = dataclasses.replace(p, bias=b)
                s = cuba_run(np.zeros_like(s), p, rst)
            else:
                s = cuba_run(delay(L.synapse(s), SYNAPSE_DELAY), L.neuron, rst)
            outs.append(s)
        return outs if return_all else outs[-1]

    def run_until(self, x: np.ndarray | None, layer_index: int, **kw) -> np.ndarray:
        """Spikes entering layer ``layer_index`` (the output of layer ``layer_index - 1``).

        They are on Lava's time axis *before* that layer's synapse delay: a plastic replacement
        of layer ``k`` must apply ``delay`` (one step) itself, as Lava's ``LearningDense`` does.
        ``run(spikes, start=k)`` continues the frozen network from there.
        """
        if layer_index == 0:
            return np.asarray(x)
        return self.run(x, stop=layer_index, **kw)

    def __len__(self) -> int:
        return len(self.layers)


def _check_conv_shape(fl: FixedLayer, path: Any) -> None:
    x, y, c = fl.in_shape
    (sy, sx), (py, px), (dy, dx) = fl.stride, fl.padding, fl.dilation
    kh, kw = fl.weight.shape[2:4]
    ox = (x + 2 * px - dx * (kw - 1) - 1) // sx + 1
    oy = (y + 2 * py - dy * (kh - 1) - 1) // sy + 1
    if c != fl.weight.shape[1] * fl.groups:
        raise fail(path, f"layer/{fl.index}: conv of input {fl.in_shape} (x, y, f) with kernel {fl.weight.shape}"
                   f"{f' in {fl.groups} groups' if fl.groups > 1 else ''} takes {fl.weight.shape[1] * fl.groups} "
                   f"input channels, not {c}", "check that the input shape matches the first layer")
    if (ox, oy, fl.weight.shape[0]) != tuple(fl.shape):
        raise fail(path, f"layer/{fl.index}: conv of input {fl.in_shape} (x, y, f) with kernel "
                   f"{fl.weight.shape} gives {(ox, oy, fl.weight.shape[0])}, file says {fl.shape}",
                   "check that the input shape matches the first layer")
