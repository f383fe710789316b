"""The output layer's CUBA LIF neuron: one step, in integer numpy and in torch.

Integer form (`cuba_step_int`) is bit-exact to Lava 0.10's fixed-point LIF
(`lava.proc.lif.models.AbstractPyLifModelFixed` / `PyLifModelBitAcc`, the
model netx instantiates for slayer CUBA layers). Per step, with all
quantities integers and `>>` an arithmetic shift::

    a_s  = a << 6                                       (activation MSB align)
    u    = sgn(u * (4096 - du - 1)) * (|u * (4096 - du - 1)| >> 12) + a_s
    u    = wrap to 24 bit signed  (u > 2^23 -> u - 2^24; u <= -2^23 -> u + 2^24)
    v    = sgn(v * (4096 - dv)) * (|v * (4096 - dv)| >> 12) + u + (bias << bias_exp)
    v    = clip(v, -2^23 + 1, 2^23 - 1)
    s    = v > (vth << 6)                                (spike, 0/1)
    v    = 0 where s                                     (reset)

`du`, `dv` are Lava's 12-bit decay registers (0..4095; Lava adds 1 to du,
netx stores `iDecay - 1`), `vth` the 17-bit threshold mantissa. The returned
`v_pre` is the voltage *before* reset (the state the rule's surrogate factor
reads).

Torch form (`cuba_step`) is the same map with straight-through truncation of
the decays, so that in the forward pass it gives the same integers when fed
integers (float64 is exact up to 2^53), and in the backward pass the spike uses
a fast-sigmoid surrogate and truncation is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Tuple

import numpy as np

from neuromaml.onchip.rule import RuleError

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6          # activation and threshold MSB alignment (bits)
VTH_SHIFT = 6
UV_MAX = 1 << 23       # 24-bit state bound


@dataclass(frozen=True, eq=False)
class CubaParams:
    """Fixed-point CUBA neuron parameters, in Lava's LIF register units: the one definition
    every face uses (the fixed-point engine's layers, the plastic layer, the Lava process, the
    torch twin). netx files store ``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``
    (``from_netx``)."""

    du: int          # current decay register, -1..4095 (decay = (du+1)/4096 per step;
    #                  netx passes iDecay - 1)
    dv: int          # voltage decay register, 0..4096 (decay = dv/4096 per step; 4096:
    #                  netx's non-leaky default for a layer without a neuron)
    vth: int         # threshold mantissa, 0..131072 (effective threshold vth << 6; 131072 =
    #                  netx's `1 << 18 - 1` default, read by Python as 1 << 17)
    bias: object = 0  # bias mantissa: an int, or an int64 array broadcast over the neurons
    #                   (int16, as Lava's bias_mant Var stores it)
    bias_exp: int = 6  # bias exponent (netx uses 6)

    def __post_init__(self):
        for name, lo, hi in (("du", -1, 4095), ("dv", 0, 4096), ("vth", 0, 131072),
                             ("bias_exp", 0, 7)):
            val = getattr(self, name)
            if int(val) != val or not lo <= val <= hi:
                near = int(min(max(round(float(val)), lo), hi))
                raise RuleError(f"CubaParams.{name}={val!r} is not a {lo}..{hi} "
                                f"integer register; nearest representable: {near}")
        b = np.asarray(self.bias)
        if b.size and (not np.issubdtype(b.dtype, np.integer) and not np.all(b == np.round(b))
                       or b.min() < -32768 or b.max() > 32767):
            raise RuleError(f"CubaParams.bias must hold int16 integers (-32768..32767), got "
                            f"{b.min() if b.size else b}..{b.max() if b.size else b}")

    @classmethod
    def from_netx(cls, i_decay: int, v_decay: int, vth_mant: int, bias=0) -> "CubaParams":
        """A netx neuron record (``iDecay``, ``vDecay``, ``vThMant``) as Lava loads it."""
        return cls(du=int(i_decay) - 1, dv=int(v_decay), vth=int(vth_mant), bias=0 if bias is None else bias)

    @classmethod
    def from_slayer(cls, threshold: float, current_decay: float, voltage_decay: float,
                    scale: int = 1 << 6, bias: int = 0) -> "CubaParams":
        """Registers of a slayer `cuba.Neuron` as netx instantiates them in Lava:
        vth = int(threshold * scale), du = round(current_decay * 4096) - 1,
        dv = round(voltage_decay * 4096), bias_exp = 6 (slayer weights map to Lava
        weights as w_int = w * scale)."""
        return cls(du=int(np.rint(current_decay * DECAY_UNITY)) - 1,
                   dv=int(np.rint(voltage_decay * DECAY_UNITY)),
                   vth=int(threshold * scale), bias=bias, bias_exp=6)

    @property
    def theta(self) -> int:
        """Effective threshold in state units (vth << 6)."""
        return int(self.vth) << VTH_SHIFT

    @property
    def effective_bias(self):
        """bias << bias_exp in state units: an int, or an int64 array."""
        b = np.asarray(self.bias)
        return int(b) << int(self.bias_exp) if b.ndim == 0 else b.astype(np.int64) << int(self.bias_exp)

    @property
    def has_bias(self) -> bool:
        return bool(np.any(np.asarray(self.bias)))


class CubaState(NamedTuple):
    u: object  # current, state units (int64 numpy or torch tensor)
    v: object  # voltage, state units


def cuba_init_int(shape) -> CubaState:
    return CubaState(np.zeros(shape, np.int64), np.zeros(shape, np.int64))


class IntOps:
    """Integer arithmetic of Lava's fixed-point LIF, on int64 numpy arrays (``xp=np``) or
    int64 torch tensors (``xp=torch``). ``wrap32``: the int32 wrap of Lava's activation sum
    before the 24-bit wrap (only reached when |input| nears 2^31; the fixed engine turns it on
    when its inputs can get there)."""

    def __init__(self, xp=np, wrap32: bool = False):
        self.xp, self.wrap32 = xp, wrap32

    def decay(self, x, factor: int):
        """sign(x * factor) * (|x * factor| >> 12): the decay, rounded toward zero."""
        prod = x * factor
        return self.xp.sign(prod) * (self.xp.abs(prod) >> DECAY_SHIFT)

    def wrap_u(self, u):
        if self.wrap32:
            u = ((u + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        u = self.xp.where(u > UV_MAX, u - 2 * UV_MAX, u)
        return self.xp.where(u <= -UV_MAX, u + 2 * UV_MAX, u)

    def clip_v(self, v):
        return self.xp.clip(v, -UV_MAX + 1, UV_MAX - 1)

    def spike(self, v, theta):
        return (v > theta) * 1

    def reset(self, v, s):
        return self.xp.where(s != 0, 0 * v, v)


class SteOps:
    """The torch twin's arithmetic: float tensors holding integers, the decays truncated toward
    zero with a straight-through gradient (``exact``), the spike a Heaviside with a fast-sigmoid
    surrogate gradient, the reset not routed in the gradient. The 24-bit wrap of u and the clip
    of v are not modelled (they act only when |u| or |v| reach 2^23, i.e. 2^17 thresholds of
    64; the integer faces model them)."""

    def __init__(self, surrogate_beta=10.0, exact: bool = True):
        self.beta, self.exact = surrogate_beta, exact

    def decay(self, x, factor: int):
        y = x * (factor / DECAY_UNITY)
        return _ste_trunc(y) if self.exact else y

    def wrap_u(self, u):
        return u

    def clip_v(self, v):
        return v

    def spike(self, v, theta):
        return spike_fn(v, float(theta), self.beta)

    def reset(self, v, s):
        return v * (1.0 - s.detach())


INT_OPS = IntOps(np)


def lif_step(a_s, state: CubaState, p: CubaParams, ops=INT_OPS):
    """THE CUBA step (Lava's fixed-point LIF), for every face; ``ops`` supplies the arithmetic.

    a_s: synaptic input already in state units (``a << 6``). Returns (spikes, v_pre (the
    voltage before reset, what the rule's surrogate factor reads), new state)."""
    u = ops.wrap_u(ops.decay(state.u, DECAY_UNITY - (p.du + 1)) + a_s)
    v = ops.clip_v(ops.decay(state.v, DECAY_UNITY - p.dv) + u + p.effective_bias)
    s = ops.spike(v, p.theta)
    return s, v, CubaState(u, ops.reset(v, s))


def cuba_step_int(a_in: np.ndarray, state: CubaState, p: CubaParams
                  ) -> Tuple[np.ndarray, np.ndarray, CubaState]:
    """One integer step. a_in: synaptic input (..., O) int (dense output).

    Returns (spikes int64 0/1, v_pre (voltage before reset), new state).
    """
    return lif_step(np.asarray(a_in, np.int64) << ACT_SHIFT, state, p, INT_OPS)


# --------------------------------------------------------------------------- torch

def _ste_trunc(x):
    """Round toward zero in the forward pass, identity in the backward pass."""
    import torch
    return x + (torch.trunc(x) - x).detach()


def spike_fn(v, theta: float, beta):
    """Heaviside(v - theta) forward; fast-sigmoid surrogate backward:
    d s / d v = 1/(1 + beta|z|)^2 / theta, z = (v - theta)/theta (beta may be a tensor)."""
    z = (v - theta) / max(theta, 1.0)
    surrogate = z / (1.0 + beta * z.abs())  # d/dz = 1/(1+beta|z|)^2
    hard = (z > 0).to(v.dtype)
    return hard + (surrogate - surrogate.detach())


def cuba_step(a_in, state: CubaState, p: CubaParams, surrogate_beta: float = 10.0,
              exact: bool = True):
    """Torch twin of `cuba_step_int`: ``lif_step`` with ``SteOps`` (differentiable,
    straight-through truncation; equal to the integer step in the forward pass when fed
    integers, float64 being exact up to 2^53). a_in: (..., O) float tensor in integer
    dense-output units. Returns (spikes, v_pre, new state).
    """
    return lif_step(a_in * float(1 << ACT_SHIFT), state, p, SteOps(surrogate_beta, exact))


def cuba_init(shape, like):
    import torch
    z = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return CubaState(z, z.clone())
