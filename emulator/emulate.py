"""`neuromaml emulate`: one-shot learning of a bundle on meta-test tasks.

Three columns, the deployment gap stage by stage, on the same tasks
(``TaskSampler(seed)``, task ``i`` a pure function of ``(seed, i)``):

1. ``float``: the meta-trained slayer network as it was meta-trained (float arithmetic;
   its weights 8-bit quantized if it was trained quantization-aware, the default) and its
   inner loop as meta-trained (SGD), from the bundle's source run;
2. ``fixed_sgd``: the same network with the exported fixed-point weights
   (slayer's 8-bit weights, integer CUBA dynamics: what Lava computes) and float
   SGD on the final layer only;
3. ``onchip``: the deployed bundle learning with the on-chip rule in fixed point
   (fast engine; on ``--engine lava|both`` also on Lava, and the two must agree
   bit for bit in output spikes and final weights).

Columns 1 and 2 need the source run. Every bundle, imported ones too, gets two references
on the same tasks, from the bundle alone: the fixed-point network's frozen features with
float SGD of the final layer (``bundle_sgd``), and a no-learning nearest class mean of the
plastic layer's input spike counts (``ncm``).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.episodes import EpisodeBatch, run_fast, run_lava
from neuromaml.emulator.results import Column, EmulateSummary, cell
from neuromaml.io import fail, is_meta_train_run, package_versions, write_json


def draw_tasks(sampler, n_tasks: int):
    """Task indices -> (classes (B, N), support (B, N K), query (B, N Q)) dataset rows.

    Support samples are presented class-interleaved (0, 1, .., N-1, 0, 1, ..): an
    online rule should not see one class K times in a row.
    """
    cls, sup, qry = zip(*(sampler.draw(i) for i in range(n_tasks)))
    sup = np.stack(sup)
    N, K = sampler.n_way, sampler.k_shot
    inter = sup.reshape(n_tasks, N, K).transpose(0, 2, 1).reshape(n_tasks, N * K)
    return np.stack(cls), inter, np.stack(qry)


def build_batch(sampler, n_tasks: int):
    """(EpisodeBatch over pool positions, pool of dataset rows)."""
    classes, sup, qry = draw_tasks(sampler, n_tasks)
    N, K, Q = sampler.n_way, sampler.k_shot, sampler.n_query
    rows = np.concatenate([sup, qry], axis=1)
    pool, pos = np.unique(rows, return_inverse=True)
    order = pos.reshape(rows.shape)
    labels = np.concatenate([np.tile(np.arange(N), (n_tasks, K)),
                             np.tile(np.repeat(np.arange(N), Q), (n_tasks, 1))], axis=1)
    return EpisodeBatch(order, labels, N * K), pool


def pool_inputs(ds, pool: np.ndarray) -> np.ndarray:
    """Binary input spikes of the pool in Lava order (n, T, x, y, f) int8."""
    from neuromaml.deploy.fixed import frames_to_xyf

    out = []
    for a in range(0, len(pool), 256):
        out.append(frames_to_xyf(ds.frames(pool[a:a + 256], binary=True)).astype(np.int8))
    return np.concatenate(out)


def _mean_std(acc) -> dict:
    acc = np.asarray(acc, float)
    return {"mean": float(acc.mean()), "std": float(acc.std()), "tasks": int(acc.size)}


def slayer_columns(dep: DeployedNet, sampler, n_tasks: int) -> dict:
    """Columns 1 (float, inner loop as trained) and 2 (fixed-point weights, final-layer SGD)."""
    from neuromaml.meta.maml import evaluate_task
    from neuromaml.meta.models import build_model
    from neuromaml.meta.runs import load_run

    run = dep.manifest.source_run
    if run and not Path(run).is_dir():
        return {"float": None, "fixed_sgd": None,
                "note": f"the source run {run} recorded at export is gone (moved or deleted): the slayer columns "
                        "are skipped; the bundle's float-SGD and nearest-class-mean references stand in for them"}
    if not run:
        return {"float": None, "fixed_sgd": None,
                "note": "no source run in the bundle (imported network): the slayer columns are n/a; the "
                        "bundle's float-SGD and nearest-class-mean references stand in for them"}
    if not is_meta_train_run(run):
        return {"float": None, "fixed_sgd": None,
                "note": f"the source run {run} is not a neuromaml meta-train run (no best.pt / ckpt.pt: another "
                        "tool's run exported by its config and checkpoint): the slayer columns, which replay "
                        "meta-train's inner loop, are skipped; the bundle's float-SGD and nearest-class-mean "
                        "references stand in for them"}
    model, params, lrs, cfg = load_run(run)
    from neuromaml.deploy.bundle import source_run_changed

    if source_run_changed(dep.manifest, model):
        return {"float": None, "fixed_sgd": None,
                "note": f"the source run {run} changed since export (its weights are not the bundle's): the slayer "
                        "columns are skipped; re-export the run to compare"}
    # Column 1 is the network as meta-trained (``model``): float arithmetic with the weights
    # the training forward used. With model.quantize (the default: quantization-aware in both
    # loops) those are slayer's 8-bit weights; the float master weights behind them drift
    # freely inside the quantization steps (straight-through gradients) and were never a
    # trained model (they read far below the quantized weights).
    if cfg.model.quantize:
        qmodel = model
    else:
        qmodel = build_model(dataclasses.replace(cfg.model, quantize=True))
        qmodel.load_state_dict(model.state_dict())
    last_only = dataclasses.replace(cfg.inner, frozen=-1, rule="sgd", threshold=0.0)
    # a quantization-aware network adapting its final layer by SGD: both columns are one computation
    same = qmodel is model and last_only == cfg.inner
    out = {"float": [], "fixed_sgd": []}
    t0 = time.perf_counter()
    for i in range(n_tasks):
        task = sampler.sample(i)
        acc = evaluate_task(model, params, task, cfg.inner, lrs)
        out["float"].append(acc)
        out["fixed_sgd"].append(acc if same else evaluate_task(qmodel, qmodel.meta_params(), task, last_only, lrs))
    return {"float": _mean_std(out["float"]), "fixed_sgd": _mean_std(out["fixed_sgd"]),
            "seconds": time.perf_counter() - t0, "source_run": str(run),
            "inner_as_trained": dataclasses.asdict(cfg.inner)}


def ncm_reference(dep: DeployedNet, feats: np.ndarray, batch: EpisodeBatch) -> dict:
    """No-learning reference: nearest class mean (cosine) on the plastic layer's input spike counts.

    Each sample's counts over its window (``feats[:, D-1:D-1+T]``, what the plastic layer sees);
    the class means of the support samples; each query takes the class of the most similar mean
    (first on ties). What the frozen features alone separate, whatever the final layer learns.
    """
    D1 = dep.depth - 1
    cnt = feats[:, D1:D1 + dep.time_steps].sum(axis=1, dtype=np.float64)          # (n, I)
    ns, N = batch.n_support, int(batch.labels.max()) + 1
    sup, lab = cnt[batch.order[:, :ns]], batch.labels[:, :ns]                     # (B, ns, I)
    onehot = (lab[:, :, None] == np.arange(N)).astype(np.float64)                  # (B, ns, N)
    means = np.einsum("bsn,bsi->bni", onehot, sup) / np.maximum(onehot.sum(1), 1)[:, :, None]
    q = cnt[batch.order[:, ns:]]
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    pred = np.einsum("bqi,bni->bqn", unit(q), unit(means)).argmax(axis=-1)
    return _mean_std((pred == batch.labels[:, ns:]).mean(axis=1))


def bundle_sgd_reference(dep: DeployedNet, feats: np.ndarray, batch: EpisodeBatch) -> dict:
    """Fixed-point frozen layers (the fast engine's features) + float SGD on the final layer,
    from the bundle alone (``rulecheck.sgd_reference``): with the lr its calibration chose on
    meta-validation tasks, else the best of a grid on these very tasks (optimistic, labelled)."""
    from neuromaml.emulator.calibrate import SGD_LRS
    from neuromaml.emulator.rulecheck import _run_logit_scale, sgd_reference

    cal = dep.manifest.calibration
    lr = (cal.get("sgd_reference") or {}).get("lr")
    lrs = [float(lr)] if lr else list(SGD_LRS)
    r = sgd_reference(dep, feats, batch, lrs=lrs, logit_scale=_run_logit_scale(dep.manifest)[0])
    return {**r["accuracy"], "lr": r["lr"], "fraction_synapses_updated": r["fraction_synapses_updated"],
            "lr_from": "calibration (meta-val)" if lr else "best of the grid on these tasks (optimistic)",
            "seconds": r["seconds"]}


def emulate(bundle, data, *, split: str = "test", tasks: int = 100, shots: int = 1, queries: int = 5,
            engine: str = "fast", lava_tasks: int | None = None, slayer_tasks: int | None = None,
            seed: int = 0, out: Path | None = None, rule=None, progress: bool = False) -> EmulateSummary:
    """Run the episodes; write ``emulate.json`` and ``emulate.md`` in ``out``; return the summary."""
    from neuromaml.deploy.bundle import MANIFEST_DIGEST, rule_status, sha256 as file_sha256
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.tasks import TaskSampler

    dep = DeployedNet.load(bundle, rule=rule)
    ds = MetaDataset(data)
    C, H, W, T = ds.shape
    dep.check_frames(np.zeros((1, C, H, W, T)), data)
    if tasks < 1:
        raise fail(None, f"--tasks {tasks}: need at least one task", "pass --tasks 1 or more")
    sampler = TaskSampler(ds, split, dep.n_out, shots, queries, seed=seed, disjoint_parts=True)
    seen = None
    if dep.manifest.source_run and Path(dep.manifest.source_run).is_dir():
        from neuromaml.meta.runs import seen_class_note

        seen = seen_class_note(dep.manifest.source_run, ds, split)
        if seen and split == "test":
            print(f"note: {seen} (fix: emulate on data with the run's class split)", file=sys.stderr)
    cal = dep.manifest.calibration
    if rule is None and cal.get("split") == split and cal.get("data") \
            and Path(cal["data"]).resolve() == Path(data).resolve():
        print(f"note: the bundle's rule was calibrated on the {split!r} split of this file: accuracies on it are "
              f"optimistic (fix: emulate on the test split, --split test)", file=sys.stderr)
    batch, pool = build_batch(sampler, tasks)
    t0 = time.perf_counter()
    x = pool_inputs(ds, pool)
    feats = dep.frozen_features(x)
    silent = dep.note_if_silent(feats, data)
    t_feats = time.perf_counter() - t0
    summary = EmulateSummary(
        bundle=str(bundle), bundle_manifest_sha256=dep.manifest.extra.get(MANIFEST_DIGEST), data=str(data),
        data_sha256=file_sha256(data), no_input_spikes=silent, split=split, tasks=tasks, n_way=dep.n_out,
        k_shot=shots, n_query=queries, seed=seed, rule=dep.rule.to_dict(), plastic_weight_exp=dep.weight_exp,
        rule_status="given by the caller" if rule is not None else rule_status(dep.manifest),
        time_steps=dep.time_steps, burn_in=dep.burn_in, classes_seen_in_training=seen,
        stream={"prefix": dep.prefix, "depth": dep.depth, "steps_per_episode": dep.stream_length(batch.order.shape[1]),
                "label_window": list(dep.label_window)})
    summary.written_in_full()
    summary.notes += [n for n in [dep.label_window_note()] if n]
    res = None
    if engine in ("fast", "both"):
        res = run_fast(dep, feats, batch, progress=progress)
        s = res.summary()
        s["seconds_frozen_features"] = t_feats
        s["episodes_per_second"] = tasks / (s["seconds"] + t_feats)
        summary.onchip = Column.from_dict({**_mean_std(res.accuracy), "engine": "fast", **s})
    if engine in ("lava", "both"):
        n_l = tasks if engine == "lava" else min(tasks, lava_tasks or 2)
        sub = EpisodeBatch(batch.order[:n_l], batch.labels[:n_l], batch.n_support)
        lres = run_lava(dep, x, sub, progress=progress)
        lava = Column.from_dict({**_mean_std(lres.accuracy), "engine": "lava", **lres.summary()})
        if res is not None:
            # the Lava episodes ran one after another in one graph: the fast engine
            # reproduces them with the random streams where Lava's stood (step_offsets)
            again = run_fast(dep, feats, sub, step_offsets=lres.step_offsets)
            same_sp = bool(np.array_equal(lres.spikes, again.spikes))
            same_w = bool(np.array_equal(lres.weights, again.weights))
            lava.agreement = {"episodes": n_l, "output_spikes_identical": same_sp,
                              "final_weights_identical": same_w,
                              "lava_graphs_built": lres.graphs_built, "step_offsets": lres.step_offsets.tolist(),
                              "lava_seconds_per_episode": lres.seconds / n_l,
                              "fast_seconds_per_episode": (res.seconds + t_feats) / tasks}
            lava.agreement["speedup"] = (lava.agreement["lava_seconds_per_episode"]
                                         / max(1e-9, lava.agreement["fast_seconds_per_episode"]))
        else:
            summary.onchip = lava
        summary.lava = lava
    summary.references = {"bundle_sgd": Column.from_dict(bundle_sgd_reference(dep, feats, batch)),
                          "ncm": Column.from_dict(ncm_reference(dep, feats, batch))}
    summary.notes += [n for n in [_chance_note(summary)] if n]
    for n in summary.notes:
        print(f"note: {Path(bundle) / 'manifest.json'}: {n}", file=sys.stderr)
    n_s = min(tasks, slayer_tasks if slayer_tasks is not None else tasks)
    slayer = slayer_columns(dep, sampler, n_s) if n_s > 0 else {"float": None, "fixed_sgd": None}
    summary.slayer = EmulateSummary.from_dict({"slayer": slayer}).slayer
    summary.package_versions = package_versions()
    out = Path(out) if out is not None else Path(bundle) / f"emulate-{split}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "emulate.json", summary.to_dict())
    from neuromaml.io import atomic_write_text

    atomic_write_text(out / "emulate.md", format_markdown(summary))
    summary.outputs = {"json": str(out / "emulate.json"), "markdown": str(out / "emulate.md")}
    return summary


def _chance_note(s: EmulateSummary) -> str | None:
    """Say when the on-chip rule stays near chance while the same input separates the classes
    (nearest class mean, no learning): the rule, its label window or its weight exponent do not
    fit these tasks, whatever the network."""
    on, ncm, chance = s.onchip, s.references.get("ncm"), 1 / max(1, s.n_way)
    if on is None or ncm is None or ncm.mean - chance < 0.2 or on.mean - chance >= (ncm.mean - chance) / 4:
        return None
    win = s.stream.get("label_window")
    return (f"the on-chip rule stays near chance ({100 * on.mean:.1f}%, chance {100 * chance:.1f}%; it updates "
            f"{100 * (on.fraction_synapses_updated or 0):.1f}% of the final-layer synapses) while the nearest class "
            f"mean of the same input reaches {100 * ncm.mean:.1f}%: the rule does not learn these tasks (check "
            f"adapt.rule and adapt.label_window{f' [{win[0]}, {win[1]})' if win else ''}; fix: neuromaml calibrate "
            "BUNDLE --data FILE.h5)")


def format_markdown(s: EmulateSummary) -> str:
    sl, ref, on = s.slayer, s.references, s.onchip
    lines = [f"# One-shot emulation: {s.n_way}-way {s.k_shot}-shot, split `{s.split}`", "",
             "| stage | accuracy (mean ± std over tasks) |", "|---|---|",
             f"| slayer as meta-trained (float arithmetic), its inner loop | {cell(sl.get('float'))} |",
             f"| fixed-point weights, float SGD on the final layer | {cell(sl.get('fixed_sgd'))} |",
             f"| fixed-point network (fast engine), float SGD on the final layer | {cell(ref.get('bundle_sgd'))} |",
             f"| no learning: nearest class mean of the plastic layer's input spike counts | {cell(ref.get('ncm'))} |",
             f"| on-chip rule, fixed point ({on.engine if on else 'n/a'}) | {cell(on)} |"]
    if ref.get("bundle_sgd"):
        lines += ["", f"Float SGD reference: lr {ref['bundle_sgd'].lr:g} ({ref['bundle_sgd'].lr_from})."]
    if s.rule_status == "uncalibrated":
        lines += ["", "**The bundle's rule is uncalibrated** (the default RuleSpec): run `neuromaml calibrate "
                  "BUNDLE --data FILE.h5` first; the on-chip row says little until then."]
    if s.lava is not None and s.lava.agreement:
        a = s.lava.agreement
        lines += ["", f"Lava vs fast engine on {a['episodes']} episodes: output spikes identical: "
                  f"{a['output_spikes_identical']}, final weights identical: {a['final_weights_identical']}; "
                  f"{a['lava_seconds_per_episode']:.2f} s vs {a['fast_seconds_per_episode']*1000:.1f} ms per "
                  f"episode ({a['speedup']:.0f}x)."]
    if on is not None:
        lines += ["", f"Fraction of final-layer synapses updated per episode: "
                  f"{100 * (on.fraction_synapses_updated or 0):.1f}%."]
    if s.stream.get("label_window"):
        lines += ["", "Support labels presented during steps [{}, {}) of each sample (`adapt.label_window`)."
                  .format(*s.stream["label_window"])]
    for n in s.notes:
        lines += ["", f"**Note:** {n}"]
    times = []
    if on is not None and on.engine == "fast" and on.seconds_per_episode is not None:
        times.append(f"fast engine {on.seconds_per_episode * 1000:.1f} ms ({on.episodes} episodes)")
    if s.lava is not None and s.lava.seconds_per_episode is not None:
        times.append(f"lava engine {s.lava.seconds_per_episode:.2f} s ({s.lava.episodes} episodes)")
    if times:
        lines += ["", "Time per episode: " + ", ".join(times) + "."]
    if sl.get("note"):
        lines += ["", sl["note"]]
    return "\n".join(lines) + "\n"


def _lava_tasks(args) -> int:
    if args.lava_tasks is not None and args.engine != "both":
        print(f"note: --lava-tasks applies to --engine both; with --engine {args.engine} "
              + ("every task runs on Lava" if args.engine == "lava" else "no task runs on Lava"), file=sys.stderr)
    return args.lava_tasks or 2


def emulate_cli(args) -> int:
    from neuromaml.deploy.bundle import warn_if_uncalibrated

    warn_if_uncalibrated(args.bundle)
    s = emulate(args.bundle, args.data, split=args.split, tasks=args.tasks, shots=args.shots,
                queries=args.queries, engine=args.engine, lava_tasks=_lava_tasks(args), seed=args.seed,
                out=args.out, progress=True)
    if args.json:
        write_json(args.json, s.to_dict())
    print(format_markdown(s))
    print(f"wrote {s.outputs['json']}")
    if s.lava_agrees is False:
        print("error: Lava and the fast engine disagree", flush=True)
        return 1
    return 0
