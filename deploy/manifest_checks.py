"""What ``load_bundle`` checks in a manifest beyond its files' checksums: every field's type and
range (``_check_fields``), the manifest against ``network.net`` (``cross_check``: shapes, output
count, weight finiteness), the on-chip rule (``bundle_rule``), and the advice for writing a
bundle again (``rebuild_fix``: re-export a run, or re-import a file)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.io import NeuromamlError, fail, json_default

MANIFEST_DIGEST = "manifest_sha256"   # sha256 of the manifest's canonical JSON without this field


def as_dict(manifest) -> dict:
    """A manifest as its JSON dict (a ``deploy.manifest.Manifest`` or already a dict)."""
    return manifest.to_dict() if hasattr(manifest, "to_dict") else manifest

def rebuild_fix(manifest: Any, bundle: Any) -> str:
    """How to write a bundle again: an imported one has no run to export, its manifest's
    ``imported_from`` names the file to import again (with the shape, steps and classes it has)."""
    m = manifest if isinstance(manifest, dict) else {}
    src = m.get("imported_from")
    if not src:
        run = m.get("source_run")
        run = run if isinstance(run, str) and run else "RUN"
        return (f"re-export the bundle (neuromaml export {run} --out {bundle if bundle is not None else 'BUNDLE'} "
                "--overwrite)")
    inp, out = (m.get("input") if isinstance(m.get("input"), dict) else {},
                m.get("output") if isinstance(m.get("output"), dict) else {})
    shape = ",".join(str(v) for v in inp.get("shape_chw") or []) or "C,H,W"
    return (f"re-run the import: neuromaml import {src} --input-shape {shape} --time-steps "
            f"{inp.get('time_steps') or 'T'} --classes {out.get('neurons') or 'N'} --out {bundle} --overwrite "
            "(then calibrate it again)")


def bundle_rule(manifest, man_path: Path):
    """The bundle's on-chip rule (``adapt.rule``) as an ``onchip.rule.RuleSpec``: every field
    representable on the chip. ``load_bundle`` checks it for every reader (emulate, verify, cost,
    inspect, the demo), so none accepts a rule another refuses."""
    from neuromaml.onchip.rule import RuleError, RuleSpec

    adapt = as_dict(manifest).get("adapt") or {}
    try:
        spec = RuleSpec.from_dict(adapt.get("rule") or {})
    except RuleError as exc:
        raise fail(man_path, f"field 'adapt.rule': {str(exc).replace('RuleSpec.', 'adapt.rule.')}",
                   "run neuromaml calibrate on the bundle (it writes a valid rule), or "
                   + rebuild_fix(manifest, man_path.parent)) from None
    version = as_dict(manifest).get("format_version")
    # The rate form arrived (f8fac78) while bundles were still written as version 1, with their
    # digest: such a manifest is genuine. A version-1 manifest without the digest was edited (the
    # route around version 2's required digest), so it may not carry the rate form.
    if spec.input_norm_steps and _is_int(version) and version < 2 and MANIFEST_DIGEST not in as_dict(manifest):
        raise fail(man_path, "field 'adapt.rule.input_norm_steps' (the normaliser's rate form) in a format-version "
                   f"{version} manifest without '{MANIFEST_DIGEST}': the writers of the rate form sign their "
                   "manifests, so this one was edited",
                   "run neuromaml calibrate on the bundle, or " + rebuild_fix(manifest, man_path.parent))
    return spec


MAX_TIME_STEPS = 100_000       # 100 s of 1 ms steps: a manifest asking for more is damaged


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_fields(manifest: dict[str, Any], man_path: Path) -> None:
    """Types and ranges of the fields the loaders read (a re-signed manifest can still lie)."""
    inp, out, adapt = (manifest.get(k) for k in ("input", "output", "adapt"))
    for name, sec in (("input", inp), ("output", out), ("adapt", adapt)):
        if not isinstance(sec, dict):
            raise fail(man_path, f"field '{name}' is {type(sec).__name__}, not a mapping",
                       rebuild_fix(manifest, man_path.parent))
    T = inp.get("time_steps")
    if not (_is_int(T) and 1 <= T <= MAX_TIME_STEPS):
        raise fail(man_path, f"field 'input.time_steps' is {T!r}, not a whole number in [1, {MAX_TIME_STEPS}]",
                   rebuild_fix(manifest, man_path.parent))
    burn = out.get("burn_in", 0)
    if not (_is_int(burn) and 0 <= burn < T):
        raise fail(man_path, f"field 'output.burn_in' is {burn!r}, not a whole number in [0, time_steps={T})",
                   "re-export or re-import the bundle with a valid --burn-in")
    if out.get("neurons") is not None and not (_is_int(out["neurons"]) and out["neurons"] > 0):
        raise fail(man_path, f"field 'output.neurons' is {out['neurons']!r}, not a positive whole number",
                   rebuild_fix(manifest, man_path.parent))
    for key in ("layer", "engine_layer"):
        if adapt.get(key) is not None and not _is_int(adapt[key]):
            raise fail(man_path, f"field 'adapt.{key}' is {adapt[key]!r}, not a layer index",
                       rebuild_fix(manifest, man_path.parent))
    win = adapt.get("label_window")
    if win is not None and not (isinstance(win, list) and len(win) == 2 and all(_is_int(v) for v in win)
                    and 0 <= win[0] < win[1] <= T):
        raise fail(man_path, f"field 'adapt.label_window' is {win!r}, not [start, end) whole steps inside "
                   f"[0, {T}]", _adapt_fix(manifest, man_path.parent))
    if adapt.get("rule_source") in ("calibrated", "trained") and not adapt.get("rule"):
        raise fail(man_path, f"field 'adapt.rule' is {adapt.get('rule')!r} but 'adapt.rule_source' says "
                   f"{adapt['rule_source']}: the default rule would run under that name",
                   "run neuromaml calibrate again" if adapt["rule_source"] == "calibrated" else "export the run again")
    cal = adapt.get("calibration")
    if cal is not None:
        acc = cal.get("val_accuracy") if isinstance(cal, dict) else None
        if not isinstance(cal, dict) or cal.get("split") != "val" or not (
                isinstance(acc, (int, float)) and 0 <= acc <= 1):
            raise fail(man_path, "field 'adapt.calibration' is not a calibration record on the 'val' split with an "
                       "accuracy in [0, 1]", "run neuromaml calibrate again")
        frac = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1  # noqa: E731
        positive = lambda v: _is_int(v) and v >= 1                                            # noqa: E731
        text = lambda v: isinstance(v, str)                                                   # noqa: E731
        # field: (check, what it must be, required); the warning and the confirmation's fields
        # (calibrate since session 11) may be absent
        kinds = {"weight_exp": (_is_int, "a whole number", True), "settings_tried": (_is_int, "a whole number", True),
                 "tasks": (positive, "a positive whole number", True),
                 "fraction_synapses_updated": (frac, "a fraction in [0, 1]", True), "selection": (text, "text", True),
                 "warning": (text, "text", False), "confirm_tasks": (positive, "a positive whole number", False),
                 "confirm_seed": (_is_int, "a whole number", False),
                 "screen_accuracy": (frac, "an accuracy in [0, 1]", False),
                 "best_screen_accuracy": (frac, "an accuracy in [0, 1]", False),
                 "best_val_accuracy": (frac, "an accuracy in [0, 1]", False)}
        for key, (ok, what, required) in kinds.items():
            if (required or cal.get(key) is not None) and not ok(cal.get(key)):
                raise fail(man_path, f"field 'adapt.calibration.{key}' is {cal.get(key)!r}, not {what}",
                           "run neuromaml calibrate again")
        cwin = cal.get("label_window")
        if cwin is not None and cwin != win:
            raise fail(man_path, f"field 'adapt.calibration.label_window' is {cwin!r} but 'adapt.label_window' is "
                       f"{win!r}: the rule was calibrated with another label window", "run neuromaml calibrate again")
        ref = cal.get("sgd_reference")
        lr = ref.get("lr") if isinstance(ref, dict) else None
        if ref is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool)
                                    and math.isfinite(lr) and lr > 0):
            raise fail(man_path, f"field 'adapt.calibration.sgd_reference' is {ref!r}, not a record with a "
                       "positive finite learning rate 'lr'", "run neuromaml calibrate again")
    wexp = adapt.get("weight_exp")
    if wexp is not None and not (_is_int(wexp) and WEIGHT_EXP_RANGE[0] <= wexp <= WEIGHT_EXP_RANGE[1]):
        raise fail(man_path, f"field 'adapt.weight_exp' is {wexp!r}, not a whole number in "
                   f"[{WEIGHT_EXP_RANGE[0]}, {WEIGHT_EXP_RANGE[1]}]", _adapt_fix(manifest, man_path.parent))
    classes = out.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
                                    and (not _is_int(out.get("neurons")) or len(classes) == out["neurons"])):
        raise fail(man_path, f"field 'output.classes' is {str(classes)[:80]}, not a list of "
                   f"{out.get('neurons')} class names (one per output neuron)", rebuild_fix(manifest, man_path.parent))


WEIGHT_EXP_RANGE = (-8, 0)     # the plastic Dense's weight exponent (see emulator.deployed)


def _adapt_fix(manifest: Any, bundle: Path) -> str:
    """How to replace a damaged field that calibrate writes (adapt.label_window, weight_exp): a
    hand edit breaks the manifest's digest, calibrate rewrites the field and signs the manifest."""
    return (f"run neuromaml calibrate {bundle} --data FILE.h5 (it rewrites the field), or "
            + rebuild_fix(manifest, bundle))


