"""Face 2: the rule as a differentiable torch function (MAML inner loop).

`adapt_final_layer` runs the same online, per-time-step rule as Face 3
(`fixed_rule.run_support`) and Face 1 (Lava): every integer operation of the
fixed-point rule (round, floor, stochastic rounding, the engine's 3-bit
product shift) is applied in the forward pass and is the identity in the
backward pass (straight-through). With float64 tensors and the default
Lava random streams, the forward pass gives the same weights as Face 3 (pinned
by tests/test_onchip_torch.py); with float32, equal up to rare 1-LSB rounding
ties. The output spikes use the fast-sigmoid surrogate 1/(1+beta|z|)^2, so
second-order MAML can train the initial weights (and, through them, lower
layers' spikes) *through* the rule that runs on the chip.

Meta-learnable hyperparameters (pass tensors to override the spec): eta_exp
(rounded in the forward pass, clamped to [-10, 5]; dw scales as 2^eta_exp),
x1_tau (rounded, clamped to [1, 255]; decay exp(-1/tau)), error_threshold,
factor_threshold, eq6_threshold (hard gates forward, sigmoid surrogate
backward) and surrogate_beta.

Weight units: `weight` is in the slayer Dense block's units; `weight_scale`
maps it to Lava integer weight units (w_int = weight * weight_scale, the
Dense `weights` Var, range -256..255; clamped straight-through, whereas
Face 3 raises RuleError). The result is returned in slayer units.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from neuromaml.onchip.neuron import CubaParams, CubaState, cuba_step
from neuromaml.onchip.fixed_rule import Y_DECAY, Presentation, present
from neuromaml.onchip.rule import W_MAX, W_MIN, RuleError, RuleSpec, lava_randoms


def ste(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """`forward` in the forward pass, gradient of `x` in the backward pass."""
    return x + (forward - x).detach()


def ste_round(x):
    return ste(x, torch.round(x))          # half to even, as numpy.rint


def ste_floor(x):
    return ste(x, torch.floor(x))


def ste_stochastic(x, r: float):
    """Lava's stochastic rounding floor(x) + (r < frac(x)), straight-through."""
    fl = torch.floor(x)
    return ste(x, fl + (r < (x - fl)).to(x.dtype))


def _gate(y, threshold):
    """y where |y| > threshold else 0; a tensor threshold gets a sigmoid surrogate."""
    hard = (y.abs() > threshold).to(y.dtype)
    if torch.is_tensor(threshold) and threshold.requires_grad:
        soft = torch.sigmoid(y.abs() - threshold)
        hard = hard + (soft - soft.detach())
    return y * hard


def _param(value, default):
    return default if value is None else value


class SteRuleOps:
    """The rule's arithmetic for Face 2 (``onchip.rule``'s kernels take it as ``ops``): float
    tensors holding integers, every rounding applied in the forward pass and the identity in the
    backward pass; the softmax's max shift detached; a tensor threshold gated with a sigmoid
    surrogate (``_gate``). Forward values equal ``IntRuleOps``' in float64."""

    @staticmethod
    def real(x):
        return x

    @staticmethod
    def round(x):
        return ste_round(x)

    @staticmethod
    def softmax(z):
        z = z - z.max(dim=-1, keepdim=True).values.detach()
        p = torch.exp(z)
        return p / p.sum(dim=-1, keepdim=True)

    @staticmethod
    def has_label(onehot):
        return (onehot != 0).any(dim=-1, keepdim=True).to(onehot.dtype)

    @staticmethod
    def gate(y, threshold):
        return _gate(y, threshold)

    @staticmethod
    def full_like(x, value):
        return torch.full_like(x, float(value))

    @staticmethod
    def shr(x, k: int):
        return ste_floor(x / float(1 << k))

    @staticmethod
    def stochastic(val, r):
        return ste_stochastic(val, r)

    @staticmethod
    def clip(x, lo, hi):
        return x.clamp(lo, hi)

    @staticmethod
    def div_round(num, den):
        # exact in float64 for |num| < 2^52 (the quotient's rounding error < 1/den)
        return ste(num / den, torch.floor((num + torch.floor(den / 2)) / den))

    @staticmethod
    def neg_outer(y2, x1):
        return -(y2.unsqueeze(-1) * x1.unsqueeze(-2))

    @staticmethod
    def shl(x, k):
        return x * torch.pow(torch.as_tensor(2.0, dtype=x.dtype), k) if torch.is_tensor(k) else x * float(2.0 ** k)

    @staticmethod
    def stochastic_shr(acc, shift: int, r):
        return ste_stochastic(acc / float(1 << shift), r)


