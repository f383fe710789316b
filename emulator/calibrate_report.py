"""The report of ``neuromaml calibrate`` (``emulator.calibrate``): ``calibration.json``, ``calibration.md``
and ``calibration.png``, published together with the manifest that holds the chosen rule
(``_publish_report``), and the Markdown and plot they hold (``format_markdown``, ``_plot``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from neuromaml.emulator.results import CalibrationSummary
from neuromaml.io import _umask, atomic_write_text, fail, write_json

REPORT_FILES = ("calibration.json", "calibration.md", "calibration.png")


def _publish_report(out: Path, summary: CalibrationSummary, bundle, new_manifest, save_manifest) -> None:
    """The report files are written into a staging folder inside ``out``; then the manifest is
    written (the rule the report describes goes in first) and the files renamed into place, with
    interrupts held, so an interrupted calibrate leaves the old manifest and report or the new ones."""
    from neuromaml.io import interrupts_deferred, remove_stale_temps

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out / REPORT_FILES[0])
    stage = Path(tempfile.mkdtemp(prefix=f".{REPORT_FILES[0]}.{os.getpid()}.", suffix=".tmp", dir=out))
    try:
        write_json(stage / "calibration.json", summary.to_dict())
        atomic_write_text(stage / "calibration.md", format_markdown(summary))
        _plot(summary, stage / "calibration.png")
        with interrupts_deferred():
            if new_manifest is not None:
                save_manifest(bundle, new_manifest)
            for name in REPORT_FILES:
                os.chmod(stage / name, 0o666 & ~_umask())
                try:
                    os.replace(stage / name, out / name)
                except OSError as exc:
                    raise fail(out / name, f"could not be replaced ({exc.strerror or exc})"
                               + ("; the bundle's manifest holds the new rule" if new_manifest is not None else ""),
                               "fix its permissions and run calibrate again, or give --out another folder") from None
    except BaseException as exc:
        from neuromaml.io import reraise_disk_full

        reraise_disk_full(exc, out)     # name the report folder, not a file of the staging folder
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def normaliser_words(r: dict) -> str:
    """The rule dict's error normaliser in words (calibration.md, the demo's report)."""
    if not r.get("input_norm_offset"):
        return "off"
    if r.get("input_norm_steps"):
        return (f"on, rate form (the error times 2^{r['input_norm_shift']} divided by the running input rate, "
                f"prior {r['input_norm_offset']} input spikes over {r['input_norm_steps']} steps)")
    return f"on (offset {r['input_norm_offset']} input spikes, numerator 2^{r['input_norm_shift']})"


def format_markdown(s: CalibrationSummary) -> str:
    r, sp, sgd = s.rule, s.space, s.sgd_reference
    lines = [f"# Rule calibration of `{s.bundle}`", "",
             f"{s.n_way}-way 1-shot tasks from the **meta-validation** split of `{s.data}` "
             f"({s.tasks} tasks, {s.n_query} queries per class, seed {s.seed}); "
             f"{s.settings_tried} settings, {s.seconds:.0f} s; the best few re-measured on {s.confirm_tasks} "
             f"fresh meta-val tasks (seed {s.confirm_seed}), where the accuracies below come from.", "",
             "| | meta-val accuracy | synapses updated per episode |", "|---|---|---|",
             f"| chosen rule ({s.selection}) | {_pct(s.val_accuracy)} (screening: {_pct(s.screen_accuracy)}) | "
             f"{_pct(s.fraction_synapses_updated)} |",
             f"| best re-measured setting (screening's best: {_pct(s.best_screen_accuracy)}) | "
             f"{_pct(s.best_val_accuracy)} | |",
             f"| float SGD of the final layer (lr {sgd['lr']:g}, chosen on the same tasks) | "
             f"{_pct(sgd['val_accuracy'])} | {_pct(sgd['fraction_synapses_updated'])} |", "",
             f"Chosen: plastic weight exponent {s.weight_exp} (the chip holds theta0* << {-s.weight_exp}), "
             f"eta = 2^{r['eta_exp']}, trace impulse {r['x1_impulse']} (tau {r['x1_tau']}), softmax gain "
             f"2^{r['softmax_gain_exp']}, factor threshold {r['factor_threshold']}, post factor {r['surrogate']}, "
             f"error normaliser " + normaliser_words(r)
             + f"; labels during steps [{s.label_window[0]}, {s.label_window[1]}) of each support sample.",
             "", f"Lava form: `{r['lava_form']['dw']}`, x1_impulse {r['x1_impulse']}, x1_tau {r['x1_tau']}, "
             f"Dense weight_exp {s.weight_exp}.", "",
             "Search space (derived from the bundle and the data):", ""]
    lines += [f"- {k}: {sp[k]}" for k in ("weight_exp", "softmax_gain_exp", "x1_impulse", "eta_exp",
                                          "factor_threshold", "input_norm_offset", "label_start", "rate_norm")]
    if sp.get("label_start_note"):
        lines += [f"- **note:** {sp['label_start_note']}"]
    d = sp["derived_from"]
    lines += [f"- from: feature rate {d['feature_rate_mean']:.3f} (max {d['feature_rate_max']:.3f}) per input "
              f"and step, fan-in {d['fan_in']}, vth {d['threshold_vth']}, w_sat {d['w_sat_stored_lsb']:.3g} "
              f"stored LSB, |theta0*| <= {d['theta0_max_abs_stored_lsb']}, readout window "
              f"{d['readout_window_steps']} steps, e_max {d['e_max']}", "", "![sweep](calibration.png)", ""]
    return "\n".join(lines)


def _plot(s: CalibrationSummary, path: Path) -> str:
    # a Figure without pyplot: no backend switch (a notebook's inline plots keep working)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    for stage, mk in (("step", "o"), ("threshold", "s"), ("normalise", "^"), ("edge", "v")):
        pts = [x for x in s.settings if x["stage"] == stage]
        ax.scatter([100 * x["fraction_synapses_updated"] for x in pts], [100 * x["val_accuracy"] for x in pts],
                   s=14, marker=mk, alpha=0.6, label=f"{stage} stage")
    conf = [x for x in s.settings if x.get("confirm_accuracy") is not None]
    ax.scatter([100 * x["confirm_fraction"] for x in conf], [100 * x["confirm_accuracy"] for x in conf], s=30,
               marker="x", c="k", label="re-measured on fresh tasks")
    ax.scatter([100 * s.fraction_synapses_updated], [100 * s.val_accuracy], s=120, facecolors="none",
               edgecolors="k", label="chosen (re-measured)")
    ax.axhline(100 * s.sgd_reference["val_accuracy"], ls="--", c="g", lw=1, label="float SGD")
    ax.axhline(100 / s.n_way, ls=":", c="gray", lw=1, label="chance")
    ax.set_xlabel("synapses updated per episode (%)")
    ax.set_ylabel("meta-val accuracy (%)")
    ax.legend(fontsize=7)
    ax = axes[1]
    um = s.update_magnitude
    edges = np.asarray(um["rule"]["hist"]["edges"])
    mid = np.sqrt(edges[:-1] * edges[1:])
    for name, c in (("rule", "C3"), ("sgd", "C2")):
        cnt = np.asarray(um[name]["hist"]["counts"], float)
        tot = max(um[name]["synapses"], 1)
        ax.step(mid, cnt / tot, where="mid", c=c, label=f"{name} (zero: {100 * um[name]['zero_fraction']:.0f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("|w_end - w_start| per synapse (chip weight LSB)")
    ax.set_ylabel("fraction of synapses")
    ax.set_title("update magnitudes (Fig. 5 form)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)
