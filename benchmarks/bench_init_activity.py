"""A network's activity at initialisation, and what ``model.init_rate`` (meta/init.py) does to it.

    .venv/bin/python benchmarks/bench_init_activity.py DATA.h5 [--config paper_cnn] [--rates 0,0.1]
        [--tasks 3] [--no-grad] [--surrogate-scale S]

For each init rate (0 = slayer's initialisation): per spiking block, the mean spike rate per
neuron and step, the fraction of silent neurons and of neurons spiking on more than half of the
steps, on 16 meta-train samples NOT used by the init (classes 16..23 of the train split); then
one MAML meta-gradient (the config's inner loop, ``--tasks`` 5-way 1-shot train tasks, 2 queries
per class): the query loss and, per block, |grad| and |w| (surrogate-gradient flow; ``none``
where no gradient reaches the block). ``--surrogate-scale`` overrides the config's.
"""
import argparse
import dataclasses
import time

import numpy as np
import torch

from neuromaml.lavacompat import prepare_lava

prepare_lava()
from neuromaml.meta.config import load_config  # noqa: E402
from neuromaml.meta.init import activity_init  # noqa: E402
from neuromaml.meta.maml import InnerLR, adapted_names, learned_rule_init, meta_gradient  # noqa: E402
from neuromaml.meta.metadataset import MetaDataset  # noqa: E402
from neuromaml.meta.models import build_model  # noqa: E402
from neuromaml.meta.tasks import TaskSampler  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--config", default="paper_cnn")
ap.add_argument("--rates", default="0,0.1")
ap.add_argument("--tasks", type=int, default=3)
ap.add_argument("--no-grad", action="store_true")
ap.add_argument("--surrogate-scale", type=float, default=None, help="override model.surrogate_scale")
a = ap.parse_args()
ds = MetaDataset(a.data)
cfg = load_config(a.config)
if a.surrogate_scale is not None:
    cfg.model.surrogate_scale = a.surrogate_scale
cls = list(ds.splits["train"])[16:24]
held = ds.frames([int(j) for c in cls for j in ds.indices_of(c)[:2]], binary=True)
tasks = [TaskSampler(ds, "train", 5, 1, 2, seed=0).sample(i) for i in range(a.tasks)]
print(f"{a.config}: {ds.path}, input rate {float(held.mean()):.4f} spikes per input and step")
for rate in (float(r) for r in a.rates.split(",")):
    m = build_model(dataclasses.replace(cfg.model, init_rate=rate), seed=0)
    t0 = time.perf_counter()
    rec = activity_init(m, ds)
    t_init = time.perf_counter() - t0
    print(f"\ninit_rate {rate}" + (f" ({t_init:.0f} s; scales " + ", ".join(f"{r['kind']}{r['block']} x{r['scale']:.3g}"
                                                                     for r in rec) + ")" if rec else ""))
    p, h = dict(m.named_parameters()), held
    with torch.no_grad():
        for i, b in enumerate(m.blocks):
            h, _ = m.run(p, h, i, i + 1, burn_in=0)
            if hasattr(b, "neuron"):
                r = h.float().mean(-1).flatten(1)
                print(f"  block {i} {type(b).__name__:5s} rate {float(h.float().mean()):.3f}, silent "
                      f"{100 * float((r == 0).float().mean()):.0f}%, spiking > half the steps "
                      f"{100 * float((r > 0.5).float().mean()):.0f}%")
    if a.no_grad:
        continue
    params = m.meta_params()
    lrs = InnerLR(adapted_names(m, cfg.inner), cfg.inner.lr, cfg.inner.learn_lr, learned_rule_init(cfg.inner))
    loss, acc = meta_gradient(m, params, tasks, cfg.inner, lrs)
    grads = {n.split(".")[1]: (float(q.grad.norm()) if q.grad is not None else None, float(q.norm()))
             for n, q in params.items()}
    print(f"  meta-gradient ({a.tasks} tasks, surrogate scale {cfg.model.surrogate_scale:g}): query loss "
          f"{loss:.3f}, |grad| (|w|) per block "
          + ", ".join(f"{k}: {g:.2e} ({w:.3g})" if g is not None else f"{k}: none" for k, (g, w) in grads.items()))
