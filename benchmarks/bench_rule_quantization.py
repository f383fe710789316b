"""Which of the rule's quantizations costs one-shot accuracy (issue 12), on a bundle's own rule.

    .venv/bin/python benchmarks/bench_rule_quantization.py BUNDLE DATA.h5 [--split val|test]
        [--tasks 100] [--impulses 1,16,32,64]

Replays the episodes' plastic-layer stream (``DeployedNet.assemble_stream``,
``episodes.step_labels``, the engine's random streams ``onchip.rule.lava_randoms``) through the
bundle's rule in numpy from zero rows, once with every quantization of the engine and once with
each one switched off: the error's rounding and clipping (e_q, e_n), the trace's stochastic
decay, the product's 3-bit truncation, the weight's stochastic rounding and its 9-bit clip.
Readout: the dot product of the learned rows with each query's input counts over the sample's
window (on the authors' MLP it reads what the engine's spike-count readout reads). The
error is the engine's at a small softmax gain (0.8 / -0.2 of e_max, target / others). Then the
same rule at other trace impulses with the update magnitude kept (s lowered by log2 of the
impulse ratio). Tasks: ``TaskSampler(split, seed 1000 for val, 0 for test)``, as calibrate and
emulate draw them.
"""
import argparse
import math

import numpy as np

from neuromaml.lavacompat import prepare_lava

prepare_lava()
from neuromaml.emulator.deployed import DeployedNet  # noqa: E402
from neuromaml.emulator.emulate import build_batch, pool_inputs  # noqa: E402
from neuromaml.emulator.episodes import run_fast, step_labels  # noqa: E402
from neuromaml.meta.metadataset import MetaDataset  # noqa: E402
from neuromaml.meta.tasks import TaskSampler  # noqa: E402
from neuromaml.onchip.rule import lava_randoms  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bundle")
ap.add_argument("data")
ap.add_argument("--split", default="val", choices=("val", "test"))
ap.add_argument("--tasks", type=int, default=100)
ap.add_argument("--impulses", default="1,16,32,64")
a = ap.parse_args()
dep = DeployedNet.load(a.bundle)
ds = MetaDataset(a.data)
batch, pool = build_batch(TaskSampler(ds, a.split, dep.n_out, 1, 5, seed=1000 if a.split == "val" else 0,
                                      disjoint_parts=True), a.tasks)
feats = dep.frozen_features(pool_inputs(ds, pool))
D = dep.depth - 1
X = feats[:, D:D + dep.time_steps].sum(1).astype(np.float64)     # query input counts over the window
stream = dep.assemble_stream(feats, batch.order).astype(np.float64)
labels = step_labels(dep, batch)
B, L, I = stream.shape
O, T, P, ns = dep.n_out, dep.time_steps, dep.prefix, batch.n_support
rule = dep.rule
r_x, r_y, r_w = lava_randoms(rule, L)
R = float(stream[:, P:].sum(-1).mean())


def simulate(impulse, shift, q_err=True, q_trace=True, q_prod=True, q_weight=True, clip_w=True):
    dec = math.exp(-1 / rule.x1_tau)
    W, x1 = np.zeros((B, O, I)), np.zeros((B, I))
    n, m = np.zeros((B, 1)), np.zeros((B, 1))
    rate, c, d = bool(rule.input_norm_steps), rule.input_norm_steps, rule.input_norm_offset
    tgt = np.arange(O)[None]
    for k in range(L):
        if k >= P and (k - P) % T == 0:
            n[:], m[:] = 0, 0
        lab = labels[:, k]
        has = (lab >= 0)[:, None]
        e = np.where(tgt == lab[:, None], -0.8, 0.2) * rule.e_max * has
        if q_err:
            e = np.rint(e)
        if d:
            e = e * 2.0 ** shift * ((m + c) if rate else 1) / (d + n)
            if q_err:
                e = np.clip(np.floor(e + 0.5), -rule.e_max, rule.e_max)
        v = dec * x1
        x1 = (np.floor(v) + (r_x[k] < v - np.floor(v))) if q_trace else v
        x1 = np.clip(x1 + impulse * stream[:, k], 0, 127)
        prod = -e[:, :, None] * x1[:, None, :] / 8
        prod = (np.floor(prod) if q_prod else prod) * 2.0 ** (rule.eta_exp + 10)
        v = W + prod / 128
        W = (np.floor(v) + (r_w[k] < v - np.floor(v))) if q_weight else v
        W = np.clip(W, -256, 255) if clip_w else W
        on = has if rate else 1
        n += stream[:, k].sum(1, keepdims=True) * on
        m += has
    return W


def dot_acc(W):
    return 100 * np.mean([((X[batch.order[e, ns:]] @ W[e].T).argmax(1) == batch.labels[e, ns:]).mean()
                          for e in range(B)])


imp, s = rule.x1_impulse, rule.input_norm_shift
form = ("rate" if rule.input_norm_steps else "cumulative") if rule.input_norm_offset else "no"
print(f"{a.bundle}: {a.split}, {a.tasks} tasks; {form} normaliser, impulse {imp}, s {s}, eta 2^{rule.eta_exp}, "
      f"label window {dep.label_window}; mean input {R:.1f} spikes per step")
print(f"engine (run_fast, spike-count readout, theta0* kept): {100 * run_fast(dep, feats, batch).accuracy.mean():.1f}%")
print(f"every quantization: {dot_acc(simulate(imp, s)):.1f}%")
for name, kw in (("error rounding and clipping", "q_err"), ("trace's stochastic decay", "q_trace"),
                 ("product's 3-bit truncation", "q_prod"), ("weight's stochastic rounding", "q_weight"),
                 ("weight's 9-bit clip", "clip_w")):
    print(f"without the {name}: {dot_acc(simulate(imp, s, **{kw: False})):.1f}%")
print(f"no quantization: {dot_acc(simulate(imp, s, False, False, False, False, False)):.1f}%")
for i in (int(v) for v in a.impulses.split(",")):
    sh = s - int(round(math.log2(i / imp)))
    if sh >= 0 and i != imp:
        print(f"impulse {i}, s {sh} (same update magnitude): {dot_acc(simulate(i, sh)):.1f}%")
