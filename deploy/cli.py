"""``neuromaml export | inspect | verify``: the deploy stage's command line.

* ``export RUN_DIR --out BUNDLE`` (or ``export --model NAME --out BUNDLE`` for a
  freshly initialised network): quantize, lower, write the bundle atomically.
* ``inspect FILE.net|BUNDLE``: the layers as netx builds them; flags what cannot deploy
  (exit 1 if anything).
* ``verify BUNDLE|FILE.net [--samples N] [--all-layers] [--nir] [--json PATH]``: Lava vs the
  fixed engine bit for bit (exit 1 on mismatch, with the first differing layer,
  neuron and step); ``--nir`` adds ``network.nir`` run in snntorch (``deploy.nir_check``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from neuromaml.io import (BUNDLE_FILES, RUN_FILES, bounded_int, check_output, fail, input_files, positive_int, probability,
                          seed_int, write_json)

from neuromaml.deploy.runs import _burn_in, _model_config_dict, export_run, reference_model


def register(sub) -> None:
    e = sub.add_parser("export", help="quantize a meta-trained network and write a deployment bundle",
                       description="Quantize to Loihi fixed point, lower pool layers, write network.net, "
                       "network.nir and manifest.json into BUNDLE (atomically).")
    e.add_argument("run_dir", nargs="?", type=Path, help="meta-train output directory (config + checkpoint)")
    e.add_argument("--model", default=None, help="export a freshly initialised model: small|paper_cnn|lava_mlp")
    e.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    e.add_argument("--input-shape", type=positive_int, nargs=3, default=None, metavar=("C", "H", "W"))
    e.add_argument("--n-way", type=bounded_int(1000), default=None, help="outputs of a --model network (>= 2)")
    e.add_argument("--steps", type=bounded_int(100_000), default=None,
                   help="time steps per sample (default: model config; at least burn-in + 1)")
    e.add_argument("--seed", type=seed_int, default=0, help="init seed for --model")
    e.add_argument("--allow-clip", action="store_true", help="clip weights that overflow 8 bits instead of failing")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    e.add_argument("--calibrate-on", type=Path, default=None, metavar="FILE.h5",
                   help="then calibrate the on-chip rule on this meta-dataset's validation split "
                        "(as neuromaml calibrate BUNDLE --data FILE.h5)")
    e.add_argument("--json", type=Path, default=None, help="JSON summary (default: BUNDLE/manifest.json only)")
    e.set_defaults(func=_export)

    i = sub.add_parser("inspect", help="print the layers of a netx file as netx builds them")
    i.add_argument("file", type=Path, help="FILE.net or BUNDLE directory")
    i.add_argument("--json", type=Path, default=None)
    i.set_defaults(func=_inspect)

    v = sub.add_parser("verify", help="run a bundle on Lava and the fixed engine; compare spikes bit for bit")
    v.add_argument("target", type=Path, help="BUNDLE directory or FILE.net")
    v.add_argument("--samples", type=bounded_int(100_000), default=4)
    v.add_argument("--steps", type=bounded_int(100_000), default=None,
                   help="steps per sample (default: manifest, else 50)")
    v.add_argument("--rate", type=probability, default=0.2, help="input spike probability per step")
    v.add_argument("--seed", type=seed_int, default=0)
    v.add_argument("--all-layers", action="store_true", help="compare every layer, not only the output")
    v.add_argument("--no-lava", action="store_true", help="skip Lava (fixed engine only; for quick checks)")
    v.add_argument("--no-slayer", action="store_true", help="skip the slayer comparison (needs the source run)")
    v.add_argument("--input-bias", type=Path, default=None, metavar="BIAS.npy",
                   help="for a network whose first layer is a bias-driven input neuron layer (lava-dl's "
                        "tinynet): that layer's bias (x, y, f); it then runs one sample of --steps steps")
    v.add_argument("--nir", action="store_true",
                   help="also run network.nir in another framework (snntorch; pip install -e '.[nir]') on the "
                        "same spikes and measure its agreement with the fixed engine (= Lava)")
    v.add_argument("--json", type=Path, default=None,
                   help="JSON summary (default: BUNDLE/verify.json, or FILE.net.verify.json beside the file)")
    v.set_defaults(func=_verify)


def _export(args: argparse.Namespace) -> int:
    if (args.run_dir is None) == (args.model is None):
        raise fail(None, "give exactly one of RUN_DIR or --model NAME", "e.g. neuromaml export runs/x --out bundle")
    inputs = (*input_files(args.run_dir, RUN_FILES), args.calibrate_on)
    check_output(args.out, kind="dir", overwrite=args.overwrite, inputs=inputs)
    if args.json is not None:
        check_output(args.json, kind="file", overwrite=True, flag="--json", inputs=inputs, outside=(args.out,))
    if args.run_dir is not None and args.n_way is not None:
        raise fail(None, "--n-way applies to --model (a fresh network); a run's outputs are the ones it was trained "
                   "with", "drop --n-way")
    if args.n_way is not None and args.n_way < 2:
        raise fail(None, f"--n-way {args.n_way}: a one-shot task needs at least 2 outputs", "pass --n-way 2 or more")
    if args.calibrate_on is not None and not Path(args.calibrate_on).is_file():
        what = ("is a folder, not a meta-dataset file" if Path(args.calibrate_on).is_dir() else
                "is not a regular file (a device or pipe)" if Path(args.calibrate_on).exists() else
                "meta-dataset not found")
        raise fail(args.calibrate_on, f"{what} (--calibrate-on)", "give a .h5 from neuromaml data build")
    if args.calibrate_on is None:
        _after_export(args, _build(args, args.out, args.overwrite), args.out)
        return 0
    return _export_calibrated(args)


def _export_calibrated(args: argparse.Namespace) -> int:
    """``export --calibrate-on``: the bundle is exported and calibrated in a staging folder beside
    --out and renamed over it only once calibrated; a bundle already there is kept until then
    (a failed or interrupted calibration leaves it as it was)."""
    import shutil

    from neuromaml.deploy.bundle import check_not_calibrating, replace_dir, staging_dir

    out = Path(args.out)
    check_not_calibrating(out)
    existed = out.exists()
    stage = staging_dir(out)
    try:
        built = stage / out.name
        _after_export(args, _build(args, built, False), built)
        replace_dir(built, out, args.overwrite)
    except BaseException as exc:
        what = "was interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        print(f"note: {out} was not " + ("changed" if existed else "written") + f": the export {what} before "
              "its bundle was calibrated" + (" (the bundle there is the one from before)" if existed else ""),
              file=sys.stderr)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return 0


def _build(args: argparse.Namespace, where: Path, overwrite: bool) -> dict:
    """Write the bundle of RUN_DIR or of a fresh --model network into ``where``; its manifest."""
    from neuromaml.deploy.bundle import export_bundle
    from neuromaml.meta.architectures import ModelConfig
    from neuromaml.meta.models import build_model

    if args.run_dir is not None:
        return export_run(args.run_dir, where, steps=args.steps, allow_clip=args.allow_clip,
                          overwrite=overwrite, input_shape=args.input_shape)
    from neuromaml.meta.architectures import model_defaults

    kw: dict[str, Any] = {**model_defaults(args.model), "name": args.model}
    if args.input_shape:
        from neuromaml.meta.config import MAX_INPUTS

        if math.prod(args.input_shape) > MAX_INPUTS:
            raise fail(None, f"--input-shape {tuple(args.input_shape)}: {math.prod(args.input_shape):,} input "
                       f"neurons, more than {MAX_INPUTS:,}", "give the frames' real C H W (pooled)")
        kw["input_shape"] = tuple(args.input_shape)
    if args.n_way:
        kw["n_way"] = args.n_way
    # a fresh network for deployment checks: random final layer (a zero head, the meta-training
    # default, would leave the output silent and the check vacuous)
    mcfg = ModelConfig(**kw, zero_head=False)
    try:
        model = build_model(mcfg, seed=args.seed)
    except ValueError as exc:
        raise fail(None, f"--model: {exc}", "use small, paper_cnn or lava_mlp") from None
    steps = args.steps or mcfg.time_steps
    return export_bundle(model, where, input_shape=tuple(mcfg.input_shape), time_steps=steps,
                         burn_in=_burn_in(mcfg, steps, None), classes=None, source_run=None,
                         allow_clip=args.allow_clip, overwrite=overwrite,
                         extra={"model_config": _model_config_dict(mcfg), "fresh_init_seed": args.seed})


def _after_export(args: argparse.Namespace, manifest: dict, built: Path) -> None:
    """Report the bundle written in ``built`` (--out, or its staging folder with --calibrate-on),
    calibrate it there with --calibrate-on, write --json."""
    from neuromaml.deploy.manifest import Manifest

    man = Manifest.from_dict(manifest)
    print(f"{'wrote' if Path(built) == Path(args.out) else 'exported'} {args.out}: layers "
          f"{[r['type'] for r in man.layers]}, lowered {[r['to'] for r in man.lowered if r['from'] == 'pool']}")
    dead = [r["index"] for r in man.layers if r["type"] in ("dense", "conv") and r["index"] != man.adapt.layer
            and r.get("weight_range") == [0.0, 0.0]]
    if dead:
        print(f"warning: {args.out}: layer(s) {dead} hold only zero weights after quantization: the network "
              "cannot spike past them (check the run's weights and weight_scale)", file=sys.stderr)
    if args.calibrate_on is not None:
        # the command line composes the stages: export, then the emulator's calibration (of the
        # bundle in its staging folder: _export_calibrated renames it over --out once calibrated)
        from neuromaml.emulator.calibrate import calibrate
        from neuromaml.emulator.calibrate_report import format_markdown

        if man.adapt.rule_source == "trained":
            print("the run was meta-trained through the rule: its form is deployed as trained "
                  "(--calibrate-on ignored)")
        else:
            cal = calibrate(built, args.calibrate_on, progress=True, publish_as=Path(args.out))
            print(format_markdown(cal))
            manifest = json.loads((Path(built) / "manifest.json").read_text())
    elif man.adapt.rule_source == "trained":
        print("note: the bundle's on-chip rule is the form the run was meta-trained through (deployed as "
              "trained; `neuromaml calibrate` would replace it)", file=sys.stderr)
    else:
        print(f"note: the bundle's on-chip rule is the uncalibrated default; run `neuromaml calibrate "
              f"{args.out} --data FILE.h5` (or export with --calibrate-on FILE.h5)", file=sys.stderr)
    if args.json:
        write_json(args.json, {"bundle": str(args.out), "manifest": manifest})


def _net_path(target: Path) -> tuple[Path, dict | None]:
    from neuromaml.deploy.bundle import load_bundle

    if target.is_dir():
        man, net = load_bundle(target)
        return net, man
    return target, None


def _inspect(args: argparse.Namespace) -> int:
    from neuromaml.deploy.netxfile import describe, format_table, read_layers

    if args.json is not None:
        check_output(args.json, kind="file", overwrite=True, flag="--json", inputs=input_files(args.file, BUNDLE_FILES))
    net, _ = _net_path(args.file)
    rows = describe(read_layers(net))
    print(format_table(rows))
    bad = [r for r in rows if not r["deployable"]]
    print(f"{len(rows)} layers; " + ("all deployable" if not bad else f"{len(bad)} not deployable as is"))
    if args.json:
        write_json(args.json, {"file": str(net), "layers": rows, "deployable": not bad})
    return 1 if bad else 0


def _verify(args: argparse.Namespace) -> int:
    from neuromaml.deploy.verify import format_report, verify_netx

    if args.nir:
        from neuromaml.deploy.nir_check import require_consumer
        require_consumer()
    if args.json is not None:
        check_output(args.json, kind="file", overwrite=True, flag="--json",
                     inputs=input_files(args.target, BUNDLE_FILES) + (args.input_bias,))
    net, man = _net_path(args.target)
    if man is not None:
        from neuromaml.deploy.bundle import warn_if_uncalibrated

        warn_if_uncalibrated(args.target, man, " (verify checks the network, not the rule)")
    model = None if args.no_slayer else reference_model(man)
    steps = args.steps or (man["input"]["time_steps"] if man else 50)
    if args.samples < 1 or steps < 1:
        raise fail(None, "--samples and --steps must be >= 1", "e.g. --samples 4 --steps 50")
    bias = None
    if args.input_bias is not None:
        import numpy as np

        try:
            bias = np.load(args.input_bias)
        except (OSError, ValueError) as exc:
            raise fail(args.input_bias, f"cannot read it as a .npy array ({exc.__class__.__name__})",
                       "save the input layer's bias with numpy.save") from None
        if bias.dtype.kind not in "iuf" or not np.isfinite(bias).all():
            raise fail(args.input_bias, "holds non-numbers or non-finite values", "save finite numbers")
        # Lava's bias_mant Var is int16: both engines cast, then wrap or truncate alike, so a bias it
        # cannot hold compares 'bit-exact' on values nobody gave
        bad = bias[(bias != np.round(bias)) | (bias < -(1 << 15)) | (bias > (1 << 15) - 1)] if bias.size else bias
        if bad.size:
            raise fail(args.input_bias, f"holds {bad.ravel()[0]!r}: a bias mantissa is a whole number in "
                       f"[{-(1 << 15)}, {(1 << 15) - 1}] (Lava's int16 bias_mant; it would be truncated or wrapped)",
                       "save whole numbers in that range (the input layer's bias as netx stores it)")
    rep = verify_netx(net, samples=args.samples, steps=steps, all_layers=args.all_layers, seed=args.seed,
                      rate=args.rate, lava=not args.no_lava, model=model, input_bias=bias)
    if model is None:
        rep["slayer_vs_fixed"] = None
        rep["slayer_note"] = ("no source network (FILE.net, or the bundle's source run is gone): Lava vs the "
                              "fixed-point engine (deploy.fixed, itself pinned to slayer by the tests) only")
    if args.nir:
        from neuromaml.deploy.nir_check import format_nir_report, verify_nir

        rep["nir"] = verify_nir(net, args.target / "network.nir" if man is not None else None, samples=args.samples,
                                steps=steps, rate=args.rate, seed=args.seed, model=model,
                                burn_in=man["output"].get("burn_in", 0) if man else 0)
        rep["ok"] = bool(rep["nir"]["ok"] and (rep["ok"] or not rep["compared"]))
        rep["compared"] = [*rep["compared"], "nir"]
    if man is not None:        # the state of the bundle verified (a later export or calibrate changes it)
        from neuromaml.deploy.bundle import MANIFEST_DIGEST

        rep["bundle_manifest_sha256"] = man.get(MANIFEST_DIGEST)
    print(format_report(rep))
    if args.nir:
        print(format_nir_report(rep["nir"]))
    out = args.json or (args.target / "verify.json" if args.target.is_dir()
                        else args.target.with_name(args.target.name + ".verify.json"))
    try:
        write_json(out, rep)
        print(f"wrote {out}")
    except OSError as exc:        # e.g. a read-only folder of third-party files: keep the result
        print(f"warning: cannot write {out} ({exc.strerror}); pass --json PATH", file=sys.stderr)
        print(json.dumps(rep, default=str))
    return 0 if rep["ok"] else 1          # nothing compared is not a pass (the report says NOT VERIFIED)
