"""CLI of the data stage: ``neuromaml data build``, ``data info`` and ``data generate``.

Handlers import numpy/h5py/torch lazily so that ``neuromaml --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from neuromaml.io import bounded_int, fail, finite_float, positive_int, seed_int


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="build or inspect an event meta-dataset (HDF5)",
        description="Build composed, binned meta-datasets from event recordings "
        "(the embedded synthetic digits, N-MNIST, ASL-DVS or a generic event folder) "
        "and inspect them.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    b = dsub.add_parser(
        "build",
        help="write a meta-dataset .h5 from a source of recordings",
        description="Compose recordings into classes, bin them into 1 ms frames and write one HDF5 "
        "file (atomically). Sources: 'synthetic' (default: simulated DVS recordings of scikit-learn's "
        "digits, Double composition, 100 classes 00..99, frames 2x16x32x100), 'nmnist:DIR' "
        "(DIR/Train|Test/<digit>/*.bin, Double N-MNIST), 'asl-dvs:DIR' (DIR/<letter>/*.mat, "
        "Double ASL-DVS, 576 classes, 2x30x80x100, split from --split-file), 'events:DIR' "
        "(DIR/meta.json + DIR/<class>/<sample>.npy, one recording per sample, seeded class split).",
    )
    b.add_argument("--source", default="synthetic",
                   help="synthetic | nmnist:DIR | asl-dvs:DIR | events:DIR (default: synthetic)")
    b.add_argument("--out", type=Path, required=True, help="meta-dataset file to write (.h5)")
    b.add_argument("--per-class", type=bounded_int(100_000), default=None,
                   help="samples per class (default 80, metadataset.DEFAULT_PER_CLASS)")
    b.add_argument("--seed", type=seed_int, default=0, help="seed of recording choice, synthesis and split")
    b.add_argument("--split-file", type=Path, default=None,
                   help="asl-dvs: the authors' doubledvssign_splits_full.json (default: DIR/that name)")
    b.add_argument("--digit-split", choices=("authors", "ordered"), default="authors",
                   help="synthetic/nmnist: the authors' Double N-MNIST class split (default) or "
                   "'ordered' 00..63/64..79/80..99 (meta-test digits 8, 9 never on the left in meta-train)")
    b.add_argument("--fractions", type=finite_float, nargs=3, default=(0.64, 0.16, 0.20),
                   metavar=("TRAIN", "VAL", "TEST"), help="events: class split fractions (default 0.64 0.16 0.2)")
    b.add_argument("--duration-us", type=positive_int, default=None,
                   help="time window from t=0 in us (default: 100000; events: meta.json's duration_us)")
    b.add_argument("--downsample", type=positive_int, default=None,
                   help="sum-pooling factor (default: 2 digits, 6 asl-dvs, 1 events)")
    b.add_argument("--json", type=Path, default=None, help="JSON summary path (default: OUT.json)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    i = dsub.add_parser(
        "info",
        help="classes per split, samples per class, tensor shape and duration of a meta-dataset",
        description="Print the summary of a meta-dataset file written by `neuromaml data build`.",
    )
    i.add_argument("file", type=Path, help="meta-dataset .h5")
    i.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    i.set_defaults(func=_info)

    g = dsub.add_parser(
        "generate",
        help="write an embedded synthetic data set as a generic event folder",
        description="Generate recordings into DIR/meta.json + DIR/<class>/<sample>.npy (the folder "
        "'events:DIR' reads), atomically. 'gestures': synthetic DVS gestures, classes defined by "
        "motion (a bright hand on a dark background tracing a closed path around the sensor's centre, "
        "seen by the simulated event sensor; classes come in pairs that trace the same path in opposite "
        "directions), sensor 32x16, 100 ms; then `neuromaml data build --source events:DIR` gives "
        "frames 2x16x32x100.",
    )
    g.add_argument("kind", choices=("gestures",), help="what to generate")
    g.add_argument("--out", type=Path, required=True, help="folder to write (must not exist or be empty)")
    g.add_argument("--classes", type=positive_int, default=100, help="number of classes (default 100; pairs of "
                   "directions, an odd count leaves the last path in one direction)")
    g.add_argument("--per-class", type=positive_int, default=40, help="recordings per class (default 40)")
    g.add_argument("--seed", type=seed_int, default=0, help="seed of classes, recordings and sensor (default 0)")
    g.add_argument("--json", type=Path, default=None, help="JSON summary path (default: OUT.json beside OUT)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)


def _build(args: argparse.Namespace) -> int:
    from neuromaml.io import check_output, package_versions, write_json
    from neuromaml.meta.metadataset import DEFAULT_PER_CLASS, build_metadataset

    from neuromaml.meta.metadataset import parse_source

    kind, root = parse_source(args.source)
    if kind != "events" and tuple(args.fractions) != (0.64, 0.16, 0.20):
        raise fail(None, f"--fractions applies to events:DIR (a seeded class split), not to {kind}, whose split "
                   "is fixed", "drop --fractions")
    if not all(0 <= f <= 1 for f in args.fractions) or sum(args.fractions) > 1 + 1e-9:
        raise fail(None, f"--fractions {list(args.fractions)}: each must be in [0, 1] and they must sum to <= 1",
                   "e.g. --fractions 0.64 0.16 0.2")
    if args.split_file is not None and kind != "asl-dvs":
        raise fail(args.split_file, f"--split-file applies to asl-dvs:DIR, not to {kind}", "drop --split-file")
    inputs = (root, args.split_file)
    check_output(args.out, kind="file", overwrite=args.overwrite, inputs=inputs, trees=(root,))
    jpath = args.json or Path(str(args.out) + ".json")
    check_output(jpath, kind="file", overwrite=True, flag="--json", inputs=inputs + (args.out,), trees=(root,))
    per_class = DEFAULT_PER_CLASS if args.per_class is None else args.per_class
    summary = build_metadataset(args.source, args.out, per_class=per_class, seed=args.seed,
                                split_file=args.split_file, fractions=tuple(args.fractions),
                                duration_us=args.duration_us, downsample=args.downsample,
                                progress=not args.quiet, digit_split=args.digit_split,
                                overwrite=args.overwrite)
    summary["versions"] = package_versions()
    write_json(jpath, summary)
    spc = summary["samples_per_class"]
    held = f"{spc['min']}" + (f"..{spc['max']}" if spc["max"] != spc["min"] else "")
    if summary["recordings_without_events"]:
        print(f"note: {summary['recordings_without_events']} of {summary['recordings']} recordings have no event "
              f"in the first {summary['duration_us']} us (blank frames); if that is most of them, check that "
              "timestamps are in microseconds and start near 0, and the duration (meta.json, --duration-us)",
              file=sys.stderr)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    if summary["classes_below_per_class"]:
        print(f"note: {summary['classes_below_per_class']} class(es) hold fewer recordings than --per-class "
              f"{summary['per_class']}; they keep all they have", file=sys.stderr)
    print(f"wrote {summary['path']}: {summary['num_classes']} classes x {held} samples, "
          f"frames {tuple(summary['shape'])}, {summary['bytes'] / 1e6:.1f} MB in {summary['seconds']:.1f} s "
          f"(summary: {jpath})")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from neuromaml.io import check_output, package_versions, write_json
    from neuromaml.meta.gestures import check_generate_args, write_gesture_folder

    check_generate_args(args.out, args.classes, args.per_class, args.seed)
    check_output(args.out, kind="dir", exists_fix="choose a new --out folder or remove this one")
    out = Path(os.path.abspath(args.out))
    jpath = check_output(args.json or out.with_name(out.name + ".json"), kind="file", overwrite=True, flag="--json",
                         inputs=(args.out,), outside=(args.out,))
    summary = write_gesture_folder(args.out, classes=args.classes, per_class=args.per_class, seed=args.seed,
                                   progress=not args.quiet)
    summary["versions"] = package_versions()
    write_json(jpath, summary)
    ev = summary["events_per_recording"]["mean"]
    print(f"wrote {summary['path']}: {summary['classes']} classes x {summary['per_class']} recordings of synthetic "
          f"gestures, sensor {summary['sensor_size'][0]}x{summary['sensor_size'][1]}, "
          f"{summary['duration_us'] / 1000:g} ms, {ev:.0f} events per recording, {summary['bytes'] / 1e6:.1f} MB "
          f"in {summary['seconds']:.1f} s (summary: {jpath}; next: neuromaml data build --source "
          f"events:{summary['path']} --out FILE.h5)")
    return 0


def summary_lines(s: dict) -> list[str]:
    """``MetaDataset.summary()`` as the lines ``neuromaml data info`` prints."""
    c, h, w, t = s["shape"]
    spc = s["samples_per_class"]
    return [f"{s['path']}",
            f"  source       {s['source']} ({s['composition']} composition)",
            f"  classes      {s['num_classes']}: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()),
            f"  per class    {spc['min']}" + (f"..{spc['max']}" if spc["max"] != spc["min"] else "")
            + f" samples ({s['num_samples']} in all)",
            f"  frames       (N, C, H, W, T) = (N, {c}, {h}, {w}, {t}), {s['dt_us']} us bins",
            f"  duration     {s['duration_us'] / 1000:g} ms"]


def _info(args: argparse.Namespace) -> int:
    from neuromaml.io import write_json
    from neuromaml.meta.metadataset import MetaDataset

    if args.json:
        from neuromaml.io import check_output

        check_output(args.json, kind="file", overwrite=True, flag="--json", inputs=(args.file,))
    ds = MetaDataset(args.file)
    s = ds.summary()
    s["classes_per_split"] = {k: [ds.classes[c] for c in v] for k, v in ds.splits.items()}
    print("\n".join(summary_lines(s)))
    if args.json:
        write_json(args.json, s)
    else:
        print(json.dumps({k: v for k, v in s.items() if k != "classes_per_split"}))
    return 0