def cross_check(manifest: dict[str, Any], net: Path, man_path: Path) -> None:
    """The manifest must describe ``network.net``: layers, input shape, output count, finite weights."""
    from neuromaml.deploy.netxfile import describe, read_layers

    try:
        layers = read_layers(net)
    except NeuromamlError:
        raise
    except Exception as exc:   # h5py: truncated or foreign file
        raise fail(net, f"cannot be read as a netx HDF5 file ({type(exc).__name__}: {exc})",
                   rebuild_fix(manifest, man_path.parent)) from None
    for L in layers:
        for key in ("weight", "bias"):
            arr = L.get(key)
            if arr is not None and np.asarray(arr).dtype.kind == "f" and not np.isfinite(np.asarray(arr)).all():
                raise fail(net, f"layer {L.index} ({L.type}) '{key}' holds NaN or inf",
                           "re-export the bundle from a run with finite weights")
    stated = manifest.get("layers")
    actual = json.loads(json.dumps(describe(layers), default=json_default))
    if stated is not None and stated != actual:
        i = next((k for k, (a, b) in enumerate(zip(stated, actual)) if a != b), min(len(stated), len(actual)))
        raise fail(man_path, f"field 'layers' disagrees with network.net at layer {i} "
                   f"(manifest: {stated[i] if i < len(stated) else 'none'}; network.net: "
                   f"{actual[i] if i < len(actual) else 'none'})", "re-export or re-import the bundle")
    _check_fields(manifest, man_path)
    inp = manifest.get("input") or {}
    chw, xyf = inp.get("shape_chw"), inp.get("shape_xyf")
    if not (isinstance(chw, list) and len(chw) == 3 and all(_is_int(v) and v > 0 for v in chw)):
        raise fail(man_path, f"field 'input.shape_chw' is {chw!r}", "re-export or re-import the bundle")
    if xyf is not None and list(xyf) != list(chw)[::-1]:
        raise fail(man_path, f"fields 'input.shape_xyf' {xyf} and 'input.shape_chw' {chw} disagree",
                   "re-export or re-import the bundle")
    computing = [L for L in layers if L.type in ("dense", "conv")]
    if computing and computing[0].weight is not None:
        w = np.asarray(computing[0].weight)
        C, H, W = chw
        want = C if computing[0].type == "conv" else C * H * W
        got = int(w.shape[1]) if w.ndim >= 2 else None
        if got is not None and computing[0].type == "conv" and int(np.asarray(computing[0].get("groups", 1))) > 1:
            got *= int(np.asarray(computing[0].get("groups", 1)))
        if got is not None and got != want:
            raise fail(man_path, f"field 'input.shape_chw' {chw} gives {want} inputs, but the first "
                       f"{computing[0].type} layer of network.net takes {got}", "re-export or re-import the bundle")
    out = manifest.get("output") or {}
    if computing and computing[-1].type == "dense" and _is_int(out.get("neurons")) \
            and int(out["neurons"]) != int(computing[-1].shape[0]):
        raise fail(man_path, f"field 'output.neurons' is {out['neurons']}, network.net's last layer has "
                   f"{int(computing[-1].shape[0])}", "re-export or re-import the bundle")
