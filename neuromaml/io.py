"""Shared I/O helpers: user-facing errors, atomic writes, JSON summaries.

A leaf module: it imports nothing else of neuromaml, so every stage may use it
(except ``onchip/``, which by design depends on nothing of ours).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


class NeuromamlError(Exception):
    """An error the user can fix. The message names the file, the field and the fix.

    The CLI prints it as one ``error:`` line (no traceback) and exits with code 2.
    """


def fail(path: str | os.PathLike | None, what: str, fix: str | None = None) -> NeuromamlError:
    """Build a NeuromamlError of the form ``PATH: WHAT (fix: FIX)``."""
    msg = f"{path}: {what}" if path is not None else what
    if fix:
        msg += f" (fix: {fix})"
    return NeuromamlError(msg)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        return True
    return True


TEMP_STEM = 96      # characters of the output's name kept in a temporary name (names are <= 255 bytes)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files that a killed writer of ``path`` left beside it.

    Temporary names carry the writer's pid (``.NAME.PID.XXXX.tmp``); one whose process is gone
    is a leftover of a crash or ``kill -9`` and is deleted. A live writer's file is kept.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    stem = path.name[:TEMP_STEM]
    for tmp in path.parent.glob(f".{stem}.*"):
        parts = tmp.name[len(stem) + 2:].split(".")
        if not parts or not parts[0].isdigit() or int(parts[0]) == os.getpid() or _pid_alive(int(parts[0])):
            continue
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place atomically.

    A crash or exception leaves no partial file at ``path`` (and removes the temp file); a
    ``kill -9`` leaves ``.NAME.PID.XXXX.tmp``, which the next write of ``path`` removes. The file
    gets the usual permissions (0666 less the umask), not mkstemp's 0600. Works for files written
    by libraries that want a filename (h5py, torch.save). With ``overwrite=False`` the file is
    linked into place, which fails if ``path`` appeared meanwhile (another writer of the same
    output): that writer's file is kept and this one is reported.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:TEMP_STEM]}.{os.getpid()}.", suffix=suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp_path, path)
        else:
            try:
                os.link(tmp_path, path)              # no-clobber: EEXIST if another writer won
            except FileExistsError:
                raise fail(path, "appeared while this command was writing it (another command wrote the same "
                           "output)", "pass --overwrite to replace it, or choose another path") from None
            except OSError:                          # a file system without hard links
                os.replace(tmp_path, path)
            else:
                tmp_path.unlink()
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        reraise_disk_full(exc, path)          # say which output could not be written
        if isinstance(exc, OSError) and str(tmp_path) in (exc.filename, exc.filename2):
            # the temporary file is gone: name the output that could not be written or replaced
            raise fail(path, f"could not be written ({exc.strerror or exc})",
                       "fix its or its folder's permissions, or choose another path") from None
        raise


def reraise_disk_full(exc: BaseException, path) -> None:
    """If ``exc`` is a full disk (however reported), raise the one error that names ``path``, the
    output (not a temporary file inside it), flagged ``disk_full`` for the CLI; else return."""
    if _disk_full(exc) or getattr(exc, "disk_full", False):
        err = fail(path, "could not be written: no space left on device (nothing was left behind)",
                   "free disk space or write elsewhere")
        err.disk_full = True
        raise err from None


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC however it arrives: an OSError, h5py's RuntimeError/OSError 'file write failed',
    or numpy's short write ('N requested and M written'), also where it is the cause or context
    of the error raised (torch.save's 'PytorchStreamWriter failed writing file ...: file write
    failed' surfaces as 'unexpected pos N vs M' when the zip writer closes)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == 28:
            return True
        text = str(exc)
        if isinstance(exc, (OSError, RuntimeError)) and (
                "No space left" in text or "file write failed" in text
                or ("requested and" in text and "written" in text)):
            return True
        # the cause, or the exception being handled when this one was raised, unless that
        # context was suppressed (`raise ... from None`: not what went wrong)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return False


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def input_files(folder: str | os.PathLike | None, names=("*",)) -> tuple:
    """A folder a command reads, and the files in it matching ``names`` (globs): the ``inputs``
    of ``check_output`` for a bundle (its manifest and network files) or a run (checkpoints,
    config). Empty for None or a missing folder."""
    if folder is None or not Path(folder).is_dir():
        return (folder,) if folder is not None else ()
    folder = Path(folder)
    return (folder, *sorted({p for n in names for p in folder.glob(n) if p.is_file()}))


BUNDLE_FILES = ("manifest.json", "network.net", "network.nir")   # what a bundle's readers read
RUN_FILES = ("*.pt", "config.*", "run.json")                      # what a run's readers read
RUN_CHECKPOINTS = ("best.pt", "ckpt.pt")                          # what makes a folder a meta-train run


def is_meta_train_run(path: str | os.PathLike) -> bool:
    """A folder ``neuromaml meta-train`` wrote a checkpoint into (best.pt or ckpt.pt)."""
    return any((Path(path) / n).exists() for n in RUN_CHECKPOINTS)


def check_output(path: str | os.PathLike, *, kind: str = "file", overwrite: bool = False,
                 flag: str = "--out", resume: bool = False, exists_fix: str | None = None,
                 inputs: tuple = (), trees: tuple = (), outside: tuple = ()) -> Path:
    """Check an output path before any work starts; return it as a Path.

    ``kind`` is ``"file"`` or ``"dir"``. Refused, each with a message naming the path and the fix:
    a path under a regular file, a folder that cannot be written, a file where a directory is
    wanted (and the reverse), a device, pipe or socket, an existing output unless ``overwrite``
    (a non-empty directory for ``kind="dir"``; ``resume`` accepts an existing directory), and,
    even with ``overwrite``, an output that is one of the command's ``inputs`` (the files and
    folders it reads; see ``input_files``) or a folder holding one, or a path inside one of the
    folder ``trees`` it reads recursively (a data folder: a file written there would be read as a
    recording next time), or a path inside one of the folders ``outside`` names (the command's
    own output folder, which it writes whole: a --json there would replace one of its files or be
    lost when the folder is next replaced). Missing parents are created later by the writer.
    """
    if str(path) == "-":
        raise fail(None, f"{flag} -: standard output is not a file here", f"give {flag} a file path")
    path = Path(path)
    if str(path) in ("", "."):
        raise fail(path, f"{flag} names the current directory", f"give {flag} a new file or folder name")
    real = Path(os.path.realpath(path))
    for item in inputs:
        if item is None:
            continue
        src = Path(os.path.realpath(item))
        if _inside(src, real):
            raise fail(path, f"{flag} would overwrite this command's input {item}",
                       f"choose a {flag} path outside the inputs")
    for folder in outside:
        if folder is not None and _inside(real, Path(os.path.realpath(folder))):
            raise fail(path, f"{flag} is inside {folder}, the folder this command writes its outputs to",
                       f"give {flag} a path outside {folder} (its own summary is already written there)")
    for tree in trees:
        if tree is not None and _inside(real, Path(os.path.realpath(tree))):
            raise fail(path, f"{flag} would overwrite a file of the input folder {tree}",
                       f"choose a {flag} path outside {tree}")
    if kind == "dir" and path.is_symlink():
        raise fail(path, f"{flag} is a symbolic link; a folder written in its place would replace the link, "
                   "not fill its target", f"give {flag} the real folder ({os.path.realpath(path)})")
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise fail(path, f"{flag} is a device, pipe or socket, not a file or folder",
                   "give a regular file or folder path")
    # the nearest existing ancestor must be a writable directory
    anc = path.parent if str(path.parent) else Path(".")
    while not anc.exists():
        if anc.is_symlink():
            raise fail(anc, f"{flag}'s parent is a dangling symbolic link", "remove it or choose another path")
        anc = anc.parent
    if not anc.is_dir():
        raise fail(path, f"cannot be created: {anc} is a file, not a folder", f"choose {flag} outside {anc}")
    if path.exists() or path.is_symlink():
        if kind == "file":
            if path.is_dir():
                raise fail(path, f"{flag} is an existing directory, a file is wanted",
                           f"give {flag} a file name, e.g. {path / 'out.h5'}")
            if not path.exists():
                raise fail(path, f"{flag} is a dangling symbolic link (to {os.readlink(path)}, which does not "
                           "exist); the output would replace the link, not create its target",
                           f"remove the link, or give {flag} the target path itself")
            if not overwrite:
                raise fail(path, "exists and would be overwritten",
                           exists_fix or "pass --overwrite to replace it, or choose another path")
            if not os.access(path.parent if str(path.parent) else ".", os.W_OK | os.X_OK):
                raise fail(path, "the folder holding it is not writable", "choose a writable folder")
            if flag == "--json":
                _check_summary_replaceable(path)
        else:
            if not path.is_dir():
                raise fail(path, f"{flag} is an existing file, a directory is wanted",
                           f"remove the file or choose another {flag}")
            if any(path.iterdir()) and not (overwrite or resume):
                raise fail(path, "exists and is not empty; its contents would be overwritten",
                           exists_fix or "pass --overwrite to replace it, or choose another path")
            if not os.access(path, os.W_OK | os.X_OK):
                raise fail(path, "directory is not writable", "fix its permissions or choose another path")
        return path
    if not os.access(anc, os.W_OK | os.X_OK):
        raise fail(path, f"cannot be created: {anc} is not writable", f"choose {flag} in a folder you can write")
    return path


def check_report_folder(out, marker: str, command: str) -> None:
    """A report folder that exists may be replaced only if empty or an earlier report of the same
    command (it holds ``marker``): a folder of other files (a bundle, a run) is not mixed into."""
    held = sorted(p.name for p in Path(out).iterdir()) if Path(out).is_dir() else []
    if held and marker not in held:
        raise fail(out, f"holds other files ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}) and no "
                   f"{marker}: not a{'n' if command[0] in 'aeiou' else ''} {command} report folder; the report would "
                   "be mixed with them", f"choose a new or empty --out, or the folder of an earlier {command} report")


# files a --json summary must never replace, whatever their content: they belong to a bundle, a run
# or an event folder (a summary file is JSON, but so are these)
_NOT_SUMMARIES = ("manifest.json", "run.json", "meta.json", "config.json")
_DATA_FOLDER_MARKERS = ("network.net", "ckpt.pt", "best.pt", "meta.json")


def _check_summary_replaceable(path: Path) -> None:
    """A --json path may replace an earlier JSON summary, not anything else that exists there."""
    near = (path.parent, path.parent.parent)          # a bundle's calibration/ or emulate-test/ report too
    if path.name in _NOT_SUMMARIES or any((d / m).exists() for d in near for m in _DATA_FOLDER_MARKERS):
        raise fail(path, "--json would replace a file of a bundle, a run or an event folder",
                   "give --json a path outside it")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return                                          # unreadable: the writer will say so
    if head and not head.startswith(b"{"):
        raise fail(path, "--json would replace a file that is not a JSON summary", "give --json a new path")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, busy: str, name: str = ".neuromaml.lock") -> Iterator[None]:
    """One writer per folder: ``FOLDER/NAME`` holds the writer's pid while it runs. A second
    writer is refused (``busy``, formatted with ``pid``, says by whom); a lock left by a killed
    process (its pid is gone) is taken over."""
    lock = Path(folder) / name
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = live_writer(folder, name)
            if pid:
                raise fail(folder, busy.format(pid=pid), f"wait for it to finish, or stop it first (if process {pid} "
                           f"is not that command, delete the lock file {lock})") from None
            lock.unlink(missing_ok=True)              # a killed writer's lock
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT), SIGTERM and SIGHUP for the few renames that publish several files
    as one result: an interrupt that arrives meanwhile is raised (KeyboardInterrupt) once they are
    done, so it cannot leave one file of the set new and another old. SIGKILL cannot be held."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = [sig for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            if signal.getsignal(sig) not in (signal.SIG_IGN, None)]
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt


def live_writer(folder: str | os.PathLike, name: str) -> int | None:
    """The pid holding ``FOLDER/NAME`` (a ``folder_lock``) if that process is alive, else None."""
    try:
        pid = int((Path(folder) / name).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:             # alive, another user's
        pass
    return pid


def _whole_arg(text: str, lo: int, hi: int | None, bound: str) -> int:
    """Parse an argparse value as an integer in [lo, hi]; ``bound`` is how the error says it."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < lo or (hi is not None and value > hi):
        raise argparse.ArgumentTypeError(f"{value} is not {bound}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a seed, 0 <= seed < 2**32 (numpy, torch and HDF5 attributes all take it)."""
    return _whole_arg(text, 0, 2 ** 32 - 1, "in [0, 2**32)")


def bounded_int(hi: int):
    """argparse type: an integer in [1, hi] (``hi`` keeps a typo from drawing a billion tasks)."""
    import argparse

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > hi:
            raise argparse.ArgumentTypeError(f"{value} is more than {hi:,}")
        return value
    parse.__name__ = f"int_1_to_{hi}"
    return parse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse prints the error and exits 2)."""
    return _whole_arg(text, 1, None, ">= 1")


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _whole_arg(text, 0, None, ">= 0")


def finite_float(text: str) -> float:
    """argparse type: a finite float."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    import argparse

    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not in [0, 1]")
    return value


def json_default(obj: Any) -> Any:
    # numpy / torch scalars and arrays, Paths, dataclasses
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON, atomically. Returns the path."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n"
    atomic_write_text(path, text)
    return Path(path)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def parse_json_text(path: str | os.PathLike, fix: str = "re-create the file") -> Any:
    """The JSON in ``path``, or a NeuromamlError naming the file: not UTF-8 text, not JSON,
    nested too deeply, or a key given twice (JSON readers keep the last one silently)."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise fail(path, "not a UTF-8 text file (damaged, or not JSON)", fix) from None
    except json.JSONDecodeError as exc:
        raise fail(path, f"not valid JSON ({exc.msg} at line {exc.lineno})", fix) from None
    except RecursionError:
        raise fail(path, "JSON nested too deeply to be one of this tool's files", fix) from None
    except _DuplicateKey as exc:
        raise fail(path, f"key {str(exc)!r} appears twice in one object (which one is meant?)",
                   "keep one of them") from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise fail(path, "file not found")
    return parse_json_text(path)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on (recorded in every run)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": sys.platform}
    for name in ("neuromaml", "lava-nc", "lava-dl", "torch", "numpy", "h5py", "tonic", "nir"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
