"""The `neuromaml` front door: every subcommand explains itself; user errors are one line."""
import subprocess
import sys

import pytest

from neuromaml import cli

SUBCOMMANDS = ["data", "meta-train", "evaluate", "export", "inspect", "verify",
               "emulate", "import", "rule-check", "demo"]


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
