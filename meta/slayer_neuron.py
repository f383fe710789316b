"""slayer's CPU CUBA neuron, exactly, for the training forward (``meta.models.SNN``).

This is slayer's neuron, not Lava's (``onchip.neuron.lif_step`` is the one Lava-form step):
inputs scaled by 2^12 and truncated, thresholds in 2^12 units (not aligned to Lava's 2^6), no
24-bit wrap or clip of the state. With ``a_i = 4096 - d_i``, ``a_v = 4096 - d_v``::

    i[t] = rshift0(i[t-1] * a_i, 12) + trunc(4096 * z[t])
    v[t] = rshift0(v[t-1] * a_v, 12) + i[t]
    s[t] = v[t] > theta ;  v[t] <- 0 where s[t]

``cuba_exact`` runs it in the compiled kernel of ``meta._cuba`` (bit for bit
``cuba_exact_torch``, its reference); ``leak_kernel`` is the linear filter the surrogate
gradient flows through.
"""
from __future__ import annotations

import torch

S_SCALE = 1 << 12  # slayer CUBA state scale (w_scale 64 * 64)


def rshift0(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Arithmetic right shift rounding toward zero (slayer's right_shift_to_zero)."""
    sign = 2 * (x > 0) - 1
    return sign * ((sign * x) >> bits)


@torch.no_grad()
def cuba_exact_torch(z: torch.Tensor, d_i: int, d_v: int, theta_int: int):
    """``cuba_exact`` written with torch tensor ops, one time step at a time: the
    reference the compiled kernel is tested against, bit for bit."""
    zi = (S_SCALE * z).to(torch.int64)  # trunc toward zero, as slayer
    cur = torch.zeros(z.shape[:-1], dtype=torch.int64, device=z.device)
    vol = torch.zeros_like(cur)
    volt = torch.empty_like(zi)
    a_i, a_v = S_SCALE - d_i, S_SCALE - d_v
    for t in range(z.shape[-1]):
        cur = rshift0(cur * a_i, 12) + zi[..., t]
        vol = rshift0(vol * a_v, 12) + cur
        volt[..., t] = vol
        vol = vol * (vol <= theta_int)
    return volt.to(z.dtype) / S_SCALE, (volt > theta_int).to(z.dtype)


@torch.no_grad()
def cuba_exact(z: torch.Tensor, d_i: int, d_v: int, theta_int: int):
    """Exact integer CUBA dynamics of slayer's CPU neuron.

    z: synaptic input (..., T) in weight units. Returns (voltage before reset
    as float in weight units, spikes as float 0/1), both (..., T).

    On the CPU the recurrence runs in a compiled kernel (``meta._cuba``: numba,
    one neuron per iteration with its state in registers, neurons split across
    threads), bit for bit ``cuba_exact_torch``; the tensor-op loop it replaces was
    memory-bound (some twenty full-size int64 passes per time step). Other devices
    (and float64 input) take ``cuba_exact_torch``.
    """
    if z.device.type != "cpu" or z.dtype != torch.float32:
        return cuba_exact_torch(z, d_i, d_v, theta_int)
    from ._cuba import cuba_kernel

    x = z.detach().contiguous()
    flat = x.reshape(-1, x.shape[-1]).numpy()
    volt = torch.empty_like(x)
    spk = torch.empty_like(x)
    cuba_kernel(flat, S_SCALE - d_i, S_SCALE - d_v, theta_int,
                volt.view(-1, x.shape[-1]).numpy(), spk.view(-1, x.shape[-1]).numpy())
    return volt, spk


def leak_kernel(n: int, d_i: int, d_v: int, dtype=torch.float32) -> torch.Tensor:
    """H (n x n): v_soft[t] = sum_s H[t, s] z[s] for the two cascaded leaks."""
    a_i, a_v = 1.0 - d_i / S_SCALE, 1.0 - d_v / S_SCALE
    k = torch.arange(n, dtype=torch.float64)
    j = torch.arange(n, dtype=torch.float64)
    # h[k] = sum_{j<=k} a_i^j a_v^(k-j)
    terms = torch.where(j[None, :] <= k[:, None], a_i ** j[None, :] * a_v ** (k[:, None] - j[None, :]).clamp(min=0), 0.0)
    h = terms.sum(1)
    idx = k[:, None] - k[None, :]
    mat = torch.where(idx >= 0, h[idx.clamp(min=0).long()], torch.zeros(()))
    return mat.to(dtype)
