"""`neuromaml cost`: will the network fit, and what does one inference and one one-shot
learning episode cost?

The static part (layers, synapses, memory, core mapping) is ``deploy.cost``. With
``--data`` this module measures the activity on emulated episodes of the fast engine,
on the same tasks as ``neuromaml emulate`` with the same ``--tasks/--seed/--split/--shots/
--queries`` (``emulate.build_batch``, ``emulate.pool_inputs``, ``episodes.run_fast``):

* spikes of every layer per sample: the frozen layers from isolated runs of each sample
  (``layer_counts``: ``DeployedNet.frozen_features`` with every layer's output kept, each
  layer counted over its window ``[D_j, D_j + T)``), the plastic layer from the episode
  streams (its window of sample ``s``: stream indices ``P + s T + D + [0, T)``);
* synaptic operations in NeuroBench's terms: *dense* = every synapse every step (the dense
  MACs a CPU/GPU computes), *effective* = per input spike, its fan-out synapses (NeuroBench's
  Effective_ACs: the spikes are binary), also with nonzero weights only (NeuroBench's exact
  convention, which skips zero weights);
* activation sparsity ``1 - spikes / (neurons x steps)``;
* the learning engine: rule evaluations (every plastic synapse every epoch: the rule's ``dw``
  has the unconditional ``u0`` dependency, ``t_epoch = 1``), weight changes (synapse-steps in
  which a weight changed, ``onchip.fixed_rule.run_support``'s ``n_updates``) and the synapses an
  episode changed (``emulate``'s ``fraction_synapses_updated``).

``deploy.cost.estimate`` turns these into ESTIMATES of energy and time.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuromaml.io import atomic_write_text, fail, package_versions, write_json

if TYPE_CHECKING:
    from neuromaml.deploy.cost import CostSummary


def layer_counts(dep, x_xyf: np.ndarray, batch: int = 64) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per-sample spike counts entering and leaving every frozen layer, and the plastic layer's input.

    x_xyf: (n, T, x, y, f) 0/1 input spikes. Returns (input counts (n, *input_shape), a list with
    the counts of each frozen layer ``j`` over its window ``[D_j, D_j + T)`` (n, *shape_j), and
    ``feats`` (n, T + D - 1, I) int8 from ``dep.frozen_features``, which counts the layers in the
    same runs).
    """
    from neuromaml.deploy.fixed import to_net_input

    x = to_net_input(x_xyf, tuple(dep.net.input_shape), dep.path)
    counts_in = (x != 0).sum(axis=1, dtype=np.int64)
    feats, counts = dep.frozen_features(x_xyf, batch, return_counts=True)
    return counts_in, counts, feats


def _as_input(c: np.ndarray, kind: str) -> np.ndarray:
    """Counts (n, *shape) of a layer's source as its synapses take them: a dense layer flattens
    (x, y, f) in netx's order (transpose to (f, y, x), then C order); a conv keeps (x, y, f)."""
    if kind == "dense":
        if c.ndim > 2:
            c = c.transpose(0, *range(c.ndim - 1, 0, -1))
        return c.reshape(len(c), -1)
    return c


def synops_per_sample(in_counts: np.ndarray, fanout: np.ndarray) -> np.ndarray:
    """(n,) synaptic operations: each input spike times its fan-out, summed."""
    return (in_counts.astype(np.int64) * fanout).reshape(len(in_counts), -1).sum(axis=1)


def plastic_window_counts(dep, spikes: np.ndarray, n_samples: int) -> np.ndarray:
    """(B, S, O) plastic-layer spikes of each presented sample over its window
    ``P + s T + D + [0, T)`` (the last sample's window ends with the stream)."""
    T, P, D = dep.time_steps, dep.prefix, dep.depth
    L = spikes.shape[1]
    out = [spikes[:, min(P + s * T + D, L):min(P + (s + 1) * T + D, L)].sum(axis=1) for s in range(n_samples)]
    return np.stack(out, axis=1).astype(np.int64)


