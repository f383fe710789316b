"""One-shot accuracy of the on-chip rule's forms against float SGD, from the same theta0*.

Exports a meta-trained run, calibrates each rule form on meta-VALIDATION tasks
with the fast engine, and evaluates every form and the SGD reference on the same
meta-TEST tasks (5-way 1-shot, 5 queries per class). Forms:

* ``whole``: labels during the whole presentation, softmax gain 1, eta/impulse calibrated;
* ``window``: labels during each support sample's readout window only, gain 1;
* ``window+gain``: as ``window``, softmax gain and eta/impulse calibrated (the demo's form).

The SGD reference is the meta-trained network with its exported fixed-point
weights and float SGD on the final layer (``emulate``'s ``fixed_sgd`` column).

    .venv/bin/python benchmarks/bench_rule_forms.py RUN_DIR --data FILE.h5 [--tasks 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import neuromaml.emulator  # noqa: F401  (imports Lava's runtime first)
from neuromaml.deploy.bundle import export_bundle
from neuromaml.deploy.runs import load_run
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.emulate import build_batch, pool_inputs, slayer_columns
from neuromaml.emulator.episodes import run_fast
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.tasks import TaskSampler


def grid(gains):
    for gain in gains:
        for impulse in (2, 4, 8, 16):
            for eta in range(-10, -4):
                yield dict(eta_exp=eta, x1_impulse=impulse, surrogate="none", softmax_gain_exp=gain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--val-tasks", type=int, default=60)
    ap.add_argument("--sgd-tasks", type=int, default=100)
    a = ap.parse_args()
    model, mcfg, classes = load_run(a.run)
    ds = MetaDataset(a.data)
    out = {"run": str(a.run), "data": str(a.data), "forms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(model, bundle, input_shape=tuple(mcfg.input_shape), time_steps=mcfg.time_steps,
                      burn_in=mcfg.burn_in, source_run=str(a.run.resolve()))
        dep = DeployedNet.load(bundle)
        val = TaskSampler(ds, "val", dep.n_out, 1, 5, seed=1000, disjoint_parts=True)
        test = TaskSampler(ds, "test", dep.n_out, 1, 5, seed=0, disjoint_parts=True)
        vb, vpool = build_batch(val, a.val_tasks)
        tb, tpool = build_batch(test, a.tasks)
        vf = dep.frozen_features(pool_inputs(ds, vpool))
        tf = dep.frozen_features(pool_inputs(ds, tpool))
        whole = (0, dep.time_steps)
        window = dep.label_window
        for name, win, gains in (("whole", whole, (0,)), ("window", window, (0,)),
                                 ("window+gain", window, (-8, -6, -4))):
            t0 = time.perf_counter()
            d = dataclasses.replace(dep, label_window=win)
            best = None
            for kw in grid(gains):
                spec = dataclasses.replace(dep.rule, **kw)
                acc = float(run_fast(d, vf, vb, spec).accuracy.mean())
                if best is None or acc > best[0]:
                    best = (acc, spec, kw)
            r = run_fast(d, tf, tb, best[1])
            out["forms"][name] = {"label_window": list(win), "chosen": best[2], "val_accuracy": best[0],
                                  "test_accuracy_mean": float(r.accuracy.mean()),
                                  "test_accuracy_std": float(r.accuracy.std()), "tasks": a.tasks,
                                  "seconds": round(time.perf_counter() - t0, 1)}
            print(name, json.dumps(out["forms"][name]), flush=True)
        t0 = time.perf_counter()
        sl = slayer_columns(dep, test, min(a.tasks, a.sgd_tasks))
        out["fixed_sgd"] = {**sl["fixed_sgd"], "seconds": round(time.perf_counter() - t0, 1)}
        out["float"] = sl["float"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
