"""N-way K-shot task sampler: reproducible, split hygiene, clear errors."""
import numpy as np
import pytest
import torch

from neuromaml.io import NeuromamlError
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.tasks import Task, TaskSampler


@pytest.fixture(scope="module")
def ds(tiny_metadataset):
    return MetaDataset(tiny_metadataset)


def test_task_fields_and_shapes(ds):
    t = TaskSampler(ds, "train", n_way=5, k_shot=1, n_query=3, seed=0).sample(0)
    assert isinstance(t, Task)
    assert t.support_x.shape == (5, 2, 16, 32, 100) and t.query_x.shape == (15, 2, 16, 32, 100)
    assert t.support_x.dtype == torch.float32
    assert t.support_y.dtype == torch.int64 and t.support_y.tolist() == [0, 1, 2, 3, 4]
    assert t.query_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert t.classes.shape == (5,) and len(set(t.classes.tolist())) == 5
    # local label = position in classes
    assert (ds.labels[t.support_idx] == t.classes[t.support_y.numpy()]).all()
    assert (ds.labels[t.query_idx] == t.classes[t.query_y.numpy()]).all()
    # binary spikes by default (what Lava's binary-message synapses receive)
    np.testing.assert_array_equal(t.support_x.numpy(), ds.frames(t.support_idx, binary=True).numpy())
    assert set(np.unique(t.support_x.numpy())) <= {0.0, 1.0}
    counts = TaskSampler(ds, "train", n_way=5, k_shot=1, n_query=3, seed=0, binary=False).sample(0)
    np.testing.assert_array_equal(counts.support_x.numpy(), ds.frames(t.support_idx).numpy())
    assert counts.support_x.max() > 1   # sum-pooled bins do hold counts
    np.testing.assert_array_equal(t.support_ids, ds.sample_ids[t.support_idx])


def test_reproducible_from_seed_and_index(tiny_metadataset, ds):
    a = TaskSampler(ds, "val", 5, 2, 2, seed=3)
    b = TaskSampler(MetaDataset(tiny_metadataset), "val", 5, 2, 2, seed=3)
    t7 = a.sample(7)
    for _ in range(3):
        a.sample(1)  # sampling other tasks in between changes nothing
    u7 = b.sample(7)
    assert t7.classes.tolist() == u7.classes.tolist()
    assert t7.support_ids.tolist() == u7.support_ids.tolist() and t7.query_ids.tolist() == u7.query_ids.tolist()
    assert torch.equal(t7.query_x, u7.query_x)
    draws = {tuple(a.draw(i)[1].tolist()) for i in range(20)}
    assert len(draws) > 15  # different tasks differ
    other = TaskSampler(ds, "val", 5, 2, 2, seed=4).draw(7)
    assert other[1].tolist() != t7.support_idx.tolist()
    assert [t.classes.tolist() for t in a.iter_tasks(3, start=6)][1] == t7.classes.tolist()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_hygiene(ds, split):
    s = TaskSampler(ds, split, n_way=5, k_shot=2, n_query=4, seed=1)
    allowed = set(ds.splits[split].tolist())
    seen = set()
    for i in range(200):
        classes, sup, qry = s.draw(i)
        assert set(classes.tolist()) <= allowed
        assert set(ds.labels[sup].tolist()) <= allowed and set(ds.labels[qry].tolist()) <= allowed
        assert not set(ds.sample_ids[sup].tolist()) & set(ds.sample_ids[qry].tolist())
        assert len(set(sup.tolist()) | set(qry.tolist())) == sup.size + qry.size
        seen |= set(classes.tolist())
    assert seen == allowed  # every class of the split gets used


