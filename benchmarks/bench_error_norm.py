"""The rule's error normaliser (issue 12): what it should give, and what the engine gives.

    .venv/bin/python benchmarks/bench_error_norm.py BUNDLE DATA.h5 [--tasks 50]

A one-shot spike-count readout after imprinting computes a dot product with the support's
input counts, so a loud support wins for every query (bench_readout.py). The rule's error
normaliser (``RuleSpec.input_norm_offset`` d, ``input_norm_shift`` s; ``onchip.rule.
normalise_error``) divides each step's error by d + n_in, n_in = the sample's input spikes so
far, so that an imprinted row approaches the support's input *rates*. On meta-VALIDATION tasks
(``TaskSampler(val, seed 1000)``, as calibrate draws them) this prints:

1. the ideal: the online rule in float (exact traces reset per sample, the error's 0.8 / 0.2
   target / non-target split, dot-product readout of the learned rows), d = 0 (no normaliser)
   and d = 2, 4, 16 steps' worth of input; then, with labels from step max(burn_in, 4 tau), the
   cumulative form against the rate form (``input_norm_steps`` c = 4: the error times (m + c),
   m the labelled steps so far, the input counted over them: a running rate estimate);
2. the engine (``episodes.run_fast``, bit-exact to Lava; spike-count readout, theta0* kept)
   with the normaliser, labels from the readout window's start (the default) against labels
   from step 4 tau: on the chip the pre-synaptic trace of the previous support sample is still
   up when the next sample's label comes on, and the normaliser's first steps are its largest,
   so without the delay the previous sample is imprinted into the next class's row. Each start:
   the cumulative form's best of 16 settings, the rate form's best of up to 12 (calibrate's grid).
"""
import argparse
import dataclasses
import math

import numpy as np

from neuromaml.lavacompat import prepare_lava; prepare_lava()
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.emulate import build_batch, pool_inputs
from neuromaml.emulator.episodes import run_fast
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.tasks import TaskSampler

ap = argparse.ArgumentParser()
ap.add_argument("bundle")
ap.add_argument("data")
ap.add_argument("--tasks", type=int, default=50)
a = ap.parse_args()
dep = DeployedNet.load(a.bundle)
ds = MetaDataset(a.data)
batch, pool = build_batch(TaskSampler(ds, "val", dep.n_out, 1, 5, seed=1000, disjoint_parts=True), a.tasks)
feats = dep.frozen_features(pool_inputs(ds, pool))
F = feats[:, dep.depth - 1:].astype(np.float64)
n, T, I = F.shape
X = F.sum(1)
R = float(F.sum(-1).mean())
ns = batch.n_support
rule = dataclasses.replace(dep.rule, input_norm_offset=0, input_norm_shift=0, input_norm_steps=0)


def float_rows(idx, d, c=0, start=0):
    """Rows imprinted by the online rule in float: the cumulative normaliser (c = 0: each step's
    error divided by d + the sample's input so far), or the rate form (c >= 1: times (m + c), m
    and the input counted over the labelled steps from ``start``)."""
    x1, cum, acc = np.zeros((len(idx), I)), np.zeros((len(idx), 1)), np.zeros((len(idx), I))
    for t in range(T):
        x1 = np.minimum(x1 * rule.x1_decay + rule.x1_impulse * F[idx, t], 127)
        if t < start:
            cum += 0 if c else F[idx, t].sum(-1, keepdims=True)
            continue
        acc += (x1 * (t - start + c) / (d + cum) if c else x1 / (d + cum)) if d else x1
        cum += F[idx, t].sum(-1, keepdims=True)
    return acc


print(f"{a.bundle}: mean input spikes per step R = {R:.2f}; {a.tasks} val tasks; rule {rule.eta_exp=}, "
      f"{rule.x1_tau=}, burn-in {dep.burn_in}")
def ideal(d, c=0, start=0):
    accs = []
    for e in range(batch.order.shape[0]):
        P = np.zeros((dep.n_out, I))
        P[batch.labels[e, :ns]] = float_rows(batch.order[e, :ns], d, c, start)
        W = 0.8 * P - 0.2 * (P.sum(0, keepdims=True) - P)
        accs.append(((X[batch.order[e, ns:]] @ W.T).argmax(1) == batch.labels[e, ns:]).mean())
    return 100 * np.mean(accs)


for m in (0, 2, 4, 16):
    d = int(round(m * R))
    print(f"ideal (float online rule, dot readout), cumulative form, d = {d} ({m} R): {ideal(d):.1f}%")
late = max(dep.burn_in, 4 * rule.x1_tau)
if late < T:
    print(f"ideal, labels from step {late}: cumulative form d = 4 R {ideal(int(round(4 * R)), 0, late):.1f}%, "
          f"rate form c = 4, d = 4 R {ideal(4 * R, 4, late):.1f}%")
print(f"engine, the bundle's rule as it is: {100 * run_fast(dep, feats, batch).accuracy.mean():.1f}%")
for start in sorted({dep.burn_in, max(dep.burn_in, 4 * rule.x1_tau)}):
    best = (0.0, None)
    for m in (4, 16):
        d = int(round(m * R))
        s = int(math.log2(d + R * start))
        for k in sorted({dep.weight_exp, min(dep.weight_exp + 3, 0)}):
            net = dataclasses.replace(dep.with_weight_exp(k), label_window=(start, dep.time_steps))
            for eta in range(-10, -6):
                spec = dataclasses.replace(rule, input_norm_offset=d, input_norm_shift=s, eta_exp=eta)
                acc = float(run_fast(net, feats, batch, spec).accuracy.mean())
                best = max(best, (acc, (d, s, eta, k)), key=lambda b: b[0])
    print(f"engine, cumulative normaliser, labels from step {start}: best {100 * best[0]:.1f}% at "
          f"(d, s, eta_exp, weight_exp) = {best[1]}")
    # the rate form, as calibrate searches it: prior c = 4 steps of input, six update magnitudes
    best, lg, d = (0.0, None), int(math.floor(math.log2(max(R, 1)))), int(round(4 * R))
    for mag in range(-12, -6):
        s = max(0, min(lg + 1, mag + lg + 10))
        if lg + mag - s < -10:
            continue
        for k in sorted({dep.weight_exp, min(dep.weight_exp + 3, 0)}):
            net = dataclasses.replace(dep.with_weight_exp(k), label_window=(start, dep.time_steps))
            spec = dataclasses.replace(rule, input_norm_offset=d, input_norm_shift=s, input_norm_steps=4,
                                       eta_exp=lg + mag - s)
            acc = float(run_fast(net, feats, batch, spec).accuracy.mean())
            best = max(best, (acc, (d, s, lg + mag - s, k)), key=lambda b: b[0])
    print(f"engine, rate normaliser (c = 4), labels from step {start}: best {100 * best[0]:.1f}% at "
          f"(d, s, eta_exp, weight_exp) = {best[1]}")
