"""The `neuromaml` front door: every subcommand explains itself; user errors are one line."""
import subprocess
import sys

import pytest

from neuromaml import cli

SUBCOMMANDS = ["data", "meta-train", "evaluate", "export", "inspect", "verify",
               "emulate", "import", "calibrate", "rule-check", "demo", "cost"]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out, f"subcommand {name} missing from neuromaml --help"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: neuromaml " + name in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "neuromaml.cli", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("neuromaml ")


def test_user_error_is_one_line_exit_2(tmp_path, capsys):
    rc = cli.main(["data", "info", str(tmp_path / "nope.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.h5" in err and "Traceback" not in err


def test_keep_freed_memory_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    import platform

    from neuromaml.sysperf import keep_freed_memory

    monkeypatch.setenv("NEUROMAML_MALLOC", "default")
    assert keep_freed_memory() is False
    monkeypatch.delenv("NEUROMAML_MALLOC")
    expect = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expect


def _raising_handler(exc):
    def handler(args):
        raise exc
    return handler


def test_unexpected_error_is_one_line_with_a_log(monkeypatch, tmp_path, capsys):
    """The CLI boundary: any exception a check missed becomes one line naming the command and
    where the traceback went (exit 3); --debug shows the traceback instead."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    real = cli.build_parser

    def patched():
        p = real()
        sub = next(a for a in p._actions if a.dest == "command")
        sub.choices["inspect"].set_defaults(func=_raising_handler(RuntimeError("boom\nsecond line")))
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    rc = cli.main(["inspect", "x.net"])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert "neuromaml inspect stopped on an unexpected RuntimeError: boom" in err and "--debug" in err
    log = next(tmp_path.glob("neuromaml-error-*.log"))
    assert "Traceback" in log.read_text() and "boom" in log.read_text() and "inspect x.net" in log.read_text()
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", "inspect", "x.net"])


@pytest.mark.parametrize("exc, words", [
    (PermissionError(13, "Permission denied", "/data/out.h5"), "/data/out.h5: Permission denied (fix: fix the permissions"),
    (OSError(28, "No space left on device", "/data/out.h5"), "No space left on device (fix: free disk space"),
    (OSError("Unable to open file (truncated file: eof = 96)"), "truncated file"),
    (MemoryError(), "out of memory (fix:"),
])
def test_os_and_memory_errors_name_the_path_and_the_fix(monkeypatch, capsys, exc, words):
    real = cli.build_parser

    def patched():
        p = real()
        sub = next(a for a in p._actions if a.dest == "command")
        sub.choices["inspect"].set_defaults(func=_raising_handler(exc))
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["inspect", "x.net"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_sighup_takes_the_interrupt_path_unless_ignored_by_nohup():
    import signal

    old = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        cli._sigterm_interrupts()
        assert callable(signal.getsignal(signal.SIGHUP))          # a closed terminal: clean-up path
        signal.signal(signal.SIGHUP, signal.SIG_IGN)              # `nohup neuromaml ...`
        cli._sigterm_interrupts()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for s, h in old.items():
            signal.signal(s, h)
