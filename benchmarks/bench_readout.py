"""Why a one-shot spike-count head falls short of its features: cosine / Euclidean nearest class
mean against the dot product with the prototype, on the plastic layer's input spike counts.

    .venv/bin/python benchmarks/bench_readout.py BUNDLE DATA.h5 [--tasks 200]

Prints, for the readout window and the whole sample, the feature-norm coefficient of variation
and the one-shot accuracies on meta-test tasks (BENCHMARKS.md, "A second embedded dataset"):
cosine, dot product with the raw prototype, Euclidean, and the dot product with prototypes
rescaled per class - by 1/|p|_1 and 1/|p|_2 (what a per-row normaliser would give), by the
power of two nearest 1/|p|_1 (what a shift can give) and by 1/|p|_2^2 (what learning until the
support's own response reaches a fixed level gives: w.p = const).
"""
import numpy as np
from neuromaml.lavacompat import prepare_lava; prepare_lava()
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.emulate import build_batch, pool_inputs
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.tasks import TaskSampler
import argparse

ap = argparse.ArgumentParser()
ap.add_argument("bundle")
ap.add_argument("data")
ap.add_argument("--tasks", type=int, default=200)
a = ap.parse_args()
b, data = a.bundle, a.data
dep = DeployedNet.load(b)
ds = MetaDataset(data)
s = TaskSampler(ds, "test", dep.n_out, 1, 5, seed=0, disjoint_parts=True)
batch, pool = build_batch(s, a.tasks)
feats = dep.frozen_features(pool_inputs(ds, pool)).astype(np.float64)   # (n, T, I)
D = dep.depth
x = feats[:, dep.burn_in:, :].sum(1)   # counts in the readout window
xall = feats.sum(1)
for name, X in (("window", x), ("all", xall)):
    nrm = np.linalg.norm(X, axis=1)
    print(name, "norm cv", nrm.std() / nrm.mean(), "min/max", nrm.min(), nrm.max(), "active frac", (X > 0).mean())
    accs = {k: [] for k in ("cos", "dot", "euclid", "dot_binary", "dot_l1", "dot_l2", "dot_pow2_l1", "dot_l2sq")}
    ns = batch.n_support
    for e in range(batch.order.shape[0]):
        S = X[batch.order[e, :ns]]; Q = X[batch.order[e, ns:]]
        ys = batch.labels[e, :ns]; yq = batch.labels[e, ns:]
        P = np.zeros((dep.n_out, X.shape[1])); P[ys] = S
        cos = (Q @ P.T) / (np.linalg.norm(Q, axis=1)[:, None] * np.linalg.norm(P, axis=1)[None] + 1e-9)
        accs["cos"].append((cos.argmax(1) == yq).mean())
        accs["dot"].append(((Q @ P.T).argmax(1) == yq).mean())
        accs["euclid"].append(((-((Q[:, None] - P[None]) ** 2).sum(-1)).argmax(1) == yq).mean())
        l1 = P.sum(1, keepdims=True) + 1e-9
        l2 = np.linalg.norm(P, axis=1, keepdims=True) + 1e-9
        for k, Wn in (("dot_l1", P / l1), ("dot_l2", P / l2), ("dot_pow2_l1", P / 2.0 ** np.round(np.log2(l1))),
                      ("dot_l2sq", P / l2 ** 2)):
            accs[k].append(((Q @ Wn.T).argmax(1) == yq).mean())
        Pb = (P > 0).astype(float); Qb = (Q > 0).astype(float)
        accs["dot_binary"].append(((Qb @ Pb.T) / (Pb.sum(1)[None] + 1e-9)).argmax(1).__eq__(yq).mean())
    print(name, {k: round(float(np.mean(v)), 3) for k, v in accs.items()})
