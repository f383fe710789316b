"""Spiking networks of lava-dl slayer CUBA blocks, with a fast MAML-ready forward.

The network is a ``torch.nn.ModuleList`` of ``slayer.block.cuba`` blocks
(``model.blocks``), so ``model.export_hdf5(path)`` writes slayer's netx file
and the weights are the ones Loihi receives (slayer's 8-bit ``quantize_8bit``
pre-hook is kept on every synapse).

Forward ("fast" path, ``SNN.run``): each block's synapse is slayer's own
module (called through ``torch.func.functional_call`` with the weights given),
its CUBA neuron is recomputed here:

* exact integer dynamics, bit for bit slayer's CPU neuron (s_scale = 2^12)::

      i[t] = rshift0(i[t-1] * (4096 - d_i), 12) + trunc(4096 * z[t])
      v[t] = rshift0(v[t-1] * (4096 - d_v), 12) + i[t]
      s[t] = v[t] > 4096 * theta ;  v[t] <- 0 where s[t]

  (``d_i``, ``d_v``: decays in 1/4096 per step, ``theta``: threshold in weight
  units; ``rshift0`` rounds toward zero), run under ``no_grad``;
* gradients as slayer defines them (reset ignored, ``(1 - d/4096)`` leak),
  expressed as one linear filter ``v_soft = z @ H^T`` with the T x T kernel
  ``H[t, s] = sum_{j=0}^{t-s} a_i^j a_v^{t-s-j}``, joined to the exact value by
  a straight-through ``v = v_soft + stopgrad(v_exact - v_soft)``; spikes use a
  twice-differentiable surrogate (``neuromaml.meta.surrogate``).

Steps ``[0, burn_in)`` are computed exactly but carry no gradient (the paper
took gradients over the last 30 ms only): the graph holds ``T - burn_in``
steps. Each block shifts its output by one step (slayer's ``delay_shift``,
Loihi's one-step synaptic delay).

Readout: spike count of each output neuron over steps ``[burn_in, T)``;
logits = count * logit_scale; class = argmax.

``ModelConfig`` and the registry of architectures (``register_model``, ``MODELS``,
``model_defaults``, ``config_from_dict``) are ``meta.architectures``, the exact neuron
``meta.slayer_neuron``; this module re-exports their names.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .architectures import MODEL_NAMES, MODELS, ModelConfig, _blocks
from .architectures import SPIKING, ModelSpec, config_from_dict, model_defaults, register_model  # noqa: F401 (re-exported)
from .surrogate import spike

from .slayer_neuron import S_SCALE, cuba_exact, cuba_exact_torch, leak_kernel, rshift0  # noqa: F401 (re-exported)

W_SCALE = 1 << 6   # slayer CUBA weight scale


class Activations(NamedTuple):
    """What a block range of a network returns (``SNN.run``, ``ANN.run``): ``full`` the exact
    activity over all T steps (no gradient in an SNN), ``window`` the readout window
    [burn_in, T) carrying gradients. A tuple, so ``full, window = model.run(...)`` works."""

    full: torch.Tensor
    window: torch.Tensor


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Delay by one step along the last axis (zero first), as a contiguous tensor."""
    out = torch.empty_like(x)
    out[..., :1] = 0
    out[..., 1:] = x[..., :-1]
    return out


def _slayer_synapses():
    """slayer's synapse module (imported on use, as everything of lava-dl here)."""
    from neuromaml.lavacompat import quiet_lava_dl

    quiet_lava_dl()
    from lava.lib.dl.slayer.synapse import layer

    return layer


