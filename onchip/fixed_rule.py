"""Face 3: the rule in batched integer numpy (B episodes in parallel).

Bit-exact to Face 1 (Lava 0.10 `LearningDense` + `Loihi3FLearningRule`,
`PyLearningDenseModelBitApproximate`, with the `onchip.lavaprocs` error and
post-neuron processes), including Lava's stochastic rounding streams (see
`rule.lava_randoms`). Timing, with k = 0..T-1 the step index (Lava's
time_step k+1) and W_k the weights after step k's learning phase::

    a(k)     = shift(W_{k-2} . s(k-1), weight_exp)   (Dense sends last step's sum; a(0) = 0)
    e(k)     = error_q(c(k-1), label)                (error process; c(-1) = 0)
    s_out(k), v(k) = cuba_step_int(a(k))             (post neuron; c(k) = c(k-1) + s_out(k))
    y2(k)    = third_factor_q(e(k), v(k))
    x1(k)    = sdecay(x1(k-1), r_x[k]) + impulse * s(k)      (clipped to 0..127)
    W_k      = weight_update(W_{k-1}, x1(k), sdecay_y(y2(k), r_y[k]), r_w[k])

Initial weights are truncated as Lava truncates them on the first step
(MIXED sign: the low 9 - num_weight_bits bits cleared).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from neuromaml.onchip.neuron import CubaParams, CubaState, cuba_step_int
from neuromaml.onchip.rule import (INT_RULE_OPS, TRACE_MAX, Y_DECAY_TAU, RuleError, RuleSpec,
                                   check_labels, check_weight_exp, check_weights, eq6_gate,
                                   error_q, lava_randoms, normalise_error, stochastic_decay, third_factor_q,
                                   weight_update)

Y_DECAY = float(np.exp(-1 / np.array([Y_DECAY_TAU]))[0])   # the engine's y-trace decay per step


@dataclass
class FixedResult:
    weights: np.ndarray      # (B, O, I) int64, weights after the presentation (Lava units)
    spikes: np.ndarray       # (B, T, O) int8, output spikes during the presentation
    n_updates: np.ndarray    # (B, O, I) int32, number of steps in which w_ij changed
    initial: np.ndarray      # (B, O, I) int64, truncated initial weights

    @property
    def counts(self) -> np.ndarray:
        return self.spikes.sum(axis=1)


def truncate_initial(w: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """Lava's first-step truncation of MIXED-sign weights (low 9-nwb bits cleared)."""
    if not 1 <= int(num_weight_bits) <= 8:
        raise RuleError(f"num_weight_bits={num_weight_bits} must be in 1..8; nearest "
                        f"representable: {int(np.clip(num_weight_bits, 1, 8))}")
    n = 8 - int(num_weight_bits) + 1
    return (np.asarray(w, np.int64) >> n) << n


