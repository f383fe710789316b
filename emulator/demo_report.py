"""The demo's report (``OUT/report.md``): the accuracy table of the deployment path, the
references, the rule chosen, the slayer tables and timings, from the stages' summaries
(``results.DemoSummary``). A summary reused from an earlier run that holds what the report
cannot format is named with the fix (``_reported``)."""
from __future__ import annotations

import contextlib
from pathlib import Path

from neuromaml.emulator.results import Column, DemoSummary, EmulateSummary
from neuromaml.io import atomic_write_text, fail


@contextlib.contextmanager
def _reported(stage, name: str):
    """Around the report's lines from a stage's summary: where a summary reused from an earlier
    run holds what the report cannot format (edited or damaged), name its file and the fix."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        path = stage.get("reused_from") if isinstance(stage, dict) else None
        if not path:
            raise
        raise fail(path, f"reused from an earlier run of this folder, it holds values the report cannot use "
                   f"({type(exc).__name__}: {exc}): edited or damaged",
                   f"delete {path} and run the demo again (the {name} stage runs again)") from None


def _pct(col) -> str:
    """'94.4 ± 6.4%' of an emulate column (``results.Column``) or an evaluate table entry (a dict)."""
    if not col:
        return "n/a"
    mean, std = (col.mean, col.std) if isinstance(col, Column) else (col["mean"], col["std"])
    return f"{100 * mean:.1f} ± {100 * std:.1f}%"


def _n(col) -> str:
    tasks = col.tasks if isinstance(col, Column) else (col or {}).get("tasks")
    return f" (first {tasks} tasks)" if col and tasks else ""


def _plot_gap(out: Path, em: EmulateSummary) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sl = em.slayer
    cols = [("slayer\n(as meta-trained)", sl.get("float")), ("fixed point\n+ float SGD", sl.get("fixed_sgd")),
            ("on-chip rule\n(fixed point)", em.onchip)]
    cols = [(n, c) for n, c in cols if c]
    if not cols:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([n for n, _ in cols], [100 * c.mean for _, c in cols],
           yerr=[100 * c.std for _, c in cols], color=["#4c72b0", "#55a868", "#c44e52"][:len(cols)], capsize=4)
    ax.axhline(100 / em.n_way, ls="--", c="gray", lw=1, label="chance")
    ax.set_ylabel("query accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{em.n_way}-way {em.k_shot}-shot, meta-test classes")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out / "deployment_gap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _evaluate_lines(ev: dict) -> list[str]:
    """The report's lines from the evaluate stage's summary (Table 2, baselines, Fig. 6)."""
    from neuromaml.meta.evaluate import shots_table

    lines: list[str] = []
    t2 = ev.get("table2") or {}
    if t2:
        lines += ["## Meta-trained network in slayer (the paper's Table 2 form)", "",
                  "| classes | accuracy (mean ± std over trials) |", "|---|---|"]
        for split, name in (("train", "meta-train"), ("test", "meta-test")):
            if split in t2:
                r = t2[split]
                lines += [f"| {name} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f}% "
                          f"({r['trials']} trials x {r['tasks_per_trial']} tasks) |"]
        lines += [""]
    if ev.get("baselines"):
        lines += ["Baselines trained the same way (steps, meta-batch, seed) and evaluated on the same tasks:", "",
                  "| model | meta-train classes | meta-test classes |", "|---|---|---|",
                  f"| {ev.get('describe', 'default SNN')} (the run above) | {_pct(t2.get('train'))} | {_pct(t2.get('test'))} |"]
        for label, b in ev["baselines"].items():
            lines.append(f"| {b['describe']} | {_pct(b.get('train'))} | {_pct(b.get('test'))} |")
        lines += [""]
    f6 = ev.get("fig6_transfer") or {}
    if "transfer" in f6:
        lines += [f"Transfer learning (Fig. 6): the same SNN pre-trained on the meta-train classes "
                  f"({100 * f6['pretrain_history'][-1]['train_acc']:.1f}% train accuracy), final layer learned "
                  f"from k shots per class, against the meta-trained run given the same shots "
                  f"({f6['tasks']} meta-test tasks):", "", *shots_table(f6, "transfer learning"), ""]
    return lines


def write_report(out: Path, summary: DemoSummary | dict) -> dict:
    if not isinstance(summary, DemoSummary):
        summary = DemoSummary.from_dict(summary)
    st = summary.stages
    em = EmulateSummary.from_dict(st.get("emulate") or {})
    tr, ver, ex = st.get("train", {}), st.get("verify", {}), st.get("export", {})
    ev = st.get("evaluate", {})
    sl = em.slayer
    gap_png = _plot_gap(out, em)
    lines = ["# neuromaml demo report", "",
             (f"Meta-dataset `{summary.data['file']}`" if summary.data.get("file")
              else "Synthetic Double-digits meta-dataset") + f", network config {summary.config or 'small (default)'}, seed {summary.seed}"
             + (" (--quick: tiny settings, accuracy not meaningful)" if summary.quick else "") + ".", "",
             f"## One-shot accuracy on meta-test classes ({em.n_way}-way {em.k_shot}-shot, "
             f"{em.tasks} tasks)", "",
             "| stage of the deployment path | accuracy (mean ± std over tasks) |", "|---|---|",
             f"| slayer as meta-trained (float arithmetic), its inner loop | {_pct(sl.get('float'))}{_n(sl.get('float'))} |",
             f"| fixed-point weights, float SGD on the final layer | {_pct(sl.get('fixed_sgd'))}{_n(sl.get('fixed_sgd'))} |",
             f"| on-chip three-factor rule, fixed point | {_pct(em.onchip)}{_n(em.onchip)} |", ""]
    if gap_png:
        lines += [f"![deployment gap]({gap_png})", ""]
    agree = em.lava.agreement if em.lava is not None else None
    if agree:
        lines += [f"Lava ran {agree['episodes']} of these episodes: output spikes identical to the fast "
                  f"engine: **{agree['output_spikes_identical']}**, final weights identical: "
                  f"**{agree['final_weights_identical']}** ({agree['lava_seconds_per_episode']:.1f} s vs "
                  f"{1000 * agree['fast_seconds_per_episode']:.0f} ms per episode).", ""]
    if ver:
        compared = [words for key, words in (("lava_vs_fixed", "Lava vs fixed engine"),
                                             ("slayer_vs_fixed", "slayer vs fixed engine")) if ver.get(key)]
        lines += [f"Export verified bit for bit: **{ver.get('ok')}** "
                  f"({ver.get('samples')} samples x {ver.get('steps')} steps; "
                  + (", ".join(compared) or "nothing compared") + ").", ""]
    ref = em.references
    if ref:
        lines += [f"References on the same tasks, from the bundle alone: fixed-point network + float SGD of the "
                  f"final layer {_pct(ref.get('bundle_sgd'))}; no learning, nearest class mean of the plastic "
                  f"layer's input spike counts {_pct(ref.get('ncm'))}.", ""]
    if ex.get("calibration"):
        from neuromaml.emulator.calibrate_report import normaliser_words

        c = ex["calibration"]
        r = em.rule
        lines += [f"On-chip rule (`neuromaml calibrate`): plastic weight exponent {c['weight_exp']}, eta = "
                  f"2^{r.get('eta_exp')}, trace impulse {r.get('x1_impulse')}, softmax gain 2^{r.get('softmax_gain_exp')}, "
                  f"factor threshold {r.get('factor_threshold')}, post factor {r.get('surrogate')}; chosen among "
                  f"{c['settings_tried']} settings screened on {c['tasks']} meta-validation tasks"
                  + (f", the best re-measured on {c['confirm_tasks']} fresh ones" if c.get("confirm_tasks") else "")
                  + f" ({100 * c['val_accuracy']:.1f}% "
                  f"{'on those' if c.get('confirm_tasks') else 'there'}, {100 * c['fraction_synapses_updated']:.0f}% of "
                  f"the synapses updated per episode; {c['selection']}). Error normaliser: "
                  + normaliser_words(r)
                  + ". Labels are presented during steps "
                  + (f"[{c['label_window'][0]}, {c['label_window'][1]})" if c.get("label_window")
                     else "of the readout window")
                  + " of each support sample (`adapt.label_window`).", ""]
        if c.get("warning"):
            lines += [f"Calibration warning: {c['warning']}.", ""]
    elif ex.get("rule_status") == "trained":
        lines += ["On-chip rule: the form the network was meta-trained through (deployed as trained).", ""]
    with _reported(tr, "train"):
        if tr:
            lines += [f"Meta-training: {tr.get('steps')} meta-steps, best meta-val accuracy "
                      f"{100 * float(tr.get('best_val_acc', float('nan'))):.1f}% at step {tr.get('best_step')}.", ""]
    with _reported(ev, "evaluate"):
        lines += _evaluate_lines(ev)
    for png in sorted((out / "run" / "eval").glob("*.png")):
        lines += [f"![{png.stem}]({png.relative_to(out)})", ""]
    secs = summary.seconds
    if st.get("data", {}).get("shape"):
        from neuromaml.meta.data_cli import summary_lines

        lines += ["## Meta-dataset (`neuromaml data info`)", "", "```", *summary_lines(st["data"]), "```", ""]
    lines += ["## Time (2-core CPU budget: 20 min)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f}" + (" (reused from an earlier run of this folder)"
                                     if isinstance(st.get(k), dict) and st[k].get("reused") else "") + " |" for k, v in secs.items()]
    lines += ["", "Machine-readable: `demo.json`, `emulate/emulate.json`, `bundle/verify.json`, "
              "`run/summary.json`.", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return {"report": str(out / "report.md"), "plot": gap_png}
