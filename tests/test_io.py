"""neuromaml.io: atomic writes lose nothing, errors name file and fix."""
import json
import os

import pytest

from neuromaml import io


def test_atomic_path_moves_into_place(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"abc")
        assert not target.exists()  # nothing visible until success
    assert target.read_bytes() == b"abc"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # temp file gone


def test_atomic_path_failure_keeps_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_write_json_handles_numpy_and_paths(tmp_path):
    import numpy as np

    p = io.write_json(tmp_path / "s.json", {"a": np.float32(1.5), "b": np.arange(3), "c": tmp_path})
    data = json.loads(p.read_text())
    assert data == {"a": 1.5, "b": [0, 1, 2], "c": str(tmp_path)}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(io.NeuromamlError, match="missing.json: file not found"):
        io.read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(io.NeuromamlError, match=r"bad.json: not valid JSON .*fix:"):
        io.read_json(bad)


def test_fail_message_form():
    err = io.fail("x.h5", "field 'frames' missing", "rebuild with neuromaml data build")
    assert str(err) == "x.h5: field 'frames' missing (fix: rebuild with neuromaml data build)"


def test_package_versions_lists_the_stack():
    v = io.package_versions()
    assert v["python"].startswith("3.10")
    assert v["lava-nc"] == "0.10.0" and v["lava-dl"] == "0.6.0"


def test_no_clobber_write_keeps_the_other_writers_file(tmp_path):
    """Two commands writing the same output: without --overwrite the later one fails and the
    first one's file is kept (no silent replacement), and no temporary file is left."""
    from neuromaml.io import NeuromamlError, atomic_path

    out = tmp_path / "same.h5"
    with pytest.raises(NeuromamlError, match="appeared while this command was writing"):
        with atomic_path(out, overwrite=False) as tmp:
            tmp.write_bytes(b"mine")
            out.write_bytes(b"theirs")          # the other writer finishes first
    assert out.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]
    with atomic_path(out, overwrite=True) as tmp:
        tmp.write_bytes(b"mine")
    assert out.read_bytes() == b"mine"


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"),
                                 RuntimeError("Disable slist on flush dest failure failed (file write failed: ...)"),
                                 OSError("921 requested and 300 written")],
                         ids=["enospc", "h5py-flush", "numpy-short-write"])
def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, exc):
    from neuromaml.io import NeuromamlError, atomic_path

    out = tmp_path / "x.h5"
    with pytest.raises(NeuromamlError, match=r"x\.h5: could not be written: no space left on device") as info:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            raise exc
    assert info.value.disk_full and list(tmp_path.iterdir()) == []


def test_cli_is_quiet_when_its_reader_closes_the_pipe(monkeypatch, capsys):
    from neuromaml import cli

    def boom(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(boom))
    monkeypatch.setattr(os, "dup2", lambda *a: None)      # stdout stays pytest's
    assert cli.main(["x"]) == 141
    assert "error" not in capsys.readouterr().err


def _parser_with(func):
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--debug", action="store_true")
    p.add_argument("command")
    p.set_defaults(func=func)
    return p


def test_a_full_disk_during_a_bundle_write_names_the_bundle(tmp_path):
    from neuromaml.deploy.bundle import atomic_dir
    from neuromaml.io import NeuromamlError

    with pytest.raises(NeuromamlError, match=r"[/\\]b: could not be written: no space left") as info:
        with atomic_dir(tmp_path / "b") as tmp:
            (tmp / "network.net").write_bytes(b"x")
            raise OSError(28, "No space left on device", str(tmp / "network.nir"))
    assert info.value.disk_full and list(tmp_path.iterdir()) == []


def test_folder_lock_refuses_a_live_writer_and_takes_over_a_dead_ones(tmp_path):
    from neuromaml.io import NeuromamlError, folder_lock

    lock = tmp_path / ".l"
    lock.write_text(str(os.getppid()))                    # a live process holds it
    with pytest.raises(NeuromamlError, match=r"another calibrate \(pid \d+\)"):
        with folder_lock(tmp_path, "another calibrate (pid {pid}) is busy", ".l"):
            pass
    lock.write_text("999999999")                           # a killed writer's lock
    with folder_lock(tmp_path, "busy {pid}", ".l"):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_an_output_that_cannot_be_replaced_is_named_not_its_temporary_file(tmp_path, monkeypatch):
    """os.replace refused (an immutable file, another user's in a sticky folder): the error names
    the output, not the temporary file that is already gone."""
    out = tmp_path / "report.json"
    out.write_text("{}")

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(io.os, "replace", refused)
    with pytest.raises(io.NeuromamlError) as e:
        io.write_json(out, {"a": 1})
    assert str(e.value).startswith(f"{out}: could not be written (Operation not permitted)") and ".tmp" not in str(e.value)
    assert out.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_interrupts_deferred_raises_once_the_block_is_done():
    import signal

    done = []
    with pytest.raises(KeyboardInterrupt):
        with io.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(1)
    assert done == [1]


def test_disk_full_follows_causes_but_not_a_suppressed_context():
    from neuromaml.io import _disk_full

    def raised(fn):
        try:
            fn()
        except BaseException as exc:        # noqa: BLE001
            return exc

    def cause():
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("unexpected pos") from exc

    def context():
        try:
            raise RuntimeError("file write failed")
        except RuntimeError:
            raise ValueError("while writing")

    def suppressed():
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise ValueError("the file is not a meta-dataset") from None

    assert _disk_full(raised(cause)) and _disk_full(raised(context))
    assert not _disk_full(raised(suppressed))