def _sum_pool(syn, x: torch.Tensor) -> torch.Tensor | None:
    """slayer's ``synapse.Pool`` forward, computed as window sums.

    slayer runs its pool as a one-channel ``conv3d`` over the (C*H, W, T) volume,
    which on the CPU took a third of a meta-step of a small CNN; for the usual
    non-overlapping pool (stride = kernel, no padding or dilation, one shared
    weight) this is the same arithmetic: ``w * (sum of each kh x kw window)``, with
    slayer's zero row/column appended to odd sizes (``avg_pool3d`` with divisor 1:
    forward and backward are one kernel each). The sums of binary spikes are
    exact in float32, so the result equals slayer's bit for bit (a test pins it).
    Returns None where the pool is of another form (the caller then runs slayer's).
    """
    w = syn._pre_hook_fx(syn.weight) if syn._pre_hook_fx is not None else syn.weight
    kh, kw = int(w.shape[2]), int(w.shape[3])
    if (tuple(syn.stride) != (kh, kw, 1) or any(int(p) for p in syn.padding)
            or any(int(d) != 1 for d in syn.dilation) or x.dim() != 5
            or not bool((w == w.reshape(-1)[0]).all())):
        return None
    h, wd = x.shape[2], x.shape[3]
    ph, pw = (-h) % kh, (-wd) % kw
    if ph or pw:  # slayer appends (size % kernel) zeros; equal to (-size) % kernel for kernel 2
        if (h % kh, wd % kw) != (ph, pw):
            return None
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    y = F.avg_pool3d(x, (kh, kw, 1), divisor_override=1)  # window sums (one kernel each way)
    return y * w.reshape(-1)[0]