def weight_changes(dep, feats: np.ndarray, batch, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per episode: synapse-steps in which a plastic weight changed during the support presentation
    (the rule's online updates, ``run_support``'s ``n_updates``), and the weights after it."""
    from neuromaml.emulator.episodes import step_labels
    from neuromaml.onchip.fixed_rule import run_support

    cut = dep.sample_start(batch.n_support)   # labels (learning) end with the last support sample
    labels = step_labels(dep, batch)[:, :cut]
    changes, weights = [], []
    for a in range(0, len(batch.order), chunk):
        stream = dep.assemble_stream(feats, batch.order[a:a + chunk])[:, :cut]
        r = run_support(dep.rule, dep.w0, stream, labels[a:a + chunk], dep.neuron, weight_exp=dep.weight_exp,
                        num_weight_bits=dep.num_weight_bits, reset_interval=dep.time_steps)
        changes.append(r.n_updates.reshape(len(stream), -1).sum(axis=1))
        weights.append(r.weights)
    return np.concatenate(changes).astype(np.int64), np.concatenate(weights)


def measure(dep, rows: list, data, *, split: str = "test", tasks: int = 20, shots: int = 1, queries: int = 5,
            seed: int = 0) -> dict[str, Any]:
    """Activity of ``dep`` (a ``DeployedNet``) on emulate's tasks; ``rows`` the ``deploy.cost.LayerCost``
    of ``dep.net`` (one per engine layer, same order)."""
    from neuromaml.emulator.emulate import build_batch, pool_inputs
    from neuromaml.emulator.episodes import run_fast
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.tasks import TaskSampler

    ds = MetaDataset(data)
    C, H, W, T = ds.shape
    dep.check_frames(np.zeros((1, C, H, W, T)), data)
    sampler = TaskSampler(ds, split, dep.n_out, shots, queries, seed=seed, disjoint_parts=True)
    batch, pool = build_batch(sampler, tasks)
    x = pool_inputs(ds, pool)
    counts_in, counts, feats = layer_counts(dep, x)
    dep.note_if_silent(feats, data)
    res = run_fast(dep, feats, batch, progress=True)      # a bar only beyond one chunk of episodes
    changes, w_support = weight_changes(dep, feats, batch)

    B, S = batch.order.shape
    ns, order = batch.n_support, batch.order
    # per sample (pool position): spikes and synaptic operations of each engine layer
    sources = [counts_in] + counts            # what layer j's synapses read: the input, then layer j-1
    per = []
    for j, (fl, row) in enumerate(zip(dep.net.layers, rows)):
        src = sources[j]
        inp = _as_input(src, fl.kind)
        syn = synops_per_sample(inp, row.fanout)
        syn_nz = synops_per_sample(inp, row.fanout_nonzero)
        spk_in = src.reshape(len(src), -1).sum(axis=1)
        if j < dep.plastic:
            spk = counts[j].reshape(len(counts[j]), -1).sum(axis=1)[order]          # (B, S)
        else:
            spk = plastic_window_counts(dep, res.spikes, S).sum(axis=2)               # (B, S)
        per.append({"row": row, "spikes": spk, "spikes_in": spk_in[order], "synops": syn[order],
                    "synops_nz": syn_nz[order]})
    input_spikes = counts_in.reshape(len(counts_in), -1).sum(axis=1)[order]
    n_inputs = int(np.prod(dep.net.input_shape))

    O, I = dep.w0.shape
    plastic_syn = int(O * I)
    summary = res.summary()
    P = dep.prefix
    steps_ep = dep.stream_length(S)
    learning_le = {"plastic_synapses": plastic_syn,
                   "rule_evaluations": plastic_syn * ns * T,
                   "weight_changes": float(changes.mean()),
                   "synapses_changed": float(res.n_updates.mean()),
                   "fraction_synapses_updated": summary["fraction_synapses_updated"],
                   "check_weights_equal_run_fast": bool(np.array_equal(w_support, res.weights))
                   if not dep.rule.eq6_threshold else None}
    learning_ep = {**learning_le, "rule_evaluations": plastic_syn * steps_ep}

    def scope(sel: np.ndarray, per_episode: bool, samples: int, steps: int, learning: dict | None) -> dict:
        def agg(a: np.ndarray) -> float:
            a = a.astype(np.float64)
            return float(a[:, sel].sum(axis=1).mean()) if per_episode else float(a[:, sel].mean())

        layers, tot = [], {"spikes": 0.0, "synops_effective": 0.0, "synops_effective_nonzero": 0.0,
                           "dense_synops": 0}
        for p in per:
            r = p["row"]
            spikes = agg(p["spikes"])
            L = {"index": r.index, "kind": r.kind + (" (plastic)" if r.plastic else ""), "neurons": r.neurons,
                 "spikes": spikes, "sparsity": 1.0 - spikes / max(r.neurons * samples * T, 1),
                 "spikes_in": agg(p["spikes_in"]), "synops_effective": agg(p["synops"]),
                 "synops_effective_nonzero": agg(p["synops_nz"]), "dense_synops": int(r.connections * samples * T)}
            layers.append(L)
            for k in tot:
                tot[k] += L[k]
        neurons = sum(r.neurons for r in rows)
        inp = agg(input_spikes)
        return {"samples": samples, "steps": steps, "layers": layers, **tot,
                "sparsity": 1.0 - tot["spikes"] / max(neurons * samples * T, 1),
                "input": {"neurons": n_inputs, "spikes": inp, "sparsity": 1.0 - inp / max(n_inputs * samples * T, 1)},
                **({"learning": learning} if learning is not None else {})}

    sup = np.arange(S) < ns
    out = {"data": str(data), "split": split, "tasks": int(tasks), "n_way": dep.n_out, "k_shot": shots,
           "n_query": queries, "seed": seed, "time_steps": T, "burn_in": dep.burn_in,
           "accuracy_mean": float(res.accuracy.mean()), "rule": dep.rule.to_dict(),
           "inference": scope(~sup, False, 1, T, None),
           "learning_episode": scope(sup, True, ns, ns * T, learning_le),
           "episode": {**scope(np.ones(S, bool), True, S, steps_ep, learning_ep), "prefix_steps": P},
           "engine_seconds": res.seconds}
    return out


def run_cost(target, data=None, *, split: str = "test", tasks: int = 20, shots: int = 1, queries: int = 5,
             seed: int = 0, out: Path | None = None, plot: bool = True) -> CostSummary:
    """The whole ``neuromaml cost``: static part, measured part with ``data``, estimates, outputs."""
    from neuromaml.deploy import cost as dcost
    from neuromaml.deploy import cost_report as report

    t0 = time.perf_counter()
    target = Path(target)
    for name, v in (("--tasks", tasks), ("--shots", shots), ("--queries", queries)):
        if int(v) < 1:
            raise fail(None, f"{name} {v}: must be at least 1", f"pass {name} 1 or more")
    if out is None:
        if not target.is_dir():
            raise fail(target, "is a netx file, not a bundle: there is no bundle folder to write cost/ into",
                       "pass --out DIR")
        out = target / "cost"
    measured = estimates = None
    if data is not None:
        if not target.is_dir():
            raise fail(target, "--data needs a bundle (the measured part runs the bundle's one-shot episodes)",
                       f"wrap the file with `neuromaml import {target} ...` first, or leave out --data")
        from neuromaml.emulator.deployed import DeployedNet

        dep = DeployedNet.load(target)
        static, rows = dcost.static_cost(target, net=dep.net)
        measured = measure(dep, rows, data, split=split, tasks=tasks, shots=shots, queries=queries, seed=seed)
        estimates = dcost.estimate(static, measured)
    else:
        static, rows = dcost.static_cost(target)
    s = dcost.CostSummary(target=str(target), label="counts are exact for the emulated network; energy and time are "
                                                     "ESTIMATES from published per-operation figures, not measurements",
                          static=static, measured=measured, estimates=estimates, package_versions=package_versions())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plot:
        s.plot = report.plot(s, out / "cost.png")
    s.seconds = time.perf_counter() - t0
    s.outputs = {"json": str(out / "cost.json"), "markdown": str(out / "cost.md"), "plot": s.plot}
    write_json(out / "cost.json", s.to_dict())
    atomic_write_text(out / "cost.md", report.format_markdown(s))
    return s


def cost_cli(args) -> int:
    from neuromaml.deploy import cost_report as report

    if args.data is not None and Path(args.bundle).is_dir():
        from neuromaml.deploy.bundle import warn_if_uncalibrated

        warn_if_uncalibrated(args.bundle, note=" (the learning-engine counts below are the default rule's)")
    s = run_cost(args.bundle, args.data, split=args.split, tasks=args.tasks, shots=args.shots,
                 queries=args.queries, seed=args.seed, out=args.out)
    if args.json:
        write_json(args.json, s.to_dict())
    print(report.format_table(s))
    print(f"wrote {s.outputs['json']}, {s.outputs['markdown']}, {s.outputs['plot']} ({s.seconds:.1f} s)")
    return 0
