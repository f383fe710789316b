"""A built meta-dataset file, read: ``MetaDataset(path)`` checks the layout, the attributes and
the class splits, and reads frames lazily (``neuromaml.meta.metadataset`` builds these files)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from neuromaml.io import fail

FORMAT = "neuromaml-metadataset"
VERSION = 1
SPLITS = ("train", "val", "test")
# registered ids of the compression filters hdf5plugin provides (a file may not store the name)
PLUGIN_FILTERS = {307: "bzip2", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle", 32013: "zfp", 32015: "zstd",
                  32017: "sz", 32024: "sz3", 32026: "blosc2"}


class MetaDataset:
    """A built meta-dataset file (read-only). Frames are read lazily and cached in memory.

    Attributes: ``classes`` (list of names), ``splits`` (name -> class indices), ``shape``
    ``(C, H, W, T)``, ``labels``, ``sample_ids``, ``part_ids`` (``(n, parts)`` recording ids of
    each sample's parts, or None), ``attrs`` (the file's attributes).
    """

    def __init__(self, path):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise fail(self.path, "meta-dataset file not found", "build one with `neuromaml data build`")
        if not self.path.is_file():
            raise fail(self.path, "is not a regular file (a folder, device or pipe)",
                       "give the .h5 file written by `neuromaml data build`")
        if not h5py.is_hdf5(self.path):
            raise fail(self.path, "not an HDF5 file", "build the meta-dataset with `neuromaml data build`")
        with contextlib.suppress(ImportError):
            import hdf5plugin  # noqa: F401  (registers its compression filters with HDF5, where installed)
        try:
            self._read_index(h5py)
        except OSError as exc:   # h5py's error for a truncated or damaged file
            if "unable to lock file" in str(exc):
                raise fail(self.path, "is open for writing by another process (HDF5 locks it)",
                           "close it there and run again (on read-only media set HDF5_USE_FILE_LOCKING=FALSE)") from None
            raise fail(self.path, f"cannot be read as HDF5 ({exc}): truncated or damaged",
                       "re-copy it or rebuild it with `neuromaml data build`") from None
        except (KeyError, ValueError, TypeError, RuntimeError, OverflowError) as exc:   # wrong kinds; broken links
            raise fail(self.path, f"malformed layout or attribute values ({type(exc).__name__}: {exc})",
                       "rebuild it with `neuromaml data build`") from None
        self._check_index()

    def _read_index(self, h5py) -> None:
        with h5py.File(self.path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if not isinstance(fmt, str) or fmt != FORMAT:
                raise fail(self.path, f"attribute 'format' is {fmt!r}, expected {FORMAT!r}",
                           "build the meta-dataset with `neuromaml data build`")
            ver = f.attrs.get("version", -1)
            if not isinstance(ver, (int, np.integer)) or isinstance(ver, bool):
                raise fail(self.path, f"attribute 'version' is {ver!r}, not a whole number",
                           "rebuild the meta-dataset with `neuromaml data build`")
            if int(f.attrs.get("version", -1)) != VERSION:
                newer = int(f.attrs.get("version", -1)) > VERSION
                raise fail(self.path, f"attribute 'version' is {f.attrs.get('version')!r}, this neuromaml reads {VERSION}",
                           "upgrade neuromaml (the file is newer)" if newer
                           else "rebuild the meta-dataset with this version of neuromaml")
            need = ["classes", "frames", "labels", "sample_ids"] + [f"splits/{s}" for s in SPLITS]
            self._check_links(f, h5py, need + ["part_ids"])
            for name in need + (["part_ids"] if "part_ids" in f else []):
                if name not in f:
                    raise fail(self.path, f"dataset '/{name}' is missing", "rebuild the meta-dataset")
                if not isinstance(f[name], h5py.Dataset):
                    raise fail(self.path, f"'/{name}' is a group, not a dataset", "rebuild the meta-dataset")
            self.attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.attrs.items()}
            for key in ("source", "composition"):    # text; other tools write bytes (C, MATLAB)
                v = self.attrs.get(key)
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                if key in self.attrs and not isinstance(v, str):
                    raise fail(self.path, f"attribute {key!r} is {v!r}, not text", "rebuild the meta-dataset")
                if key in self.attrs:
                    self.attrs[key] = v
            for key in ("duration_us", "dt_us"):   # read back by summary(): whole microseconds
                v = self.attrs.get(key, 1)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v <= 0:
                    raise fail(self.path, f"attribute {key!r} is {v!r}, not a positive whole number of microseconds",
                               "rebuild the meta-dataset with `neuromaml data build`")
            if f["classes"].ndim != 1:
                raise fail(self.path, f"'/classes' has shape {f['classes'].shape}, expected a 1-D list of class "
                           "names", "rebuild the meta-dataset")
            self.classes = [c.decode() if isinstance(c, bytes) else str(c) for c in f["classes"][()]]
            self.splits = {s: np.asarray(f[f"splits/{s}"][()], np.int64) for s in SPLITS}
            self.labels = np.asarray(f["labels"][()], np.int64)
            self.sample_ids = np.asarray(f["sample_ids"][()], np.int64)
            fshape = f["frames"].shape
            self._frames_dtype = f["frames"].dtype
            if self.labels.size == 0 or (len(fshape) and fshape[0] == 0):
                raise fail(self.path, f"holds no recordings ('/labels' has {self.labels.size} entries, '/frames' "
                           f"shape {fshape})", "rebuild the meta-dataset with `neuromaml data build` from a source "
                           "that has recordings")
            # recording ids of the parts of each sample (optional: older or foreign files lack it)
            self.part_ids = np.asarray(f["part_ids"][()], np.int64).reshape(len(self.labels), -1) \
                if "part_ids" in f else None
        self._fshape = fshape

    def _check_links(self, f, h5py, names) -> None:
        """Check every dataset in ``names`` down to where its values are stored, before any is read:
        HDF5 reads what is not there as a fill value, silently (a virtual dataset's missing source,
        an unmapped part, a chunk never written) or fails with a message naming neither the file
        nor the link (a dangling or non-HDF5 external link, a missing compression filter)."""
        done: set = set()
        for name in names:
            self._check_stored(f, self.path, f"/{name}", f"'/{name}'", h5py, (), done)

    def _check_stored(self, f, fpath: Path, name: str, subject: str, h5py, chain: tuple, done: set) -> None:
        """``name`` in the open file ``f`` (at ``fpath``): follow external links and virtual
        sources (recursively; ``chain``: the objects that led here), check filters and that the
        declared shape was written. ``done``: the objects already checked."""
        key = (str(fpath.resolve()), name)
        if key in chain:
            raise fail(self.path, f"{subject} leads back to {fpath.name}:{name} (a loop of HDF5 links)",
                       "rebuild it with `neuromaml data build`")
        if key in done:
            return
        done.add(key)
        chain += (key,)
        link = f.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            g, gpath = self._open_other(fpath, link.filename, f"{subject} is an HDF5 external link to "
                                        f"{link.filename!r}, which", h5py)
            with g:
                if g.get(link.path, getlink=True) is None:
                    raise fail(self.path, f"{subject} is an HDF5 external link to {link.filename}:{link.path}, "
                               f"which does not exist in {link.filename}",
                               f"restore {link.path} in {link.filename}, or rebuild it with `neuromaml data build`")
                self._check_stored(g, gpath, link.path, f"{subject} (an external link to {link.filename}:"
                                   f"{link.path})", h5py, chain, done)
            return
        obj = f.get(name) if link is not None else None
        if not isinstance(obj, h5py.Dataset):
            return                       # missing, a group, a dangling soft link: named by the caller
        dcpl = obj.id.get_create_plist()
        for i in range(dcpl.get_nfilters()):
            code, _, _, label = dcpl.get_filter(i)
            if not h5py.h5z.filter_avail(code):
                label = (label.decode("ascii", "replace") if isinstance(label, bytes) else str(label)) \
                    or PLUGIN_FILTERS.get(code, "unnamed")
                raise fail(self.path, f"{subject} uses HDF5 filter {code} ({label}), not available here",
                           "pip install hdf5plugin, or set HDF5_PLUGIN_PATH to the folder of the filter's plugin")
        layout = dcpl.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            self._check_virtual(f, fpath, obj, subject, h5py, chain, done)
        elif obj.size and dcpl.get_external_count() == 0 and layout in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS):
            if layout == h5py.h5d.CHUNKED:
                total = int(np.prod([-(-n // c) for n, c in zip(obj.shape, obj.chunks)]))
                have, unit = obj.id.get_num_chunks(), "chunks"
            else:
                total, have, unit = obj.nbytes, obj.id.get_storage_size(), "bytes"
            if have < total:
                raise fail(self.path, f"{subject} declares shape {obj.shape} but stores {have:,} of its {total:,} "
                           f"{unit} ({fpath.name} is {fpath.stat().st_size:,} bytes): the rest was never written "
                           "and would read as fill values", "rebuild it with `neuromaml data build`")

    def _check_virtual(self, f, fpath: Path, obj, subject: str, h5py, chain: tuple, done: set) -> None:
        fill = obj.fillvalue
        if np.any(np.asarray(fill.tolist() if hasattr(fill, "tolist") else fill) != 0):
            raise fail(self.path, f"{subject} is a virtual dataset with fill value {fill!r}: what its sources "
                       f"do not supply would read as {fill!r}", "rebuild it with `neuromaml data build`")
        maps = obj.virtual_sources()
        mapped = sum(int(m.vspace.get_select_npoints()) for m in maps)
        if mapped < obj.size:
            raise fail(self.path, f"{subject} is a virtual dataset whose sources cover {mapped:,} of its "
                       f"{obj.size:,} values (HDF5 would read the rest as zeros)",
                       "rebuild it with `neuromaml data build`")
        for m in maps:
            what = f"{subject} is a virtual dataset whose source file {m.file_name!r}"
            g, gpath = (f, fpath) if m.file_name == "." else self._open_other(fpath, m.file_name, what, h5py)
            shown = fpath.name if m.file_name == "." else m.file_name
            with contextlib.nullcontext() if g is f else g:
                src = g.get(m.dset_name)
                if not isinstance(src, h5py.Dataset):
                    raise fail(self.path, f"{subject} is a virtual dataset whose source {shown}:{m.dset_name} "
                               f"{'is not a dataset' if src is not None else 'does not exist'} (HDF5 would read "
                               "it as zeros)", f"restore {m.dset_name} in {shown}, or rebuild it with "
                               "`neuromaml data build`")
                sel = m.src_space.get_select_type()
                if sel == h5py.h5s.SEL_ALL:          # the whole source (HDF5 keeps no extent for it here)
                    short = src.size < m.vspace.get_select_npoints()
                else:
                    end = m.src_space.get_select_bounds()[1] if sel != h5py.h5s.SEL_NONE else ()
                    short = len(end) not in (0, src.ndim) or any(e >= n for e, n in zip(end, src.shape))
                if short:
                    raise fail(self.path, f"{subject} is a virtual dataset that reads more of {shown}:{m.dset_name} "
                               f"than its shape {src.shape} holds (HDF5 would read the rest as zeros)",
                               "rebuild it with `neuromaml data build`")
                self._check_stored(g, gpath, src.name, f"{subject} (a virtual dataset reading {shown}:"
                                   f"{m.dset_name})", h5py, chain, done)

    def _open_other(self, fpath: Path, filename: str, what: str, h5py):
        """Open the file an external link or a virtual source of the file at ``fpath`` names: HDF5
        looks for it beside that file, then in the working directory."""
        target = next((p for p in (fpath.resolve().parent / filename, Path(filename)) if p.exists()), None)
        if target is None:
            raise fail(self.path, f"{what} is missing" + (" (HDF5 would read it as zeros)"
                                                          if "virtual" in what else ""),
                       f"copy {filename} next to {fpath.name}, or rebuild it with `neuromaml data build`")
        if not target.is_file() or not h5py.is_hdf5(target):
            raise fail(self.path, f"{what} is not an HDF5 file ({target})",
                       f"restore {filename}, or rebuild it with `neuromaml data build`")
        return h5py.File(target, "r"), target

    def _check_index(self) -> None:
        fshape = self._fshape
        n = self.labels.size
        if self._frames_dtype != np.uint8:
            raise fail(self.path, f"'/frames' has dtype {self._frames_dtype}, expected uint8 spike counts",
                       "rebuild the meta-dataset with `neuromaml data build`")
        if self.labels.ndim != 1 or self.sample_ids.ndim != 1:
            raise fail(self.path, f"'/labels' and '/sample_ids' must be 1-D, have shapes {self.labels.shape} and "
                       f"{self.sample_ids.shape}", "rebuild the meta-dataset")
        if len(fshape) != 5 or fshape[0] != n or fshape[1] != 2 or self.sample_ids.size != n or min(fshape[2:]) < 1:
            raise fail(self.path, f"'/frames' has shape {fshape} for {n} labels and {self.sample_ids.size} sample_ids",
                       "rebuild the meta-dataset")
        dur, dt = self.attrs.get("duration_us"), self.attrs.get("dt_us")
        if dur is not None and dt is not None and dur != fshape[4] * dt:
            raise fail(self.path, f"attributes duration_us={dur!r} and dt_us={dt!r} do not match the {fshape[4]} "
                       "time steps of '/frames' (duration_us = T x dt_us)",
                       "rebuild the meta-dataset with `neuromaml data build`")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise fail(self.path, "'/labels' holds class indices outside '/classes'", "rebuild the meta-dataset")
        for s, idx in self.splits.items():
            if idx.ndim != 1:
                raise fail(self.path, f"'/splits/{s}' has shape {idx.shape}, expected a 1-D list of class indices",
                           "rebuild the meta-dataset")
            if idx.size and (idx.min() < 0 or idx.max() >= len(self.classes)):
                raise fail(self.path, f"'/splits/{s}' names classes that do not exist", "rebuild the meta-dataset")
            srt = np.sort(idx)
            twice = srt[1:][srt[1:] == srt[:-1]]
            if twice.size:
                raise fail(self.path, f"'/splits/{s}' names class '{self.classes[int(twice[0])]}' more than once: "
                           "an N-way task could draw one class twice", "rebuild the meta-dataset")
        names = list(self.splits)
        for a_i, a in enumerate(names):
            for b in names[a_i + 1:]:
                both = np.intersect1d(self.splits[a], self.splits[b])
                if both.size:
                    raise fail(self.path, f"splits '{a}' and '{b}' share {both.size} class(es) (e.g. "
                               f"'{self.classes[int(both[0])]}'): meta-test results would not be on new classes",
                               "rebuild it with disjoint class splits (`neuromaml data build`)")
        self.shape = tuple(int(v) for v in fshape[1:])
        self._by_class = {c: np.flatnonzero(self.labels == c) for c in range(len(self.classes))}
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.labels.size)

    def indices_of(self, class_idx: int) -> np.ndarray:
        """Sample indices (into ``/frames``) of class ``class_idx``, ascending."""
        return self._by_class[int(class_idx)]

    def class_sizes(self, split: str) -> np.ndarray:
        """Recordings per class of ``split``, in the split's class order (what a task sampler,
        calibrate and the demo check before drawing k_shot + n_query samples per class)."""
        return np.array([self.indices_of(c).size for c in self.splits[split]], np.int64)

    def frames(self, indices, binary: bool = False):
        """``torch.float32`` tensor ``(n, 2, H, W, T)`` of spike counts (or 0/1 if ``binary``)."""
        import h5py
        import torch

        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range 0..{len(self) - 1}")
        missing = sorted(set(idx.tolist()) - self._cache.keys())
        if missing:
            m = np.asarray(missing)
            starts = np.flatnonzero(np.diff(m, prepend=-2) != 1)   # contiguous runs: one slice read each
            ends = np.append(starts[1:], m.size)
            try:
                with h5py.File(self.path, "r") as f:
                    ds = f["frames"]
                    for a, b in zip(starts, ends):
                        self._cache.update(zip(m[a:b].tolist(), ds[m[a]:m[b - 1] + 1]))
            except OSError as exc:
                raise fail(self.path, f"frames cannot be read ({exc}): truncated or damaged",
                           "re-copy it or rebuild it with `neuromaml data build`") from None
        out = np.stack([self._cache[i] for i in idx.tolist()]) if idx.size else np.zeros((0, *self.shape), np.uint8)
        if binary:
            out = np.minimum(out, 1)
        return torch.from_numpy(out).to(torch.float32)

    def summary(self) -> dict:
        """Classes per split, samples per class, tensor shape and duration."""
        per = np.bincount(self.labels, minlength=len(self.classes))
        return {"path": str(self.path), "source": self.attrs.get("source"),
                "composition": self.attrs.get("composition"), "num_classes": len(self.classes),
                "num_samples": len(self), "shape": list(self.shape),
                "duration_us": int(self.attrs.get("duration_us", 0)), "dt_us": int(self.attrs.get("dt_us", 0)),
                "splits": {s: int(v.size) for s, v in self.splits.items()},
                "samples_per_class": {"min": int(per.min()) if per.size else 0,
                                      "max": int(per.max()) if per.size else 0}}
