"""Event recordings: one dtype, offline readers, validation and binning into frames.

An event recording is a numpy structured array of ``EVENT_DTYPE``::

    t  int64  timestamp in microseconds (us)
    x  int16  column, 0 <= x < W
    y  int16  row,    0 <= y < H
    p  int8   polarity, 0 = OFF (darker), 1 = ON (brighter)

Readers (all offline, from a folder the user names; nothing is ever downloaded):

* N-MNIST binary ``.bin`` (``Train/<digit>/*.bin``, ``Test/<digit>/*.bin``): 5 bytes per
  event, ``x`` (8 bit), ``y`` (8 bit), polarity (1 bit), ``t`` (23 bit, us). A record with
  ``y == 240`` is a timestamp-overflow marker: it adds ``2**13`` us to every later event.
* ASL-DVS ``.mat`` (``<letter>/*.mat``, letters a..y without j): keys ``ts``, ``x``, ``y``,
  ``pol`` (MATLAB column vectors, flattened here); the DAVIS240 sensor is 240 x 180 and rows are
  flipped (``y = 179 - y``) as tonic does.
* A generic folder ``ROOT/<class_name>/<sample>.npy`` (structured arrays with fields t, x, y, p)
  with ``ROOT/meta.json`` = ``{"sensor_size": [W, H, 2], "duration_us": N}``.

Every user-input problem raises :class:`neuromaml.io.NeuromamlError` naming the file, the field
and the fix.
"""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np

from neuromaml.io import fail, parse_json_text

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])

NMNIST_SENSOR = (34, 34, 2)     # (W, H, C) of the ATIS crop used by N-MNIST
ASL_SENSOR = (240, 180, 2)      # (W, H, C) of the DAVIS240 used by ASL-DVS
ASL_LETTERS = "abcdefghiklmnopqrstuvwxy"  # 24 static letters (no j, no z)
MAX_SENSOR_PX = 4096            # a side; today's largest event sensors are 1280 x 720
MAX_DURATION_US = 100_000_000   # 100 s per recording
_NMNIST_OVERFLOW_Y = 240
_NMNIST_OVERFLOW_US = 2 ** 13


def make_events(t, x, y, p) -> np.ndarray:
    """Pack 1-D (or column) arrays into a structured ``EVENT_DTYPE`` array (flattened)."""
    t, x, y, p = (np.asarray(a).reshape(-1) for a in (t, x, y, p))
    ev = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def validate_events(ev: np.ndarray, sensor_size, path=None) -> np.ndarray:
    """Check fields, dtype conversion and coordinates; return the events as ``EVENT_DTYPE``.

    ``sensor_size`` is ``(W, H, 2)``; every event must satisfy ``0 <= x < W``, ``0 <= y < H``,
    ``p in {0, 1}`` and ``t >= 0``.
    """
    if not isinstance(ev, np.ndarray) or ev.dtype.names is None:
        kind = getattr(ev, "dtype", type(ev).__name__)
        raise fail(path, f"events must be a structured array with fields t, x, y, p, got dtype {kind}",
                   "save np.array(..., dtype=neuromaml.meta.events.EVENT_DTYPE)")
    missing = [f for f in ("t", "x", "y", "p") if f not in ev.dtype.names]
    if missing:
        raise fail(path, f"events lack field(s) {missing} (has {list(ev.dtype.names)})",
                   "save structured arrays with fields t (us), x, y, p")
    if ev.ndim > 1:
        raise fail(path, f"events have shape {ev.shape}: one recording is a 1-D list of events (several "
                   "recordings in one file would be merged into one sample)", "save one recording per .npy file")
    for f in ("t", "x", "y", "p"):
        if ev.dtype[f].kind not in "iub":
            raise fail(path, f"field '{f}' has dtype {ev.dtype[f]}, expected an integer type",
                       "store t in integer microseconds and x, y, p as integers")
    ev = ev.reshape(-1)
    W, H = int(sensor_size[0]), int(sensor_size[1])
    # ranges on the recording's own dtypes, before the cast to EVENT_DTYPE could wrap a value
    for f, hi in (("x", W - 1), ("y", H - 1), ("p", 1), ("t", np.iinfo(np.int64).max)):
        col, info = ev[f], np.iinfo(EVENT_DTYPE[f])
        if col.size and (int(col.max()) > info.max or int(col.min()) < info.min):
            bad = int(col.max()) if int(col.max()) > info.max else int(col.min())
            what = {"x": f"outside the {W}x{H} sensor", "y": f"outside the {W}x{H} sensor",
                    "p": "not 0 (OFF) or 1 (ON)", "t": "not a timestamp in [0, 2**63) us"}[f]
            raise fail(path, f"field '{f}' holds {bad}: {what}",
                       {"x": "fix sensor_size in meta.json or the recording's coordinates",
                        "y": "fix sensor_size in meta.json or the recording's coordinates",
                        "p": "map polarities to 0/1",
                        "t": "shift timestamps to start at >= 0 us"}[f])
    out = np.empty(ev.shape[0], dtype=EVENT_DTYPE)
    for f in ("t", "x", "y", "p"):
        out[f] = ev[f]
    if out.size:
        bad = (out["x"] < 0) | (out["x"] >= W) | (out["y"] < 0) | (out["y"] >= H)
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(path, f"{int(bad.sum())} event(s) outside the {W}x{H} sensor "
                       f"(first: x={int(out['x'][i])}, y={int(out['y'][i])})",
                       "fix sensor_size in meta.json or the recording's coordinates")
        badp = (out["p"] != 0) & (out["p"] != 1)
        if badp.any():
            raise fail(path, f"field 'p' holds {sorted(set(np.unique(out['p']).tolist()) - {0, 1})}, "
                       "expected 0 (OFF) or 1 (ON)", "map polarities to 0/1")
        if (out["t"] < 0).any():
            raise fail(path, "field 't' has negative timestamps", "shift timestamps to start at >= 0 us")
    return out