def test_errors_name_split_and_numbers(ds):
    with pytest.raises(NeuromamlError, match=r"split 'val' has 16 classes, fewer than n_way=20.*n_way <= 16"):
        TaskSampler(ds, "val", n_way=20, k_shot=1, n_query=1)
    with pytest.raises(NeuromamlError, match=r"split 'test': class '\d\d' has 6 samples.*1 \+ 6 = 7"):
        TaskSampler(ds, "test", n_way=5, k_shot=1, n_query=6)
    with pytest.raises(NeuromamlError, match=r"split 'meta' does not exist"):
        TaskSampler(ds, "meta", 5, 1, 1)
    with pytest.raises(NeuromamlError, match=r"k_shot is 0"):
        TaskSampler(ds, "train", 5, 0, 1)
    with pytest.raises(NeuromamlError, match=r"seed is -1"):
        TaskSampler(ds, "train", 5, 1, 1, seed=-1)
    # the largest legal request works
    t = TaskSampler(ds, "val", n_way=16, k_shot=1, n_query=5, seed=0).sample(0)
    assert sorted(t.classes.tolist()) == ds.splits["val"].tolist()


def test_binary_frames(ds):
    t = TaskSampler(ds, "train", 2, 1, 1, seed=0, binary=True).sample(0)
    assert set(torch.unique(t.query_x).tolist()) <= {0.0, 1.0}


def test_shared_sample_id_is_caught(tiny_metadataset, tmp_path):
    """A (corrupt) file whose sample ids repeat across samples is refused, not silently used."""
    d = MetaDataset(tiny_metadataset)
    d.sample_ids = np.zeros_like(d.sample_ids)
    with pytest.raises(NeuromamlError, match=r"occur in both support and query"):
        TaskSampler(d, "train", 2, 1, 1).sample(0)


def test_disjoint_parts_keeps_part_recordings_apart(tiny_metadataset):
    """Double samples of different classes may share a part recording (the default synthetic set
    reuses digits: 400 slots per digit, about 180 images); the strict mode never lets one appear
    in both support and query, the plain mode does (so the test can fail)."""
    ds = MetaDataset(tiny_metadataset)
    n = len(ds)
    ds.part_ids = np.stack([np.arange(n) % 97, 1000 + np.arange(n) % 89], axis=1)  # heavy reuse
    shared = lambda s, d: np.intersect1d(ds.part_ids[s], ds.part_ids[d]).size  # noqa: E731
    loose = TaskSampler(ds, "train", n_way=5, k_shot=1, n_query=3, seed=0)
    strict = TaskSampler(ds, "train", n_way=5, k_shot=1, n_query=3, seed=0, disjoint_parts=True)
    assert sum(bool(shared(*loose.draw(i)[1:])) for i in range(100)) > 5
    for i in range(100):
        assert shared(*strict.draw(i)[1:]) == 0
    assert [x.tolist() for x in strict.draw(5)] == [x.tolist() for x in strict.draw(5)]
    plain = [i for i in range(20) if not shared(*loose.draw(i)[1:])]
    for i in plain:  # attempt 0 is the plain draw
        assert [x.tolist() for x in strict.draw(i)] == [x.tolist() for x in loose.draw(i)]
    ds.part_ids = np.zeros((n, 2), np.int64)
    impossible = TaskSampler(ds, "val", n_way=2, k_shot=1, n_query=1, disjoint_parts=True, max_attempts=3)
    with pytest.raises(NeuromamlError, match=r"split 'val'.*disjoint in 3 attempts"):
        impossible.draw(0)
    ds.part_ids = None
    with pytest.raises(NeuromamlError, match=r"lacks"):
        TaskSampler(ds, "val", 2, 1, 1, disjoint_parts=True)


def test_real_default_part_ids_are_unique_when_pools_suffice(ds):
    """The tiny set needs 120 slots per digit (< ~180 images): no part recording is reused."""
    assert len(np.unique(ds.part_ids)) == ds.part_ids.size


def test_synthetic_classes_are_distinguishable(ds):
    """No learning: 5-way 1-shot nearest (cosine) prototype of time-summed frames on meta-test
    classes is far above chance (0.2); about 0.65 measured. Guards against a data pipeline that
    scrambles or blanks the recordings."""
    acc = []
    for t in TaskSampler(ds, "test", 5, 1, 5, seed=0).iter_tasks(40):
        sx = torch.nn.functional.normalize(t.support_x.sum(-1).flatten(1), dim=1)
        qx = torch.nn.functional.normalize(t.query_x.sum(-1).flatten(1), dim=1)
        acc.append(((qx @ sx.T).argmax(1) == t.query_y).float().mean().item())
    assert np.mean(acc) > 0.45
