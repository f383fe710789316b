"""Benchmark: build the default synthetic Double-digits meta-dataset (100 classes x 20).

Target (issue 2): under 2 minutes on 2 CPU cores. Prints one JSON object: build seconds,
file size, samples, mean events per sample, time to load all frames and to draw 100 tasks.

    .venv/bin/python benchmarks/bench_data_build.py [--per-class 80] [--seed 0] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def pixel_prototype_accuracy(ds, k_shot: int, n_tasks: int = 200) -> float:
    """Baseline without learning: 5-way meta-test accuracy of the nearest (cosine) class mean of
    the time-summed, flattened frames. Meta-learning must beat it."""
    import numpy as np
    import torch

    from neuromaml.meta.tasks import TaskSampler

    acc = []
    for t in TaskSampler(ds, "test", 5, k_shot, 5, seed=0).iter_tasks(n_tasks):
        def f(x):
            return torch.nn.functional.normalize(x.sum(-1).flatten(1), dim=1)
        sx, qx = f(t.support_x), f(t.query_x)
        proto = torch.stack([sx[t.support_y == c].mean(0) for c in range(5)])
        acc.append(((qx @ proto.T).argmax(1) == t.query_y).float().mean().item())
    return float(np.mean(acc))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the built file here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)

    from neuromaml.io import package_versions, write_json
    from neuromaml.meta.metadataset import MetaDataset, build_metadataset
    from neuromaml.meta.tasks import TaskSampler

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "synthetic.h5"
        t0 = time.perf_counter()
        s = build_metadataset("synthetic", out, per_class=args.per_class, seed=args.seed)
        build_s = time.perf_counter() - t0
        ds = MetaDataset(out)
        t0 = time.perf_counter()
        x = ds.frames(range(len(ds)))
        load_s = time.perf_counter() - t0
        events = float(x.sum()) / len(ds)
        del x
        sampler = TaskSampler(ds, "train", n_way=5, k_shot=1, n_query=5, seed=0)
        t0 = time.perf_counter()
        for _ in sampler.iter_tasks(100):
            pass
        task_s = time.perf_counter() - t0
        proto = {k: pixel_prototype_accuracy(ds, k, n_tasks=200) for k in (1, 5)}
        result = {
            "benchmark": "data_build_synthetic_double_digits",
            "build_seconds": round(build_s, 2),
            "target_seconds": 120,
            "file_bytes": s["bytes"],
            "num_classes": s["num_classes"],
            "num_samples": s["num_samples"],
            "shape": s["shape"],
            "events_per_sample_mean": round(events, 1),
            "load_all_frames_seconds": round(load_s, 2),
            "tasks_5way_1shot_5query_per_second": round(100 / task_s, 1),
            # no learning: nearest prototype on time-summed count maps (chance 0.2)
            "pixel_prototype_test_acc_5way_1shot": round(proto[1], 3),
            "pixel_prototype_test_acc_5way_5shot": round(proto[5], 3),
            "cpu_count": os.cpu_count(),
            "versions": package_versions(),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0 if build_s < 120 else 1


if __name__ == "__main__":
    sys.exit(main())