STE_RULE_OPS = SteRuleOps()


def sequential_support(pre_spikes: torch.Tensor, labels: torch.Tensor,
                       label_window: Optional[tuple] = None):
    """(S, T, I) support samples + (S,) labels -> one (S*T, I) presentation and (S*T,)
    per-step labels; use with reset_interval=T. ``label_window=(start, end)``: each
    sample's label only on its steps [start, end), -1 (no label, no learning) elsewhere,
    as the emulator presents labels (its ``adapt.label_window``)."""
    S, T, I = pre_spikes.shape
    lab = labels.reshape(S, 1).repeat(1, T)
    if label_window is not None:
        start, end = (int(v) for v in label_window)
        if not 0 <= start < end <= T:
            raise RuleError(f"label_window {label_window} is not a [start, end) inside [0, {T}]")
        keep = torch.zeros(T, dtype=torch.bool)
        keep[start:end] = True
        lab = torch.where(keep, lab, torch.full_like(lab, -1))
    return pre_spikes.reshape(S * T, I), lab.reshape(S * T)


def update(weight: torch.Tensor, pre_spikes: torch.Tensor, labels: torch.Tensor,
           n_way: Optional[int] = None, spec: Optional[RuleSpec] = None,
           neuron: Optional[CubaParams] = None, weight_scale: float = 64.0,
           label_window: Optional[tuple] = None, **kwargs):
    """MAML inner step: present the N support samples one after the other.

    weight (O, I) slayer units; pre_spikes (N, T, I) final-layer input spikes
    of the support samples; labels (N,). The samples are concatenated in time
    (neuron state and error counts reset between samples, weights carried on,
    as on the chip) and the rule adapts online. neuron defaults to
    `CubaParams.from_slayer(1.25, 0.25, 0.03)` (meta/ModelConfig defaults),
    weight_scale to slayer's 64. label_window: see `sequential_support`. Extra kwargs go
    to `adapt_final_layer`.
    Returns the new weight (O, I).
    """
    if n_way is not None and weight.shape[0] != n_way:
        raise RuleError(f"weight has {weight.shape[0]} output rows for n_way={n_way}")
    spec = RuleSpec() if spec is None else spec
    neuron = CubaParams.from_slayer(1.25, 0.25, 0.03) if neuron is None else neuron
    if pre_spikes.dim() != 3:
        raise RuleError(f"pre_spikes must be (N, T, I), got {tuple(pre_spikes.shape)}")
    T = pre_spikes.shape[1]
    seq, seq_lab = sequential_support(pre_spikes, torch.as_tensor(labels).long(), label_window)
    return adapt_final_layer(spec, weight, seq, seq_lab, neuron, weight_scale=weight_scale,
                             reset_interval=T, **kwargs)