class _MetaNet(torch.nn.Module):
    """What ``meta.maml`` needs of a network besides ``run`` and ``counts``: its weight
    parameters ``blocks.<i>.<...>`` in layer order, and logits = counts * logit_scale."""

    def param_names(self) -> list[str]:
        """Names of the learnable (synapse weight) parameters, in layer order."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def meta_params(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def block_of(self, name: str) -> int:
        return int(name.split(".")[1])

    @property
    def n_layers(self) -> int:
        """Number of blocks with learnable weights."""
        return len(self.param_names())

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return self.counts(out) * self.cfg.logit_scale


class SNN(_MetaNet):
    """A feed-forward CUBA SNN. ``model(x)`` -> output spikes (N, n_way, T);
    ``model(x, return_pre=True)`` -> (out_spikes, input spikes of the final
    block (N, I, T), i.e. after the previous block's one-step delay)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = torch.nn.ModuleList(_blocks(cfg))
        self.surrogate = cfg.surrogate_fn()
        self._kernels: dict = {}
        with torch.no_grad():  # shape the neurons (export needs it)
            self.slayer_forward(torch.zeros(1, *cfg.input_shape, 2))
            if cfg.zero_head:
                self.blocks[-1].synapse.weight.zero_()

    # -- forward ------------------------------------------------------
    def _kernel(self, n: int, block) -> torch.Tensor:
        d_i = int(torch.round(block.neuron.current_decay).item())
        d_v = int(torch.round(block.neuron.voltage_decay).item())
        key = (n, d_i, d_v)
        if key not in self._kernels:
            self._kernels[key] = leak_kernel(n, d_i, d_v)
        return self._kernels[key].to(block.synapse.weight.device)

    def _synapse(self, i: int, block, params, x):
        """Block ``i``'s synaptic input: slayer's synapse arithmetic on the weight in
        ``params`` (else the block's own), through slayer's 8-bit pre-hook unless
        ``cfg.quantize`` is off (which leaves the weights in ``params`` raw)."""
        syn, kinds = block.synapse, _slayer_synapses()
        if isinstance(syn, kinds.Pool):  # fixed weights, never adapted
            fast = _sum_pool(syn, x)
            return syn(x) if fast is None else fast
        name = f"blocks.{i}.synapse.weight"
        w = params[name] if name in params else syn.weight
        if syn._pre_hook_fx is not None and (self.cfg.quantize or name not in params):
            w = syn._pre_hook_fx(w)
        if isinstance(syn, kinds.Dense) and x.dim() == 3 and tuple(w.shape[2:]) == (1, 1, 1):
            # slayer's Dense runs as a conv3d over (N, C, 1, 1, T); a matmul is the same sum
            # (exact for binary spikes and 8-bit weights) and several times faster on a CPU
            return torch.matmul(w.reshape(w.shape[0], -1), x)
        # slayer's Conv (and Dense on NCHWT input) forward: one conv3d
        return F.conv3d(x, w, syn.bias, syn.stride, syn.padding, syn.dilation, syn.groups)

    def run(self, params: dict, x: torch.Tensor, start: int = 0, stop: int | None = None,
            x_win: torch.Tensor | None = None, burn_in: int | None = None):
        """Blocks ``[start, stop)`` on exact input ``x`` (N, ..., T).

        ``x_win``: the same input over ``[burn_in, T)`` carrying gradients
        (defaults to ``x[..., burn_in:]``). Returns ``Activations(full, window)`` of the
        last block run: exact spikes (no grad) and windowed spikes (grad).
        """
        b = self.cfg.burn_in if burn_in is None else burn_in
        stop = len(self.blocks) if stop is None else stop
        if x_win is None:
            x_win = x[..., b:]
        for i in range(start, stop):
            block = self.blocks[i]
            if not hasattr(block, "neuron"):  # Flatten
                x = x.reshape(x.shape[0], -1, x.shape[-1])
                x_win = x_win.reshape(x_win.shape[0], -1, x_win.shape[-1])
                continue
            z_win = self._synapse(i, block, params, x_win)
            if x_win.shape[-1] == x.shape[-1]:
                # no burn-in: the window is the whole input (its values are the exact
                # spikes), so the exact synaptic input is the windowed one, not computed twice
                z_full = z_win.detach()
            else:
                # synapses act on each step alone, so the exact input over the window is the
                # windowed one's value (binary spikes times 8-bit weights sum exactly in
                # float32): only the burn-in steps are computed again, without gradient
                with torch.no_grad():
                    z_pre = self._synapse(i, block, params, x[..., :x.shape[-1] - x_win.shape[-1]])
                z_full = torch.cat([z_pre, z_win.detach()], dim=-1)
            nrn = block.neuron
            d_i = int(torch.round(nrn.current_decay).item())
            d_v = int(torch.round(nrn.voltage_decay).item())
            theta_int = int(round(nrn.threshold * S_SCALE))
            v_full, s_full = cuba_exact(z_full, d_i, d_v, theta_int)
            ker = self._kernel(z_win.shape[-1], block)
            v_soft = z_win @ ker.T
            v = v_soft + (v_full[..., b:] - v_soft).detach()
            s_win = spike(v - nrn.threshold, self.surrogate, s_full[..., b:])
            if getattr(block, "delay_shift", False):
                prev = s_full[..., b - 1:b] if b > 0 else torch.zeros_like(s_full[..., :1])
                s_win = torch.cat([prev, s_win[..., :-1]], dim=-1)
                s_full = _shift(s_full)
            x, x_win = s_full, s_win
        return Activations(x, x_win)

    def forward(self, x: torch.Tensor, return_pre: bool = False, params: dict | None = None):
        params = dict(self.named_parameters()) if params is None else params
        b = self.cfg.burn_in
        last = len(self.blocks) - 1
        pre_full, pre_win = self.run(params, x, 0, last)
        out_full, out_win = self.run(params, pre_full, last, None, x_win=pre_win)
        out = torch.cat([out_full[..., :b], out_win], dim=-1)
        if return_pre:
            pre = torch.cat([pre_full[..., :b], pre_win], dim=-1)
            return out, pre
        return out

    def slayer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain slayer forward (its own neuron and surrogate), for checks."""
        for block in self.blocks:
            x = block(x)
        return x

    # -- readout ------------------------------------------------------
    def counts(self, out: torch.Tensor) -> torch.Tensor:
        """Spike counts over [burn_in, T): (N, n_way)."""
        return out[..., self.cfg.burn_in:].sum(-1)

    def export_hdf5(self, path) -> None:
        """Write slayer's netx HDF5 description of the network (atomically)."""
        import h5py

        from neuromaml.io import atomic_path

        with atomic_path(path, suffix=".net") as tmp:
            with h5py.File(tmp, "w") as h:
                layer = h.create_group("layer")
                for i, block in enumerate(self.blocks):
                    block.export_hdf5(layer.create_group(f"{i}"))


class ANN(_MetaNet):
    """The paper's non-spiking baseline: the same MAML on a conventional CNN over
    summed event frames ("the input data is first converted from the address
    event representation to static images by summing the events over the time
    dimension", Stewart & Neftci 2022, Sec. 3.1).

    Table 1's topology with ReLU units: 32c5, 2a, 64c5, 2a, 128c5, 2a, dense N
    (average pools, as the SNN's sum pools; no biases, as the SNN's synapses).
    It speaks the SNN's interface to ``meta.maml``: activations carry a time
    axis of length 1, ``run`` returns the same tensor as "exact" and "windowed"
    value, and the output is the logits (``logit_scale`` applies as for counts).
    It is a baseline only: it has no neuron to export to Loihi.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, h, w = cfg.input_shape
        convs = [torch.nn.Conv2d(c, 32, 5, padding=2, bias=False), torch.nn.AvgPool2d(2, ceil_mode=True),
                 torch.nn.Conv2d(32, 64, 5, padding=2, bias=False), torch.nn.AvgPool2d(2, ceil_mode=True),
                 torch.nn.Conv2d(64, 128, 5, padding=2, bias=False), torch.nn.AvgPool2d(2, ceil_mode=True),
                 torch.nn.Flatten()]
        for _ in range(3):
            h, w = (h + 1) // 2, (w + 1) // 2
        self.blocks = torch.nn.ModuleList(convs + [torch.nn.Linear(128 * h * w, cfg.n_way, bias=False)])
        if cfg.zero_head:
            with torch.no_grad():
                self.blocks[-1].weight.zero_()

    def run(self, params: dict, x: torch.Tensor, start: int = 0, stop: int | None = None,
            x_win: torch.Tensor | None = None, burn_in: int | None = None):
        """Blocks ``[start, stop)``; at block 0 the frames (N, C, H, W, T) become one
        image: events summed over T, divided by the sample's largest pixel count.
        Returns Activations(y, y): one value, with gradients (a network without a time axis
        has no separate readout window)."""
        stop = len(self.blocks) if stop is None else stop
        if start == 0:  # summed events, scaled to [0, 1] per sample
            x = x.sum(-1, keepdim=True)
            x = x / x.flatten(1).amax(1).clamp(min=1).reshape(-1, *([1] * (x.dim() - 1)))
        elif x_win is not None:
            x = x_win
        y = x[..., 0]
        for i in range(start, stop):
            block = self.blocks[i]
            name = f"blocks.{i}.weight"
            if name in params:
                y = torch.func.functional_call(block, {"weight": params[name]}, (y,))
            else:
                y = block(y)
            if isinstance(block, torch.nn.Conv2d):
                y = F.relu(y)
        y = y[..., None]
        return Activations(y, y)

    def forward(self, x: torch.Tensor, return_pre: bool = False, params: dict | None = None):
        if return_pre:
            raise ValueError("ann_cnn has no spiking final layer (return_pre is for the on-chip rule)")
        params = dict(self.named_parameters()) if params is None else params
        return self.run(params, x)[0]

    def counts(self, out: torch.Tensor) -> torch.Tensor:
        return out.sum(-1)


def build_model(cfg: ModelConfig, seed: int | None = None):
    """Build the network named by ``cfg.name`` (an ``SNN``, or the ``ANN`` baseline
    for ``ann_cnn``); ``seed`` fixes the initial weights."""
    if cfg.name not in MODELS:
        raise ValueError(f"unknown model name {cfg.name!r}; choose one of {MODEL_NAMES}")
    cls = SNN if MODELS[cfg.name].spiking else ANN
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(cfg)
    return cls(cfg)
