"""CLI: ``neuromaml meta-train`` and ``neuromaml evaluate`` (torch imported lazily)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neuromaml.io import bounded_int, is_meta_train_run, nonneg_int, positive_int, seed_int

# what meta-train writes into --out before its first checkpoint
STARTED_FILES = {"config.yaml", "run.json", "history.jsonl", "pretrain.json", "summary.json",
                 ".neuromaml-run.lock"}


def _meta_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import finish_distributed, maybe_init_distributed, meta_train, resolve_device

    from neuromaml.io import RUN_FILES, check_output, input_files

    cfg_file = args.config if args.config and Path(args.config).exists() else None
    out = Path(args.out)
    # a run that stopped before its first checkpoint (Ctrl-C, out of memory) left only its own
    # record files: starting it again replaces them; --resume has nothing to continue
    stillborn = out.is_dir() and not is_meta_train_run(out) and \
        any(out.iterdir()) and all(p.name in STARTED_FILES for p in out.iterdir())
    if stillborn and args.resume:
        from neuromaml.io import fail

        raise fail(out, "holds a run that stopped before its first checkpoint: there is nothing to resume",
                   "run the same command without --resume (it starts the run again in this folder)")
    check_output(args.out, kind="dir", resume=args.resume or stillborn,
                 inputs=(args.data, cfg_file, *input_files(args.init, RUN_FILES)),
                 exists_fix="add --resume to continue the run in it, or choose a new --out")
    if args.resume and args.init:
        from neuromaml.io import fail

        raise fail(None, "--init starts a new run from another run's weights; --resume continues this one",
                   "drop one of them")
    if not args.resume and not Path(args.data).is_file():
        from neuromaml.io import fail

        raise fail(args.data, "meta-dataset not found (--data)", "build one with `neuromaml data build --out FILE.h5`")
    maybe_init_distributed(resolve_device(args.device))
    # on --resume the run's own config rules; a --config given as well must agree with it
    cfg = load_config(args.config) if args.config else (None if args.resume else load_config("small"))
    summary = meta_train(args.data, cfg, args.out, resume=args.resume, steps=args.steps, seed=args.seed,
                         progress=not args.no_progress, init=args.init, device=args.device)
    finish_distributed()    # on success only: after an error the ranks are out of step, torchrun ends them
    print(json.dumps({k: summary[k] for k in ("steps", "best_val_acc", "best_step", "seconds_this_run")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from neuromaml.io import fail, read_json

    from .evaluate import evaluate_run

    run = Path(args.run_dir)
    if not run.is_dir():
        raise fail(run, "run directory not found", "give a directory written by `neuromaml meta-train`")
    if not is_meta_train_run(run):
        if (run / "manifest.json").exists():
            raise fail(run, "is a deployment bundle, not a meta-train run",
                       "give the run it was exported from, or run `neuromaml emulate` on the bundle")
        raise fail(run, "is not a meta-train run (no best.pt or ckpt.pt)",
                   "give a directory written by `neuromaml meta-train`, or finish its training")
    if args.out is not None:
        from neuromaml.io import RUN_FILES, check_output, check_report_folder, input_files

        base = [p for item in (args.baseline or []) for p in input_files(item.partition("=")[2] or None, RUN_FILES)]
        check_output(args.out, kind="dir", overwrite=True,
                     inputs=(args.data, *input_files(run, RUN_FILES), *base))
        check_report_folder(args.out, "report.json", "evaluate")
    data = args.data
    if data is None:
        meta = read_json(run / "run.json")
        data = meta.get("data")
        if not data or not Path(data).exists():
            raise fail(run / "run.json", f"data file {data!r} recorded for this run is missing", "pass --data FILE.h5")
    from neuromaml.io import live_writer

    from .train import LOCK_NAME

    pid = live_writer(run, LOCK_NAME)
    if pid:
        print(f"note: {run}: meta-train (pid {pid}) is still writing this run: its best.pt so far is evaluated",
              file=sys.stderr)
    _note_seen_classes(run, data)
    baselines = {}
    for item in args.baseline or []:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise fail(None, f"--baseline {item!r} is not LABEL=RUN_DIR", "write e.g. --baseline fomaml=runs/fomaml")
        if not Path(path).is_dir() or not is_meta_train_run(path):
            raise fail(Path(path), f"--baseline {label}: not a meta-train run directory (no best.pt or ckpt.pt)",
                       "train it with `neuromaml meta-train` first")
        if label in baselines:
            raise fail(None, f"--baseline label {label!r} is given twice", "give each baseline its own label")
        baselines[label] = path
    transfer = None
    if args.no_transfer:
        transfer = False
    elif args.transfer_epochs is not None:
        from .transfer import TransferConfig

        transfer = TransferConfig(epochs=args.transfer_epochs)
    report = evaluate_run(run, data, trials=args.trials, tasks_per_trial=args.tasks, out_dir=args.out,
                          quick=args.quick, baselines=baselines, transfer=transfer,
                          transfer_tasks=args.transfer_tasks)
    print(json.dumps(report["table2"], indent=1))
    return 0


def _note_seen_classes(run: Path, data) -> None:
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.runs import seen_class_note

    ds = MetaDataset(data)
    note = seen_class_note(run, ds, "test")
    if note:
        print(f"note: {note} (fix: evaluate on data with the run's class split)", file=sys.stderr)
    test = [int(i) for c in ds.splits["test"] for i in ds.indices_of(c)[:2]][:64]
    if test and not ds.frames(test).any():
        print(f"note: {data}: the test classes' recordings hold no event (all-zero frames): every accuracy "
              "below is chance (check the data with `neuromaml data info` and how it was built)", file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser("meta-train", help="meta-train an SNN with surrogate-gradient MAML")
    p.add_argument("--data", required=True, help="meta-dataset .h5 (neuromaml data build)")
    p.add_argument("--config", default=None, help="(default: small) YAML/TOML file or a named default: small, small_cnn, cnn, paper_cnn, lava_mlp, ann_cnn")
    p.add_argument("--out", required=True, help="run directory (checkpoints, config, summary.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--steps", type=nonneg_int, default=None, help="total meta-steps (overrides outer.steps)")
    p.add_argument("--seed", type=seed_int, default=None, help="seed (overrides the config's)")
    p.add_argument("--init", default=None, metavar="RUN_DIR",
                   help="start from another run's best initialization (e.g. to meta-train it further "
                        "through the on-chip rule: inner.rule three_factor)")
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; "
                        "under torchrun each rank takes its LOCAL_RANK GPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_meta_train)

    e = subparsers.add_parser("evaluate", help="paper-style evaluation of a meta-trained run")
    e.add_argument("run_dir", help="run directory written by meta-train")
    e.add_argument("--data", default=None, help="meta-dataset .h5 (default: the one the run used)")
    e.add_argument("--trials", type=bounded_int(1000), default=10, help="trials for mean +- std")
    e.add_argument("--tasks", type=bounded_int(100_000), default=20, help="tasks per trial")
    e.add_argument("--out", default=None, help="report directory (default RUN_DIR/eval)")
    e.add_argument("--quick", action="store_true",
                   help="skip the inner-steps / frozen-layers sweeps and the transfer-learning baseline")
    e.add_argument("--baseline", action="append", metavar="LABEL=RUN_DIR",
                   help="another run to evaluate on the same tasks (first-order MAML, ann_cnn); repeatable")
    e.add_argument("--no-transfer", action="store_true", help="skip the transfer-learning baseline (Fig. 6)")
    e.add_argument("--transfer-epochs", type=positive_int, default=None, help="pre-training epochs of the transfer baseline (8)")
    e.add_argument("--transfer-tasks", type=bounded_int(100_000), default=20, help="meta-test tasks of the Fig. 6 curves")
    e.set_defaults(func=_evaluate)
