"""Meta-datasets: compose recordings into classes, bin them into frames, store them in HDF5.

Compositions (as in Stewart & Neftci 2022):

* ``double``: two recordings side by side form one sample of a two-symbol class ``"ab"``
  (left symbol a, right b). A half is the recording cropped to ``crop`` (W x H), binned in
  ``dt_us`` bins over the first ``duration_us`` and sum-pooled by ``ds`` (counts of ds x ds
  pixels added); the sample is ``concat(half_left, half_right)`` along W, counts clipped at 255.
  Since halves do not overlap this equals pooling the 2W x H composite.

  - digits (synthetic, N-MNIST): 34x34 -> crop [1:33] -> 64x32 -> ds 2 -> 32x16, 100 ms,
    frames (2, 16, 32, 100); classes "00".."99", split 64 / 16 / 20 as the authors did
    (``DIGIT_SPLITS["authors"]``), or ``"ordered"`` (00..63 / 64..79 / 80..99).
  - ASL-DVS: 240x180 per letter -> 480x180 -> ds 6 -> 80x30, 100 ms (from the first event),
    576 letter pairs (class ``i * 24 + j`` = letters i, j), split from the authors' JSON
    (``{"train": ["i.j", ...], "val": [...], "test": [...]}``).
* ``single``: one recording per sample (generic event folders), seeded class split with
  fractions ``(train, val, test)``.

Recordings are drawn per symbol from a seeded permutation of its pool, round robin over the
slots (class, sample, side) that use the symbol: samples of one class use distinct recordings
while the pool is large enough. ``sample_ids`` identify the composed recording
(``left_gid * n_recordings + right_gid``; the recording's gid for single), ``/part_ids`` the
parts' gids.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from neuromaml.io import fail
from neuromaml.meta import events as E

from neuromaml.meta.dataset_file import FORMAT, SPLITS, VERSION, MetaDataset  # noqa: F401 (re-exported)
# samples per class of the default data (`neuromaml data build`, `neuromaml demo`); BENCHMARKS.md
# ("Meta-training") measures the default network at 20, 40 and 80
DEFAULT_PER_CLASS = 80
# Double N-MNIST class split of the authors (torchneuromorphic's doublenmnist_torchmeta, which
# takes it from the Multi-digit MNIST benchmark, github.com/shaohua0116/MultiDigitMNIST): 64 / 16
# / 20 two-digit classes drawn across 00..99, so every digit appears on both sides in meta-train.
# "ordered" is the harder split 00..63 / 64..79 / 80..99, whose meta-test classes put 8 and 9 on
# the left where no meta-train class has them (a test of transfer across positions).
DIGIT_SPLITS = {
    "authors": {
        "train": [0, 1, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 23, 24, 26, 28, 29,
                  30, 31, 33, 35, 37, 38, 41, 42, 43, 44, 45, 50, 51, 53, 54, 56, 59, 60, 62, 63,
                  65, 69, 70, 72, 74, 75, 76, 77, 79, 81, 82, 84, 85, 87, 88, 89, 90, 91, 94, 95,
                  97, 98],
        "val": [3, 7, 10, 22, 27, 34, 39, 40, 48, 52, 58, 61, 64, 71, 93, 99],
        "test": [2, 17, 25, 32, 36, 46, 47, 49, 55, 57, 66, 67, 68, 73, 78, 80, 83, 86, 92, 96],
    },
    "ordered": {"train": list(range(0, 64)), "val": list(range(64, 80)), "test": list(range(80, 100))},
}
ASL_SPLIT_NAME = "doubledvssign_splits_full.json"


@dataclass
class _Plan:
    """What to build: symbol pools, class compositions, splits and binning geometry."""
    source: str
    composition: str                    # "double" | "single"
    pools: dict[str, list]              # symbol -> recording keys (file paths or digit indices)
    classes: list[str]
    parts: list[tuple[str, ...]]        # per class: symbols (left, right) or (symbol,)
    splits: dict[str, np.ndarray]
    load: Callable[[list], list]        # keys -> event arrays
    sensor: tuple[int, int]             # (W, H) of one recording
    crop: tuple[int, int, int, int]     # x0, y0, x1, y1 (exclusive)
    ds: int
    duration_us: int
    rebase_time: bool = False
    recorded_us: int | None = None      # how long the recordings last, where the source says


def parse_source(spec: str) -> tuple[str, Path | None]:
    """``synthetic`` | ``nmnist:DIR`` | ``asl-dvs:DIR`` | ``events:DIR`` -> (kind, root)."""
    if spec == "synthetic":
        return "synthetic", None
    kind, _, root = spec.partition(":")
    if kind in ("nmnist", "asl-dvs", "events") and root:
        return kind, Path(root)
    raise fail(None, f"--source {spec!r} is not understood",
               "use synthetic, nmnist:DIR, asl-dvs:DIR or events:DIR")


def _digit_classes(digit_split: str = "authors"):
    if digit_split not in DIGIT_SPLITS:
        raise fail(None, f"--digit-split {digit_split!r} is not a Double-digits split",
                   f"use one of {sorted(DIGIT_SPLITS)}")
    classes = [f"{a}{b}" for a in range(10) for b in range(10)]
    parts = [(c[0], c[1]) for c in classes]
    splits = {k: np.array(v, np.int32) for k, v in DIGIT_SPLITS[digit_split].items()}
    return classes, parts, splits


def load_asl_split(path) -> dict[str, np.ndarray]:
    """Read the authors' Double ASL-DVS split: ``"i.j"`` letter indices -> class ``i * 24 + j``."""
    path = Path(path)
    if not path.is_file():
        raise fail(path, "Double ASL-DVS split file not found",
                   f"pass --split-file (the authors' {ASL_SPLIT_NAME}) or put it in the ASL-DVS folder")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise fail(path, f"not valid JSON ({exc.msg})", "fix the split file") from None
    if not isinstance(raw, dict) or any(k not in raw for k in SPLITS):
        raise fail(path, f"split must be an object with keys {list(SPLITS)}", 'write {"train": ["0.1", ...], ...}')
    n = len(E.ASL_LETTERS)
    out, seen = {}, {}
    for split in SPLITS:
        idx = []
        for name in raw[split]:
            try:
                i, j = (int(v) for v in str(name).split("."))
            except ValueError:
                raise fail(path, f"split '{split}' names class {name!r}, expected 'i.j'",
                           "use letter indices like '3.17'") from None
            if not (0 <= i < n and 0 <= j < n):
                raise fail(path, f"split '{split}' names class {name!r}, which does not exist "
                           f"(letter indices are 0..{n - 1})", "fix the split file")
            c = i * n + j
            if c in seen:
                raise fail(path, f"class {name!r} is in split '{seen[c]}' and '{split}'", "list each class once")
            seen[c] = split
            idx.append(c)
        out[split] = np.array(idx, np.int32)
    return out