# --------------------------------------------------------------------------- N-MNIST
def decode_nmnist(raw: bytes | np.ndarray, path=None) -> np.ndarray:
    """Decode N-MNIST 40-bit records (bytes) into ``EVENT_DTYPE`` events, overflow markers removed."""
    raw = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray)) else np.asarray(raw, np.uint8)
    if raw.size % 5:
        raise fail(path, f"truncated N-MNIST file: {raw.size} bytes is not a multiple of 5 "
                   f"(40-bit events; {raw.size % 5} trailing byte(s))", "re-copy the file from the dataset")
    rec = raw.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 127) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == _NMNIST_OVERFLOW_Y
    t = t + np.cumsum(overflow) * _NMNIST_OVERFLOW_US
    keep = ~overflow
    ev = make_events(t[keep], x[keep], y[keep], p[keep])
    return validate_events(ev, NMNIST_SENSOR, path)


def read_nmnist_bin(path) -> np.ndarray:
    """Read one N-MNIST ``.bin`` recording (sensor 34 x 34)."""
    path = Path(path)
    if not path.is_file():
        raise fail(path, "N-MNIST file not found", "check the path")
    raw = path.read_bytes()
    if not raw:
        raise fail(path, "empty N-MNIST file (0 bytes): a failed copy or download", "re-copy the file from the dataset")
    return decode_nmnist(raw, path)


