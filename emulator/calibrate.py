"""`neuromaml calibrate`: choose the on-chip rule's settings for a bundle, on meta-validation tasks.

Any bundle (exported or imported) and any meta-dataset whose frames fit it. The search
runs the rule's fixed-point face (``episodes.run_fast``, bit-exact to Lava) on
``tasks`` one-shot episodes drawn from the **val** split only (``TaskSampler(seed +
1000)``, never the test split) and writes the chosen rule into the bundle's
manifest.

The search space is derived from the bundle and the data, not from constants tuned on one
network: ``emulator.calibrate_space`` (``derive_space``) says what is tried and why. The
report files are written by ``emulator.calibrate_report``.

After the grid, the softmax gain one step (2^2) beyond the grid's end is tried for each of the
three best settings that sits on that end (stage ``edge``).

Selection, in two steps. Screening: every setting on ``tasks`` val tasks. Confirmation: the
screening's ``CONFIRM_TOP`` most accurate settings, and the one the screening alone would
choose, again on ``CONFIRM_FACTOR x tasks`` fresh val tasks (``TaskSampler(seed + 1001)``):
the best of some 150 noisy readings reads above its own mean (the winner's curse; measured on
the authors' MLP: 72.4% screening, 68.3% on 200 fresh val tasks), so the choice and the
accuracy reported come from the fresh tasks. The choice: by default the sparsest candidate
(fewest synapses updated per episode) whose confirmed accuracy is within ``tolerance`` (1
point) of the best confirmed; ties go to the more accurate. A float-SGD reference of the same
final layer (``rulecheck.sgd_reference``, lr chosen on the confirmation's tasks) is recorded
beside it, and ``emulate`` reuses its lr.

Outputs (``out``, default ``BUNDLE/calibration``): ``calibration.json``,
``calibration.md``, ``calibration.png`` (with ``bundle_manifest_sha256``, the digest of the manifest
written with them); ``manifest.json`` is rewritten atomically with ``adapt.rule``, ``adapt.weight_exp``,
``adapt.label_window`` and ``adapt.calibration`` (what data, which split and tasks, the choice) first,
then the report files are renamed into place, interrupts held (``calibrate_report._publish_report``). Nothing is
written when the search fails, or when the bundle's files changed during it.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from neuromaml.emulator.calibrate_report import REPORT_FILES, _publish_report, format_markdown
from neuromaml.emulator.calibrate_report import normaliser_words  # noqa: F401 (re-exported)
from neuromaml.emulator.calibrate_space import ETA_EXPS, derive_space
from neuromaml.emulator.calibrate_space import RATE_PRIOR_STEPS  # noqa: F401 (re-exported)
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.results import CalibrationSummary
from neuromaml.deploy.bundle import CALIBRATE_LOCK, CALIBRATED_FIELDS
from neuromaml.io import NeuromamlError, fail, folder_lock, package_versions, write_json
from neuromaml.onchip.rule import GAIN_RANGE, NORM_SHIFT_MAX, RuleError, RuleSpec

SGD_LRS = tuple(4.0 ** e for e in range(-4, 8))   # stored-weight LSB^2 per unit loss gradient
VAL_SEED_OFFSET = 1000                    # val tasks: TaskSampler(seed + 1000)
CONFIRM_SEED_OFFSET = 1001                # the confirmation's fresh val tasks: TaskSampler(seed + 1001)
CONFIRM_TOP = 5                           # the screening's most accurate settings re-measured
CONFIRM_FACTOR = 2                        # ... on 2 x --tasks fresh val tasks


def _spec(base: RuleSpec, **kw) -> RuleSpec | None:
    try:
        return dataclasses.replace(base, **kw)
    except RuleError:
        return None


def select(settings: list[dict], tolerance: float, floor: float | None = None,
           key: str = "val_accuracy") -> dict:
    """The sparsest setting within ``tolerance`` of the best accuracy ``key`` (ties: more accurate,
    then earlier); where some settings read above ``floor`` (chance plus its noise), only those:
    a loose tolerance must not choose a rule that does not learn. ``key``: the screening's
    ``val_accuracy`` or the confirmation's ``confirm_accuracy`` (then the sparsity is the
    confirmation's ``confirm_fraction``)."""
    frac = "confirm_fraction" if key == "confirm_accuracy" else "fraction_synapses_updated"
    if floor is not None and any(s[key] > floor for s in settings):
        settings = [s for s in settings if s[key] > floor]
    best = max(s[key] for s in settings)
    near = [s for s in settings if s[key] >= best - tolerance - 1e-12]
    return min(near, key=lambda s: (s[frac], -s[key]))


def _best(settings: list[dict], n: int) -> list[dict]:
    """The ``n`` settings of highest screening accuracy (ties: the earlier)."""
    return sorted(settings, key=lambda s: -s["val_accuracy"])[:n]


def _fraction_updated(r) -> float:
    """Synapses of the plastic layer an episode changed, as a fraction, mean over episodes."""
    return float((r.n_updates / r.weights[0].size).mean())


