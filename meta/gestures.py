"""Embedded second meta-dataset: synthetic DVS gestures (classes defined by motion).

Made the way DVS128 Gesture was recorded (Amir et al. 2017): a bright hand moves in front of a
dark background, an event sensor sees only what changes, and every gesture is performed by a
person standing at about the same place. As there ("arm roll clockwise / counter-clockwise",
"hand rotation clockwise / counter-clockwise"), classes come in direction pairs: the same
movement traced one way or the other. The sensor is the simulated one of
:mod:`neuromaml.meta.synthetic`.

Geometry: a ``W x H = 32 x 16`` px sensor (``SENSOR_SIZE``), pixel ``(x, y)`` centred at the
integer point ``(x, y)``; recordings last ``duration_us = 100_000`` us (the networks' 100 steps
of 1 ms), so ``neuromaml data build --source events:DIR`` gives frames ``(2, 16, 32, 100)``.

Class structure: class ``c`` is movement ``m = c // 2`` traced forwards (``c`` even, phase
increasing) or backwards (``c`` odd, phase decreasing), so 100 classes are 50 movements x 2
directions and the classes of a pair are adjacent (``g000``/``g001``, ...). Both classes of a
pair share everything but the direction: path, size, speed, start pose and hand. A movement
``m`` (drawn once from ``default_rng([seed, m, ...])``, :class:`GestureParams` names):

* Path: a closed low-order Fourier curve ``q(phi) = sum_{k=1..K} a_k cos(2 pi k phi) +
  b_k sin(2 pi k phi)`` (phi in cycles, ``K = harmonics``), ``a_k, b_k in R^2`` with i.i.d.
  ``N(0, k^-harmonic_decay)`` coordinates: an ellipse (k = 1) with smooth lobes (k = 2, 3), a
  Lissajous-like figure. It is scaled isotropically so its bounding box fills the fraction
  ``U(fill)`` of the sensor less a ``margin_px`` border on the tighter axis.
* Placement: the box centre of every movement's path is the sensor centre
  ``((W - 1) / 2, (H - 1) / 2)``; only the per-recording shift below moves it. Where the hand
  is on average is therefore no class cue (the same person, the same spot); the path's shape
  and extent, and the order in which it is traced, are.
* Timing: ``U(freq_hz)`` cycles per second and a start phase ``U(0, 1)`` cycles (the start
  pose; a recording starts where the gesture starts, as DVS128 Gesture's labelled start
  times do, and both directions of a movement start from the same pose, as an arm roll starts
  from the arm at rest either way). Real gestures repeat at 1 to 2 Hz over seconds; time is
  compressed here so that one 100 ms recording holds 0.75 to 1.5 cycles of the motion.
* Hand: an elliptical gaussian of standard deviations ``sigma_major ~ U(sigma_px)`` px and
  ``sigma_major / U(aspect)`` (a blob at aspect 1, a short bar at 3), at an angle ``U(0, pi)``,
  covariance ``S``, its peak ``brightness`` in screen units (black 0, white 1) over a uniform
  ``background``.

What separates the two classes of a pair is time, not place: up to the recording jitter their
hands cross the same pixels (the whole path once a recording holds a full cycle), so their
time-summed event-count maps differ only by which arc a shorter-than-one-cycle recording
covers, the polarity pattern (ON events at the hand's leading edge, OFF at its trailing edge)
and noise; their time-resolved frames move apart from the shared start pose on.

A recording ``i`` of class ``c`` (drawn from ``default_rng([seed, c, i, ...])``, independent
for the two classes of a pair) varies it the way a person repeating a gesture does: start
phase ``+- phase_jitter`` cycles, speed ``x (1 +- speed_jitter)``, path size ``x (1 +-
scale_jitter)`` and rotation ``+- rotation_jitter_deg`` about its centre, translation ``+-
shift_px`` (x, y) px (where the person stands), the path's Fourier coefficients plus
``shape_jitter * N(0, k^-harmonic_decay)``, hand size ``x (1 +- size_jitter)`` and angle ``+-
angle_jitter_deg``, peak brightness ``U(brightness)`` (all uniform). These are plausible
repetition-to-repetition variations of one movement (about 10 % in speed, size and shape, a
few degrees of rotation, a shift of 5 % of the field of view), chosen from what a repeated
gesture looks like and not from any network's accuracy. Rendering: the intensity a pixel
integrates is the hand convolved with the optics' gaussian blur (``psf_sigma_px``) and the
pixel's 1 px box (approximated by a gaussian of variance 1/12 px^2), i.e. a gaussian of
covariance ``S + (psf_sigma_px^2 + 1/12) I`` whose total light equals the hand's; evaluated
every ``dvs.dt_us`` along the path.

Sensor: :func:`neuromaml.meta.synthetic.dvs_events` (log-intensity contrast threshold with
per-pixel mismatch, one threshold map per seed and sensor, refractory period, random initial
reference levels per recording) plus Poisson background events
(:func:`neuromaml.meta.synthetic.background_noise`), all with :class:`DVSParams` ``dvs``.

Deterministic: recording ``i`` of class ``c`` depends only on ``(seed, c, i, params)`` (not on
the batch it is simulated in). :func:`write_gesture_folder` writes the generic event folder
``ROOT/meta.json`` + ``ROOT/g000/000.npy ...`` that ``events:ROOT`` reads; the folder names
sort in class order, so the reader's seeded class split is unchanged (the two classes of a
pair may land in different splits, as a real split by gesture would allow).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from neuromaml.io import fail, remove_stale_temps, write_json
from neuromaml.meta.synthetic import DVSParams, background_noise, dvs_events, threshold_map

SENSOR_SIZE = (32, 16, 2)         # (W, H, C)
GENERATOR = "neuromaml gestures"
FORMAT_VERSION = 2   # 2: direction pairs around a common centre
_MOVE_KEY, _REC_KEY, _NOISE_KEY, _REF_KEY = 0x6E57C, 0x6E57D, 0x6E57E, 0x0FF5E7


@dataclass(frozen=True)
class GestureParams:
    """The generative model (module docstring). Lengths in px, times in us, rates in Hz.

    Pairs ``(lo, hi)`` are uniform ranges; ``*_jitter`` are half-widths of uniform variations
    per recording (relative unless a unit is named).
    """
    duration_us: int = 100_000
    # class: path
    harmonics: int = 3                          # K, Fourier harmonics of the path
    harmonic_decay: float = 1.5                 # coefficient std of harmonic k: k ** -decay
    fill: tuple[float, float] = (0.45, 0.9)     # path box / usable sensor, on the tighter axis
    margin_px: float = 2.0                      # border of the sensor the path box avoids (box centred)
    freq_hz: tuple[float, float] = (7.5, 15.0)  # cycles per second (0.75..1.5 per 100 ms)
    # class: hand
    sigma_px: tuple[float, float] = (0.8, 1.8)  # major standard deviation, px
    aspect: tuple[float, float] = (1.0, 3.0)    # major / minor standard deviation
    # recording
    phase_jitter: float = 0.05                  # cycles
    speed_jitter: float = 0.12
    scale_jitter: float = 0.10
    rotation_jitter_deg: float = 5.0
    shift_px: tuple[float, float] = (1.5, 1.0)  # (x, y) px
    shape_jitter: float = 0.10                  # x the class's coefficient std
    size_jitter: float = 0.10
    angle_jitter_deg: float = 10.0
    brightness: tuple[float, float] = (0.5, 1.0)  # hand's peak intensity, screen units
    # rendering and sensor
    background: float = 0.0                     # screen units (the sensor adds dvs.eps)
    psf_sigma_px: float = 0.5                   # optics blur
    dvs: DVSParams = DVSParams()


@dataclass(frozen=True)
class _Gesture:
    """One recording's motion and hand, resolved from the movement, direction and recording draws."""
    coef: np.ndarray        # (K, 2, 2): harmonic k, axis (x, y), (cos, sin)
    mid: np.ndarray         # (2,) box centre of the movement's path q, q units
    scale: float            # px per q unit
    rot: float              # rad
    centre: np.ndarray      # (2,) px, where ``mid`` lands
    phase0: float           # cycles
    rate: float             # signed cycles per us
    precision: np.ndarray   # (2, 2) inverse covariance of the rendered hand, px^-2
    peak: float             # peak intensity of the rendered hand, screen units


