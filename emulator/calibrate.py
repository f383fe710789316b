"""`neuromaml calibrate`: choose the on-chip rule's settings for a bundle, on meta-validation tasks.

Any bundle (exported or imported) and any meta-dataset whose frames fit it. The search
runs the rule's fixed-point face (``episodes.run_fast``, bit-exact to Lava) on
``tasks`` one-shot episodes drawn from the **val** split only (``TaskSampler(seed +
1000)``, never the test split) and writes the chosen rule into the bundle's
manifest.

The search space is derived from the bundle and the data (``derive_space``), not
from constants tuned on one network:

* ``weight_exp`` (-k): the plastic layer's weight exponent. The chip holds theta0* << k
  and shifts the synaptic sum right by k, so inference is unchanged while one learned
  LSB is 2^-k of a stored LSB: the scale the rule lacks when the output neuron fires
  on weights of a few LSB. ``w_sat`` is the per-synapse weight at which the mean
  input drive (feature rate x fan-in) alone keeps the output neuron's current at its
  threshold (``vth * (1 - current retention) / active inputs``); k_hi is the largest k
  at which 8 w_sat and twice theta0*'s largest weight still fit the 9-bit range.
  Candidates: k_hi and k_hi - 3.
* ``softmax_gain_exp`` g: the error's softmax runs over 2^g x spike counts; counts in
  the readout window go up to ``W = T - burn_in``, so g_hi = -ceil(log2 W) keeps
  2^g x count <= 1. Candidates g_hi - 4, g_hi - 2, g_hi.
* ``x1_impulse``: 1, and the largest power of two at which the trace of the busiest
  input stays below its 7-bit bound (rate x impulse x tau <= 127), at most 16.
* ``eta_exp``: the engine's seven smallest exponents, -10..-4.
* the error normaliser (``RuleSpec.input_norm_offset`` d, ``input_norm_shift`` s; the error
  divided by d + the sample's input spikes so far, ``onchip.rule.normalise_error``): d = 4 and
  16 steps' worth of the mean input count, labels from step max(burn_in, 2 tau) or
  max(burn_in, 4 tau) of each support sample (``adapt.label_window``; from burn_in, with a note
  in ``space.label_start_note``, where both are >= T), 2^s the largest power of
  two <= d + the input expected before the label comes on, eta -10..-7, at the best step
  setting's gain and impulse; and its rate form (``input_norm_steps`` c = 4: the error divided
  by the running input rate over the labelled steps, prior d = 4 steps of the mean input) at
  the best step setting's weight exponent: trace impulses 1, top / 2 and top (top <= 64, the
  busiest input's trace within its bound), nine update magnitudes impulse x 2^(s + eta) from
  2^-12 to 2^-4 of the mean input per step, each at the largest s (the error's finest grain)
  not above twice the mean input per step.
* ``factor_threshold`` (the Eq. 6 form Lava runs, gating |y2| per post neuron):
  0, e_max/16, e_max/8, e_max/4, e_max/2 (e_max = the error's full scale), tried at the
  best three settings of the first stage, with the surrogate post factor on and off.

Selection: by default the sparsest setting (fewest synapses updated per episode) whose
meta-val accuracy is within ``tolerance`` (1 point) of the best; ties go to the more
accurate. A float-SGD reference of the same final layer (``rulecheck.sgd_reference``,
lr chosen on the same val tasks) is recorded beside it, and ``emulate`` reuses its lr.

Outputs (``out``, default ``BUNDLE/calibration``): ``calibration.json``,
``calibration.md``, ``calibration.png`` (with ``bundle_manifest_sha256``, the digest of the manifest
written with them); ``manifest.json`` is rewritten atomically with ``adapt.rule``, ``adapt.weight_exp``,
``adapt.label_window`` and ``adapt.calibration`` (what data, which split and tasks, the choice) first,
then the report files are renamed into place, interrupts held (``_publish_report``). Nothing is
written when the search fails, or when the bundle's files changed during it.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neuromaml.emulator.deployed import DeployedNet, weight_range_ok
from neuromaml.emulator.results import CalibrationSummary
from neuromaml.deploy.bundle import CALIBRATE_LOCK, CALIBRATED_FIELDS
from neuromaml.io import NeuromamlError, _umask, atomic_write_text, fail, folder_lock, package_versions, write_json
from neuromaml.onchip.rule import NORM_OFFSET_MAX, NORM_SHIFT_MAX, TRACE_MAX, RuleError, RuleSpec

ETA_EXPS = tuple(range(-10, -3))          # the engine's smallest exponents (eta_exp >= -10)
SGD_LRS = tuple(4.0 ** e for e in range(-4, 8))   # stored-weight LSB^2 per unit loss gradient
VAL_SEED_OFFSET = 1000                    # val tasks: TaskSampler(seed + 1000)
RATE_PRIOR_STEPS = 4                      # the rate normaliser's prior, in steps of mean input


def _log2_floor(x: float) -> int:
    return int(math.floor(math.log2(x))) if x > 0 else 0


def _impulse_bound(rate_max: float, tau: int, cap: int) -> int:
    """The largest power of two <= ``cap`` at which the busiest input's trace (rate x impulse x
    tau) stays below the trace's 7-bit bound."""
    imp = 1
    while imp < cap and rate_max * (2 * imp) * (tau + 0.5) <= TRACE_MAX:
        imp *= 2
    return imp


