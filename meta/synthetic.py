"""Embedded default data: synthetic DVS recordings of scikit-learn's handwritten digits.

Made the way N-MNIST was recorded (Orchard et al. 2015): a digit image moves along three
saccades in front of an event sensor. Here the sensor is simulated:

* Image: one of the 1,797 8x8 digits of ``sklearn.datasets.load_digits`` (ships with
  scikit-learn, no download), intensities 0..16 scaled to ``I in [0, 1]``, upsampled bilinearly
  to 28 x 28 px and shown on a 34 x 34 sensor.
* Motion: the image's top-left corner follows a triangle ``V0 -> V1 -> V2 -> V0``
  (``SACCADE_VERTICES``, px), one straight saccade of 100 ms per side (300 ms in all), rendered
  with bilinear sub-pixel shifts every ``dt_us``.
* Sensor: per pixel the log intensity ``L = log(I + eps)`` is compared with a reference
  ``L_ref``; when ``|L - L_ref| >= C_pix`` the pixel emits ``n = floor(|L - L_ref| / C_pix)``
  events (at most ``dt_us // refractory_us`` per step: the refractory period) of polarity
  ON (1) if the change is positive else OFF (0), spread evenly over the step, and its reference
  moves by ``n * C_pix`` towards ``L``. ``C_pix = C * (1 + mismatch * N(0, 1))`` is a fixed
  per-pixel threshold (the sensor's mismatch: one map per seed); ``L_ref`` starts at
  ``L(t=0)`` plus a uniform offset in ``[-C/2, C/2)`` per pixel and recording.
* Noise: background events, Poisson with ``noise_hz`` per pixel, random polarity.

Deterministic: recording ``i`` depends only on ``(seed, i, params)``; a shorter ``duration_us``
yields exactly the prefix of a longer one (noise is drawn per saccade).

The sensor model itself (:func:`dvs_events`, :func:`threshold_map`, :func:`background_noise`)
knows nothing of digits; ``neuromaml.meta.gestures`` records its moving objects with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from neuromaml.meta.events import EVENT_DTYPE, NMNIST_SENSOR

SENSOR_SIZE = NMNIST_SENSOR             # (W, H, 2) = (34, 34, 2)
IMAGE_PX = 28                           # upsampled digit size, px
SACCADE_US = 100_000                    # one saccade, us
SACCADE_VERTICES = ((1.0, 1.0), (3.5, 5.0), (6.0, 1.0))   # (x, y) of the image's top-left, px
MAX_DURATION_US = 3 * SACCADE_US


@dataclass(frozen=True)
class DVSParams:
    """Simulated sensor. Units: thresholds in natural-log intensity, times in us, rates in Hz."""
    threshold: float = 0.45       # C, contrast threshold (log units)
    mismatch: float = 0.05        # relative std of the per-pixel threshold
    eps: float = 0.05             # dark level added before the log (screen black level)
    refractory_us: int = 250      # min spacing of one pixel's events (caps events per step)
    noise_hz: float = 0.2         # background events per pixel per second
    dt_us: int = 500              # simulation step


@lru_cache(maxsize=1)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits: ``(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def upsample(images: np.ndarray, size: int = IMAGE_PX) -> np.ndarray:
    """Bilinear upsampling ``(B, h, w) -> (B, size, size)`` (pixel centres aligned)."""
    b, h, w = images.shape

    def axis(n_in):
        c = (np.arange(size) + 0.5) * n_in / size - 0.5
        c = np.clip(c, 0, n_in - 1)
        i0 = np.minimum(np.floor(c).astype(np.int64), n_in - 2)
        return i0, (c - i0).astype(np.float32)

    iy, fy = axis(h)
    ix, fx = axis(w)
    rows = images[:, iy, :] * (1 - fy)[None, :, None] + images[:, iy + 1, :] * fy[None, :, None]
    return rows[:, :, ix] * (1 - fx) + rows[:, :, ix + 1] * fx


def saccade_offset(t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-left position (x, y) in px of the image at times ``t_us`` (piecewise linear triangle)."""
    v = np.array(SACCADE_VERTICES + SACCADE_VERTICES[:1], dtype=np.float64)
    t = np.clip(np.asarray(t_us, dtype=np.float64), 0, MAX_DURATION_US)
    k = np.minimum((t // SACCADE_US).astype(np.int64), 2)
    f = (t - k * SACCADE_US) / SACCADE_US
    pos = v[k] * (1 - f)[:, None] + v[k + 1] * f[:, None]
    return pos[:, 0], pos[:, 1]


def render(images28: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Place ``(B, 28, 28)`` images at sub-pixel offset (sx, sy) on the ``(B, 34, 34)`` sensor."""
    W, H = SENSOR_SIZE[0], SENSOR_SIZE[1]
    b = images28.shape[0]
    ix, iy = int(np.floor(sx)), int(np.floor(sy))
    fx, fy = sx - ix, sy - iy
    canvas = np.zeros((b, H + 1, W + 1), dtype=np.float32)
    canvas[:, iy:iy + IMAGE_PX, ix:ix + IMAGE_PX] = images28
    # value at pixel (v, u) = image(v - sy, u - sx), bilinear
    c00 = canvas[:, :H, :W]
    out = (1 - fx) * (1 - fy) * c00
    out += fx * (1 - fy) * np.pad(canvas[:, :H, :W - 1], ((0, 0), (0, 0), (1, 0)))
    out += (1 - fx) * fy * np.pad(canvas[:, :H - 1, :W], ((0, 0), (1, 0), (0, 0)))
    out += fx * fy * np.pad(canvas[:, :H - 1, :W - 1], ((0, 0), (1, 0), (1, 0)))
    return out


def threshold_map(seed: int, params: DVSParams, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The sensor's per-pixel contrast thresholds ``(H, W)`` (fixed per seed).

    ``shape`` is the sensor's ``(H, W)`` (default: the 34 x 34 digits sensor).
    """
    rng = np.random.default_rng([seed, 0x5E750])
    shape = (SENSOR_SIZE[1], SENSOR_SIZE[0]) if shape is None else tuple(shape)
    c = params.threshold * (1 + params.mismatch * rng.standard_normal(shape))
    return np.maximum(c, 0.2 * params.threshold).astype(np.float32)


def background_noise(entropy: Sequence[int], duration_us: int, rate_hz: float, sensor_wh: tuple[int, int],
                     chunk_us: int = SACCADE_US) -> np.ndarray:
    """Background events of one recording: Poisson, ``rate_hz`` per pixel, random pixel and polarity.

    Drawn per ``chunk_us`` window from ``default_rng([*entropy, window, ...])``, so a shorter
    ``duration_us`` yields exactly the prefix of a longer one. ``sensor_wh`` is ``(W, H)`` in px.
    Events are in draw order (not sorted by time).
    """
    W, H = int(sensor_wh[0]), int(sensor_wh[1])
    parts = []
    for s in range(int(np.ceil(duration_us / chunk_us))):
        rng = np.random.default_rng([*entropy, s, 0xA015E])
        n = rng.poisson(rate_hz * W * H * chunk_us * 1e-6)
        t = s * chunk_us + rng.integers(0, chunk_us, n)
        ev = np.empty(n, EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["p"] = t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
        parts.append(ev[ev["t"] < duration_us])
    return np.concatenate(parts) if parts else np.empty(0, EVENT_DTYPE)


def _noise(seed: int, gid: int, duration_us: int, rate_hz: float) -> np.ndarray:
    return background_noise((seed, gid), duration_us, rate_hz, SENSOR_SIZE[:2])


def dvs_events(intensity: Callable[[int], np.ndarray], n_steps: int, ref_offsets: np.ndarray,
               cmap: np.ndarray, params: DVSParams) -> list[np.ndarray]:
    """The sensor model without background noise: events of a batch of B recordings.

    ``intensity(s)`` returns the linear intensities ``(B, H, W)`` (float32, screen units,
    0 = black) at time ``s * params.dt_us`` for ``s = 0 .. n_steps``; ``ref_offsets`` ``(B, H, W)``
    are the initial reference offsets in units of ``params.threshold`` (uniform in
    ``[-0.5, 0.5)``); ``cmap`` ``(H, W)`` the per-pixel thresholds (:func:`threshold_map`).
    Every pixel is independent, so a recording does not depend on its batch. Returns one event
    array per recording, sorted by ``t`` (us, all ``< n_steps * dt_us``).
    """
    b, H, W = ref_offsets.shape
    dt = params.dt_us
    cmap = cmap[None]
    n_max = max(1, dt // params.refractory_us)
    L = np.log(intensity(0) + params.eps)
    ref = L + (ref_offsets * params.threshold).astype(np.float32)
    chunks = []   # (rec, y, x, p, n, step)
    for s in range(n_steps):
        L = np.log(intensity(s + 1) + params.eps)
        diff = L - ref
        n = np.minimum(np.floor(np.abs(diff) / cmap), n_max).astype(np.int64)
        flat = np.flatnonzero(n)
        if flat.size:
            rec, pix = np.divmod(flat, H * W)
            nh = n.reshape(-1)[flat]
            sgn = np.sign(diff.reshape(-1)[flat])
            ref.reshape(-1)[flat] += sgn * nh * cmap.reshape(-1)[pix]
            chunks.append(np.stack([rec, pix // W, pix % W, (sgn > 0).astype(np.int64), nh,
                                    np.full(nh.size, s)], axis=1))
    rows = np.concatenate(chunks) if chunks else np.zeros((0, 6), np.int64)
    reps = rows[:, 4]
    rows = np.repeat(rows, reps, axis=0)
    # j-th of n events in step s at s*dt + (j + 1) * dt / (n + 1)
    first = np.repeat(np.cumsum(reps) - reps, reps)
    j = np.arange(rows.shape[0]) - first
    t = rows[:, 5] * dt + ((j + 1) * dt) // (rows[:, 4] + 1)
    out = []
    order = np.lexsort((t, rows[:, 0]))
    rows, t = rows[order], t[order]
    bounds = np.searchsorted(rows[:, 0], np.arange(b + 1))
    for i in range(b):
        sl = slice(bounds[i], bounds[i + 1])
        ev = np.empty(bounds[i + 1] - bounds[i], EVENT_DTYPE)
        ev["t"], ev["y"], ev["x"], ev["p"] = t[sl], rows[sl, 1], rows[sl, 2], rows[sl, 3]
        out.append(ev)
    return out


def simulate_dvs(images28: np.ndarray, gids, seed: int = 0, duration_us: int = MAX_DURATION_US,
                 params: DVSParams = DVSParams()) -> list[np.ndarray]:
    """Simulate the sensor for a batch of upsampled images; one sorted event array per image.

    ``gids`` are the recordings' global ids (seed the per-recording randomness), so a recording
    does not depend on the batch it is simulated in.
    """
    if not 0 < duration_us <= MAX_DURATION_US:
        raise ValueError(f"duration_us must be in (0, {MAX_DURATION_US}], got {duration_us}")
    gids = np.asarray(gids, dtype=np.int64)
    H, W = SENSOR_SIZE[1], SENSOR_SIZE[0]
    dt = params.dt_us
    n_steps = int(np.ceil(duration_us / dt))
    sx, sy = saccade_offset(np.arange(n_steps + 1) * dt)
    offs = np.stack([np.random.default_rng([seed, int(g), 0x0FF5E7]).uniform(-0.5, 0.5, (H, W)) for g in gids])
    evs = dvs_events(lambda s: render(images28, sx[s], sy[s]), n_steps, offs, threshold_map(seed, params), params)
    out = []
    for i, ev in enumerate(evs):
        if params.noise_hz > 0:
            ev = np.concatenate([ev, _noise(seed, int(gids[i]), duration_us, params.noise_hz)])
        out.append(ev[np.argsort(ev["t"], kind="stable")])
    return out


def synthetic_digit_events(indices, seed: int = 0, duration_us: int = MAX_DURATION_US,
                           params: DVSParams = DVSParams(), batch: int = 256) -> list[np.ndarray]:
    """Synthetic recordings of sklearn digits ``indices`` (0..1796), in batches of ``batch``."""
    images, _ = load_digit_images()
    indices = np.asarray(indices, dtype=np.int64)
    out: list[np.ndarray] = []
    for lo in range(0, indices.size, batch):
        idx = indices[lo:lo + batch]
        out += simulate_dvs(upsample(images[idx]), idx, seed, duration_us, params)
    return out


def digit_pools() -> dict[str, np.ndarray]:
    """Indices of sklearn digits by class: ``{"0": array([...]), ..., "9": ...}``."""
    _, labels = load_digit_images()
    return {str(d): np.flatnonzero(labels == d) for d in range(10)}
