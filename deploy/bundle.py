"""Deployment bundles: ``network.net`` + ``network.nir`` + ``manifest.json``, written atomically.

A bundle is a directory::

    BUNDLE/network.net     netx HDF5 (what lava.lib.dl.netx.hdf5.Network loads)
    BUNDLE/network.nir     the same network as a NIR graph
    BUNDLE/manifest.json   format, input shape and order, steps, classes, adapting
                           layer + rule, quantization, source, versions, sha256 of files

It is built in a temporary directory beside ``BUNDLE`` and renamed into place
only when complete, so a failed export never leaves a half-written bundle.
``load_bundle`` checks the format and every checksum.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.io import (TEMP_STEM, NeuromamlError, check_output, fail, folder_lock, interrupts_deferred, json_default,
                          live_writer, package_versions, read_json, remove_stale_temps, write_json)

FORMAT = "neuromaml-bundle"
FORMAT_VERSION = 2                      # 2: manifest_sha256 required; the rule may use the normaliser's
#                                         rate form (adapt.rule.input_norm_steps), which version-1 readers refuse
MANIFEST_DIGEST = "manifest_sha256"   # sha256 of the manifest's canonical JSON without this field
NET, NIR, MANIFEST = "network.net", "network.nir", "manifest.json"


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_rule() -> dict[str, Any] | None:
    """onchip's default ``RuleSpec().to_dict()`` when onchip provides it."""
    try:
        from neuromaml.onchip.rule import RuleSpec
    except ImportError:
        return None
    return RuleSpec().to_dict()


CALIBRATE_LOCK = ".neuromaml-calibrate.lock"      # held in a bundle by `neuromaml calibrate`


def check_not_calibrating(out: str | os.PathLike) -> None:
    """A bundle that a calibrate is choosing the rule of must not be replaced under it: that
    calibrate would write its rule into the new network's manifest."""
    pid = live_writer(out, CALIBRATE_LOCK) if Path(out).is_dir() else None
    if pid:
        raise fail(out, f"a calibrate (pid {pid}) is choosing this bundle's rule; replacing the bundle now "
                   "would give the new network that calibration", f"wait for process {pid} to finish (or stop "
                   "it), then run this command again")


