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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from neuromaml.io import (TEMP_STEM, NeuromamlError, check_output, fail, folder_lock, interrupts_deferred,
                          is_meta_train_run, json_default, live_writer, package_versions, read_json,
                          remove_stale_temps, write_json)
# the manifest's field checks live in deploy.manifest_checks; re-exported here, where readers look
from neuromaml.deploy.manifest_checks import (MANIFEST_DIGEST, MAX_TIME_STEPS, WEIGHT_EXP_RANGE,  # noqa: F401
                                              _check_fields, _is_int, as_dict, bundle_rule, cross_check,
                                              rebuild_fix)

FORMAT = "neuromaml-bundle"
FORMAT_VERSION = 2                      # 2: manifest_sha256 required; the rule may use the normaliser's
#                                         rate form (adapt.rule.input_norm_steps), which version-1 readers refuse
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
        if is_meta_train_run(path):
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
        # a replaced rule takes its source's name with it ('calibrated' without a rule is refused)
        drop = set(replaced) | ({"rule_source"} if "rule" in replaced else set())
        manifest = {**manifest, "adapt": {k: v for k, v in manifest["adapt"].items() if k not in drop}}
    cross_check(manifest, path / NET, man_path)
    if check_rule and "rule" not in replaced:
        bundle_rule(manifest, man_path)
    return manifest, path / NET


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
