"""Meta-dataset composition, HDF5 layout and round trip, atomic writes, bad files."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from neuromaml.io import NeuromamlError
from neuromaml.meta import events as E
from neuromaml.meta import synthetic as S
from neuromaml.meta.metadataset import MetaDataset, build_metadataset, load_asl_split, parse_source
from conftest import TINY_PER_CLASS
from test_events import encode_nmnist, rand_events, write_folder

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
ASL_SPLIT = FIXTURES / "snn-maml" / "doubledvssign_splits_full.json"


def test_layout_follows_design(tiny_metadataset):
    with h5py.File(tiny_metadataset, "r") as f:
        a = f.attrs
        assert a["format"] == "neuromaml-metadataset" and a["version"] == 1 and a["source"] == "synthetic"
        assert a["sensor_size"].tolist() == [32, 16, 2] and a["time_steps"] == 100 and a["dt_us"] == 1000
        assert a["duration_us"] == 100_000 and a["composition"] == "double"
        assert [c.decode() for c in f["classes"][()]] == [f"{i:02d}" for i in range(100)]
        split = {k: f[f"splits/{k}"][()].tolist() for k in ("train", "val", "test")}
        # the authors' Double N-MNIST split (Multi-digit MNIST's): 64 / 16 / 20 classes, disjoint
        assert [len(v) for v in split.values()] == [64, 16, 20]
        assert sorted(sum(split.values(), [])) == list(range(100))
        assert split["test"][:5] == [2, 17, 25, 32, 36] and split["val"][:3] == [3, 7, 10]
        # every digit appears on both sides among the meta-train classes
        assert {c // 10 for c in split["train"]} == {c % 10 for c in split["train"]} == set(range(10))
        fr = f["frames"]
        assert fr.dtype == np.uint8 and fr.shape == (100 * TINY_PER_CLASS, 2, 16, 32, 100)
        assert fr.chunks == (1, 2, 16, 32, 100) and fr.compression is not None
        assert f["labels"].dtype == np.int32 and f["sample_ids"].dtype == np.int64


def test_metadataset_api(tiny_metadataset):
    ds = MetaDataset(tiny_metadataset)
    assert ds.shape == (2, 16, 32, 100) and len(ds) == 600 and ds.classes[37] == "37"
    assert ds.splits["val"].tolist() == [3, 7, 10, 22, 27, 34, 39, 40, 48, 52, 58, 61, 64, 71, 93, 99]
    idx = ds.indices_of(37)
    assert idx.size == TINY_PER_CLASS and (ds.labels[idx] == 37).all()
    x = ds.frames(idx[::-1].copy())
    assert x.dtype == torch.float32 and x.shape == (TINY_PER_CLASS, 2, 16, 32, 100)
    assert x.sum() > 0 and x.max() >= 1
    with h5py.File(tiny_metadataset, "r") as f:
        np.testing.assert_array_equal(x.numpy(), f["frames"][int(idx[0]):int(idx[-1]) + 1][::-1])
    xb = ds.frames(idx, binary=True)
    assert set(torch.unique(xb).tolist()) <= {0.0, 1.0}
    assert len(set(ds.sample_ids.tolist())) == len(ds)
    s = ds.summary()
    assert s["splits"] == {"train": 64, "val": 16, "test": 20} and s["samples_per_class"] == {"min": 6, "max": 6}


def test_double_composition_is_two_binned_recordings(tiny_metadataset):
    """Rebuild one sample from its parts: crop 34->32, bin 1 ms, sum-pool 2x2, left | right."""
    ds = MetaDataset(tiny_metadataset)
    with h5py.File(tiny_metadataset, "r") as f:
        part_ids = f["part_ids"][()]
    digit_of_gid = np.concatenate([S.digit_pools()[str(d)] for d in range(10)])
    _, labels = S.load_digit_images()
    for i in (ds.indices_of(47)[0], ds.indices_of(90)[3]):
        left, right = digit_of_gid[part_ids[i]]
        name = ds.classes[ds.labels[i]]
        assert (labels[left], labels[right]) == (int(name[0]), int(name[1]))
        halves = []
        for ev in S.synthetic_digit_events([left, right], seed=0, duration_us=100_000):
            ev = ev[(ev["x"] >= 1) & (ev["x"] < 33) & (ev["y"] >= 1) & (ev["y"] < 33)].copy()
            ev["x"] -= 1
            ev["y"] -= 1
            halves.append(E.events_to_frames(ev, (32, 32, 2), 100, 1000, 2))
        expect = np.concatenate(halves, axis=2)
        assert expect.shape == (2, 16, 32, 100)
        np.testing.assert_array_equal(ds.frames([i])[0].numpy(), np.minimum(expect, 255))


def test_samples_of_a_class_use_distinct_recordings(tiny_metadataset):
    ds = MetaDataset(tiny_metadataset)
    with h5py.File(tiny_metadataset, "r") as f:
        part_ids = f["part_ids"][()]
    for c in range(100):
        p = part_ids[ds.indices_of(c)]
        assert len(set(p[:, 0])) == TINY_PER_CLASS and len(set(p[:, 1])) == TINY_PER_CLASS
        if c % 11 == 0:  # "aa": left and right recordings differ too
            assert len(set(p.ravel())) == 2 * TINY_PER_CLASS


def test_bad_files(tmp_path, tiny_metadataset):
    with pytest.raises(NeuromamlError, match=r"nope\.h5.*not found"):
        MetaDataset(tmp_path / "nope.h5")
    txt = tmp_path / "text.h5"
    txt.write_text("hello")
    with pytest.raises(NeuromamlError, match=r"text\.h5.*not an HDF5 file"):
        MetaDataset(txt)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(NeuromamlError, match=r"other\.h5.*'format' is 'something-else'"):
        MetaDataset(other)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(Path(tiny_metadataset).read_bytes())
    with h5py.File(broken, "a") as f:
        del f["sample_ids"]
    with pytest.raises(NeuromamlError, match=r"broken\.h5.*'/sample_ids' is missing"):
        MetaDataset(broken)


def test_killed_build_leaves_no_file(tmp_path, monkeypatch):
    calls = []

    def dying(indices, **kw):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "synthetic_digit_events", dying)
    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt):
        build_metadataset("synthetic", out, per_class=2)
    assert calls and not out.exists() and list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        build_metadataset("synthetic", out, per_class=2)
    assert out.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_single_composition_generic_folder(tmp_path):
    root = write_folder(tmp_path / "ev", classes=[f"c{i}" for i in range(6)], n=4, sensor=(20, 10, 2), dur=30_000)
    s = build_metadataset(f"events:{root}", tmp_path / "g.h5", per_class=3, seed=5, fractions=(0.5, 0.25, 0.25))
    assert s["shape"] == [2, 10, 20, 30] and s["num_samples"] == 18
    ds = MetaDataset(tmp_path / "g.h5")
    assert ds.attrs["composition"] == "single" and ds.classes == [f"c{i}" for i in range(6)]
    sp = ds.splits
    assert [sp[k].size for k in ("train", "val", "test")] == [3, 2, 1]
    assert sorted(np.concatenate(list(sp.values())).tolist()) == list(range(6))
    again = build_metadataset(f"events:{root}", tmp_path / "g2.h5", per_class=3, seed=5, fractions=(0.5, 0.25, 0.25))
    assert again["splits"] == s["splits"]
    assert {k: v.tolist() for k, v in MetaDataset(tmp_path / "g2.h5").splits.items()} == \
        {k: v.tolist() for k, v in sp.items()}
    # every sample equals the binning of its own recording
    meta, files = E.scan_event_folder(root)
    all_files = [f for c in sorted(files) for f in files[c]]
    for i in range(len(ds)):
        ev = E.read_npy_events(all_files[int(ds.sample_ids[i])], meta["sensor_size"])
        assert all_files[int(ds.sample_ids[i])].parent.name == ds.classes[ds.labels[i]]
        np.testing.assert_array_equal(ds.frames([i])[0].numpy(), E.events_to_frames(ev, (20, 10, 2), 30))
    with pytest.raises(NeuromamlError, match=r"empty split"):
        build_metadataset(f"events:{root}", tmp_path / "g3.h5", fractions=(1, 0, 0))


def test_double_nmnist_from_bin_files(tmp_path):
    root = tmp_path / "nmnist"
    for d in range(10):
        for k in range(2):
            (root / "Train" / str(d)).mkdir(parents=True, exist_ok=True)
            (root / "Train" / str(d) / f"{k:05d}.bin").write_bytes(
                encode_nmnist(rand_events(200, 34, 34, 150_000, seed=d * 10 + k)))
    s = build_metadataset(f"nmnist:{root}", tmp_path / "n.h5", per_class=2)
    assert s["shape"] == [2, 16, 32, 100] and s["num_samples"] == 200
    ds = MetaDataset(tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as f:
        part_ids = f["part_ids"][()]
    files = [f for d in range(10) for f in sorted((root / "Train" / str(d)).glob("*.bin"))]
    i = int(ds.indices_of(38)[1])
    halves = []
    for gid in part_ids[i]:
        assert files[gid].parent.name == ds.classes[38][len(halves)]
        ev = E.read_nmnist_bin(files[gid])
        ev = ev[(ev["x"] >= 1) & (ev["x"] < 33) & (ev["y"] >= 1) & (ev["y"] < 33)].copy()
        ev["x"] -= 1
        ev["y"] -= 1
        halves.append(E.events_to_frames(ev, (32, 32, 2), 100, 1000, 2))
    np.testing.assert_array_equal(ds.frames([i])[0].numpy(), np.concatenate(halves, axis=2))
    assert len(set(ds.sample_ids.tolist())) == 200  # small pools: pairs still distinct per class
    # 2 recordings per digit make 4 distinct pairs per class, not 5
    with pytest.raises(NeuromamlError, match=r"class '00' would repeat a recording pair.*--per-class"):
        build_metadataset(f"nmnist:{root}", tmp_path / "n3.h5", per_class=5)


def test_double_asl_dvs_with_authors_split(tmp_path):
    root = tmp_path / "asl"
    col = lambda a: np.asarray(a).reshape(-1, 1)  # noqa: E731
    for li, letter in enumerate(E.ASL_LETTERS):
        (root / letter).mkdir(parents=True)
        ev = rand_events(50, 240, 180, 120_000, seed=li)
        mat = {"ts": col(ev["t"] + 5_000_000), "x": col(ev["x"]), "y": col(179 - ev["y"]), "pol": col(ev["p"])}
        scipy.io.savemat(root / letter / f"{letter}_0001.mat", mat)
    s = build_metadataset(f"asl-dvs:{root}", tmp_path / "a.h5", per_class=1, split_file=ASL_SPLIT)
    assert s["shape"] == [2, 30, 80, 100] and s["num_classes"] == 576
    assert s["splits"] == {"train": 369, "val": 92, "test": 115}
    ds = MetaDataset(tmp_path / "a.h5")
    raw = json.loads(ASL_SPLIT.read_text())
    i, j = (int(v) for v in raw["test"][0].split("."))
    assert ds.splits["test"][0] == i * 24 + j and ds.classes[i * 24 + j] == E.ASL_LETTERS[i] + E.ASL_LETTERS[j]
    # timestamps are re-based to the first event: the sample holds the events of [t0, t0 + 100 ms)
    c = 2 * 24 + 5
    x = ds.frames(ds.indices_of(c))[0].numpy()
    halves = []
    for li in (2, 5):
        ev = rand_events(50, 240, 180, 120_000, seed=li)
        ev["t"] -= ev["t"].min()
        halves.append(E.events_to_frames(ev, (240, 180, 2), 100, 1000, 6))
    np.testing.assert_array_equal(x, np.concatenate(halves, axis=2))


def test_bad_split_and_source(tmp_path):
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps({"train": ["1.2", "3.30"], "val": [], "test": []}))
    with pytest.raises(NeuromamlError, match=r"split\.json.*'3\.30', which does not exist"):
        load_asl_split(bad)
    bad.write_text(json.dumps({"train": ["1.2"], "val": ["1.2"], "test": []}))
    with pytest.raises(NeuromamlError, match=r"'1\.2' is in split 'train' and 'val'"):
        load_asl_split(bad)
    bad.write_text(json.dumps({"train": []}))
    with pytest.raises(NeuromamlError, match=r"keys"):
        load_asl_split(bad)
    with pytest.raises(NeuromamlError, match=r"--source 'mnist' is not understood"):
        parse_source("mnist")
    with pytest.raises(NeuromamlError, match=r"--per-class"):
        build_metadataset("synthetic", tmp_path / "x.h5", per_class=0)
    with pytest.raises(NeuromamlError, match=r"--digit-split 'diagonal' is not a Double-digits split"):
        build_metadataset("synthetic", tmp_path / "x.h5", digit_split="diagonal")
    with pytest.raises(NeuromamlError, match=r"--digit-split ordered applies to Double digits"):
        build_metadataset(f"events:{tmp_path}", tmp_path / "x.h5", digit_split="ordered")
    with pytest.raises(NeuromamlError, match=r"--downsample"):
        build_metadataset("synthetic", tmp_path / "x.h5", downsample=0)
    with pytest.raises(NeuromamlError, match=r"shorter than one 1000 us bin"):
        build_metadataset("synthetic", tmp_path / "x.h5", duration_us=500)
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]


def test_ordered_digit_split(tmp_path):
    build_metadataset("synthetic", tmp_path / "o.h5", per_class=1, digit_split="ordered")
    ds = MetaDataset(tmp_path / "o.h5")
    assert [ds.splits[k].tolist() for k in ("train", "val", "test")] == [
        list(range(64)), list(range(64, 80)), list(range(80, 100))]
    assert ds.labels.tolist() == list(range(100))


def test_build_is_deterministic_for_a_seed(tmp_path):
    a = build_metadataset("synthetic", tmp_path / "a.h5", per_class=1, seed=3)
    b = build_metadataset("synthetic", tmp_path / "b.h5", per_class=1, seed=3)
    c = build_metadataset("synthetic", tmp_path / "c.h5", per_class=1, seed=4)
    assert a["num_samples"] == b["num_samples"] == 100
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb, h5py.File(tmp_path / "c.h5") as fc:
        for k in ("frames", "labels", "sample_ids", "part_ids"):
            assert fa[k][()].tobytes() == fb[k][()].tobytes()
        assert fa["frames"][()].tobytes() != fc["frames"][()].tobytes()
    assert c["seed"] == 4


def test_real_nmnist_recording_through_double_pipeline(tmp_path):
    """The real N-MNIST sample as every digit: each half of every sample is its binned first 100 ms."""
    real = FIXTURES / "nmnist" / "sample_nmnist.bin"
    for d in range(10):
        (tmp_path / "nm" / "Test" / str(d)).mkdir(parents=True)
        (tmp_path / "nm" / "Test" / str(d) / "00001.bin").write_bytes(real.read_bytes())
    build_metadataset(f"nmnist:{tmp_path / 'nm'}", tmp_path / "r.h5", per_class=1)
    ds = MetaDataset(tmp_path / "r.h5")
    ev = E.read_nmnist_bin(real)
    ev = ev[(ev["x"] >= 1) & (ev["x"] < 33) & (ev["y"] >= 1) & (ev["y"] < 33)].copy()
    ev["x"] -= 1
    ev["y"] -= 1
    half = E.events_to_frames(ev, (32, 32, 2), 100, 1000, 2)
    assert 1000 < half.sum() < 1369  # 1369 events in the first 100 ms, a few on the cropped border
    x = ds.frames([0, 55, 99]).numpy()
    for k in range(3):
        np.testing.assert_array_equal(x[k], np.concatenate([half, half], axis=2))


def test_attributes_written_as_bytes_by_other_tools_are_read_as_text(tiny_metadataset, tmp_path):
    import shutil

    import h5py

    p = tmp_path / "b.h5"
    shutil.copy(tiny_metadataset, p)
    with h5py.File(p, "r+") as f:
        f.attrs["source"] = np.bytes_(b"events:x")
    s = MetaDataset(p).summary()
    assert s["source"] == "events:x"
    json.dumps(s)


def test_a_complete_virtual_dataset_is_read(tiny_metadataset, tmp_path):
    """/frames as a virtual dataset that maps every sample (two slices of another file, one of
    its own file): the source checks accept it and the frames read are the original ones."""
    p = tmp_path / "vds.h5"
    with h5py.File(tiny_metadataset, "r") as s, h5py.File(tmp_path / "src.h5", "w") as g:
        g["frames"] = frames = s["frames"][()]
        with h5py.File(p, "w") as d:
            for k, v in s.attrs.items():
                d.attrs[k] = v
            for k in s:
                if k != "frames":
                    s.copy(k, d)
            d["own"] = frames[400:]
            lay = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
            src = h5py.VirtualSource(str(tmp_path / "src.h5"), "frames", shape=frames.shape)
            lay[:200], lay[200:400] = src[:200], src[200:400]
            lay[400:] = h5py.VirtualSource(".", "own", shape=(len(frames) - 400, *frames.shape[1:]))
            d.create_virtual_dataset("frames", lay, fillvalue=0)
    ds, ref = MetaDataset(p), MetaDataset(tiny_metadataset)
    assert torch.equal(ds.frames([0, 250, 599]), ref.frames([0, 250, 599]))