def replace_dir(new: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder ``new`` over ``out`` (kept until then; removed after). Holds
    ``out``'s calibrate lock for the swap, so no calibrate starts on the bundle being replaced."""
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        # another command wrote the same bundle while this one ran: keep it, report this one
        raise fail(out, "appeared while this command was writing it (another command wrote the same "
                   "output)", "pass --overwrite to replace it, or choose another --out")
    check_not_calibrating(out)
    guard = (folder_lock(out, "a calibrate (pid {pid}) is choosing this bundle's rule", CALIBRATE_LOCK)
             if out.is_dir() else contextlib.nullcontext())
    old = None
    with guard, interrupts_deferred():
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(out: str | os.PathLike) -> Path:
    """A private folder beside ``out`` to build a replacement of it in (``.NAME.PID.XXXX.tmp``: a
    killed writer's is removed by the next write of ``out``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    return Path(tempfile.mkdtemp(prefix=f".{out.name[:TEMP_STEM]}.{os.getpid()}.", suffix=".tmp", dir=out.parent))


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False):
    """Yield a temp dir beside ``out``; on success it replaces ``out`` (rename), else it is removed."""
    out = check_output(out, kind="dir", overwrite=overwrite)
    check_not_calibrating(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        replace_dir(tmp, out, overwrite)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from neuromaml.io import reraise_disk_full

        reraise_disk_full(exc, out)           # name the bundle, not its temporary folder
        raise


def export_bundle(model: Any, out: str | os.PathLike, *, input_shape: tuple[int, int, int], time_steps: int,
                  burn_in: int = 0, classes: list[str] | None = None, rule: Any = None,
                  adapt_layer: int | None = None, source_run: str | None = None, allow_clip: bool = False,
                  overwrite: bool = False, extra: dict[str, Any] | None = None,
                  rule_source: str | None = None, label_window: list[int] | None = None) -> dict[str, Any]:
    """Quantize + lower + write a bundle for ``model`` (slayer blocks). Returns the manifest."""
    from neuromaml.deploy.quantize import netx_layers

    _check_finite_parameters(model, source_run or out)
    layers, lowered, qreport = netx_layers(model, tuple(input_shape), allow_clip=allow_clip, source=out)
    return write_bundle(layers, out, input_shape=input_shape, time_steps=time_steps, burn_in=burn_in,
                        classes=classes, rule=rule, adapt_layer=adapt_layer, source_run=source_run,
                        overwrite=overwrite, extra=extra, lowered=lowered, quantization=qreport,
                        rule_source=rule_source, label_window=label_window)


def _check_finite_parameters(model: Any, where: Any) -> None:
    """A NaN or inf weight must never reach a bundle (both engines would convert it alike)."""
    import torch

    for name, t in model.state_dict().items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise fail(where, f"parameter '{name}' holds {bad} non-finite value(s) (NaN or inf)",
                       "meta-training diverged: resume from an earlier checkpoint with a lower outer.lr, "
                       "or train again")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys), without its own digest field."""

    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_fingerprint(model) -> str:
    """sha256 of a network's weights (every state-dict tensor, by name): which theta0* a bundle
    was exported from, so that a source run trained on afterwards is not taken for it."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def source_run_changed(manifest, model) -> bool:
    """Whether the source run's weights now differ from those the bundle was exported from
    (False where the bundle predates the fingerprint)."""
    want = as_dict(manifest).get("source_weights_sha256")
    return bool(want) and weights_fingerprint(model) != want


def write_manifest(bundle: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``BUNDLE/manifest.json`` atomically with its digest; the one way to change a manifest.
    A version-1 manifest rewritten here becomes this version's (it now carries the digest)."""
    if manifest.get("format") == FORMAT and _is_int(manifest.get("format_version")) \
            and 1 <= int(manifest["format_version"]) < FORMAT_VERSION:
        manifest["format_version"] = FORMAT_VERSION
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    return write_json(Path(bundle) / MANIFEST, manifest)


def write_bundle(layers: list, out: str | os.PathLike, *, input_shape: tuple[int, int, int], time_steps: int,
                 burn_in: int = 0, classes: list[str] | None = None, rule: Any = None,
                 adapt_layer: int | None = None, source_run: str | None = None, overwrite: bool = False,
                 extra: dict[str, Any] | None = None, lowered: list | None = None,
                 quantization: list | None = None, rule_source: str | None = None,
                 label_window: list[int] | None = None) -> dict[str, Any]:
    """Write a bundle for netx ``layers`` (``NetxLayer`` list, written as read). Returns the manifest.

    ``rule_source``: where ``rule`` comes from, kept as ``adapt.rule_source`` ('trained': the
    form the run was meta-trained through; see ``rule_status``). ``label_window``: ``[start, end)``
    steps of a support sample with its label on, kept as ``adapt.label_window`` (None: the
    readout window)."""
    from neuromaml.deploy.netxfile import describe, write_layers
    from neuromaml.deploy.nir_export import write_nir
    from neuromaml.meta.quant import DECAY_BITS, MANTISSA_BITS, W_SCALE

    out = Path(out)
    lowered = lowered or []
    qreport = quantization or []
    computing = [L for L in layers if L.type in ("dense", "conv")]
    if not computing:
        raise fail(out, "the network has no dense or conv layer", "export a network with at least one layer")
    n_out = int(computing[-1].shape[0]) if computing[-1].type == "dense" else None
    if adapt_layer is None:
        adapt_layer = computing[-1].index
    if rule is not None and hasattr(rule, "to_dict"):
        rule = rule.to_dict()
    elif rule is None:
        rule = default_rule()
    C, H, W = (int(v) for v in input_shape)
    with atomic_dir(out, overwrite) as tmp:
        write_layers(layers, tmp / NET)
        write_nir(layers, tmp / NIR)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "input": {"shape_xyf": [W, H, C], "order": "xyf", "shape_chw": [C, H, W],
                      "slayer_frames": "(N, C, H, W, T)", "lava_input": "(x, y, f, T) spikes",
                      "time_steps": int(time_steps), "dt_ms": 1},
            "output": {"neurons": n_out, "classes": list(classes) if classes is not None else None,
                       "labels": "fixed classes (see classes)" if classes is not None else
                       f"task-local 0..{n_out - 1}: each one-shot task's support set assigns its classes "
                       f"to the output neurons on chip (a meta-trained network has no fixed classes)",
                       "readout": f"spike count over steps [{int(burn_in)}, {int(time_steps)}), argmax",
                       "burn_in": int(burn_in)},
            "adapt": {"layer": int(adapt_layer), "kind": "dense", "rule": rule,
                      "engine_layer": [L.index for L in computing].index(int(adapt_layer))
                      if int(adapt_layer) in [L.index for L in computing] else None,
                      "note": "layer = index in network.net; engine_layer = index in "
                              "deploy.fixed.FixedPointNet.layers",
                      **({"rule_source": rule_source} if rule_source else {}),
                      **({"label_window": [int(v) for v in label_window]} if label_window else {})},
            "quantization": {"weight_mantissa_bits": MANTISSA_BITS, "w_scale": W_SCALE,
                             "stored_weight_range": [-256, 254], "decay_bits": DECAY_BITS,
                             "threshold": "vThMant = int(theta * 64), spike if v > vThMant << 6",
                             "layers": qreport},
            "lowered": lowered,
            "layers": describe(layers),
            "source_run": source_run,
            "package_versions": package_versions(),
            **(extra or {}),
        }
        manifest["files"] = {name: sha256(tmp / name) for name in (NET, NIR)}
        write_manifest(tmp, manifest)
    return manifest


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


