"""The search space of ``neuromaml calibrate`` (``emulator.calibrate``): the values of the on-chip
rule's fields the search tries, derived from the bundle and the data (``derive_space``), not from
constants tuned on one network:

* ``weight_exp`` (-k): the plastic layer's weight exponent. The chip holds theta0* << k
  and shifts the synaptic sum right by k, so inference is unchanged while one learned
  LSB is 2^-k of a stored LSB: the scale the rule lacks when the output neuron fires
  on weights of a few LSB. ``w_sat`` is the per-synapse weight at which the mean
  input drive (feature rate x fan-in) alone keeps the output neuron's current at its
  threshold (``vth * (1 - current retention) / active inputs``); k_hi is the largest k
  at which 8 w_sat and twice theta0*'s largest weight still fit the 9-bit range.
  Candidates: k_hi and k_hi - 3.
* ``softmax_gain_exp`` g: the error's softmax runs over 2^g x spike counts; counts in
  the readout window go up to ``W = T - burn_in``, so g_hi = -ceil(log2 W) keeps
  2^g x count <= 1. Candidates g_hi - 4, g_hi - 2, g_hi.
* ``x1_impulse``: 1, and the largest power of two at which the trace of the busiest
  input stays below its 7-bit bound (rate x impulse x tau <= 127), at most 16.
* ``eta_exp``: the engine's seven smallest exponents, -10..-4.
* the error normaliser (``RuleSpec.input_norm_offset`` d, ``input_norm_shift`` s; the error
  divided by d + the sample's input spikes so far, ``onchip.rule.normalise_error``): d = 4 and
  16 steps' worth of the mean input count, labels from step max(burn_in, 2 tau) or
  max(burn_in, 4 tau) of each support sample (``adapt.label_window``; from burn_in, with a note
  in ``space.label_start_note``, where both are >= T), 2^s the largest power of
  two <= d + the input expected before the label comes on, eta -10..-7, at the best step
  setting's gain and impulse; and its rate form (``input_norm_steps`` c = 4: the error divided
  by the running input rate over the labelled steps, prior d = 4 steps of the mean input) at
  the best step setting's weight exponent: trace impulses 1, top / 2 and top (top <= 64, the
  busiest input's trace within its bound), nine update magnitudes impulse x 2^(s + eta) from
  2^-12 to 2^-4 of the mean input per step, each at the largest s (the error's finest grain)
  not above twice the mean input per step.
* ``factor_threshold`` (the Eq. 6 form Lava runs, gating |y2| per post neuron):
  0, e_max/16, e_max/8, e_max/4, e_max/2 (e_max = the error's full scale), tried at the
  best three settings of the first stage, with the surrogate post factor on and off.
"""
from __future__ import annotations

import math

import numpy as np

from neuromaml.emulator.deployed import DeployedNet, weight_range_ok
from neuromaml.onchip.rule import GAIN_RANGE, NORM_OFFSET_MAX, NORM_SHIFT_MAX, TRACE_MAX

ETA_EXPS = tuple(range(-10, -3))          # the engine's smallest exponents (eta_exp >= -10)
RATE_PRIOR_STEPS = 4                      # the rate normaliser's prior, in steps of mean input


def _log2_floor(x: float) -> int:
    return int(math.floor(math.log2(x))) if x > 0 else 0


def _impulse_bound(rate_max: float, tau: int, cap: int) -> int:
    """The largest power of two <= ``cap`` at which the busiest input's trace (rate x impulse x
    tau) stays below the trace's 7-bit bound."""
    imp = 1
    while imp < cap and rate_max * (2 * imp) * (tau + 0.5) <= TRACE_MAX:
        imp *= 2
    return imp


