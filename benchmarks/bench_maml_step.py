"""Time one second-order MAML meta-step of the paper CNN (T=100, 5-way 1-shot,
10 queries per class, one inner SGD step) two ways, in one run:

* baseline: ``torch.func.functional_call`` over the slayer blocks (slayer's own
  CUBA neuron and exponential surrogate), gradients through all T steps;
* neuromaml: ``neuromaml.meta.maml.task_forward`` (exact integer CUBA forward in a
  compiled kernel, linear-filter gradients), with slayer's surrogate and
  burn_in=0 (same gradients: checked) and with the default burn-in window (70
  steps without gradient).

Two inner loops, each timed for both: all layers adapted (``--adapt all``), and
the final layer only (``--adapt head``, what the chip's rule does and every
shipped config uses; the baseline then still runs the whole network for the
support and the query set, ours computes the frozen features once).

Each variant runs in its own subprocess (so peak RSS is its own), every one with
the same allocator setting: ``--malloc kept`` (default, what the ``neuromaml``
command does: ``neuromaml.sysperf.keep_freed_memory``) or ``--malloc default``
(glibc's own). Prints JSON.

    .venv/bin/python benchmarks/bench_maml_step.py [--repeats 1] [--T 100] [--adapt all head] [--malloc kept]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def _task(cfg, n_way=5, k_shot=1, n_query=10, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(n_way, *cfg.input_shape, 1, generator=g) * 0.1

    def draw(k):
        x = (torch.rand(n_way * k, *cfg.input_shape, cfg.time_steps, generator=g) < protos.repeat_interleave(k, 0)).float()
        return x, torch.arange(n_way).repeat_interleave(k)

    sx, sy = draw(k_shot)
    qx, qy = draw(n_query)
    return SimpleNamespace(support_x=sx, support_y=sy, query_x=qx, query_y=qy)


def _model(burn_in, T):
    from neuromaml.meta.models import ModelConfig, build_model

    cfg = ModelConfig(name="paper_cnn", time_steps=T, burn_in=burn_in, surrogate="exponential",
                      surrogate_scale=0.1, surrogate_width=125.0, zero_head=False, weight_scale=2.0)
    return build_model(cfg, seed=0)


def baseline_step(model, task, lr=1.0, head_only=False):
    """Second-order MAML over slayer blocks with functional_call (the reference).
    ``head_only``: the inner loop adapts the final layer only."""
    import torch
    import torch.nn.functional as F

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    b = model.cfg.burn_in

    def loss_of(p, x, y):
        h = x
        for i, block in enumerate(model.blocks):
            sub = {k.split(".", 2)[2]: v for k, v in p.items() if k.startswith(f"blocks.{i}.")}
            h = torch.func.functional_call(block, sub, (h,)) if sub else block(h)
        out = h
        return F.cross_entropy(out[..., b:].sum(-1) * model.cfg.logit_scale, y)

    ls = loss_of(params, task.support_x, task.support_y)
    inner = list(params)[-1:] if head_only else list(params)
    grads = torch.autograd.grad(ls, [params[n] for n in inner], create_graph=True)
    fast = {**params, **{n: params[n] - lr * g for n, g in zip(inner, grads)}}
    lq = loss_of(fast, task.query_x, task.query_y)
    return lq, torch.autograd.grad(lq, list(params.values()))


def ours_step(model, task, lr=1.0, head_only=False):
    import torch

    from neuromaml.meta.maml import InnerConfig, task_forward

    params = model.meta_params()
    lq, _ = task_forward(model, params, task, InnerConfig(steps=1, lr=lr, frozen=-1 if head_only else 0))
    return lq, torch.autograd.grad(lq, list(params.values()))


def run_variant(name: str, T: int, repeats: int, grad_out: str, head_only: bool = False) -> dict:
    import torch

    from neuromaml.sysperf import keep_freed_memory

    keep_freed_memory()  # a no-op under NEUROMAML_MALLOC=default
    torch.set_num_threads(max(1, torch.get_num_threads()))
    burn_in = int(0.7 * T) if name == "ours_burnin70" else 0  # 70 of 100 steps
    model = _model(burn_in, T)
    task = _task(model.cfg)
    fn = baseline_step if name == "baseline" else ours_step
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss, grads = fn(model, task, head_only=head_only)
        times.append(time.perf_counter() - t0)
    torch.save([g.detach() for g in grads], grad_out)
    return {"variant": name, "seconds": min(times), "loss": loss.item(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


VARIANTS = ("baseline", "ours_same_gradients", "ours_burnin70")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--adapt", nargs="+", choices=("all", "head"), default=["all", "head"],
                    help="inner loop: all layers and/or the final layer only")
    ap.add_argument("--malloc", choices=("kept", "default"), default="kept",
                    help="allocator setting of every variant (see neuromaml.sysperf)")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--head-only", action="store_true")
    ap.add_argument("--grad-out", default=None)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.T, args.repeats, args.grad_out, args.head_only)))
        return
    import torch

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for adapt in args.adapt:
            res = {}
            for v in VARIANTS:
                gpath = str(Path(tmp) / f"{adapt}-{v}.pt")
                cmd = [sys.executable, __file__, "--variant", v, "--T", str(args.T), "--repeats",
                       str(args.repeats), "--grad-out", gpath] + (["--head-only"] if adapt == "head" else [])
                env = dict(os.environ, NEUROMAML_MALLOC="default" if args.malloc == "default" else "")
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                res[v] = json.loads(proc.stdout.strip().splitlines()[-1])
                res[v]["grads"] = torch.load(gpath)
            ref = res["baseline"].pop("grads")
            for v in VARIANTS[1:]:
                g = res[v].pop("grads")
                res[v]["max_rel_grad_diff_vs_baseline"] = max(
                    float((a - b).norm() / (a.norm() + 1e-30)) for a, b in zip(ref, g))
                res[v]["speedup_vs_baseline"] = res["baseline"]["seconds"] / res[v]["seconds"]
            out[f"adapt_{adapt}"] = res
    out["setup"] = {"model": "paper_cnn", "T": args.T, "n_way": 5, "k_shot": 1, "n_query": 10, "inner_steps": 1,
                    "second_order": True, "threads": torch.get_num_threads(), "malloc": args.malloc}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