def derive_space(dep: DeployedNet, feats: np.ndarray) -> dict:
    """The candidate values of every searched field, with the quantities they come from."""
    D1 = dep.depth - 1
    win = feats[:, D1:D1 + dep.time_steps].astype(np.float64)         # (n, T, I)
    rate_mean = float(win.mean())                                       # spikes / input / step
    rate_max = float(win.mean(axis=(0, 1)).max()) if win.size else 0.0
    n_active = rate_mean * dep.n_pre
    retain_u = (4096 - dep.neuron.du - 1) / 4096
    w_sat = dep.neuron.vth * (1 - retain_u) / max(n_active, 1e-9)       # stored-weight LSB
    head = int(np.abs(dep.stored_w0).max()) if dep.w0.size else 0
    bound = max(2 * head, 8 * w_sat, 1e-9)
    k_hi = int(np.clip(_log2_floor(255 / bound), 0, 8))
    while k_hi > 0 and not weight_range_ok(dep.stored_w0, k_hi):
        k_hi -= 1
    ks = sorted({k_hi, max(0, k_hi - 3)}, reverse=True)
    window = dep.time_steps - dep.burn_in
    g_hi = -int(math.ceil(math.log2(max(window, 1))))
    gains = sorted({int(np.clip(g, -12, 6)) for g in (g_hi - 4, g_hi - 2, g_hi)})
    tau = dep.rule.x1_tau
    impulses = sorted({1, _impulse_bound(rate_max, tau, 16)})
    e_max = dep.rule.e_max
    factor = sorted({0, e_max // 16, e_max // 8, e_max // 4, e_max // 2})
    # the error normaliser (onchip.rule.normalise_error): offsets d of 4 and 16 steps' worth of
    # input; the label comes on once the previous sample's trace has decayed (2 and 4 trace time
    # constants, not before the readout window), else that trace is imprinted at the normaliser's
    # largest step; the numerator 2^s is the largest power of two below the divisor expected when
    # the label comes on (d + input per step x start), so the divided error starts near the
    # undivided one (measured: BENCHMARKS.md, "The error normaliser")
    offsets = sorted({int(np.clip(round(m * n_active), 1, NORM_OFFSET_MAX)) for m in (4, 16)})
    delayed = (max(dep.burn_in, 2 * tau), max(dep.burn_in, 4 * tau))
    starts = sorted({s for s in delayed if s < dep.time_steps})
    note = None
    if not starts:     # a trace that outlasts the sample (a rule-trained run may carry any tau)
        starts = [dep.burn_in]
        note = (f"the error normaliser with a delayed label was not searched: its label starts max(burn_in, "
                f"2 tau) = {delayed[0]} and max(burn_in, 4 tau) = {delayed[1]} (x1_tau {tau}) are not inside the "
                f"{dep.time_steps} steps of a sample; the normaliser was tried with labels from burn_in = "
                f"{dep.burn_in} (the readout window) instead")
    # its rate form (input_norm_steps c >= 1): the error divided by a running estimate of the input
    # rate, the prior c = 4 steps of the mean input (d = c x input per step), so the divided error
    # is about e_q 2^(s - L) (L = floor(log2(input per step))) and a step's update about
    # impulse x 2^(s + eta - L): nine magnitudes 2^-12..2^-4 at each trace impulse 1, top / 2 and
    # top (top: the largest power of two <= 64 at which the busiest input's trace stays below its
    # bound), each at the largest s <= L + 1 (the error's finest grain; eta >= -10 is the engine's
    # floor). Measured (BENCHMARKS.md, "The error normaliser"): the best impulse differs by
    # network (the authors' MLP 32, the gestures 1), the best magnitude by 2^6 across networks.
    lg = _log2_floor(max(n_active, 1.0))
    top = _impulse_bound(rate_max, tau, 64)
    rate_settings = []
    for imp in sorted({1, max(1, top // 2), top}):
        for mag in range(-12, -3):
            sh = min(lg + 1, mag - _log2_floor(imp) + lg + 10, NORM_SHIFT_MAX)
            eta = mag - _log2_floor(imp) + lg - sh
            if sh >= 0 and ETA_EXPS[0] <= eta <= 5:
                rate_settings.append([imp, sh, eta])
    rate_offset = int(np.clip(round(RATE_PRIOR_STEPS * n_active), 1, NORM_OFFSET_MAX))
    return {"weight_exp": [-k for k in ks], "softmax_gain_exp": gains, "x1_impulse": impulses,
            "eta_exp": list(ETA_EXPS), "factor_threshold": factor,
            "input_norm_offset": offsets, "label_start": starts, "label_start_note": note,
            "rate_norm": {"input_norm_steps": RATE_PRIOR_STEPS, "input_norm_offset": rate_offset,
                          "impulse_shift_eta": rate_settings},
            "derived_from": {"feature_rate_mean": rate_mean, "feature_rate_max": rate_max,
                             "fan_in": dep.n_pre, "active_inputs_per_step": n_active,
                             "threshold_vth": dep.neuron.vth, "current_retention": retain_u,
                             "w_sat_stored_lsb": w_sat, "theta0_max_abs_stored_lsb": head,
                             "k_hi": k_hi, "readout_window_steps": window, "x1_tau": tau,
                             "e_max": e_max}}


def _spec(base: RuleSpec, **kw) -> RuleSpec | None:
    try:
        return dataclasses.replace(base, **kw)
    except RuleError:
        return None


def select(settings: list[dict], tolerance: float, floor: float | None = None) -> dict:
    """The sparsest setting within ``tolerance`` of the best val accuracy (ties: more accurate,
    then earlier); where some settings read above ``floor`` (chance plus its noise), only those:
    a loose tolerance must not choose a rule that does not learn."""
    if floor is not None and any(s["val_accuracy"] > floor for s in settings):
        settings = [s for s in settings if s["val_accuracy"] > floor]
    best = max(s["val_accuracy"] for s in settings)
    near = [s for s in settings if s["val_accuracy"] >= best - tolerance - 1e-12]
    return min(near, key=lambda s: (s["fraction_synapses_updated"], -s["val_accuracy"]))


REPORT_FILES = ("calibration.json", "calibration.md", "calibration.png")


def _check_report_writable(out: Path) -> None:
    """Before the sweep: the report folder can be written and each report file in it replaced
    (another user's file in a shared folder, an immutable one), so minutes of search do not end
    in an error, or in a report of which one file is new and the others old."""
    anc = out
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.is_dir() and not os.access(anc, os.W_OK | os.X_OK):
        raise fail(out, f"the report folder cannot be written ({anc} is not writable)",
                   "give --out a folder you can write, or fix its permissions")
    for name in REPORT_FILES:
        p = out / name
        if p.is_file():
            try:
                with open(p, "r+b"):
                    pass
            except OSError as exc:
                raise fail(p, f"cannot be replaced ({exc.strerror or exc})",
                           "fix its permissions, or give --out another folder") from None


def calibrate(bundle, data, *, tasks: int = 50, queries: int = 5, seed: int = 0, tolerance: float = 0.01,
              out: Path | None = None, progress: bool = False, write_manifest: bool = True,
              strict: bool = True, publish_as: Path | None = None) -> CalibrationSummary:
    """Search, choose, write the outputs and the manifest; return the summary.

    ``strict``: a search whose best setting is not above chance (by two standard errors)
    is an error and writes nothing; with ``strict=False`` the best setting is written
    with ``warning`` in the summary and the manifest's record (smoke tests on tiny data).
    ``publish_as``: the path the bundle will have (``export --calibrate-on`` calibrates it in a
    staging folder); the report names that path.
    """
    bundle = Path(bundle)
    _check_report_writable(Path(out) if out is not None else bundle / "calibration")
    if write_manifest:
        # checked before the sweep, not at its end: the rule goes into BUNDLE/manifest.json
        if bundle.is_dir() and not os.access(bundle, os.W_OK | os.X_OK):
            raise fail(bundle, "is not writable: calibrate writes the chosen rule into its manifest.json",
                       "copy the bundle somewhere writable (cp -r) or fix its permissions")
        if bundle.is_dir():
            with folder_lock(bundle, "another calibrate (pid {pid}) is choosing this bundle's rule",
                             CALIBRATE_LOCK):
                return _calibrate(bundle, data, tasks=tasks, queries=queries, seed=seed, tolerance=tolerance,
                                  out=out, progress=progress, write_manifest=write_manifest, strict=strict,
                                  publish_as=publish_as)
    return _calibrate(bundle, data, tasks=tasks, queries=queries, seed=seed, tolerance=tolerance, out=out,
                      progress=progress, write_manifest=write_manifest, strict=strict, publish_as=publish_as)


def _calibrate(bundle, data, *, tasks, queries, seed, tolerance, out, progress, write_manifest,
               strict, publish_as=None) -> CalibrationSummary:
    from tqdm import tqdm

    from neuromaml.deploy.bundle import MANIFEST_DIGEST, as_dict, load_bundle, manifest_digest
    from neuromaml.deploy.bundle import write_manifest as save_manifest
    from neuromaml.deploy.manifest import Manifest
    from neuromaml.deploy.bundle import sha256 as file_sha256
    from neuromaml.emulator.emulate import build_batch, pool_inputs
    from neuromaml.emulator.episodes import run_fast
    from neuromaml.emulator.rulecheck import _run_logit_scale, magnitude_stats, sgd_reference
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.tasks import TaskSampler

    if isinstance(tasks, bool) or int(tasks) != tasks or tasks < 1:
        raise fail(None, f"--tasks {tasks}: need at least one meta-validation task", "pass --tasks 1 or more")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise fail(None, f"--tolerance {tolerance}: must be a fraction in [0, 1)", "e.g. --tolerance 0.01")
    t_start = time.perf_counter()
    replaced: tuple = ()
    try:
        dep = DeployedNet.load(bundle)
    except NeuromamlError as exc:
        if not any(f"field 'adapt.{k}" in str(exc) for k in CALIBRATED_FIELDS):
            raise
        # a field this command replaces is damaged: search from the default rule, exponent and
        # label window instead (the search space does not depend on them)
        print(f"note: {exc}; calibrating from the default rule, weight exponent and label window", file=sys.stderr)
        replaced = CALIBRATED_FIELDS
        dep = DeployedNet.load(bundle, rule=RuleSpec(), replaced=replaced)
    ds = MetaDataset(data)
    C, H, W, T = ds.shape
    dep.check_frames(np.zeros((1, C, H, W, T)), data)
    if "val" not in ds.splits or len(ds.splits["val"]) < dep.n_out:
        have = len(ds.splits.get("val", []))
        raise fail(data, f"split 'val' has {have} classes, fewer than the bundle's {dep.n_out} outputs: "
                   f"calibration draws {dep.n_out}-way tasks from meta-validation classes only",
                   f"rebuild the meta-dataset with at least {dep.n_out} validation classes")
    counts = ds.class_sizes("val")
    if min(counts) < 1 + queries:
        raise fail(data, f"split 'val' holds classes of {min(counts)} recordings; calibration draws 1-shot tasks with "
                   f"{queries} queries per class ({1 + queries} recordings)",
                   f"give every val class at least {1 + queries} recordings, or run `neuromaml calibrate BUNDLE "
                   f"--queries {max(min(counts) - 1, 1)}`")
    sampler = TaskSampler(ds, "val", dep.n_out, 1, queries, seed=seed + VAL_SEED_OFFSET, disjoint_parts=True)
    batch, pool = build_batch(sampler, int(tasks))
    feats = dep.frozen_features(pool_inputs(ds, pool))
    if not feats.any():
        raise fail(bundle, "the plastic layer receives no spikes on these data (the frozen layers are silent)",
                   "check that the data's frames are what the network was trained on")
    space = derive_space(dep, feats)
    base = dataclasses.replace(dep.rule, error_threshold=0, factor_threshold=0, eq6_threshold=0,
                               input_norm_offset=0, input_norm_shift=0, input_norm_steps=0)
    default_start = dep.burn_in                  # the readout window: labels during [burn_in, T)
    nets = {(e, a): dataclasses.replace(dep.with_weight_exp(e), label_window=(a, dep.time_steps))
            for e in space["weight_exp"] for a in [default_start] + space["label_start"]}

    def run(wexp: int, spec: RuleSpec, stage: str, start: int = default_start) -> dict:
        r = run_fast(nets[wexp, start], feats, batch, spec)
        return {"stage": stage, "weight_exp": wexp, "eta_exp": spec.eta_exp, "x1_impulse": spec.x1_impulse,
                "softmax_gain_exp": spec.softmax_gain_exp, "factor_threshold": spec.factor_threshold,
                "surrogate": spec.surrogate, "input_norm_offset": spec.input_norm_offset,
                "input_norm_shift": spec.input_norm_shift, "input_norm_steps": spec.input_norm_steps,
                "label_start": start,
                "val_accuracy": float(r.accuracy.mean()),
                "val_std": float(r.accuracy.std()),
                "fraction_synapses_updated": float((r.n_updates / r.weights[0].size).mean()),
                "mean_abs_update_stored_lsb": float(np.abs(r.weights - r.initial).mean() * 2.0 ** wexp),
                "_spec": spec}

    grid = [(w, g, i, e) for w, g, i, e in itertools.product(
        space["weight_exp"], space["softmax_gain_exp"], space["x1_impulse"], space["eta_exp"])]
    norm_grid = list(itertools.product(space["label_start"], space["input_norm_offset"], space["weight_exp"],
                                       ETA_EXPS[:4]))
    rn = space["rate_norm"]
    rate_grid = list(itertools.product(space["label_start"], rn["impulse_shift_eta"]))
    settings: list[dict] = []
    bar = tqdm(total=len(grid) + 3 * (len(space["factor_threshold"])) + len(norm_grid) + len(rate_grid),
               desc="calibrate",
               unit="setting", disable=not progress, leave=False)
    try:
        for w, g, i, e in grid:
            spec = _spec(base, eta_exp=e, x1_impulse=i, softmax_gain_exp=g, surrogate="none")
            if spec is not None:
                settings.append(run(w, spec, "step"))
            bar.update()
        top = sorted(settings, key=lambda s: -s["val_accuracy"])[:3]
        for s in top:
            for thr, sur in itertools.chain(((t, "none") for t in space["factor_threshold"][1:]),
                                            [(0, "fast_sigmoid")]):
                spec = _spec(s["_spec"], factor_threshold=thr, surrogate=sur)
                if spec is not None:
                    settings.append(run(s["weight_exp"], spec, "threshold"))
                bar.update()
        best_step = top[0]["_spec"]
        for a, d, w, e in norm_grid:
            n0 = d + space["derived_from"]["active_inputs_per_step"] * a
            spec = _spec(best_step, input_norm_offset=d, input_norm_shift=min(int(math.log2(n0)), NORM_SHIFT_MAX), eta_exp=e)
            if spec is not None:
                settings.append(run(w, spec, "normalise", a))
            bar.update()
        for a, (imp, sh, e) in rate_grid:       # at the best step setting's weight exponent
            spec = _spec(best_step, input_norm_offset=rn["input_norm_offset"], input_norm_shift=sh,
                         input_norm_steps=rn["input_norm_steps"], eta_exp=e, x1_impulse=imp)
            if spec is not None:
                settings.append(run(top[0]["weight_exp"], spec, "normalise", a))
            bar.update()
    finally:
        bar.close()
    chance = 1.0 / dep.n_out
    best_acc = max(s["val_accuracy"] for s in settings)
    margin = 2 * math.sqrt(chance * (1 - chance) / (int(tasks) * dep.n_out * queries))
    warning = None
    if best_acc <= chance + margin:
        warning = (f"no setting above chance on meta-val: best {100 * best_acc:.1f}% (chance "
                   f"{100 * chance:.1f}%)")
    if warning and strict:
        tau = dep.rule.x1_tau
        raise fail(bundle, f"no rule setting learns on meta-validation tasks of {data}: the best reads "
                   f"{100 * best_acc:.1f}% (chance {100 * chance:.1f}%) over {len(settings)} settings",
                   (f"the rule's trace time constant x1_tau = {tau} is not below half the {dep.time_steps}-step "
                    "sample, so each support sample's trace runs into the next one's label: deploy a rule with "
                    f"x1_tau below {max(dep.time_steps // 4, 1)} (inner.rule_spec.x1_tau of the run, then export "
                    "it again) and calibrate that; nothing was written") if space.get("label_start_note") else
                   "check that the bundle's frozen layers suit these data (emulate shows the no-learning "
                   "nearest-class-mean reference); nothing was written")
    chosen = select(settings, float(tolerance), floor=chance + margin)
    spec = chosen["_spec"]
    dep_c = nets[chosen["weight_exp"], chosen["label_start"]]
    final = run_fast(dep_c, feats, batch, spec)
    sgd = sgd_reference(dep_c, feats, batch, lrs=SGD_LRS, logit_scale=_run_logit_scale(dep.manifest)[0])
    record = {"data": str(Path(data).resolve()), "data_sha256": file_sha256(data), "split": "val",
              "tasks": int(tasks), "n_way": dep.n_out, "k_shot": 1, "n_query": queries,
              "seed": seed + VAL_SEED_OFFSET, "tolerance": float(tolerance),
              "selection": f"sparsest setting within {100 * tolerance:g} points of the best meta-val accuracy",
              "val_accuracy": chosen["val_accuracy"], "best_val_accuracy": best_acc,
              "fraction_synapses_updated": chosen["fraction_synapses_updated"],
              "weight_exp": chosen["weight_exp"], "label_window": [int(chosen["label_start"]), dep.time_steps],
              "settings_tried": len(settings),
              "sgd_reference": {"lr": sgd["lr"], "val_accuracy": sgd["accuracy"]["mean"],
                                "fraction_synapses_updated": sgd["fraction_synapses_updated"],
                                "logit_scale": sgd["logit_scale"]},
              "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "warning": warning}
    for s in settings:
        s.pop("_spec")
    shown = Path(publish_as) if publish_as is not None else bundle
    summary = CalibrationSummary(bundle=str(shown), **record, rule=spec.to_dict(), space=space, settings=settings,
                                 update_magnitude={"rule": magnitude_stats(final.weights - final.initial),
                                                   "sgd": sgd["update_magnitude"]},
                                 seconds=time.perf_counter() - t_start, package_versions=package_versions())
    summary.written_in_full()
    shown_out = Path(out) if out is not None else shown / "calibration"
    out = Path(out) if out is not None else bundle / "calibration"
    summary.outputs = {"json": str(shown_out / "calibration.json"), "markdown": str(shown_out / "calibration.md"),
                       "plot": str(shown_out / "calibration.png")}
    new_manifest = None
    if write_manifest:
        now = load_bundle(bundle, check_rule=False, replaced=replaced)[0]   # re-read: unchanged files
        if now.get("files") != as_dict(dep.manifest).get("files"):
            raise fail(bundle, "changed while calibrating (exported or imported again?): its network is not the "
                       "one calibrated; nothing was written", f"run neuromaml calibrate {shown} again")
        man = Manifest.from_dict(now)
        man.adapt.set(rule=spec.to_dict(), weight_exp=int(chosen["weight_exp"]), rule_source="calibrated",
                      label_window=summary.label_window, calibration=summary.record())
        man.extra.pop("calibration", None)                  # an older demo's record
        new_manifest = man.to_dict()
        summary.bundle_manifest_sha256 = manifest_digest({k: v for k, v in new_manifest.items()
                                                          if k != MANIFEST_DIGEST})
    _publish_report(out, summary, bundle if write_manifest else None, new_manifest, save_manifest)
    return summary


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
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


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
             f"{s.settings_tried} settings, {s.seconds:.0f} s.", "",
             "| | meta-val accuracy | synapses updated per episode |", "|---|---|---|",
             f"| chosen rule ({s.selection}) | {_pct(s.val_accuracy)} | "
             f"{_pct(s.fraction_synapses_updated)} |",
             f"| best rule setting | {_pct(s.best_val_accuracy)} | |",
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
    for stage, mk in (("step", "o"), ("threshold", "s"), ("normalise", "^")):
        pts = [x for x in s.settings if x["stage"] == stage]
        ax.scatter([100 * x["fraction_synapses_updated"] for x in pts], [100 * x["val_accuracy"] for x in pts],
                   s=14, marker=mk, alpha=0.6, label=f"{stage} stage")
    ax.scatter([100 * s.fraction_synapses_updated], [100 * s.val_accuracy], s=120, facecolors="none",
               edgecolors="k", label="chosen")
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


def calibrate_cli(args) -> int:
    s = calibrate(args.bundle, args.data, tasks=args.tasks, queries=args.queries, seed=args.seed,
                  tolerance=args.tolerance, out=args.out, progress=True)
    print(format_markdown(s))
    if args.json:
        write_json(args.json, s.to_dict())
    print(f"wrote {s.outputs['json']} and the chosen rule into {Path(args.bundle) / 'manifest.json'}")
    return 0