def adapt_final_layer(spec: RuleSpec, weight: torch.Tensor, pre_spikes: torch.Tensor,
                      labels, neuron: CubaParams, weight_scale: float = 1.0,
                      weight_exp: int = 0, num_weight_bits: int = 8,
                      reset_interval: Optional[int] = None, eta_exp=None, x1_tau=None,
                      error_threshold=None, factor_threshold=None, surrogate_beta=None,
                      eq6_threshold=None, stochastic: bool = True, return_spikes: bool = False):
    """Adapt the final layer online over one support presentation.

    weight: (O, I) slayer units. pre_spikes: (T, I) for one episode, or
    (B, T, I) for B independent episodes. labels: int / (T,) (per step, -1 =
    none) for one episode; (B,) / (B, T) for B. Returns the new weight,
    (O, I) or (B, O, I), in slayer units; with return_spikes also the output
    spikes (T, O) or (B, T, O). stochastic=False replaces Lava's random
    numbers by 0.5 (deterministic round-half-down).
    """
    unbatched = pre_spikes.dim() == 2
    pre = pre_spikes.unsqueeze(0) if unbatched else pre_spikes
    if pre.dim() != 3:
        raise RuleError(f"pre_spikes must be (T, I) or (B, T, I), got {tuple(pre_spikes.shape)}")
    B, T, I = pre.shape
    if weight.dim() != 2 or weight.shape[1] != I:
        raise RuleError(f"weight must be (O, {I}), got {tuple(weight.shape)}")
    O = weight.shape[0]
    dt = weight.dtype
    pre = pre.to(dt)
    lab = torch.as_tensor(labels, device=weight.device).long()
    if unbatched:
        lab = lab.reshape(1) if lab.dim() == 0 else lab.reshape(1, -1)
    if lab.dim() == 1:
        lab = lab[:, None].expand(B, T)
    if tuple(lab.shape) != (B, T):
        raise RuleError(f"labels shape {tuple(torch.as_tensor(labels).shape)} does not fit "
                        f"{B} episode(s) of {T} steps")
    if ((lab < -1) | (lab >= O)).any():
        bad = int(lab[(lab < -1) | (lab >= O)][0])
        raise RuleError(f"label {bad} is outside the task's classes 0..{O - 1}; nearest "
                        f"representable: {int(np.clip(bad, 0, O - 1))}")
    onehot = torch.zeros(B, T, O, dtype=dt, device=weight.device)
    onehot.scatter_(2, lab.clamp(min=0).unsqueeze(-1), 1.0)
    onehot = onehot * (lab >= 0).unsqueeze(-1).to(dt)

    if stochastic:
        r_x, r_y, r_w = (r.tolist() for r in lava_randoms(spec, T))
    else:
        r_x = r_y = r_w = [0.5] * T
    eta = _param(eta_exp, spec.eta_exp)
    eta = ste_round(torch.clamp(torch.as_tensor(eta, dtype=dt), -10, 5))
    if x1_tau is None:
        x_decay = spec.x1_decay
    else:
        tau = ste_round(torch.clamp(torch.as_tensor(x1_tau, dtype=dt), 1, 255))
        x_decay = torch.exp(-1.0 / tau)
    th_e = _param(error_threshold, spec.error_threshold)
    th_y = _param(factor_threshold, spec.factor_threshold)
    beta = _param(surrogate_beta, spec.surrogate_beta)

    # initial weights: scale, round, clamp, truncate (MIXED: low 9-nwb bits)
    n = 8 - int(num_weight_bits) + 1
    w = ste_round(weight * weight_scale)
    w = w.clamp(W_MIN, W_MAX)
    w = ste(w, torch.floor(w / 2 ** n) * 2 ** n)
    w = w.unsqueeze(0).expand(B, O, I)
    w_start = w

    zeros = torch.zeros(B, O, dtype=dt, device=weight.device)

    def dense(wk, s_k):
        acc = torch.einsum("boi,bi->bo", wk, s_k)
        return acc * 2.0 ** weight_exp if weight_exp >= 0 else ste_floor(acc / 2.0 ** -weight_exp)

    pres = Presentation(neuron_step=lambda a, st: cuba_step(a, st, neuron, surrogate_beta=beta), dense=dense,
                        ops=STE_RULE_OPS, r_x=r_x, r_y=r_y, r_w=r_w, theta=neuron.theta, x_decay=x_decay,
                        y_decay=Y_DECAY, error_threshold=th_e, factor_threshold=th_y, beta=beta, eta_exp=eta)
    w, spikes, _ = present(spec, w, pre, onehot, CubaState(zeros, zeros), zeros,
                           torch.zeros(B, I, dtype=dt, device=weight.device), pres, reset_interval)
    eq6 = _param(eq6_threshold, spec.eq6_threshold)
    if torch.is_tensor(eq6) or eq6 > 0:
        w = w_start + _gate(w - w_start, eq6)
    new_w = w / weight_scale
    out_spikes = torch.stack(spikes, dim=1)
    if unbatched:
        new_w, out_spikes = new_w[0], out_spikes[0]
    return (new_w, out_spikes) if return_spikes else new_w
