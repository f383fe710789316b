"""N-way K-shot tasks drawn from one split of a meta-dataset.

A task is a pure function of ``(seed, i)``: ``rng = numpy.random.default_rng([seed, i])``
draws ``n_way`` distinct classes of the split (their order gives the local labels 0..n_way-1),
then, per class, ``k_shot + n_query`` distinct samples: the first ``k_shot`` go to the support
set, the rest to the query set. Support and query never share a ``sample_id`` (checked).
Both sets are ordered class-major: ``support_y = [0]*k_shot + [1]*k_shot + ...``.

``disjoint_parts=True`` is stricter for composed (Double) datasets, where one single recording
may be a part of samples of several classes (the 1,797 synthetic digits cannot fill 2,000
two-digit samples without reuse): a draw whose support and query share a part recording is
rejected and redrawn from ``default_rng([seed, i, attempt])`` (still a pure function of
``(seed, i)``), up to ``max_attempts`` times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from neuromaml.io import fail


@dataclass
class Task:
    """One episode. ``*_x``: float32 tensors ``(n, 2, H, W, T)``; ``*_y``: int64 local labels."""
    support_x: "object"
    support_y: "object"
    query_x: "object"
    query_y: "object"
    classes: np.ndarray          # (n_way,) global class indices; position = local label
    support_ids: np.ndarray      # (n_way * k_shot,) sample ids
    query_ids: np.ndarray        # (n_way * n_query,) sample ids
    support_idx: np.ndarray      # (n_way * k_shot,) row indices into the dataset
    query_idx: np.ndarray        # (n_way * n_query,) row indices into the dataset

    def to(self, device) -> "Task":
        """The same task with its tensors on ``device``."""
        import dataclasses

        return dataclasses.replace(self, support_x=self.support_x.to(device), support_y=self.support_y.to(device),
                                   query_x=self.query_x.to(device), query_y=self.query_y.to(device))


class TaskSampler:
    """Draw tasks from ``split`` of ``dataset`` (a MetaDataset or the path of one).

    Frames are binary spikes by default (``binary=True``): Lava's synapses with binary messages
    (``num_message_bits=0``, what netx builds) treat any nonzero input as one spike, so the
    networks are trained and evaluated on what the chip receives. ``binary=False`` gives the
    raw per-bin counts (for analysis).

    Raises NeuromamlError when the split has fewer than ``n_way`` classes or a split class
    has fewer than ``k_shot + n_query`` samples.
    """

    def __init__(self, dataset, split: str, n_way: int, k_shot: int, n_query: int, seed: int = 0,
                 binary: bool = True, disjoint_parts: bool = False, max_attempts: int = 1000):
        from neuromaml.meta.metadataset import MetaDataset

        self.dataset = dataset if isinstance(dataset, MetaDataset) else MetaDataset(dataset)
        ds = self.dataset
        if split not in ds.splits:
            raise fail(ds.path, f"split {split!r} does not exist (has {sorted(ds.splits)})",
                       "use train, val or test")
        for name, v, lo in (("n_way", n_way, 1), ("k_shot", k_shot, 1), ("n_query", n_query, 0)):
            if not isinstance(v, (int, np.integer)) or v < lo:
                raise fail(ds.path, f"{name} is {v!r}", f"use an integer >= {lo}")
        self.split, self.n_way, self.k_shot, self.n_query = split, int(n_way), int(k_shot), int(n_query)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise fail(ds.path, f"seed is {seed!r}", "use a non-negative integer seed")
        self.seed, self.binary = int(seed), bool(binary)
        self.disjoint_parts, self.max_attempts = bool(disjoint_parts), int(max_attempts)
        if self.disjoint_parts and ds.part_ids is None:
            raise fail(ds.path, "disjoint_parts needs the dataset '/part_ids', which this file lacks",
                       "rebuild it with `neuromaml data build` or use disjoint_parts=False")
        self.classes = np.asarray(ds.splits[split], np.int64)
        if self.classes.size < self.n_way:
            raise fail(ds.path, f"split '{split}' has {self.classes.size} classes, fewer than n_way={self.n_way}",
                       (f"use n_way <= {self.classes.size} or " if self.classes.size >= 2 else "use ")
                       + f"a meta-dataset with at least {self.n_way} classes in '{split}'")
        need = self.k_shot + self.n_query
        counts = ds.class_sizes(split)
        if counts.size and counts.min() < need:
            c = int(self.classes[int(np.argmin(counts))])
            raise fail(ds.path, f"split '{split}': class '{ds.classes[c]}' has {int(counts.min())} samples, fewer "
                       f"than k_shot + n_query = {self.k_shot} + {self.n_query} = {need}",
                       (f"use k_shot + n_query <= {int(counts.min())} or " if counts.min() >= 2 else "")
                       + f"give every class at least {need} recordings (a larger --per-class helps only where "
                       "the source holds more)")

    def draw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices only: ``(classes, support_idx, query_idx)`` of task ``i`` (no frames read)."""
        if not self.disjoint_parts:
            return self._draw(np.random.default_rng([self.seed, int(i)]))
        parts = self.dataset.part_ids
        for attempt in range(self.max_attempts):
            seq = [self.seed, int(i)] + ([attempt] if attempt else [])
            classes, sup, qry = self._draw(np.random.default_rng(seq))
            if not np.intersect1d(parts[sup], parts[qry]).size:
                return classes, sup, qry
        raise fail(self.dataset.path, f"split '{self.split}': no {self.n_way}-way {self.k_shot}-shot draw with "
                   f"{self.n_query} queries keeps support and query recordings disjoint in "
                   f"{self.max_attempts} attempts", "use fewer shots/queries, disjoint_parts=False, "
                   "or a source with more recordings (e.g. N-MNIST)")

    def _draw(self, rng):
        classes = rng.choice(self.classes, size=self.n_way, replace=False)
        sup, qry = [], []
        for c in classes:
            pick = rng.choice(self.dataset.indices_of(c), size=self.k_shot + self.n_query, replace=False)
            sup.append(pick[:self.k_shot])
            qry.append(pick[self.k_shot:])
        return classes.astype(np.int64), np.concatenate(sup), np.concatenate(qry)

    def sample(self, i: int) -> Task:
        """Task ``i``: a pure function of ``(seed, i)``."""
        import torch

        classes, sup, qry = self.draw(i)
        ids = self.dataset.sample_ids
        shared = np.intersect1d(ids[sup], ids[qry])
        if shared.size:  # only possible with a corrupt file: ids must be unique
            raise fail(self.dataset.path, f"sample id(s) {shared[:5].tolist()} occur in both support and query",
                       "rebuild the meta-dataset (sample_ids must be unique)")
        sy = np.repeat(np.arange(self.n_way, dtype=np.int64), self.k_shot)
        qy = np.repeat(np.arange(self.n_way, dtype=np.int64), self.n_query)
        return Task(support_x=self.dataset.frames(sup, self.binary), support_y=torch.from_numpy(sy),
                    query_x=self.dataset.frames(qry, self.binary), query_y=torch.from_numpy(qy),
                    classes=classes, support_ids=ids[sup], query_ids=ids[qry], support_idx=sup, query_idx=qry)

    def iter_tasks(self, n: int, start: int = 0) -> Iterator[Task]:
        """Tasks ``start .. start + n - 1``."""
        for i in range(start, start + n):
            yield self.sample(i)