def derive_space(dep: DeployedNet, feats: np.ndarray) -> dict:
    """The candidate values of every searched field, with the quantities they come from."""
    D1 = dep.depth - 1
    win = feats[:, D1:D1 + dep.time_steps].astype(np.float64)         # (n, T, I)
    rate_mean = float(win.mean())                                       # spikes / input / step
    rate_max = float(win.mean(axis=(0, 1)).max()) if win.size else 0.0
    n_active = rate_mean * dep.n_pre
    retain_u = (4096 - dep.neuron.du - 1) / 4096
    w_sat = dep.neuron.vth * (1 - retain_u) / max(n_active, 1e-9)       # stored-weight LSB
    head = int(np.abs(dep.stored_w0).max()) if dep.w0.size else 0
    bound = max(2 * head, 8 * w_sat, 1e-9)
    k_hi = int(np.clip(_log2_floor(255 / bound), 0, 8))
    while k_hi > 0 and not weight_range_ok(dep.stored_w0, k_hi):
        k_hi -= 1
    ks = sorted({k_hi, max(0, k_hi - 3)}, reverse=True)
    window = dep.time_steps - dep.burn_in
    g_hi = -int(math.ceil(math.log2(max(window, 1))))
    gains = sorted({int(np.clip(g, *GAIN_RANGE)) for g in (g_hi - 4, g_hi - 2, g_hi)})
    tau = dep.rule.x1_tau
    impulses = sorted({1, _impulse_bound(rate_max, tau, 16)})
    e_max = dep.rule.e_max
    factor = sorted({0, e_max // 16, e_max // 8, e_max // 4, e_max // 2})
    # the error normaliser (onchip.rule.normalise_error): offsets d of 4 and 16 steps' worth of
    # input; the label comes on once the previous sample's trace has decayed (2 and 4 trace time
    # constants, not before the readout window), else that trace is imprinted at the normaliser's
    # largest step; the numerator 2^s is the largest power of two below the divisor expected when
    # the label comes on (d + input per step x start), so the divided error starts near the
    # undivided one (measured: BENCHMARKS.md, "The error normaliser")
    offsets = sorted({int(np.clip(round(m * n_active), 1, NORM_OFFSET_MAX)) for m in (4, 16)})
    delayed = (max(dep.burn_in, 2 * tau), max(dep.burn_in, 4 * tau))
    starts = sorted({s for s in delayed if s < dep.time_steps})
    note = None
    if not starts:     # a trace that outlasts the sample (a rule-trained run may carry any tau)
        starts = [dep.burn_in]
        note = (f"the error normaliser with a delayed label was not searched: its label starts max(burn_in, "
                f"2 tau) = {delayed[0]} and max(burn_in, 4 tau) = {delayed[1]} (x1_tau {tau}) are not inside the "
                f"{dep.time_steps} steps of a sample; the normaliser was tried with labels from burn_in = "
                f"{dep.burn_in} (the readout window) instead")
    # its rate form (input_norm_steps c >= 1): the error divided by a running estimate of the input
    # rate, the prior c = 4 steps of the mean input (d = c x input per step), so the divided error
    # is about e_q 2^(s - L) (L = floor(log2(input per step))) and a step's update about
    # impulse x 2^(s + eta - L): nine magnitudes 2^-12..2^-4 at each trace impulse 1, top / 2 and
    # top (top: the largest power of two <= 64 at which the busiest input's trace stays below its
    # bound), each at the largest s <= L + 1 (the error's finest grain; eta >= -10 is the engine's
    # floor). Measured (BENCHMARKS.md, "The error normaliser"): the best impulse differs by
    # network (the authors' MLP 32, the gestures 1), the best magnitude by 2^6 across networks.
    lg = _log2_floor(max(n_active, 1.0))
    top = _impulse_bound(rate_max, tau, 64)
    rate_settings = []
    for imp in sorted({1, max(1, top // 2), top}):
        for mag in range(-12, -3):
            sh = min(lg + 1, mag - _log2_floor(imp) + lg + 10, NORM_SHIFT_MAX)
            eta = mag - _log2_floor(imp) + lg - sh
            if sh >= 0 and ETA_EXPS[0] <= eta <= 5:
                rate_settings.append([imp, sh, eta])
    rate_offset = int(np.clip(round(RATE_PRIOR_STEPS * n_active), 1, NORM_OFFSET_MAX))
    return {"weight_exp": [-k for k in ks], "softmax_gain_exp": gains, "x1_impulse": impulses,
            "eta_exp": list(ETA_EXPS), "factor_threshold": factor,
            "input_norm_offset": offsets, "label_start": starts, "label_start_note": note,
            "rate_norm": {"input_norm_steps": RATE_PRIOR_STEPS, "input_norm_offset": rate_offset,
                          "impulse_shift_eta": rate_settings},
            "derived_from": {"feature_rate_mean": rate_mean, "feature_rate_max": rate_max,
                             "fan_in": dep.n_pre, "active_inputs_per_step": n_active,
                             "threshold_vth": dep.neuron.vth, "current_retention": retain_u,
                             "w_sat_stored_lsb": w_sat, "theta0_max_abs_stored_lsb": head,
                             "k_hi": k_hi, "readout_window_steps": window, "x1_tau": tau,
                             "e_max": e_max}}