CALIBRATED_FIELDS = ("rule", "weight_exp", "label_window", "calibration")   # what calibrate rewrites in adapt


def load_bundle(path: str | os.PathLike, check_rule: bool = True,
                replaced: tuple = ()) -> tuple[dict[str, Any], Path]:
    """Check a bundle (format, files, sha256, fields; its rule with ``bundle_rule`` unless
    ``check_rule`` is False: for a caller that replaces the rule) -> (manifest, path of network.net).
    ``replaced``: ``adapt`` fields the caller rewrites (calibrate: ``CALIBRATED_FIELDS``); they are
    left out of the checks and of the manifest returned, so a damaged one does not stop the one
    command that replaces it (the digest still covers them)."""
    path = Path(path)
    if not path.is_dir():
        raise fail(path, "not a bundle directory", "give the --out directory of neuromaml export")
    man_path = path / MANIFEST
    if not man_path.exists():
        if (path / "ckpt.pt").exists() or (path / "best.pt").exists():
            raise fail(path, "is a meta-train run, not a deployment bundle",
                       f"export it first: neuromaml export {path} --out BUNDLE")
        if (path / "demo.json").exists() and (path / "bundle").is_dir():
            raise fail(path, "is a demo folder, not a bundle", f"give its bundle: {path / 'bundle'}")
        raise fail(man_path, "missing", "re-export the bundle with neuromaml export")
    manifest = read_json(man_path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise fail(man_path, f"field 'format' is {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                   f"not {FORMAT!r}", rebuild_fix(manifest, path))
    if not _is_int(manifest.get("format_version", -1)):
        raise fail(man_path, f"field 'format_version' is {manifest.get('format_version')!r}, not a whole number",
                   rebuild_fix(manifest, path))
    if int(manifest.get("format_version", -1)) > FORMAT_VERSION:
        raise fail(man_path, f"field 'format_version' is {manifest.get('format_version')}, this neuromaml "
                   f"reads <= {FORMAT_VERSION}", "upgrade neuromaml")
    if int(manifest.get("format_version", -1)) < 1:
        raise fail(man_path, f"field 'format_version' is {manifest.get('format_version')}, not a bundle version "
                   f"(1..{FORMAT_VERSION})", rebuild_fix(manifest, path))
    files = manifest.get("files")
    if not isinstance(files, dict) or NET not in files:
        raise fail(man_path, "field 'files' lacks network.net", rebuild_fix(manifest, path))
    for name, digest in files.items():
        f = path / str(name)
        if not f.exists():
            raise fail(f, "listed in manifest.json 'files' but missing", rebuild_fix(manifest, path))
        if not f.is_file():
            raise fail(f, "is not a regular file (a folder, device or pipe)", rebuild_fix(manifest, path))
        got = sha256(f)
        if got != digest:
            raise fail(f, f"sha256 {got[:12]}... does not match manifest.json 'files.{name}' {str(digest)[:12]}... "
                       "(the file changed after the bundle was written)", rebuild_fix(manifest, path))
    if MANIFEST_DIGEST not in manifest and int(manifest["format_version"]) >= 2:
        raise fail(man_path, f"field '{MANIFEST_DIGEST}' is missing: a format-version {manifest['format_version']} "
                   "manifest carries the digest of its contents, so manifest.json was edited after it was written",
                   "undo the edit, or re-export (neuromaml export) or re-import (neuromaml import) the bundle")
    if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
        raise fail(man_path, f"field '{MANIFEST_DIGEST}' does not match its contents: manifest.json was "
                   "edited after it was written", "undo the edit, or re-export (neuromaml export) or re-import "
                   "(neuromaml import) the bundle; neuromaml calibrate rewrites it properly")
    if replaced and isinstance(manifest.get("adapt"), dict):
        manifest = {**manifest, "adapt": {k: v for k, v in manifest["adapt"].items() if k not in replaced}}
    cross_check(manifest, path / NET, man_path)
    if check_rule and "rule" not in replaced:
        bundle_rule(manifest, man_path)
    return manifest, path / NET


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
        kinds = {"weight_exp": (_is_int, "a whole number"), "settings_tried": (_is_int, "a whole number"),
                 "tasks": (lambda v: _is_int(v) and v >= 1, "a positive whole number"),
                 "fraction_synapses_updated": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and 0 <= v <= 1, "a fraction in [0, 1]"),
                 "selection": (lambda v: isinstance(v, str), "text")}
        for key, (ok, what) in kinds.items():
            if not ok(cal.get(key)):
                raise fail(man_path, f"field 'adapt.calibration.{key}' is {cal.get(key)!r}, not {what}",
                           "run neuromaml calibrate again")
        if cal.get("warning") is not None and not isinstance(cal["warning"], str):
            raise fail(man_path, f"field 'adapt.calibration.warning' is {cal['warning']!r}, not text",
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


def as_dict(manifest) -> dict:
    """A manifest as its JSON dict (a ``deploy.manifest.Manifest`` or already a dict)."""
    return manifest.to_dict() if hasattr(manifest, "to_dict") else manifest


def rule_status(manifest) -> str:
    """'calibrated', 'trained' (the form a run was meta-trained through) or 'uncalibrated'."""
    manifest = as_dict(manifest)
    adapt = manifest.get("adapt") or {}
    if adapt.get("calibration") or manifest.get("calibration"):
        return "calibrated"
    if adapt.get("rule_source") == "trained":
        return "trained"
    return "uncalibrated"


def warn_if_uncalibrated(bundle, manifest: dict | None = None, note: str = "") -> None:
    """Tell the user (stderr) that a bundle's rule is uncalibrated; ``manifest`` defaults to the
    bundle's, read without re-checking its files (the command that follows loads it)."""
    import sys

    if manifest is None:
        try:
            manifest = read_json(Path(bundle) / MANIFEST)
        except NeuromamlError:
            return              # the command's load_bundle reports what is wrong with the bundle
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return                  # not a manifest at all: load_bundle says so
    if isinstance(manifest, dict) and rule_status(manifest) == "uncalibrated":
        print(f"warning: {bundle}: the on-chip rule in manifest.json is uncalibrated (the default RuleSpec, "
              f"which is not fitted to this network and may not learn); run `neuromaml calibrate {bundle} "
              f"--data FILE.h5` first{note}", file=sys.stderr)
