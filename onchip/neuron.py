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


@dataclass(frozen=True)
class CubaParams:
    """Fixed-point CUBA neuron parameters, in Lava's register units."""

    du: int          # current decay register, -1..4095 (decay = (du+1)/4096 per step;
    #                  netx passes iDecay - 1)
    dv: int          # voltage decay register, 0..4095 (decay = dv/4096 per step)
    vth: int         # threshold mantissa, 0..131071 (effective threshold vth << 6)
    bias: int = 0    # bias mantissa, -4096..4095
    bias_exp: int = 6  # bias exponent (netx uses 6)

    def __post_init__(self):
        for name, lo, hi in (("du", -1, 4095), ("dv", 0, 4095), ("vth", 0, 131071),
                             ("bias", -4096, 4095), ("bias_exp", 0, 7)):
            val = getattr(self, name)
            if int(val) != val or not lo <= val <= hi:
                near = int(min(max(round(float(val)), lo), hi))
                raise RuleError(f"CubaParams.{name}={val!r} is not a {lo}..{hi} "
                                f"integer register; nearest representable: {near}")

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
    def effective_bias(self) -> int:
        return int(self.bias) << int(self.bias_exp)


class CubaState(NamedTuple):
    u: object  # current, state units (int64 numpy or torch tensor)
    v: object  # voltage, state units


def cuba_init_int(shape) -> CubaState:
    return CubaState(np.zeros(shape, np.int64), np.zeros(shape, np.int64))


def _decay_int(x: np.ndarray, factor: int) -> np.ndarray:
    prod = x.astype(np.int64) * factor
    return np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)


def cuba_step_int(a_in: np.ndarray, state: CubaState, p: CubaParams
                  ) -> Tuple[np.ndarray, np.ndarray, CubaState]:
    """One integer step. a_in: synaptic input (..., O) int (dense output).

    Returns (spikes int64 0/1, v_pre (voltage before reset), new state).
    """
    u = _decay_int(state.u, DECAY_UNITY - (p.du + 1)) + (np.asarray(a_in, np.int64) << ACT_SHIFT)
    u = np.where(u > UV_MAX, u - 2 * UV_MAX, u)
    u = np.where(u <= -UV_MAX, u + 2 * UV_MAX, u)
    v = _decay_int(state.v, DECAY_UNITY - p.dv) + u + p.effective_bias
    v = np.clip(v, -UV_MAX + 1, UV_MAX - 1)
    s = (v > p.theta).astype(np.int64)
    v_new = np.where(s == 1, 0, v)
    return s, v, CubaState(u, v_new)


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
    """Torch twin of `cuba_step_int` (differentiable, straight-through truncation).

    a_in: (..., O) float tensor in integer dense-output units. With `exact`, the
    decays are truncated toward zero (as Lava does) with a straight-through
    gradient; the 24-bit wrap of u and clip of v are not modelled (they only
    act when |u| or |v| reach 2^23, i.e. 2^17 thresholds of 64; Face 3 models
    them). Returns (spikes, v_pre, new state).
    """
    du = (DECAY_UNITY - (p.du + 1)) / DECAY_UNITY
    dv = (DECAY_UNITY - p.dv) / DECAY_UNITY
    ud = state.u * du
    vd = state.v * dv
    if exact:
        ud, vd = _ste_trunc(ud), _ste_trunc(vd)
    u = ud + a_in * float(1 << ACT_SHIFT)
    v = vd + u + float(p.effective_bias)
    s = spike_fn(v, float(p.theta), surrogate_beta)
    v_new = v * (1.0 - s.detach())  # reset; gradient not routed through the reset
    return s, v, CubaState(u, v_new)


def cuba_init(shape, like):
    import torch
    z = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return CubaState(z, z.clone())