def _seeded_split(n: int, fractions, seed: int, root) -> dict[str, np.ndarray]:
    fr = np.asarray(fractions, float)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise fail(root, f"split fractions {list(fractions)} are not 3 non-negative numbers", "use e.g. 0.64 0.16 0.2")
    fr = fr / fr.sum()
    n_tr, n_va = int(round(fr[0] * n)), int(round(fr[1] * n))
    sizes = [n_tr, n_va, n - n_tr - n_va]
    if min(sizes) < 1 or n < 3:
        raise fail(root, f"{n} classes split by fractions {fr.round(3).tolist()} leaves an empty split {sizes}",
                   "add classes (at least 3) or change the split fractions")
    perm = np.random.default_rng([seed, 0x5B17]).permutation(n).astype(np.int32)
    return {"train": np.sort(perm[:n_tr]), "val": np.sort(perm[n_tr:n_tr + n_va]), "test": np.sort(perm[n_tr + n_va:])}


def make_plan(source: str, seed: int = 0, split_file=None, fractions=(0.64, 0.16, 0.20),
              duration_us: int | None = None, downsample: int | None = None,
              digit_split: str = "authors") -> _Plan:
    """Resolve a ``--source`` spec into a build plan (scans folders; reads no recordings yet)."""
    kind, root = parse_source(source)
    if digit_split != "authors" and kind not in ("synthetic", "nmnist"):
        raise fail(None, f"--digit-split {digit_split} applies to Double digits (synthetic, nmnist:DIR), "
                   f"not to {kind}", "drop --digit-split")
    if kind in ("synthetic", "nmnist"):
        classes, parts, splits = _digit_classes(digit_split)
        if kind == "synthetic":
            from neuromaml.meta import synthetic as S

            pools = {k: v.tolist() for k, v in S.digit_pools().items()}
            if duration_us is not None and duration_us > S.MAX_DURATION_US:
                raise fail(None, f"--duration-us {duration_us}: the synthetic recordings last "
                           f"{S.MAX_DURATION_US} us (three saccades)", f"use --duration-us <= {S.MAX_DURATION_US}")
            duration_us = duration_us or 100_000

            def load(keys):
                return S.synthetic_digit_events(keys, seed=seed, duration_us=duration_us)
        else:
            pools = E.scan_nmnist(root)

            def load(keys):
                return [E.read_nmnist_bin(k) for k in keys]
        return _Plan(f"{kind}" + (f":{root}" if root else ""), "double", pools, classes, parts, splits, load,
                     E.NMNIST_SENSOR[:2], (1, 1, 33, 33), downsample or 2, duration_us or 100_000)
    if kind == "asl-dvs":
        pools = E.scan_asl_dvs(root)
        classes = [a + b for a in E.ASL_LETTERS for b in E.ASL_LETTERS]
        parts = [(c[0], c[1]) for c in classes]
        splits = load_asl_split(split_file or Path(root) / ASL_SPLIT_NAME)
        return _Plan(f"asl-dvs:{root}", "double", pools, classes, parts, splits,
                     lambda keys: [E.read_asl_mat(k) for k in keys], E.ASL_SENSOR[:2],
                     (0, 0, 240, 180), downsample or 6, duration_us or 100_000, rebase_time=True)
    meta, pools = E.scan_event_folder(root)
    W, H, _ = meta["sensor_size"]
    classes = sorted(pools)
    splits = _seeded_split(len(classes), fractions, seed, root)

    def load(keys):
        return [E.read_npy_events(k, meta["sensor_size"]) for k in keys]
    return _Plan(f"events:{root}", "single", pools, classes, [(c,) for c in classes], splits, load,
                 (W, H), (0, 0, W, H), downsample or 1, duration_us or meta["duration_us"],
                 recorded_us=int(meta["duration_us"]))


