"""The ``neuromaml`` command line: one front door, a subcommand per job.

Each stage registers its own subcommands (``register(subparsers)`` in the
modules listed in ``_STAGES``); heavy imports (torch, lava) happen inside the
handlers so that ``neuromaml --help`` stays fast. Every subcommand that
produces results writes a JSON summary (``--json PATH`` or beside its outputs).
"""
from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument("--debug", action="store_true",
                        help="show the full Python traceback of an unexpected error")
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


def _os_error_message(exc: OSError) -> str:
    """An OSError as ``PATH: what (fix: ...)``; h5py reports truncated or foreign files this way."""
    from neuromaml.io import _disk_full

    where = exc.filename or exc.filename2
    text = exc.strerror or (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, PermissionError):
        fix = "fix the permissions or choose another path"
    elif isinstance(exc, IsADirectoryError):
        fix = "give a file name, not a directory"
    elif isinstance(exc, NotADirectoryError):
        fix = "a part of the path is a file; choose another path"
    elif isinstance(exc, FileNotFoundError):
        fix = "check the path"
    elif getattr(exc, "errno", None) == 28 or _disk_full(exc):   # ENOSPC, however reported
        fix = "free disk space or write elsewhere"
        text = "no space left on device" if not exc.strerror else text
    elif getattr(exc, "errno", None) == 30:   # EROFS
        fix = "the file system is read-only: write the outputs elsewhere (--out, --json)"
    elif getattr(exc, "errno", None) == 36:   # ENAMETOOLONG
        fix = "use a shorter file or folder name"
    else:
        fix = "check that the file is complete and of the expected format (re-create or re-copy it)"
    return f"{where}: {text} (fix: {fix})" if where else f"{text} (fix: {fix})"


def _crash_report(argv: list[str], exc: BaseException) -> str:
    """Write the traceback of an unexpected error to a log file; return its path."""
    import datetime
    import os
    import tempfile
    import traceback

    text = (f"neuromaml {__version__} {' '.join(argv)}\n{datetime.datetime.now().isoformat()}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        fd, path = tempfile.mkstemp(prefix="neuromaml-error-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return path
    except OSError:
        return "(could not write a log; run again with --debug)"


def _one_line(text: str) -> str:
    """A message stays one line: control characters (a newline in a file name) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _plain_environment() -> None:
    """The CLI only writes plot files, never opens a window: matplotlib's file backend whatever
    MPLBACKEND says (an invalid value failed every plotting command), and text that the
    terminal's encoding cannot show (PYTHONIOENCODING=ascii, a non-ASCII path) escaped, not fatal."""
    import os

    os.environ["MPLBACKEND"] = "Agg"
    import warnings

    # a plot of empty data (a silent network, chance everywhere) warns; the commands say it in words
    warnings.filterwarnings("ignore", category=UserWarning, module=r"matplotlib\..*")
    warnings.filterwarnings("ignore", message=r"No artists with labels found", category=UserWarning)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")


def _sigterm_interrupts() -> None:
    """SIGTERM (kill, timeout, a batch scheduler) and SIGHUP (the terminal closed) take the
    Ctrl-C path: temporary files are removed and Lava processes stopped by the same ``finally``
    blocks."""
    import os
    import signal
    import threading

    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:          # a forked worker (Lava, torch): the default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:     # `nohup neuromaml ...` keeps running
                signal.signal(sig, handler)


def _interrupts_reach_parent_only() -> None:
    """Ctrl-C reaches every process of the terminal's foreground group. Lava runs each process
    model in a forked worker, and a worker that takes the KeyboardInterrupt dies with a
    traceback while the parent waits on its channel for ever. Forked children of the CLI
    therefore ignore SIGINT: the parent alone is interrupted, and its ``finally`` blocks stop
    the Lava runtime, which ends the workers cleanly. SIGTERM is unaffected."""
    import os
    import signal

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    if not getattr(_interrupts_reach_parent_only, "done", False):
        os.register_at_fork(after_in_child=child)
        _interrupts_reach_parent_only.done = True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from neuromaml.sysperf import keep_freed_memory

    keep_freed_memory()  # large activation tensors reused, not re-mapped (see neuromaml.sysperf)
    _plain_environment()
    _sigterm_interrupts()
    _interrupts_reach_parent_only()
    # The one place where errors become messages: a NeuromamlError is the user's to fix; any
    # other exception is reported in one line with where the traceback went (--debug shows it).
    if args.command not in ("data", "inspect"):
        from neuromaml.lavacompat import prepare_lava

        prepare_lava()     # Lava's runtime before any progress bar resolves multiprocessing's context
    try:
        rc = args.func(args)
    except NeuromamlError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        _STATE["disk_full"] = getattr(exc, "disk_full", False)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:         # `neuromaml data info F | head -1`: the reader has all it wants
        import os

        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError:
        if args.debug:
            raise
        print(f"error: neuromaml {args.command}: out of memory (fix: ask for less: fewer tasks, samples or time "
              "steps, a smaller network, recordings or sensor_size; check the sizes in the inputs' files too)",
              file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: neuromaml {args.command}: {_os_error_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if args.debug:
            raise
        from neuromaml.io import _disk_full

        if _disk_full(exc):     # h5py reports a full disk as a RuntimeError while flushing
            _STATE["disk_full"] = True
            print(f"error: neuromaml {args.command}: no space left on device while writing (nothing half-written "
                  "was kept) (fix: free disk space or write elsewhere)", file=sys.stderr)
            return 2
        if isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc):   # torch's out of memory
            print(f"error: neuromaml {args.command}: out of memory ({str(exc).splitlines()[-1].strip()[:120]}) "
                  "(fix: use a smaller network (model.hidden, model.conv), batch or time window)", file=sys.stderr)
            return 2
        from neuromaml.onchip.rule import RuleError

        if isinstance(exc, RuleError):   # a rule the chip cannot run: the user's to fix
            print(f"error: {exc} (fix: choose rule settings the chip represents; see "
                  f"`neuromaml rule-check --help`)", file=sys.stderr)
            return 2
        log = _crash_report(argv, exc)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: neuromaml {args.command} stopped on an unexpected {type(exc).__name__}"
              + (f": {msg}" if msg else "")
              + f" (this input is not checked yet: please report it; traceback in {log}, "
              f"or run again with --debug)", file=sys.stderr)
        return 3
    return int(rc or 0)


_STATE = {"disk_full": False}


def console() -> int:
    """The ``neuromaml`` console script: ``main``, then, after a full disk, an exit that skips
    the interpreter's clean-up. h5py cannot close an HDF5 file whose last flush failed: its
    objects, freed at exit, print tracebacks and crash the process (exit 139) after our one-line
    error. The temporary files are already removed by then; nothing is lost by not freeing them."""
    import os

    rc = main()
    if _STATE["disk_full"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
