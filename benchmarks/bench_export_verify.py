"""Benchmark: export + verify of the paper CNN on N samples (issue 4 target).

Prints JSON: total time, the share spent in Lava, and the fixed engine vs Lava
time for the same samples. Usage:

    .venv/bin/python benchmarks/bench_export_verify.py [--samples 10] [--steps 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--model", default="paper_cnn")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from neuromaml.deploy.bundle import export_bundle
    from neuromaml.deploy.verify import verify_netx
    from neuromaml.io import package_versions, write_json
    from neuromaml.meta.models import ModelConfig, build_model

    cfg = ModelConfig(name=args.model, n_way=5, input_shape=(2, 16, 32), weight_scale=3.0, zero_head=False)
    model = build_model(cfg, seed=0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        export_bundle(model, Path(d) / "bundle", input_shape=cfg.input_shape, time_steps=args.steps)
        t_export = time.perf_counter() - t0
        rep = verify_netx(Path(d) / "bundle" / "network.net", samples=args.samples, steps=args.steps,
                          all_layers=True, rate=args.rate, model=model)
    total = t_export + rep["seconds"]
    out = {
        "benchmark": "export_verify", "model": args.model, "samples": args.samples, "steps": args.steps,
        "ok": rep["ok"], "export_seconds": round(t_export, 3), "verify_seconds": round(rep["seconds"], 3),
        "total_seconds": round(total, 3), "lava_seconds": round(rep["lava_seconds"], 3),
        "lava_share": round(rep["lava_seconds"] / total, 4),
        "fixed_seconds": round(rep["fixed_seconds"], 3), "slayer_seconds": round(rep["slayer_seconds"], 3),
        "fixed_speedup_vs_lava": round(rep["lava_seconds"] / max(rep["fixed_seconds"], 1e-9), 1),
        "output_spikes": rep["output_spikes"], "versions": package_versions(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