def _assign(plan: _Plan, per_class: int, seed: int):
    """Per class, the (symbol, key) parts of each sample, and global ids of all keys."""
    symbols = sorted(plan.pools)
    gid_of, base = {}, 0
    for s in symbols:
        for i, k in enumerate(plan.pools[s]):
            gid_of[(s, i)] = base + i
        base += len(plan.pools[s])
    n_total = base
    slots: dict[str, list] = {s: [] for s in symbols}
    n_per = []
    for c, parts in enumerate(plan.parts):
        n_c = per_class if plan.composition == "double" else min(per_class, len(plan.pools[parts[0]]))
        n_per.append(n_c)
        for j in range(n_c):
            for side, s in enumerate(parts):
                slots[s].append((c, j, side))
    perms = {s: np.random.default_rng([seed, si, 0xD7A]).permutation(len(plan.pools[s]))
             for si, s in enumerate(symbols)}
    pos: dict[tuple, int] = {}
    for s in symbols:
        for k, slot in enumerate(slots[s]):
            pos[slot] = k

    def pick(slot, s, shift=0):
        return s, int(perms[s][(pos[slot] + shift) % perms[s].size])

    def sample_id(pp):
        gids = [gid_of[p] for p in pp]
        return (gids[0] * n_total + gids[1] if len(gids) == 2 else gids[0]), gids

    samples = []  # (class, [(symbol, pool_index), ...], sample_id, gids)
    for c, parts in enumerate(plan.parts):
        ids = set()
        for j in range(n_per[c]):
            pp = [pick((c, j, side), s) for side, s in enumerate(parts)]
            sid, gids = sample_id(pp)
            for shift in range(1, perms[parts[-1]].size if sid in ids and len(parts) == 2 else 0):
                # small pools: the round robin repeated a pair; take the next right recording instead
                pp[1] = pick((c, j, 1), parts[1], shift)
                sid, gids = sample_id(pp)
                if sid not in ids:
                    break
            if sid in ids:
                raise fail(None, f"class '{plan.classes[c]}' would repeat a recording pair: per-class {per_class} "
                           "exceeds the distinct recordings available", "lower --per-class")
            ids.add(sid)
            samples.append((c, pp, sid, gids))
    return samples, n_total


