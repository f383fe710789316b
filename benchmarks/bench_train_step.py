"""Time meta-training steps (``Trainer.train_step``: a meta-batch of tasks, second-order
MAML as configured) of a shipped or given config on a meta-dataset, with neuromaml's
allocator setting (``neuromaml.sysperf.keep_freed_memory``, what the CLI applies) or
glibc's own. Each setting runs in its own subprocess. Prints JSON.
With ``--device cuda`` it times the step on a GPU instead (one run, allocator setting
irrelevant there), with peak GPU memory.

    .venv/bin/python benchmarks/bench_train_step.py DATA.h5 [--config cnn] [--steps 3] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one(data: str, config: str, steps: int, device: str = "cpu") -> dict:
    from neuromaml.sysperf import keep_freed_memory

    keep_freed_memory()  # before torch allocates anything; a no-op under NEUROMAML_MALLOC=default
    import torch

    from neuromaml.meta.config import load_config
    from neuromaml.meta.train import Trainer, resolve_device

    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tr = Trainer(load_config(config), data, 0, dev)
    tr.train_step()  # warm-up (numba compile, first allocations)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    sync()
    out = {"device": str(dev), "seconds_per_step": (time.perf_counter() - t0) / steps,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--config", default="cnn")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.data, args.config, args.steps)))
        return
    if args.device != "cpu":
        print(json.dumps({"config": args.config, "steps_timed": args.steps,
                          **one(args.data, args.config, args.steps, args.device)}, indent=1))
        return
    res = {"config": args.config, "steps_timed": args.steps}
    for setting in ("kept", "default"):
        env = dict(os.environ, NEUROMAML_MALLOC="default" if setting == "default" else "")
        out = subprocess.run([sys.executable, __file__, args.data, "--config", args.config, "--steps",
                              str(args.steps), "--child"], capture_output=True, text=True, check=True, env=env)
        res[f"malloc_{setting}"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