def dense_shift(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """Dense output scaling: acc << weight_exp (or arithmetic >> -weight_exp)."""
    return acc << weight_exp if weight_exp > 0 else acc >> (-weight_exp)


@dataclass
class Presentation:
    """What one support presentation needs besides the weights and spikes: the face's own
    pieces (``neuron_step(a, state) -> (s, v_pre, state)``, ``dense(w, s_k) -> a``, the rule's
    ``ops``), the random streams and the rule's hyperparameters (numbers, or tensors the torch
    twin learns)."""

    neuron_step: Callable
    dense: Callable
    ops: object
    r_x: object
    r_y: object
    r_w: object
    theta: int
    x_decay: object
    y_decay: float
    error_threshold: object = None
    factor_threshold: object = None
    beta: object = None
    eta_exp: object = None
    update: Optional[Callable] = None     # replaces weight_update (same signature), Face 3 only
    # steps at which no episode of the batch has a label skip the error and the update (Face 3 with
    # Lava's 8-bit update only): e = 0 there, so y2 = 0, the product is 0 and the stochastic
    # rounding of w << 7 (fraction 0, never above floor(128 r)) gives w back: the same weights
    skip_unlabelled: bool = False


def present(spec: RuleSpec, w, pre, onehot, state0: CubaState, zeros_o, zeros_i, p: Presentation,
            reset_interval: Optional[int] = None, learn: bool = True, count_updates: bool = False):
    """THE time loop of a support presentation, for Faces 2 and 3 (module docstring for the
    timing). w (B, O, I), pre (B, T, I), onehot (B, T, O); ``zeros_o``/``zeros_i``: (B, O) and
    (B, I) zeros of the face's array type. Returns (w, [spikes per step], n_updates or None)."""
    ops = p.ops
    state, a_prev, counts, x1 = state0, zeros_o, zeros_o, zeros_i
    norm = learn and bool(spec.input_norm_offset)
    rate = norm and bool(spec.input_norm_steps)     # the rate form counts labelled steps only
    n_in = zeros_o[:, :1]                   # (B, 1) input spikes of this sample before step k
    m = zeros_o[:, :1]                      # (B, 1) labelled steps of this sample before step k
    spikes, n_upd = [], None
    for k in range(pre.shape[1]):
        s_k = pre[:, k]
        if reset_interval and k > 0 and k % reset_interval == 0:
            state, counts, n_in, m = state0, zeros_o, zeros_o[:, :1], zeros_o[:, :1]
        # post neuron (input computed last step), error from counts through k-1
        s_out, v_pre, state = p.neuron_step(a_prev, state)
        spikes.append(s_out)
        # dense accumulates with the weights before this step's learning
        a_prev = p.dense(w, s_k)
        if learn:        # the pre-synaptic trace runs every step, labelled or not
            x1 = ops.clip(stochastic_decay(x1, p.x_decay, p.r_x[k], ops) + spec.x1_impulse * s_k, 0, TRACE_MAX)
        if learn and (not p.skip_unlabelled or onehot[:, k].any()):
            e_q = error_q(counts, onehot[:, k], spec, ops, threshold=p.error_threshold)
            if norm:
                e_q = normalise_error(e_q, n_in, spec, ops, m=m)
            y2 = third_factor_q(e_q, v_pre, p.theta, spec, ops, threshold=p.factor_threshold, beta=p.beta)
            y2 = ops.clip(stochastic_decay(y2, p.y_decay, p.r_y[k], ops), -128, 127)
            if p.update is None:
                new = weight_update(w, x1, y2, spec, p.r_w[k], ops=ops, eta_exp=p.eta_exp)
            else:
                new = p.update(w, x1, y2, spec, p.r_w[k])
            if count_updates:
                n_upd = (new != w).astype(np.int32) if n_upd is None else n_upd + (new != w)
            w = new
        counts = counts + s_out
        if rate:
            lab = ops.has_label(onehot[:, k])
            n_in, m = n_in + s_k.sum(-1)[:, None] * lab, m + lab
        elif norm:
            n_in = n_in + s_k.sum(-1)[:, None]
    return w, spikes, n_upd


def _check_spikes(pre: np.ndarray) -> np.ndarray:
    pre = np.asarray(pre)
    if pre.ndim != 3:
        raise RuleError(f"pre_spikes must be (B, T, I), got shape {pre.shape}")
    if pre.size and not ((pre == 0) | (pre == 1)).all():
        raise RuleError("pre_spikes must be binary (0/1): the final dense layer takes "
                        "unary spikes (num_message_bits = 0)")
    return pre.astype(np.int8, copy=False)


def label_onehot(labels, B: int, T: int, O: int) -> np.ndarray:
    """(B,) or (B, T) labels (-1 = no label at that step) -> (B, T, O) one-hot int64."""
    lab = np.asarray(labels)
    if lab.ndim == 1:
        lab = np.broadcast_to(lab[:, None], (lab.shape[0], T))
    if lab.shape != (B, T):
        raise RuleError(f"labels shape {np.shape(labels)} does not fit {B} episodes of "
                        f"{T} steps: expected ({B},) or ({B}, {T})")
    flat = lab.reshape(-1)
    check_labels(flat[flat != -1] if np.issubdtype(flat.dtype, np.integer) else flat, O)
    onehot = np.zeros((B, T, O), np.int64)
    b, t = np.nonzero(lab >= 0)
    onehot[b, t, lab[b, t]] = 1
    return onehot


def run_support(spec: RuleSpec, weights: np.ndarray, pre_spikes: np.ndarray,
                labels: Optional[np.ndarray], neuron: CubaParams, weight_exp: int = 0,
                num_weight_bits: int = 8, reset_interval: Optional[int] = None,
                truncate: bool = True, update=None, step_offset=0) -> FixedResult:
    """Present `pre_spikes` (B, T, I) to the final layer; learn when labels are given.

    weights: (O, I) or (B, O, I) integers in Lava weight units (the Dense
    `weights` Var, range -256..255). labels: (B,) ints in 0..O-1, or (B, T)
    per step with -1 = no label, or None for a presentation without label (no
    error, hence no learning: query). reset_interval R: neuron state and error
    counts are zeroed at steps k with k % R == 0 (several support samples
    concatenated in time, presented one after the other, weights carried on).
    truncate: apply Lava's first-step weight truncation (a fresh Dense process);
    pass False to continue with weights already inside a running process (for
    instance the query presentation after a support presentation).
    update: replaces `rule.weight_update` (same signature `(w, x1, y2, spec, r_w)`,
    returns int32 weights), e.g. a coarser weight grid for precision sweeps
    (`neuromaml.emulator.rulecheck`); None (default) is the Lava engine's update.
    step_offset: steps Lava's graph ran before this presentation (an int, or (B,)
    per episode), which sets where its random streams stand (`rule.lava_randoms`);
    0 for a fresh graph.
    """
    pre = _check_spikes(pre_spikes)
    B, T, I = pre.shape
    weight_exp = check_weight_exp(weight_exp)
    w = check_weights(weights)
    if w.ndim == 2:
        w = np.broadcast_to(w, (B,) + w.shape)
    if w.ndim != 3 or w.shape[0] != B or w.shape[2] != I:
        raise RuleError(f"weights shape {np.shape(weights)} does not fit pre_spikes "
                        f"(B={B}, T={T}, I={I}): expected (O, {I}) or ({B}, O, {I})")
    w = truncate_initial(w, num_weight_bits) if truncate else w.astype(np.int64).copy()
    w0 = w.copy()
    w = w.astype(np.int32)
    O = w.shape[1]
    learn = labels is not None
    onehot = label_onehot(labels, B, T, O) if learn else None
    if reset_interval is not None and int(reset_interval) < 1:
        raise RuleError(f"reset_interval={reset_interval} must be >= 1 (or None)")
    r_x, r_y, r_w = lava_randoms(spec, T, step_offset)
    if r_x.ndim == 2:
        if r_x.shape[0] != B:
            raise RuleError(f"step_offset has {r_x.shape[0]} entries for {B} episodes")
        # per-episode randoms: (T, B, 1) so that r[k] broadcasts over (B, I) and (B, O)
        r_x, r_y, r_w = r_x.T[:, :, None], r_y.T[:, :, None], r_w.T
    O_zero = np.zeros((B, O), np.int64)
    pres = Presentation(neuron_step=lambda a, st: cuba_step_int(a, st, neuron),
                        dense=lambda wk, s_k: dense_shift(np.einsum("boi,bi->bo", wk, s_k.astype(np.int64)),
                                                          weight_exp),
                        ops=INT_RULE_OPS, r_x=r_x, r_y=r_y, r_w=r_w, theta=neuron.theta,
                        x_decay=spec.x1_decay, y_decay=Y_DECAY, update=update,
                        skip_unlabelled=update is None)
    w, spk, n_upd = present(spec, w, pre, onehot, CubaState(O_zero, O_zero), O_zero,
                            np.zeros((B, I), np.int64), pres, reset_interval, learn, count_updates=True)
    spikes = np.stack(spk, axis=1).astype(np.int8) if spk else np.zeros((B, 0, O), np.int8)
    if n_upd is None:
        n_upd = np.zeros(w.shape, np.int32)
    w = w.astype(np.int64)
    if learn:
        w = eq6_gate(w, w0, spec.eq6_threshold)
    return FixedResult(weights=w, spikes=spikes, n_updates=n_upd, initial=w0)