# --------------------------------------------------------------------------- ASL-DVS
def read_asl_mat(path) -> np.ndarray:
    """Read one ASL-DVS ``.mat`` recording (keys ts, x, y, pol; sensor 240 x 180, rows flipped)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise fail(path, "ASL-DVS file not found", "check the path")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise fail(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})",
                   "re-copy the file from the ASL-DVS dataset") from None
    missing = [k for k in ("ts", "x", "y", "pol") if k not in mat]
    if missing:
        raise fail(path, f".mat lacks key(s) {missing} (has {sorted(k for k in mat if not k.startswith('__'))})",
                   "use ASL-DVS recordings with keys ts, x, y, pol")
    cols = [np.asarray(mat[k]).reshape(-1) for k in ("ts", "x", "y", "pol")]
    if len({c.size for c in cols}) != 1:
        raise fail(path, f"keys ts, x, y, pol have different lengths {[c.size for c in cols]}",
                   "re-copy the file from the dataset")
    ts, x, y, pol = (c.astype(np.int64) for c in cols)
    ev = make_events(ts, x, ASL_SENSOR[1] - 1 - y, pol)
    return validate_events(ev, ASL_SENSOR, path)


# --------------------------------------------------------------------------- generic
def read_npy_events(path, sensor_size) -> np.ndarray:
    """Read one generic ``.npy`` recording (structured array t, x, y, p) and validate it."""
    path = Path(path)
    try:
        ev = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise fail(path, f"not a readable .npy array ({type(exc).__name__}: {exc})",
                   "save recordings with numpy.save(path, events)") from None
    return validate_events(ev, sensor_size, path)


def read_event_meta(root) -> dict:
    """Read and check ``ROOT/meta.json`` -> ``{"sensor_size": (W, H, 2), "duration_us": int}``."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise fail(path, "meta.json not found",
                   'write {"sensor_size": [W, H, 2], "duration_us": N} into the event folder')
    meta = parse_json_text(path, 'write meta.json as JSON text, e.g. {"sensor_size": [W, H, 2], "duration_us": N}')
    ss = meta.get("sensor_size") if isinstance(meta, dict) else None
    ok = (isinstance(ss, list) and len(ss) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in ss)
          and ss[0] > 0 and ss[1] > 0 and ss[2] == 2)
    if not ok:
        raise fail(path, f"field 'sensor_size' is {ss!r}, expected [W, H, 2] with positive integers W, H",
                   'write e.g. "sensor_size": [34, 34, 2]')
    if ss[0] > MAX_SENSOR_PX or ss[1] > MAX_SENSOR_PX:
        raise fail(path, f"field 'sensor_size' is {ss!r}: larger than any event sensor "
                   f"(at most {MAX_SENSOR_PX} px a side here)", "give the sensor's real width and height in pixels")
    dur = meta.get("duration_us")
    if not (isinstance(dur, int) and not isinstance(dur, bool) and 0 < dur <= MAX_DURATION_US):
        raise fail(path, f"field 'duration_us' is {dur!r}, expected a positive integer of microseconds "
                   f"up to {MAX_DURATION_US} (100 s)", 'write e.g. "duration_us": 100000')
    return {"sensor_size": tuple(ss), "duration_us": dur}