def candidates(settings: list[dict], tolerance: float, floor: float | None, top: int = None) -> list[dict]:
    """What the confirmation re-measures: the screening's ``top`` most accurate settings and the
    one ``select`` would choose from the screening alone (when it is not among them)."""
    top = CONFIRM_TOP if top is None else top
    ranked = _best(settings, top)
    pick = select(settings, tolerance, floor)
    return ranked + ([pick] if all(pick is not s for s in ranked) else [])


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
    # the confirmation's fresh val tasks, drawn before the sweep so that a split that cannot give
    # them stops the command before the work
    c_batch, c_pool = build_batch(TaskSampler(ds, "val", dep.n_out, 1, queries, seed=seed + CONFIRM_SEED_OFFSET,
                                              disjoint_parts=True), CONFIRM_FACTOR * int(tasks))
    c_feats = dep.frozen_features(pool_inputs(ds, c_pool))
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
                "fraction_synapses_updated": _fraction_updated(r),
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
        top = _best(settings, 3)
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
        # the softmax gain beyond the grid's end where one of the three best settings sits on it
        gains = space["softmax_gain_exp"]
        for s in _best(settings, 3):
            g = s["softmax_gain_exp"]
            beyond = max(g - 2, GAIN_RANGE[0]) if g == gains[0] else min(g + 2, GAIN_RANGE[1]) if g == gains[-1] else g
            spec = _spec(s["_spec"], softmax_gain_exp=beyond) if beyond != g else None
            if spec is not None and not any(x["_spec"] == spec and x["weight_exp"] == s["weight_exp"]
                                            and x["label_start"] == s["label_start"] for x in settings):
                settings.append(run(s["weight_exp"], spec, "edge", s["label_start"]))
    finally:
        bar.close()
    chance = 1.0 / dep.n_out

    def above_chance(n_tasks: int) -> float:
        """chance plus twice its standard error over n_tasks tasks' queries"""
        return chance + 2 * math.sqrt(chance * (1 - chance) / (n_tasks * dep.n_out * queries))

    best_acc = max(s["val_accuracy"] for s in settings)
    floor, c_floor = above_chance(int(tasks)), above_chance(CONFIRM_FACTOR * int(tasks))
    # confirmation: the screening's best few (and its sparsest pick) on fresh val tasks, so that
    # the choice is not the winner's curse of one noisy draw (one setting of 50 tasks reads within
    # about +-2 points; the best of 150 such readings sits above its own mean)
    cands = candidates(settings, float(tolerance), floor)
    for s in cands:
        r = run_fast(nets[s["weight_exp"], s["label_start"]], c_feats, c_batch, s["_spec"])
        s["confirm_accuracy"] = float(r.accuracy.mean())
        s["confirm_fraction"] = _fraction_updated(r)
    warning = None
    best_conf = max(s["confirm_accuracy"] for s in cands)
    if best_acc <= floor or best_conf <= c_floor:
        warning = (f"no setting above chance on meta-val: best {100 * best_acc:.1f}% on the screening's tasks, "
                   f"{100 * best_conf:.1f}% re-measured on fresh ones (chance {100 * chance:.1f}%)")
    if warning and strict:
        tau = dep.rule.x1_tau
        raise fail(bundle, f"no rule setting learns on meta-validation tasks of {data}: the best reads "
                   f"{100 * best_acc:.1f}% ({100 * best_conf:.1f}% re-measured on fresh tasks; chance {100 * chance:.1f}%) "
                   f"over {len(settings)} settings",
                   (f"the rule's trace time constant x1_tau = {tau} is not below half the {dep.time_steps}-step "
                    "sample, so each support sample's trace runs into the next one's label: deploy a rule with "
                    f"x1_tau below {max(dep.time_steps // 4, 1)} (inner.rule_spec.x1_tau of the run, then export "
                    "it again) and calibrate that; nothing was written") if space.get("label_start_note") else
                   "check that the bundle's frozen layers suit these data (emulate shows the no-learning "
                   "nearest-class-mean reference); nothing was written")
    chosen = select(cands, float(tolerance), floor=c_floor, key="confirm_accuracy")
    spec = chosen["_spec"]
    dep_c = nets[chosen["weight_exp"], chosen["label_start"]]
    final = run_fast(dep_c, c_feats, c_batch, spec)
    sgd = sgd_reference(dep_c, c_feats, c_batch, lrs=SGD_LRS, logit_scale=_run_logit_scale(dep.manifest)[0])
    record = {"data": str(Path(data).resolve()), "data_sha256": file_sha256(data), "split": "val",
              "tasks": int(tasks), "n_way": dep.n_out, "k_shot": 1, "n_query": queries,
              "seed": seed + VAL_SEED_OFFSET, "tolerance": float(tolerance),
              "selection": (f"sparsest setting within {100 * tolerance:g} points of the best meta-val accuracy, "
                            f"re-measured on {CONFIRM_FACTOR * int(tasks)} fresh meta-val tasks: the screening's "
                            f"{CONFIRM_TOP} best and its own pick"),
              "val_accuracy": chosen["confirm_accuracy"],
              "best_val_accuracy": best_conf,
              "screen_accuracy": chosen["val_accuracy"], "best_screen_accuracy": best_acc,
              "confirm_tasks": CONFIRM_FACTOR * int(tasks), "confirm_seed": seed + CONFIRM_SEED_OFFSET,
              "fraction_synapses_updated": chosen["confirm_fraction"],
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


def calibrate_cli(args) -> int:
    s = calibrate(args.bundle, args.data, tasks=args.tasks, queries=args.queries, seed=args.seed,
                  tolerance=args.tolerance, out=args.out, progress=True)
    print(format_markdown(s))
    if args.json:
        write_json(args.json, s.to_dict())
    print(f"wrote {s.outputs['json']} and the chosen rule into {Path(args.bundle) / 'manifest.json'}")
    return 0
