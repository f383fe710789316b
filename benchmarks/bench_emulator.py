"""Emulator speed: one-shot episodes on Lava vs the fast fixed-point engine, side by side.

For each network (the default `small` MLP and the paper CNN, freshly initialised
with weights scaled so every layer spikes: speed does not depend on training),
the same 5-way 1-shot episodes (Q queries per class, T steps per sample) run

* on Lava's CPU backend (`run_lava`: the episodes one after another in one graph,
  fixed_pt models; the first episode's time includes building the graph), and
* on the fast engine (`run_fast` over a batch of episodes, frozen-layer features
  computed once per distinct sample, as `neuromaml emulate` does),

and the two must agree bit for bit (asserted; the fast engine with the Lava graph's
random-stream offsets). Prints one JSON object.

    .venv/bin/python benchmarks/bench_emulator.py [--lava-episodes 1] [--fast-episodes 100]
        [--networks small,paper_cnn] [--time-steps 100] [--queries 5]

Lava runs the paper CNN at about 1 s per step on 2 cores (scipy convolutions per
channel triple), so a full T=100, 5-query episode (3,100 steps) takes ~50 min there:
measure it with shorter settings (e.g. --time-steps 20 --queries 1) and say so.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import neuromaml.emulator  # noqa: F401  (imports Lava's runtime first)
from neuromaml.deploy.bundle import export_bundle
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.episodes import EpisodeBatch, run_fast, run_lava
from neuromaml.meta.models import ModelConfig, build_model

N = 5
T, Q = 100, 5          # set from the command line


def make_bundle(name: str, out: Path, gain: float) -> DeployedNet:
    burn = max(10, int(0.7 * T))
    m = build_model(ModelConfig(name=name, time_steps=T, burn_in=burn, zero_head=False), seed=0)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 32, T))
        for block in m.blocks:
            if type(block).__name__ != "Pool":     # pool weights are fixed; keep them in range
                for p in block.parameters():
                    p.mul_(gain)
    export_bundle(m, out, input_shape=(2, 16, 32), time_steps=T, burn_in=burn, overwrite=True)
    return DeployedNet.load(out)


def episodes(n_tasks: int, pool: int, seed: int = 0) -> EpisodeBatch:
    rng = np.random.default_rng(seed)
    order = np.stack([rng.choice(pool, N + N * Q, replace=False) for _ in range(n_tasks)])
    labels = np.concatenate([np.tile(np.arange(N), (n_tasks, 1)),
                             np.tile(np.repeat(np.arange(N), Q), (n_tasks, 1))], axis=1)
    return EpisodeBatch(order, labels, N)


def bench(name: str, gain: float, lava_eps: int, fast_eps: int, pool: int, tmp: Path) -> dict:
    dep = make_bundle(name, tmp / name, gain)
    rng = np.random.default_rng(1)
    x = (rng.random((pool, T, 32, 16, 2)) < 0.05).astype(np.int8)
    batch = episodes(fast_eps, pool)
    t0 = time.perf_counter()
    feats = dep.frozen_features(x)
    t_feat = time.perf_counter() - t0
    fast = run_fast(dep, feats, batch)
    fast_total = t_feat + fast.seconds
    sub = EpisodeBatch(batch.order[:lava_eps], batch.labels[:lava_eps], N)
    lava = run_lava(dep, x, sub)            # one graph, the episodes one after another
    same = run_fast(dep, feats, sub, step_offsets=lava.step_offsets)
    assert np.array_equal(lava.spikes, same.spikes), "Lava and fast engine disagree (spikes)"
    assert np.array_equal(lava.weights, same.weights), "Lava and fast engine disagree (weights)"
    lava_per = lava.seconds / lava_eps
    fast_per = fast_total / fast_eps
    return {"network": name, "time_steps": T, "n_way": N, "k_shot": 1, "queries_per_class": Q,
            "layers": [L.kind for L in dep.net.layers], "episode_steps":
            dep.stream_length(N + N * Q), "distinct_samples": pool,
            "lava_episodes": lava_eps, "lava_seconds_per_episode": round(lava_per, 3),
            "lava_seconds_each": [round(float(t), 3) for t in lava.episode_seconds],
            "fast_episodes": fast_eps, "fast_seconds_total": round(fast_total, 2),
            "fast_seconds_frozen_features": round(t_feat, 2),
            "fast_episodes_per_second": round(fast_eps / fast_total, 2),
            "speedup_per_episode": round(lava_per / fast_per, 1), "bit_exact": True,
            "output_spikes_lava": int(lava.spikes.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-episodes", type=int, default=1)
    ap.add_argument("--fast-episodes", type=int, default=100)
    ap.add_argument("--pool", type=int, default=200, help="distinct samples the episodes draw from")
    ap.add_argument("--networks", default="small,paper_cnn")
    ap.add_argument("--time-steps", type=int, default=100)
    ap.add_argument("--queries", type=int, default=5)
    a = ap.parse_args()
    global T, Q
    T, Q = a.time_steps, a.queries
    torch.set_num_threads(2)
    gains = {"small": 3.0, "small_cnn": 3.0, "paper_cnn": 3.0, "lava_mlp": 3.0}
    with tempfile.TemporaryDirectory() as tmp:
        res = [bench(n, gains[n], a.lava_episodes, a.fast_episodes, a.pool, Path(tmp))
               for n in a.networks.split(",")]
    print(json.dumps({"benchmark": "emulator", "results": res}, indent=1))


if __name__ == "__main__":
    main()
