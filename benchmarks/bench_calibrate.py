"""Calibrate a bundle's on-chip rule, then emulate it on meta-test tasks: the issue-12 table.

    .venv/bin/python benchmarks/bench_calibrate.py BUNDLE --data FILE.h5 [--tasks 200] [--out DIR]

Copies BUNDLE to DIR/bundle (the original is left as it is), runs ``neuromaml calibrate``
(meta-validation tasks only, wall time measured) and ``neuromaml emulate --tasks N`` (meta-test
tasks), and prints one JSON object: calibration time and choice, and every column of emulate on
the same tasks (slayer columns when the bundle has its source run; the bundle's own float-SGD
and nearest-class-mean references; the on-chip rule with its fraction of synapses updated).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--calib-tasks", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("bench-out/calibrate"))
    args = ap.parse_args()

    import neuromaml.emulator  # noqa: F401  (Lava's multiprocessing set-up first)
    from neuromaml.emulator.calibrate import calibrate
    from neuromaml.emulator.emulate import emulate

    dst = args.out / "bundle"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(args.bundle, dst)
    t0 = time.perf_counter()
    cal = calibrate(dst, args.data, tasks=args.calib_tasks)
    t_cal = time.perf_counter() - t0
    em = emulate(dst, args.data, split="test", tasks=args.tasks, engine="fast", out=args.out / "emulate")
    sl = em.slayer
    col = lambda c: None if not c else round(100 * c.mean, 1)  # noqa: E731
    print(json.dumps({
        "bundle": str(args.bundle), "data": str(args.data), "tasks": args.tasks,
        "calibrate_seconds": round(t_cal, 1), "calibration": {
            k: getattr(cal, k) for k in ("val_accuracy", "best_val_accuracy", "fraction_synapses_updated", "weight_exp",
                                "settings_tried", "sgd_reference")},
        "rule": {k: cal.rule[k] for k in ("eta_exp", "x1_impulse", "softmax_gain_exp", "factor_threshold",
                                             "surrogate")},
        "test_accuracy_pct": {"slayer_as_trained": col(sl.get("float")), "slayer_fixed_sgd": col(sl.get("fixed_sgd")),
                              "bundle_fixed_sgd": col(em.references["bundle_sgd"]),
                              "ncm_no_learning": col(em.references["ncm"]), "onchip_rule": col(em.onchip)},
        "onchip_fraction_synapses_updated": em.onchip.fraction_synapses_updated,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
