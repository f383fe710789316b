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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place atomically.

    A crash or exception leaves no partial file at ``path`` (and removes the temp file).
    Works for files written by libraries that want a filename (h5py, torch.save).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
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
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_text(path, text)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise fail(path, "file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise fail(path, f"not valid JSON ({exc.msg} at line {exc.lineno})", "re-create the file") from None


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
