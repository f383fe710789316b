"""Loihi fixed-point quantization of weights, decays and thresholds.

One quantizer, shared by quantization-aware meta-training (``meta/``) and by
export (``deploy/``), so that what is trained is what the chip computes.

The mapping, as lava-dl's slayer CUBA neuron (``scale = w_scale = 64``) and
netx/Lava's fixed-point models define it:

* **weights**: a float weight ``w`` (slayer units, one input spike adds ``w``
  to the current of a neuron with threshold ``theta``) is stored on chip as
  an even integer ``W = 2 * m`` with the 8-bit mantissa ``m`` in
  ``[-128, 127]``::

      W = clamp(2 * round(w * scale / 2), -256, 254),   w_q = W / scale

  (slayer's ``quantize_8bit``: ``step = 2 / scale``). Lava's synapse adds
  ``W << 6`` to the 24-bit current register of the post-synaptic neuron.
  A layer whose weights would need more than 8 mantissa bits at the chosen
  ``scale`` is an overflow (``check_weight_range``). The per-layer exponent
  of netx (``weight_exp``, ``optimize_weight_bits``) re-scales the stored
  mantissas when a layer uses fewer bits; ``mantissa_exponent`` /
  ``from_mantissa_exponent`` are that pair: ``W = m * 2**(e+1)`` for
  ``e`` in ``[-8, 7]``; for slayer weights ``e == 0``.
* **decays** (12 bit): ``D = round(decay * 4096)`` in ``[0, 4096]``; per step
  ``u <- sign(u * (4096 - D)) * (|u * (4096 - D)| >> 12) + (in << 6)``.
  netx stores ``iDecay = D_u`` (Lava ``du = iDecay - 1`` plus a 1-bit offset)
  and ``vDecay = D_v`` (``dv``).
* **threshold mantissa**: ``vThMant = int(theta * scale)`` (17 bit unsigned);
  Lava spikes when ``v > vThMant << 6``. slayer's neuron already rounds its
  threshold down to this grid (``int(theta * 64) / 64``); ``quantize_threshold``
  is the same mapping for code that is not slayer.
"""
from __future__ import annotations

import numpy as np
import torch

W_SCALE = 64            # slayer cuba default: weight units per 1.0 of threshold
WEIGHT_MIN, WEIGHT_MAX = -256, 254   # stored (even) weight range
MANTISSA_BITS = 8
DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS        # 4096
VTH_MAX = (1 << 17) - 1


class _QuantizeWeight(torch.autograd.Function):
    """Round to the Loihi weight grid in the forward pass, identity gradient."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D401
        step = 2.0 / scale
        return (torch.round(w / step) * step).clamp(WEIGHT_MIN / scale, WEIGHT_MAX / scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def quantize_weight(w: torch.Tensor, scale: int = W_SCALE) -> torch.Tensor:
    """Straight-through quantizer: ``clamp(2 round(w scale / 2), -256, 254) / scale``.

    Forward: the value the chip uses (in slayer units); backward: gradient
    passes unchanged (straight-through estimator), so it can sit inside a MAML
    inner loop (twice differentiable: its derivative is the identity).
    Matches slayer's ``neuron.quantize_8bit`` bit for bit.
    """
    return _QuantizeWeight.apply(w, float(scale))


def weight_to_int(w: np.ndarray | torch.Tensor, scale: int = W_SCALE) -> np.ndarray:
    """Float weights (slayer units) -> stored integer weights ``W`` (even, int32)."""
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    w = np.asarray(w, dtype=np.float64)
    q = np.round(w * scale / 2.0) * 2.0
    return np.clip(q, WEIGHT_MIN, WEIGHT_MAX).astype(np.int32)


def int_to_weight(W: np.ndarray, scale: int = W_SCALE) -> np.ndarray:
    """Stored integer weights -> float weights in slayer units (``W / scale``)."""
    return np.asarray(W, dtype=np.float64) / scale


def check_weight_range(w: np.ndarray | torch.Tensor, scale: int = W_SCALE) -> float:
    """Largest ``|w * scale|`` over the range the 8-bit mantissa can hold (<= 1 fits).

    Returns the overflow factor: ``max(max(w*scale)/254, min(w*scale)/-256)``.
    A value > 1 means quantization clips weights (an overflow).
    """
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    w = np.asarray(w, dtype=np.float64) * scale
    if w.size == 0:
        return 0.0
    return float(max(w.max() / WEIGHT_MAX, w.min() / WEIGHT_MIN, 0.0))


def mantissa_exponent(W: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer weights -> (8-bit mantissa ``m`` int8, exponent ``e``): ``W = m * 2**(e+1)``.

    Chooses the smallest ``e`` in ``[-8, 7]`` such that ``m`` fits in int8
    (and is exact when the weights allow it); the inverse of
    ``from_mantissa_exponent``. Values that are not multiples of ``2**(e+1)``
    are rounded half away from zero (as Loihi's mantissa would lose them).
    """
    W = np.asarray(W, dtype=np.int64)
    for e in range(-8, 8):
        div = 2.0 ** (e + 1)
        m = np.round(W / div)
        if m.size == 0 or (m.max() <= 127 and m.min() >= -128):
            return m.astype(np.int8), e
    raise ValueError(f"weights too large for an 8-bit mantissa with exponent <= 7 "
                     f"(max |W| = {np.abs(W).max()})")


def from_mantissa_exponent(m: np.ndarray, e: int) -> np.ndarray:
    """(mantissa, exponent) -> integer weights ``m * 2**(e+1)`` (int64; fractions floor)."""
    m = np.asarray(m, dtype=np.int64)
    return np.floor(m * 2.0 ** (e + 1)).astype(np.int64)


def decay_to_int(decay: float | np.ndarray) -> np.ndarray:
    """Decay fraction per step (0..1) -> 12-bit integer ``round(decay * 4096)`` clamped to [0, 4096]."""
    return np.clip(np.round(np.asarray(decay, dtype=np.float64) * DECAY_UNITY), 0, DECAY_UNITY).astype(np.int64)


def quantize_threshold(theta: float, scale: int = W_SCALE) -> float:
    """Threshold rounded down to the mantissa grid: ``int(theta * scale) / scale``.

    With this, slayer's float threshold and Lava's ``vThMant << 6`` agree.
    """
    mant = int(theta * scale)
    if not 0 < mant <= VTH_MAX:
        raise ValueError(f"threshold {theta} gives vThMant {mant}, outside 1..{VTH_MAX}")
    return mant / scale