def _half_frames(ev, plan: _Plan, T: int, dt_us: int) -> tuple[np.ndarray, int]:
    x0, y0, x1, y1 = plan.crop
    if plan.rebase_time and ev.size:
        ev = ev.copy()
        ev["t"] -= ev["t"].min()
    ev = ev[(ev["x"] >= x0) & (ev["x"] < x1) & (ev["y"] >= y0) & (ev["y"] < y1)].copy()
    ev["x"] -= x0
    ev["y"] -= y0
    fr = E.events_to_frames(ev, (x1 - x0, y1 - y0), T, dt_us, plan.ds)
    return np.minimum(fr, 255).astype(np.uint8), int((fr > 255).sum())


def build_metadataset(source: str, out, per_class: int = DEFAULT_PER_CLASS, seed: int = 0, split_file=None,
                      fractions: Sequence[float] = (0.64, 0.16, 0.20), duration_us: int | None = None,
                      downsample: int | None = None, dt_us: int = 1000, compression: str = "gzip",
                      progress: bool = False, batch: int = 256, digit_split: str = "authors",
                      overwrite: bool = True) -> dict:
    """Build the meta-dataset of ``source`` into the HDF5 file ``out`` (atomically).

    Returns a summary dict (path, seconds, size, classes, samples, shape, splits).
    """
    import h5py

    from neuromaml.io import atomic_path

    if per_class < 1:
        raise fail(None, f"--per-class is {per_class}", "use a positive number of samples per class")
    if downsample is not None and downsample < 1:
        raise fail(None, f"--downsample is {downsample}", "use a pooling factor >= 1 (1 = none)")
    t_start = time.perf_counter()
    plan = make_plan(source, seed, split_file, fractions, duration_us, downsample, digit_split)
    T = plan.duration_us // dt_us
    if T < 1:
        raise fail(None, f"duration {plan.duration_us} us is shorter than one {dt_us} us bin", "raise the duration")
    cw, ch = plan.crop[2] - plan.crop[0], plan.crop[3] - plan.crop[1]
    hw, H = cw // plan.ds, ch // plan.ds
    W = hw * len(plan.parts[0])
    if hw < 1 or H < 1:
        raise fail(None, f"--downsample {plan.ds} is larger than the {cw} x {ch} px recordings "
                   "(no pixel would remain)", f"use --downsample <= {min(cw, ch)}")
    notes = []                  # accepted, but not what a user may think they asked for
    if cw % plan.ds or ch % plan.ds:
        notes.append(f"--downsample {plan.ds} does not divide the {cw} x {ch} px recordings: the last "
                     f"{cw % plan.ds} column(s) and {ch % plan.ds} row(s) are dropped")
    if plan.duration_us % dt_us:
        notes.append(f"the duration {plan.duration_us} us is not a whole number of {dt_us} us bins: the last "
                     f"{plan.duration_us % dt_us} us are dropped")
    if plan.recorded_us is not None and plan.duration_us > plan.recorded_us:
        notes.append(f"the duration {plan.duration_us} us is longer than the recordings' {plan.recorded_us} us "
                     f"(meta.json duration_us): the last {(plan.duration_us - plan.recorded_us) // dt_us} "
                     "frame(s) of every sample are blank")
    sample_mb = 2 * H * W * T / 2 ** 20
    if sample_mb > 256:
        raise fail(None, f"one sample's frames would be 2 x {H} x {W} x {T} = {sample_mb:.0f} MiB",
                   "use a larger --downsample or a shorter --duration-us")
    samples, _ = _assign(plan, per_class, seed)
    n = len(samples)
    # reference counts: load each recording once, drop it after its last use
    uses: dict[tuple, int] = {}
    for _, pp, _, _ in samples:
        for p in pp:
            uses[p] = uses.get(p, 0) + 1
    cache: dict[tuple, np.ndarray] = {}
    order = [p for _, pp, _, _ in samples for p in pp]
    pos = 0
    empty = 0            # recordings with no event inside the window (a unit mistake shows here)
    clipped = 0          # frame bins of more than 255 events (stored as 255)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="data build", unit="sample")
    out = Path(out)
    try:
        with atomic_path(out, suffix=".h5", overwrite=overwrite) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs.update({"format": FORMAT, "version": VERSION, "source": plan.source,
                                "sensor_size": np.array([W, H, 2], np.int64), "time_steps": T, "dt_us": dt_us,
                                "duration_us": T * dt_us, "composition": plan.composition, "seed": seed,
                                "per_class": per_class})
                f.create_dataset("classes", data=np.array(plan.classes, dtype=h5py.string_dtype()))
                for k in SPLITS:
                    f.create_dataset(f"splits/{k}", data=plan.splits[k].astype(np.int32))
                kw = {"compression": compression} if compression else {}
                frames = f.create_dataset("frames", shape=(n, 2, H, W, T), dtype=np.uint8,
                                          chunks=(1, 2, H, W, T), **kw)
                f.create_dataset("labels", data=np.array([s[0] for s in samples], np.int32))
                f.create_dataset("sample_ids", data=np.array([s[2] for s in samples], np.int64))
                f.create_dataset("part_ids", data=np.array([s[3] for s in samples], np.int64))
                for i, (c, pp, _, _) in enumerate(samples):
                    missing = [p for p in pp if p not in cache]
                    if missing:  # load ahead in one batch
                        want = []
                        while pos < len(order) and len(want) < batch:
                            if order[pos] not in cache and order[pos] not in want:
                                want.append(order[pos])
                            pos += 1
                        want += [p for p in missing if p not in want]
                        evs = plan.load([plan.pools[s][k] for s, k in want])
                        for p, ev in zip(want, evs):
                            cache[p], over = _half_frames(ev, plan, T, dt_us)
                            clipped += over
                            empty += int(not cache[p].any())
                    halves = []
                    for p in pp:
                        halves.append(cache[p])
                        uses[p] -= 1
                        if uses[p] == 0:
                            del cache[p]
                    frames[i] = np.concatenate(halves, axis=2)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    held = np.bincount([s[0] for s in samples], minlength=len(plan.classes))
    return {"path": str(out), "seconds": round(time.perf_counter() - t_start, 3), "bytes": out.stat().st_size,
            "source": plan.source, "composition": plan.composition, "num_classes": len(plan.classes),
            "num_samples": n, "per_class": per_class, "seed": seed, "shape": [2, H, W, T],
            # what each class really holds: a class with fewer recordings than --per-class keeps them all
            "samples_per_class": {"min": int(held.min()), "max": int(held.max())},
            "classes_below_per_class": int((held < per_class).sum()),
            "recordings_without_events": empty, "recordings": len(uses),
            "duration_us": T * dt_us, "splits": {k: int(v.size) for k, v in plan.splits.items()},
            "notes": notes + ([f"{clipped} frame bin(s) held more than 255 events and were stored as 255 (uint8 "
                               "frames): a larger --downsample or shorter bins spread them"] if clipped else [])}