def _uni(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _jit(rng: np.random.Generator, half: float) -> float:
    return float(rng.uniform(-half, half))


def _curve(coef: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``q(phi)`` ``(n, 2)`` of Fourier coefficients ``coef`` ``(K, 2, 2)`` at phases ``phi`` (cycles)."""
    k = np.arange(1, coef.shape[0] + 1)
    a = 2 * np.pi * np.outer(np.asarray(phi, np.float64), k)     # (n, K)
    return np.cos(a) @ coef[:, :, 0] + np.sin(a) @ coef[:, :, 1]


def movement_of(class_idx: int) -> int:
    """The movement (path, size, speed, start pose, hand) class ``class_idx`` traces: ``class_idx // 2``."""
    return int(class_idx) // 2


def direction_of(class_idx: int) -> int:
    """+1 (phase increasing) for even classes, -1 (the same path backwards) for odd ones."""
    return 1 if int(class_idx) % 2 == 0 else -1


def _gesture(class_idx: int, sample_idx: int, seed: int, params: GestureParams) -> _Gesture:
    if class_idx < 0 or sample_idx < 0 or seed < 0:
        raise ValueError(f"class, sample and seed must be >= 0, got {class_idx}, {sample_idx}, {seed}")
    W, H = SENSOR_SIZE[0], SENSOR_SIZE[1]
    K = params.harmonics
    decay = np.arange(1, K + 1, dtype=np.float64) ** -params.harmonic_decay
    # movement: drawn once per (seed, class // 2); the two classes of a pair differ in direction only
    rng = np.random.default_rng([seed, movement_of(class_idx), _MOVE_KEY])
    coef = rng.standard_normal((K, 2, 2)) * decay[:, None, None]
    q = _curve(coef, np.arange(512) / 512)
    lo, hi = q.min(0), q.max(0)
    ext = np.maximum(hi - lo, 1e-6)
    usable = np.array([W - 2 * params.margin_px, H - 2 * params.margin_px])
    scale = _uni(rng, params.fill) * float(np.min(usable / ext))
    centre = np.array([(W - 1) / 2, (H - 1) / 2])       # common to all classes
    freq = _uni(rng, params.freq_hz)
    phase = float(rng.random())
    sig_major = _uni(rng, params.sigma_px)
    sig_minor = sig_major / _uni(rng, params.aspect)
    angle = float(rng.uniform(0, np.pi))
    direction = float(direction_of(class_idx))
    # recording: drawn per (seed, class, sample)
    rng = np.random.default_rng([seed, class_idx, sample_idx, _REC_KEY])
    phase += _jit(rng, params.phase_jitter)
    speed = 1 + _jit(rng, params.speed_jitter)
    scale *= 1 + _jit(rng, params.scale_jitter)
    rot = np.deg2rad(_jit(rng, params.rotation_jitter_deg))
    centre = centre + np.array([_jit(rng, params.shift_px[0]), _jit(rng, params.shift_px[1])])
    coef = coef + params.shape_jitter * rng.standard_normal((K, 2, 2)) * decay[:, None, None]
    size = 1 + _jit(rng, params.size_jitter)
    angle += np.deg2rad(_jit(rng, params.angle_jitter_deg))
    bright = _uni(rng, params.brightness)
    # hand covariance, blurred by the optics and integrated over the pixel
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    cov = R @ np.diag([(size * sig_major) ** 2, (size * sig_minor) ** 2]) @ R.T
    cov_eff = cov + (params.psf_sigma_px ** 2 + 1 / 12) * np.eye(2)
    peak = bright * float(np.sqrt(np.linalg.det(cov) / np.linalg.det(cov_eff)))
    return _Gesture(coef, (lo + hi) / 2, scale, float(rot), centre, phase, direction * speed * freq * 1e-6,
                    np.linalg.inv(cov_eff), peak)


def _positions(g: _Gesture, t_us: np.ndarray) -> np.ndarray:
    phi = g.phase0 + g.rate * np.asarray(t_us, np.float64)
    c, s = np.cos(g.rot), np.sin(g.rot)
    R = np.array([[c, -s], [s, c]])
    return g.centre + g.scale * (_curve(g.coef, phi) - g.mid) @ R.T


def gesture_trajectory(class_idx: int, sample_idx: int, t_us, seed: int = 0,
                       params: GestureParams = GestureParams()) -> np.ndarray:
    """Centre ``(n, 2)`` (x, y in px) of the hand of recording ``sample_idx`` of class ``class_idx`` at ``t_us``."""
    return _positions(_gesture(class_idx, sample_idx, seed, params), t_us)


def gesture_recordings(class_idx: int, sample_indices: Sequence[int], seed: int = 0,
                       params: GestureParams = GestureParams()) -> list[np.ndarray]:
    """Recordings ``sample_indices`` of class ``class_idx``: one ``EVENT_DTYPE`` array each, sorted by t.

    Simulated as one batch; each recording equals the one :func:`gesture_events` gives alone.
    """
    W, H = SENSOR_SIZE[0], SENSOR_SIZE[1]
    dvs = params.dvs
    if params.duration_us <= 0:
        raise ValueError(f"duration_us must be > 0, got {params.duration_us}")
    idx = [int(i) for i in sample_indices]
    gs = [_gesture(class_idx, i, seed, params) for i in idx]
    n_steps = int(np.ceil(params.duration_us / dvs.dt_us))
    t = np.arange(n_steps + 1, dtype=np.float64) * dvs.dt_us
    pos = np.stack([_positions(g, t) for g in gs])                # (B, steps + 1, 2)
    prec = np.stack([g.precision for g in gs])[:, :, :, None, None]
    peak = np.array([g.peak for g in gs])[:, None, None]
    X = np.arange(W, dtype=np.float64)[None, None, :]
    Y = np.arange(H, dtype=np.float64)[None, :, None]

    def intensity(s: int) -> np.ndarray:
        dx = X - pos[:, s, 0, None, None]
        dy = Y - pos[:, s, 1, None, None]
        quad = prec[:, 0, 0] * dx * dx + 2 * prec[:, 0, 1] * dx * dy + prec[:, 1, 1] * dy * dy
        return (params.background + peak * np.exp(-0.5 * quad)).astype(np.float32)

    offs = np.stack([np.random.default_rng([seed, class_idx, i, _REF_KEY]).uniform(-0.5, 0.5, (H, W))
                     for i in idx]) if idx else np.zeros((0, H, W))
    evs = dvs_events(intensity, n_steps, offs, threshold_map(seed, dvs, (H, W)), dvs)
    out = []
    for i, ev in zip(idx, evs):
        if dvs.noise_hz > 0:
            noise = background_noise((seed, class_idx, i, _NOISE_KEY), params.duration_us, dvs.noise_hz, (W, H))
            ev = np.concatenate([ev, noise])
        out.append(ev[np.argsort(ev["t"], kind="stable")])
    return out


def gesture_events(class_idx: int, sample_idx: int, seed: int = 0,
                   params: GestureParams = GestureParams()) -> np.ndarray:
    """Recording ``sample_idx`` of gesture class ``class_idx`` (``EVENT_DTYPE``, sorted by t, in us)."""
    return gesture_recordings(class_idx, [sample_idx], seed, params)[0]


def class_name(class_idx: int, classes: int) -> str:
    """Folder name of a class: ``g000`` .. (at least 3 digits; sorted order is class order, so the
    two directions of movement ``m`` are the adjacent folders ``2m``, ``2m + 1``; with an odd
    ``classes`` the last movement has its forward direction only)."""
    return f"g{class_idx:0{max(3, len(str(classes - 1)))}d}"


MAX_CLASSES = 10_000                 # generate --classes
MAX_PER_CLASS = 100_000              # generate --per-class (as data build's --per-class)
BYTES_PER_RECORDING = 12_000         # a default recording's .npy: ~840 events x 13 bytes + header (measured)


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def check_generate_args(out_dir, classes: int, per_class: int, seed: int) -> None:
    """Refuse counts that cannot make a data set: ``2 <= classes <= MAX_CLASSES``, ``1 <= per_class
    <= MAX_PER_CLASS``, ``seed >= 0``, and a folder whose estimated size does not fit the free
    space where it goes (named with the estimate, before any work)."""
    out = Path(out_dir)
    if not Path(os.path.abspath(out)).name:
        raise fail(out, "--out names no folder", "pass a folder path such as data/gestures")
    for flag, v, lo, hi, why in (("--classes", classes, 2, MAX_CLASSES, "a task needs at least 2 classes"),
                                 ("--per-class", per_class, 1, MAX_PER_CLASS, "every class needs a recording"),
                                 ("--seed", seed, 0, None, "seeds are non-negative")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise fail(out, f"{flag} is {v!r} ({why})", f"use an integer >= {lo}")
        if hi is not None and v > hi:
            raise fail(out, f"{flag} {v:,} is more than this generator writes ({hi:,})", f"use {flag} {hi:,} or fewer")
    need = int(classes) * int(per_class) * BYTES_PER_RECORDING
    anc = Path(os.path.abspath(out))
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    try:
        free = shutil.disk_usage(anc).free
    except OSError:
        return
    if need > free:
        raise fail(out, f"--classes {classes:,} x --per-class {per_class:,} = {classes * per_class:,} recordings, about "
                   f"{_size(need)}; {_size(free)} is free on {anc}", "ask for fewer classes or recordings per class, "
                   "or write --out on a larger disk")


def write_gesture_folder(out_dir, classes: int = 100, per_class: int = 40, seed: int = 0,
                         progress: bool = True, params: GestureParams = GestureParams()) -> dict:
    """Write ``classes x per_class`` recordings as a generic event folder, atomically.

    ``out_dir/meta.json`` (``sensor_size``, ``duration_us`` and the generator's seed and params)
    and ``out_dir/g000/000.npy`` ...: everything is written into a temporary sibling folder that
    is renamed into place at the end; on any error nothing is left. Refuses an ``out_dir`` that
    exists and is not an empty folder. Returns a summary dict (path, seconds, bytes, events).
    """
    out = Path(out_dir)
    check_generate_args(out, classes, per_class, seed)
    if out.exists() and not out.is_dir():
        raise fail(out, "exists and is not a folder", "choose a new --out folder")
    if out.is_dir() and any(out.iterdir()):
        raise fail(out, "folder exists and is not empty", "choose a new --out folder or remove this one")
    t_start = time.perf_counter()
    dest = Path(os.path.abspath(out))
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)   # a killed writer's .NAME.PID.XXXX.tmp folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent))
    meta = {"sensor_size": list(SENSOR_SIZE), "duration_us": int(params.duration_us), "generator": GENERATOR,
            "version": FORMAT_VERSION, "seed": int(seed), "classes": int(classes), "per_class": int(per_class),
            "params": asdict(params)}
    counts, on, nbytes = [], 0, 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=classes, desc="gestures", unit="class")
    try:
        nbytes += write_json(tmp / "meta.json", meta).stat().st_size
        width = max(3, len(str(per_class - 1)))
        for c in range(classes):
            cdir = tmp / class_name(c, classes)
            cdir.mkdir()
            for i, ev in enumerate(gesture_recordings(c, range(per_class), seed, params)):
                path = cdir / f"{i:0{width}d}.npy"
                with open(path, "wb") as fh:
                    np.save(fh, ev, allow_pickle=False)
                    fh.flush()
                    os.fsync(fh.fileno())
                nbytes += path.stat().st_size
                counts.append(ev.size)
                on += int(ev["p"].sum())
            if bar is not None:
                bar.update(1)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)   # the usual permissions, not mkdtemp's 0700
        try:
            os.replace(tmp, dest)   # atomic; replaces an empty folder, fails on a non-empty one
        except OSError as exc:
            raise fail(out, f"cannot move the generated folder into place ({exc.strerror})",
                       "choose a new --out folder (another process may have written this one)") from None
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from neuromaml.io import reraise_disk_full

        reraise_disk_full(exc, out)     # name the folder, not a recording in its temporary twin
        raise
    finally:
        if bar is not None:
            bar.close()
    with contextlib.suppress(OSError):   # make the rename durable
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    counts = np.asarray(counts)
    return {"path": str(out), "seconds": round(time.perf_counter() - t_start, 3), "bytes": nbytes,
            "generator": GENERATOR, "classes": classes, "per_class": per_class, "num_recordings": int(counts.size),
            "seed": seed, "sensor_size": list(SENSOR_SIZE), "duration_us": int(params.duration_us),
            "events_per_recording": {"mean": round(float(counts.mean()), 1), "min": int(counts.min()),
                                     "max": int(counts.max())},
            "on_fraction": round(on / max(1, int(counts.sum())), 4), "params": asdict(params)}
