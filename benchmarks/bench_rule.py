"""Benchmark of the on-chip rule: speed of Face 3 vs Face 1, and what the
Lava form of the Eq. 6 threshold costs in one-shot accuracy on synthetic tasks.

    .venv/bin/python benchmarks/bench_rule.py [--quick]

Prints one JSON object:
- speed: one support presentation (I=128 -> O=5, T=100) in Lava (fixed_pt,
  wall time incl. compile) and in fixed_rule; Face 3 batched episodes/s.
- accuracy: 5-way 1-shot tasks built from random class prototypes (Poisson
  presynaptic spikes, no meta-training: a check of the rule's mechanics, not
  the paper's numbers). Support presented sequentially (reset between
  samples), queries read out by spike count over [burn_in, T). Variants: no
  gate, error trigger, the Lava form of Eq. 6 (|y2| gate) and the exact
  per-synapse Eq. 6 (Faces 2/3 only), with the fraction of synapses changed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from neuromaml.onchip.fixed_rule import run_support
from neuromaml.onchip.neuron import CubaParams
from neuromaml.onchip.rule import RuleSpec

NRN = CubaParams(du=2047, dv=512, vth=1500)
I, O = 128, 5


def tasks(n_tasks, T, n_query, seed, n_on=16, rate_on=0.2, rate_off=0.03):
    """Prototype rates per class: n_on random 'on' inputs at rate_on spikes/step, rest
    rate_off; classes overlap by chance."""
    rng = np.random.default_rng(seed)
    protos = np.full((n_tasks, O, I), rate_off)
    for b in range(n_tasks):
        for c in range(O):
            protos[b, c, rng.choice(I, n_on, replace=False)] = rate_on
    sup = (rng.random((n_tasks, O, T, I)) < protos[:, :, None]).astype(np.int8)
    qry = (rng.random((n_tasks, O, n_query, T, I)) < protos[:, :, None, None]).astype(np.int8)
    w0 = rng.integers(-8, 9, (O, I)) * 2
    return sup, qry, w0


def one_shot_accuracy(spec, sup, qry, w0, burn_in=10, learn=True):
    B, _, T, _ = sup.shape
    pre = sup.reshape(B, O * T, I)
    labels = np.repeat(np.arange(O), T)[None].repeat(B, 0) if learn else None
    r = run_support(spec, w0, pre, labels, NRN, reset_interval=T)
    correct = total = 0
    for c in range(O):
        for q in range(qry.shape[2]):
            out = run_support(spec, r.weights, qry[:, c, q], None, NRN, truncate=False)
            pred = out.spikes[:, burn_in:].sum(axis=1).argmax(axis=1)
            correct += int((pred == c).sum())
            total += B
    changed = float((r.weights != r.initial).mean())
    return correct / total, changed


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer tasks (smoke run)")
    args = ap.parse_args(argv)
    T = 100
    res = {"device": "cpu", "I": I, "O": O, "T": T}

    # ---- speed
    rng = np.random.default_rng(0)
    pre = (rng.random((1, T, I)) < 0.1).astype(np.int64)
    w = rng.integers(-40, 40, (O, I)) * 2
    spec = RuleSpec(eta_exp=-9, rng_seed=1)
    from neuromaml.onchip.lava_rule import run_support_lava
    t0 = time.perf_counter()
    w_lava, _ = run_support_lava(spec, w, pre[0], 2, NRN)
    t_lava = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = run_support(spec, w, pre, np.array([2]), NRN)
    t_fixed = time.perf_counter() - t0
    B = 64 if args.quick else 512
    preb = (rng.random((B, T, I)) < 0.1).astype(np.int64)
    t0 = time.perf_counter()
    run_support(spec, w, preb, rng.integers(0, O, B), NRN)
    t_batch = time.perf_counter() - t0
    res["speed"] = {"lava_support_s": round(t_lava, 3), "fixed_support_s": round(t_fixed, 4),
                    "speedup_single": round(t_lava / t_fixed, 1),
                    "fixed_batch": B, "fixed_episodes_per_s": round(B / t_batch, 1),
                    "lava_equals_fixed": bool(np.array_equal(w_lava, r.weights[0]))}

    # ---- accuracy of the gate variants
    n_tasks = 16 if args.quick else 100
    sup, qry, w0 = tasks(n_tasks, T, 4 if args.quick else 10, seed=1)
    base = dict(eta_exp=-10, x1_impulse=16, x1_tau=10, surrogate="none", rng_seed=0)
    variants = {
        "no_gate": {},
        "error_trigger_30": {"error_threshold": 30},
        "lava_eq6_y2_gt_16": {"factor_threshold": 16},
        "lava_eq6_y2_gt_32": {"factor_threshold": 32},
        "exact_eq6_gt_4": {"eq6_threshold": 4},
        "exact_eq6_gt_8": {"eq6_threshold": 8},
        "fast_sigmoid_f": {"surrogate": "fast_sigmoid", "surrogate_beta": 1.0, "eta_exp": -9},
    }
    acc = {"no_learning": {"accuracy": round(
        one_shot_accuracy(RuleSpec(**base), sup, qry, w0, learn=False)[0], 4)}}
    t0 = time.perf_counter()
    for name, kw in variants.items():
        a, changed = one_shot_accuracy(RuleSpec(**{**base, **kw}), sup, qry, w0)
        acc[name] = {"accuracy": round(a, 4), "frac_synapses_changed": round(changed, 4)}
    res["accuracy"] = {"tasks": n_tasks, "n_way": O, "k_shot": 1, "variants": acc,
                       "seconds": round(time.perf_counter() - t0, 1)}
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
