"""Paper-style evaluation of a meta-trained run (Stewart & Neftci 2022).

* Table 2: N-way K-shot query accuracy after adaptation, mean +- std over
  ``trials`` trials of ``tasks_per_trial`` tasks each, on meta-train classes
  (split ``train``) and on unseen meta-test classes (split ``test``).
* Fig. 3: meta-test accuracy against the number of inner steps (0 = no
  adaptation).
* Fig. 4: meta-test accuracy against the number of frozen weight layers
  (the final layer always adapts).
* Table 3 / Fig. 5: magnitude of the final layer's inner-loop update
  |dW| for the meta-trained initialization and for a non-meta-trained one
  (the same architecture at its random initialization), with and without
  the Eq. 6 threshold (5 % of the update range).

* Baselines (Table 2): other runs evaluated on the same tasks, given as
  ``{label: run_dir}``: first-order MAML (a run with ``inner.first_order:
  true``) and the same MAML on a non-spiking CNN over summed event frames (a
  run with ``--config ann_cnn``).
* Fig. 6: transfer learning (pre-train on the meta-train classes, learn the
  final layer from 1..10 shots) against the meta-trained run given the same
  shots (``neuromaml.meta.transfer``).

Outputs in ``out_dir`` (default RUN_DIR/eval): ``report.json``,
``report.md``, ``fig3_inner_steps.png``, ``fig4_frozen.png``,
``fig5_updates.png``, ``fig6_shots.png``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from neuromaml.io import atomic_path, atomic_write_text, write_json

from .maml import adapt, evaluate_task
from .models import build_model


def _accuracy(model, params, sampler, inner, lrs, start: int, n: int) -> list[float]:
    return [evaluate_task(model, params, sampler.sample(start + i), inner, lrs) for i in range(n)]


def _no_adapt_acc(model, params, sampler, n: int) -> float:
    accs = []
    with torch.no_grad():
        for i in range(n):
            t = sampler.sample(i)
            out = model(t.query_x, params=params)
            accs.append((model.counts(out).argmax(-1) == t.query_y).float().mean().item())
    return float(np.mean(accs))


def update_stats(model, params, sampler, inner, lrs, n_tasks: int, threshold: float) -> dict:
    """|update| of the final layer over ``n_tasks`` one-step adaptations."""
    final = model.param_names()[-1]
    cfg = dataclasses.replace(inner, steps=1, threshold=threshold, frozen=-1, first_order=True)
    mags = []
    for i in range(n_tasks):
        t = sampler.sample(i)
        p = {k: v.detach().requires_grad_(k == final) for k, v in params.items()}
        rec: list = []
        adapt(model, p, t.support_x, t.support_y, cfg, lrs, create_graph=False, record=rec)
        mags.append(rec[0][final].abs().flatten().numpy())
    m = np.concatenate(mags)
    nz = m[m > 0]
    return {"mean_abs": float(m.mean()), "max_abs": float(m.max()), "mean_abs_nonzero": float(nz.mean()) if nz.size else 0.0,
            "fraction_nonzero": float((m > 0).mean()), "threshold": threshold, "values": m}


def _plot(path, xs, ys, errs, xlabel, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("meta-test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_hist(path, groups: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for label, vals in groups.items():
        v = vals[vals > 0]
        if v.size:
            ax.hist(np.log10(v), bins=40, alpha=0.5, label=label)
    ax.set_xlabel("log10 |inner-loop update| (final layer)")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _table2(model, params, lrs, inner, sampler, trials: int, tasks_per_trial: int, seed: int) -> dict:
    table2 = {}
    for split in ("train", "test"):
        per_trial = [float(np.mean(_accuracy(model, params, sampler(split, seed + k), inner, lrs, 0,
                                             tasks_per_trial))) for k in range(trials)]
        table2[split] = {"mean": float(np.mean(per_trial)), "std": float(np.std(per_trial)),
                         "trials": trials, "tasks_per_trial": tasks_per_trial}
    return table2


def _describe(cfg) -> str:
    kind = "non-spiking CNN (summed frames)" if cfg.model.name == "ann_cnn" else f"SNN {cfg.model.name}"
    return f"{kind}, {'first-order' if cfg.inner.first_order else 'second-order'} MAML"


def evaluate_baselines(baselines: dict, ds, task, trials: int, tasks_per_trial: int, seed: int) -> dict:
    """Table 2 rows of other runs (``{label: run_dir}``) on the same tasks as the main run."""
    from .tasks import TaskSampler
    from .runs import load_run
    from .train import _check_data

    rows = {}
    for label, run_dir in baselines.items():
        model, params, lrs, cfg = load_run(run_dir)
        _check_data(cfg, ds.shape, ds.path, adopt=False)
        if (cfg.task.n_way, cfg.task.k_shot) != (task.n_way, task.k_shot):
            from neuromaml.io import fail

            raise fail(Path(run_dir) / "config.yaml", f"task is {cfg.task.n_way}-way {cfg.task.k_shot}-shot, the "
                       f"evaluated run's is {task.n_way}-way {task.k_shot}-shot", "compare runs of the same task")
        sampler = lambda split, s: TaskSampler(ds, split, task.n_way, task.k_shot, task.n_query, seed=s)
        params = {k: v.detach() for k, v in params.items()}
        rows[label] = {"run": str(run_dir), "model": cfg.model.name, "first_order": cfg.inner.first_order,
                       "describe": _describe(cfg),
                       **_table2(model, params, lrs, cfg.inner, sampler, trials, tasks_per_trial, seed)}
    return rows


def _plot_shots(path, fig6: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for key, label in (("maml", "meta-trained (MAML)"), ("transfer", "transfer learning")):
        c = fig6[key]
        ax.errorbar([r["shots"] for r in c], [1 - r["acc"] for r in c], yerr=[r["std"] for r in c],
                    marker="o", capsize=3, label=label)
    ax.set_xlabel("shots per class")
    ax.set_ylabel("meta-test error")
    ax.set_ylim(0, 1)
    ax.set_title("few-shot error vs shots (Fig. 6)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def evaluate_run(run_dir, data, trials: int = 10, tasks_per_trial: int = 20, out_dir=None,
                 quick: bool = False, seed: int = 1000, baselines: dict | None = None,
                 transfer=None, transfer_tasks: int = 20) -> dict:
    """Evaluate the best checkpoint of ``run_dir`` on ``data``; writes the report files.

    ``baselines``: ``{label: run_dir}`` of other runs (first-order MAML, the ANN) to
    evaluate on the same tasks. ``transfer``: a ``TransferConfig`` for the Fig. 6
    transfer-learning baseline (default: on unless ``quick``; ``False`` skips it).
    """
    from .metadataset import MetaDataset
    from .tasks import TaskSampler
    from .runs import load_run
    from .train import _check_data

    t0 = time.perf_counter()
    model, params, lrs, cfg = load_run(run_dir)
    ds = MetaDataset(data)
    _check_data(cfg, ds.shape, data, adopt=False)
    out = Path(out_dir) if out_dir else Path(run_dir) / "eval"
    t = cfg.task
    sampler = lambda split, s: TaskSampler(ds, split, t.n_way, t.k_shot, t.n_query, seed=s)
    params = {k: v.detach() for k, v in params.items()}

    table2 = _table2(model, params, lrs, cfg.inner, sampler, trials, tasks_per_trial, seed)
    report = {"run": str(run_dir), "data": str(data), "n_way": t.n_way, "k_shot": t.k_shot,
              "n_query": t.n_query, "describe": _describe(cfg), "table2": table2}
    if baselines:
        report["baselines"] = evaluate_baselines(baselines, ds, t, trials, tasks_per_trial, seed)
    test = sampler("test", seed + 999)
    n_sweep = max(4, tasks_per_trial // 2)
    if not quick:
        steps_acc = [{"steps": 0, "acc": _no_adapt_acc(model, params, test, n_sweep), "std": 0.0}]
        for k in range(1, 6):
            a = _accuracy(model, params, test, dataclasses.replace(cfg.inner, steps=k), lrs, 0, n_sweep)
            steps_acc.append({"steps": k, "acc": float(np.mean(a)), "std": float(np.std(a))})
        report["fig3_inner_steps"] = steps_acc
        _plot(out / "fig3_inner_steps.png", [r["steps"] for r in steps_acc], [r["acc"] for r in steps_acc],
              [r["std"] for r in steps_acc], "inner steps", "accuracy vs inner steps (Fig. 3)")
        frozen_acc = []
        for f in range(model.n_layers):
            inner = dataclasses.replace(cfg.inner, frozen=f)
            from .maml import InnerLR, adapted_names

            lr_f = InnerLR(adapted_names(model, inner), float(lrs.log_lr.exp().mean()), False)
            a = _accuracy(model, params, test, inner, lr_f, 0, n_sweep)
            frozen_acc.append({"frozen": f, "acc": float(np.mean(a)), "std": float(np.std(a))})
        report["fig4_frozen_layers"] = frozen_acc
        _plot(out / "fig4_frozen.png", [r["frozen"] for r in frozen_acc], [r["acc"] for r in frozen_acc],
              [r["std"] for r in frozen_acc], "frozen layers (from the input)", "accuracy vs frozen layers (Fig. 4)")
    fresh = build_model(cfg.model, seed=cfg.seed + 12345)
    fresh_params = {k: v.detach() for k, v in fresh.meta_params().items()}
    groups, table3 = {}, {}
    for label, (m, p) in {"meta": (model, params), "non_meta": (fresh, fresh_params)}.items():
        for thr in (0.0, 0.05):
            st = update_stats(m, p, test, cfg.inner, lrs, n_sweep, thr)
            key = f"{label}{'_thresholded' if thr else ''}"
            groups[key] = st.pop("values")
            table3[key] = st
    report["table3_update_magnitude"] = table3
    _plot_hist(out / "fig5_updates.png", groups)
    if transfer is None and not quick:
        from .transfer import TransferConfig

        transfer = TransferConfig()
    if transfer:
        from .transfer import transfer_baseline

        per = min(int(ds.indices_of(c).size) for s_ in ("val", "test") for c in ds.splits[s_])
        shots = min(transfer.max_shots, per - t.n_query)
        if shots >= 1 and cfg.inner.rule == "sgd":
            transfer = dataclasses.replace(transfer, max_shots=shots)
            report["fig6_transfer"] = transfer_baseline(model, params, cfg.inner, lrs, ds, t.n_way, t.n_query,
                                                        transfer_tasks, transfer, seed=seed)
            _plot_shots(out / "fig6_shots.png", report["fig6_transfer"])
        else:
            report["fig6_transfer"] = {"skipped": f"needs sgd inner rule and >= {t.n_query + 1} samples per class"}
    report["not_done"] = [] if baselines else [
        "baselines: first-order MAML and non-spiking CNN MAML are runs of their own "
        "(inner.first_order: true; --config ann_cnn); pass them with --baseline LABEL=RUN_DIR"]
    report["seconds"] = time.perf_counter() - t0
    write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", _markdown(report))
    return report


def shots_table(f6: dict, transfer_label: str) -> list[str]:
    """Markdown rows of the Fig. 6 curves (``report["fig6_transfer"]``): accuracy per shot count."""
    return ["| shots | " + " | ".join(str(x["shots"]) for x in f6["maml"]) + " |",
            "|---|" + "---|" * len(f6["maml"]),
            "| meta-trained | " + " | ".join(f"{100 * x['acc']:.1f}" for x in f6["maml"]) + " |",
            f"| {transfer_label} | " + " | ".join(f"{100 * x['acc']:.1f}" for x in f6["transfer"]) + " |"]


def _pm(v: dict) -> str:
    return f"{100 * v['mean']:.1f} +- {100 * v['std']:.1f} %"


def _markdown(r: dict) -> str:
    lines = [f"# Evaluation of {r['run']}", "",
             f"{r['n_way']}-way {r['k_shot']}-shot, {r['n_query']} queries per class.", "",
             "| classes | accuracy (mean +- std over trials) |", "|---|---|"]
    for split, name in (("train", "meta-train"), ("test", "meta-test")):
        v = r["table2"][split]
        lines.append(f"| {name} | {100 * v['mean']:.1f} +- {100 * v['std']:.1f} % |")
    if "fig3_inner_steps" in r:
        lines += ["", "Inner steps (Fig. 3): " + ", ".join(f"{x['steps']}: {100 * x['acc']:.1f}%" for x in r["fig3_inner_steps"])]
        lines += ["", "Frozen layers (Fig. 4): " + ", ".join(f"{x['frozen']}: {100 * x['acc']:.1f}%" for x in r["fig4_frozen_layers"])]
    if r.get("baselines"):
        lines += ["", "Baselines on the same tasks (Table 2):", "",
                  "| model | meta-train classes | meta-test classes |", "|---|---|---|",
                  f"| {r.get('describe', 'this run')} (this run) | {_pm(r['table2']['train'])} | {_pm(r['table2']['test'])} |"]
        for label, b in r["baselines"].items():
            lines.append(f"| {label}: {b['describe']} | {_pm(b['train'])} | {_pm(b['test'])} |")
    f6 = r.get("fig6_transfer")
    if f6 and "transfer" in f6:
        lines += ["", f"Shots per class (Fig. 6, {f6['n_way']}-way, meta-test, {f6['tasks']} tasks; transfer learning: "
                  f"pre-trained on the meta-train classes, {f6['pretrain_history'][-1]['train_acc'] * 100:.1f}% train "
                  f"accuracy, final layer from zero with {f6['head']['head_steps']} SGD step(s) at rate "
                  f"{f6['head']['head_lr']:g}, chosen on meta-val):", "",
                  *shots_table(f6, "transfer")]
    lines += ["", "| final-layer update | mean abs | mean abs (nonzero) | max abs | nonzero fraction |", "|---|---|---|---|---|"]
    for k, v in r["table3_update_magnitude"].items():
        lines.append(f"| {k} | {v['mean_abs']:.4g} | {v['mean_abs_nonzero']:.4g} | {v['max_abs']:.4g} | {v['fraction_nonzero']:.3f} |")
    if r["not_done"]:
        lines += ["", "Not done: " + "; ".join(r["not_done"])]
    lines.append("")
    return "\n".join(lines)
