"""CLI of the emulator stage: `emulate`, `import`, `calibrate`, `rule-check`, `demo`, `cost`.

Handlers import the heavy modules lazily so that `neuromaml --help` stays fast.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from neuromaml.io import BUNDLE_FILES, bounded_int, check_output, check_report_folder, fail, input_files, positive_int, probability, seed_int


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON summary (default: beside the outputs)")


def _add_task_flags(p, *, tasks: int, data_required: bool = True) -> None:
    """The episodes a command runs: the same flags, and so the same tasks, in emulate, rule-check
    and cost (task i is a pure function of (data, split, shots, queries, seed, i))."""
    p.add_argument("--data", type=Path, required=data_required, default=None,
                   help="meta-dataset .h5 (neuromaml data build)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--tasks", type=bounded_int(100_000), default=tasks, help="number of tasks (episodes)")
    p.add_argument("--shots", type=positive_int, default=1,
                   help="K support samples per class (N-way = the bundle's outputs)")
    p.add_argument("--queries", type=positive_int, default=5, help="query samples per class")


def _add_seed_and_outputs(p, out_default: str, seed_help: str = "task seed") -> None:
    p.add_argument("--seed", type=seed_int, default=0, help=seed_help)
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default: {out_default})")
    _add_json(p)


def register(sub) -> None:
    p = sub.add_parser(
        "emulate",
        help="one-shot learning episodes of a bundle on Lava's CPU backend or the fast engine",
        description="Run N-way K-shot episodes of an exported bundle: weights reset to theta0*, "
        "support samples presented with labels (learning on), query samples (learning off). "
        "Reports accuracy (mean +- std over tasks) for the float model, the quantized network "
        "with float final-layer SGD, and the on-chip rule, plus time per episode.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory written by `neuromaml export` or `neuromaml import`")
    _add_task_flags(p, tasks=100)
    p.add_argument("--engine", choices=["fast", "lava", "both"], default="fast",
                   help="fast: batched fixed-point engine; lava: the Lava graph; both: run both and check agreement")
    p.add_argument("--lava-tasks", type=positive_int, default=None,
                   help="with --engine both: how many of the tasks also run on Lava (agreement checked; default 2)")
    _add_seed_and_outputs(p, "BUNDLE/emulate-<split>")
    p.set_defaults(func=_emulate)

    p = sub.add_parser(
        "import",
        help="wrap a third-party netx file into a bundle so it can be emulated",
        description="Wrap any lava-dl netx file (e.g. ../shared/fixtures/snn-maml/network_test.net) "
        "into a neuromaml bundle: manifest with input shape, classes and the on-chip rule.",
    )
    p.add_argument("netfile", type=Path)
    p.add_argument("--input-shape", required=True,
                   help="input shape in slayer order C,H,W (e.g. 2,16,32), as the data's frames")
    p.add_argument("--classes", type=positive_int, required=True, help="number of output classes (N-way)")
    p.add_argument("--time-steps", type=bounded_int(100_000), default=100)
    p.add_argument("--burn-in", type=int, default=None,
                   help="readout window starts at this step (default: the network's pipeline depth)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
    _add_json(p)
    p.set_defaults(func=_import)

    p = sub.add_parser(
        "calibrate",
        help="choose the on-chip rule's settings for a bundle on meta-validation tasks",
        description="Search the on-chip rule's settings (plastic weight exponent, eta, trace impulse, "
        "softmax gain, Eq. 6-form threshold) over a space derived from the bundle and the data, on "
        "one-shot tasks of the data's meta-VALIDATION split (never meta-test); choose the sparsest "
        "setting within --tolerance of the best; write the sweep (JSON, Markdown, plot) and the chosen "
        "rule into the bundle's manifest.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory (neuromaml export or neuromaml import)")
    p.add_argument("--data", type=Path, required=True, help="meta-dataset .h5 with a 'val' split")
    p.add_argument("--tasks", type=bounded_int(100_000), default=50, help="meta-validation tasks per setting")
    p.add_argument("--queries", type=positive_int, default=5, help="query samples per class")
    p.add_argument("--tolerance", type=probability, default=0.01,
                   help="choose the sparsest setting within this fraction of the best accuracy (0.01 = 1 point)")
    _add_seed_and_outputs(p, "BUNDLE/calibration", "seed of the meta-validation tasks")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser(
        "rule-check",
        help="will my rule still learn on the chip? sweep weight precision, eta and thresholds",
        description="Sweep weight precision (bits), eta exponents and error thresholds of the "
        "on-chip rule on meta-test tasks with the fast engine; report one-shot accuracy, the "
        "fraction of synapses updated and update-magnitude histograms against float SGD.",
    )
    p.add_argument("bundle", type=Path)
    _add_task_flags(p, tasks=50)
    p.add_argument("--bits", default="8,6,4,3,2", help="weight precisions to sweep")
    p.add_argument("--eta-exp", default=None, help="eta exponents to sweep, e.g. --eta-exp=-9,-7 (with '=': the values start with '-'; default: around the bundle's)")
    p.add_argument("--thresholds", default=None, help="error thresholds to sweep, e.g. --thresholds 0,8,16 (default: around the bundle's)")
    _add_seed_and_outputs(p, "BUNDLE/rule-check")
    p.set_defaults(func=_rule_check)

    p = sub.add_parser(
        "demo",
        help="the whole path on the embedded default data: data, meta-train, baselines, evaluate, export, "
             "verify, emulate",
        description="Build the synthetic Double-digits meta-dataset, meta-train the default "
        "network and the paper's baselines (first-order MAML, non-spiking CNN), evaluate them "
        "(with transfer learning), export, verify bit-exactness on Lava, emulate one-shot learning "
        "(fast engine on many tasks, Lava on a few, agreement checked) and write OUT/report.md. "
        "A second run reuses what the first built.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--data", type=Path, default=None, metavar="FILE.h5",
                   help="run the path on this meta-dataset (neuromaml data build) instead of the embedded default")
    p.add_argument("--config", type=Path, default=None, help="meta-train config (default: the packaged demo config)")
    p.add_argument("--tasks", type=bounded_int(100_000), default=200, help="fast-engine emulation tasks")
    p.add_argument("--lava-tasks", type=positive_int, default=2, help="tasks also run on Lava (agreement checked)")
    p.add_argument("--fresh", action="store_true", help="ignore what an earlier run built")
    p.add_argument("--quick", action="store_true", help="tiny settings (for tests): minutes, not accuracy")
    p.add_argument("--seed", type=seed_int, default=0)
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "cost",
        help="will it fit, and what do one inference and one one-shot learning episode cost?",
        description="Per layer: neurons, synapses, fan-in/out, weight bits, synaptic memory and the core "
        "mapping onto Loihi 1 and Loihi 2 (published limits). With --data: spikes, synaptic operations "
        "(NeuroBench's effective and dense), activation sparsity and learning-engine updates per inference "
        "and per one-shot learning episode, measured on the fast engine on the tasks `neuromaml emulate` "
        "runs, and ESTIMATES of energy and time from published per-operation figures. Writes "
        "OUT/cost.json, cost.md and cost.png.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory (or a netx .net file: static part only, needs --out)")
    _add_task_flags(p, tasks=20, data_required=False)   # without --data: the static part only
    _add_seed_and_outputs(p, "BUNDLE/cost", "task seed (the same tasks as emulate with this seed)")
    p.set_defaults(func=_cost)


EXAMPLES = {"--bits": "--bits 8,6,4", "--eta-exp": "--eta-exp=-9,-7", "--thresholds": "--thresholds 0,8,16"}


def _csv(text, cast, flag: str = ""):
    if text is None:
        return None
    try:
        values = [cast(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise fail(None, f"{flag} {text!r} is not a comma-separated list of whole numbers",
                   f"write e.g. {EXAMPLES.get(flag, flag)} (with '=' when the first value starts with '-')") from None
    if not values:
        raise fail(None, f"{flag} {text!r} holds no value", f"give at least one, e.g. {EXAMPLES.get(flag, flag)}")
    return values


def _check_outs(args) -> None:
    """Report folders (emulate, calibrate, rule-check) are regenerated: replacing them is fine,
    but they must be writable folders; checked before any work starts."""
    inputs = (*input_files(args.bundle, BUNDLE_FILES), getattr(args, "data", None))
    out = args.out
    if out is None and Path(args.bundle).is_dir():       # the default report folder inside the bundle
        out = Path(args.bundle) / {"emulate": f"emulate-{getattr(args, 'split', 'test')}", "calibrate": "calibration",
                                   "rule-check": "rule-check", "cost": "cost"}[args.command]
    if out is not None:
        owner = Path(os.path.realpath(out)).parent
        if (owner / "manifest.json").exists() and owner != Path(os.path.realpath(args.bundle)):
            raise fail(out, f"--out is a report folder of another bundle ({owner}): its reports would be replaced",
                       "choose a new folder, or leave --out out (the report goes inside the bundle)")
        check_output(out, kind="dir", overwrite=True, inputs=inputs)
        check_report_folder(out, ("calibration" if args.command == "calibrate" else args.command) + ".json",
                            args.command)
    if getattr(args, "json", None) is not None:
        check_output(args.json, kind="file", overwrite=True, flag="--json", inputs=inputs, outside=(out,))


def _emulate(args) -> int:
    from neuromaml.emulator.emulate import emulate_cli

    _check_outs(args)
    return emulate_cli(args)


def _import(args) -> int:
    from neuromaml.emulator.importer import import_cli

    check_output(args.out, kind="dir", overwrite=args.overwrite, inputs=(args.netfile,))
    if args.json is not None:
        check_output(args.json, kind="file", overwrite=True, flag="--json", inputs=(args.netfile,), outside=(args.out,))
    return import_cli(args)


def _calibrate(args) -> int:
    from neuromaml.emulator.calibrate import calibrate_cli

    _check_outs(args)
    return calibrate_cli(args)


def _rule_check(args) -> int:
    from neuromaml.emulator.rulecheck import rule_check_cli

    _check_outs(args)
    args.bits = _csv(args.bits, int, "--bits")
    args.eta_exp = _csv(args.eta_exp, int, "--eta-exp")
    args.thresholds = _csv(args.thresholds, int, "--thresholds")
    return rule_check_cli(args)


def _demo(args) -> int:
    from neuromaml.emulator.demo import demo_cli

    check_output(args.out, kind="dir", resume=True, inputs=(args.data, args.config))   # reused stage by stage
    return demo_cli(args)


def _cost(args) -> int:
    from neuromaml.emulator.cost_measure import cost_cli

    if args.data is None:
        given = [f for f, v, d in (("--tasks", args.tasks, 20), ("--shots", args.shots, 1), ("--queries", args.queries, 5),
                                   ("--split", args.split, "test"), ("--seed", args.seed, 0)) if v != d]
        if given:
            raise fail(None, f"{', '.join(given)} set the measured part, which needs --data", "add --data FILE.h5")
    _check_outs(args)
    return cost_cli(args)
