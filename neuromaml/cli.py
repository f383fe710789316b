"""The ``neuromaml`` command line: one front door, a subcommand per job.

Each stage registers its own subcommands (``register(subparsers)`` in the
modules listed in ``_STAGES``); heavy imports (torch, lava) happen inside the
handlers so that ``neuromaml --help`` stays fast. Every subcommand that
produces results writes a JSON summary (``--json PATH`` or beside its outputs).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from neuromaml import __version__
from neuromaml.io import NeuromamlError

# CLI modules in dependency order; each defines register(subparsers).
_STAGES = (
    "neuromaml.meta.data_cli",       # data build | data info
    "neuromaml.meta.train_cli",      # meta-train, evaluate
    "neuromaml.deploy.cli",          # export, inspect, verify
    "neuromaml.emulator.cli",        # emulate, import, rule-check, demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuromaml",
        description="Meta-train spiking networks (MAML), export them to Lava/Loihi, "
        "and emulate one-shot on-chip learning on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"neuromaml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _STAGES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:  # a stage not built yet
            if exc.name == mod_name:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from neuromaml.sysperf import keep_freed_memory

    keep_freed_memory()  # large activation tensors reused, not re-mapped (see neuromaml.sysperf)
    try:
        rc = args.func(args)
    except NeuromamlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