# --------------------------------------------------------------------------- folders
def _require_dir(root, what: str, fix: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise fail(root, f"{what} folder not found", fix)
    return root


def _class_files(class_dir: Path, pattern: str, fix: str) -> list[Path]:
    files = sorted(class_dir.glob(pattern))
    nested = [d for d in class_dir.iterdir() if d.is_dir() and any(d.rglob(pattern))]
    if nested:
        raise fail(nested[0], f"holds {pattern} files in a sub-folder of class {class_dir.name!r}; only the class "
                   "folder's own recordings are read", "move them up into the class folder (or make them a class)")
    odd = [f for f in files if not f.is_file()]
    if odd:
        raise fail(odd[0], "is not a regular file (a folder, pipe or device) among the recordings",
                   "remove it or replace it with a recording")
    if not files:
        raise fail(class_dir, f"empty class: no {pattern} files", fix)
    return files


def scan_nmnist(root) -> dict[str, list[Path]]:
    """Files of an N-MNIST folder by digit: ``{"0": [...], ..., "9": [...]}`` (Train then Test)."""
    root = _require_dir(root, "N-MNIST", "point to the folder holding Train/ and Test/")
    parts = [root / s for s in ("Train", "Test") if (root / s).is_dir()]
    if not parts:
        raise fail(root, "N-MNIST folder has neither Train/ nor Test/",
                   "point to the folder holding Train/<digit>/*.bin and Test/<digit>/*.bin")
    out: dict[str, list[Path]] = {}
    for d in range(10):
        files: list[Path] = []
        for part in parts:
            if (part / str(d)).is_dir():
                files += sorted((part / str(d)).glob("*.bin"))
        if not files:
            raise fail(parts[0] / str(d), f"empty class: no .bin files for digit {d} in {[p.name for p in parts]}",
                       "copy the complete N-MNIST dataset")
        out[str(d)] = files
    return out


def scan_asl_dvs(root) -> dict[str, list[Path]]:
    """Files of an ASL-DVS folder by letter: ``{"a": [...], ..., "y": [...]}`` (24 letters)."""
    root = _require_dir(root, "ASL-DVS", "point to the folder holding a/ ... y/ with .mat files")
    out = {}
    for letter in ASL_LETTERS:
        d = root / letter
        if not d.is_dir():
            raise fail(d, f"class folder for letter '{letter}' not found",
                       "ASL-DVS needs folders a..y (without j), each with .mat files")
        out[letter] = _class_files(d, "*.mat", "copy the letter's .mat recordings")
    return out


def scan_event_folder(root) -> tuple[dict, dict[str, list[Path]]]:
    """Meta and files of a generic folder: ``(meta, {class_name: [npy files]})``, classes sorted."""
    root = _require_dir(root, "event", "point to ROOT holding meta.json and <class>/<sample>.npy")
    meta = read_event_meta(root)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise fail(root, "no class folders", "put each class's .npy recordings in ROOT/<class_name>/")
    seen: dict[str, Path] = {}
    names: dict[str, Path] = {}
    for c in classes:
        key = unicodedata.normalize("NFC", c.name).strip()
        if key in names:                 # 'café' twice (NFC/NFD), 'g001' and 'g001 ': one class or two?
            raise fail(c, f"looks like the class folder {names[key].name!r} (same name up to Unicode form or "
                       "surrounding spaces): they would be two classes", "rename or merge them")
        names[key] = c
        try:
            c.name.encode("utf-8")
        except UnicodeEncodeError:
            raise fail(c, "the class folder's name is not valid UTF-8 (unpacked from an archive in another "
                       "encoding?): class names are stored as text", "rename the folder") from None
        real = os.path.realpath(c)
        if real in seen:                 # a link to another class: the same recordings twice, maybe
            raise fail(c, f"is the same folder as {seen[real].name} (a symbolic link): its recordings would "
                       "be one class under two names, possibly in two splits", "remove the link")
        seen[real] = c
    out = {c.name: _class_files(c, "*.npy", "add .npy recordings or remove the folder") for c in classes}
    where: dict[str, Path] = {}
    for files in out.values():          # a recording linked into two classes would be a sample of both
        for f in files:
            real = os.path.realpath(f)
            if real in where:
                raise fail(f, f"is the same recording as {where[real]} (a link or a copy by link): one recording "
                           "would be a sample of two classes, or twice of one", "keep one of them")
            where[real] = f
    return meta, out


# --------------------------------------------------------------------------- binning
def events_to_frames(ev: np.ndarray, sensor_size, time_steps: int, dt_us: int = 1000,
                     downsample: int = 1, t0: int = 0) -> np.ndarray:
    """Bin events into spike-count frames ``(2, H // ds, W // ds, time_steps)`` (int32).

    An event at (t, x, y, p) adds 1 to ``frames[p, y // ds, x // ds, (t - t0) // dt_us]``
    (sum pooling over ``ds x ds`` pixels); events with ``t - t0`` outside
    ``[0, time_steps * dt_us)`` and pixels beyond the last full pooling block are dropped.
    Channel 0 = OFF, channel 1 = ON.
    """
    W, H = int(sensor_size[0]) // downsample, int(sensor_size[1]) // downsample
    k = (ev["t"] - t0) // dt_us
    xs, ys = ev["x"].astype(np.int64) // downsample, ev["y"].astype(np.int64) // downsample
    keep = (k >= 0) & (k < time_steps) & (xs < W) & (ys < H)
    flat = ((ev["p"][keep].astype(np.int64) * H + ys[keep]) * W + xs[keep]) * time_steps + k[keep]
    counts = np.bincount(flat, minlength=2 * H * W * time_steps)
    return counts.reshape(2, H, W, time_steps).astype(np.int32)
