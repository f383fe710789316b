"""Event readers on files written in each real format, the real N-MNIST sample, and bad input."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from neuromaml.io import NeuromamlError
from neuromaml.meta import events as E

FIXTURE_BIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "nmnist" / "sample_nmnist.bin"


def encode_nmnist(ev, overflow_after=()) -> bytes:
    """N-MNIST 40-bit records (x, y, p|t[22:16], t[15:8], t[7:0]); an overflow marker
    (y=240) is inserted after each index in ``overflow_after``; timestamps must then be
    stored modulo the 2**13 us increments the markers add."""
    out = bytearray()
    n_over = 0
    for i, e in enumerate(ev):
        t = int(e["t"]) - n_over * 2 ** 13
        assert 0 <= t < 2 ** 23
        out += bytes([int(e["x"]), int(e["y"]), (int(e["p"]) << 7) | (t >> 16), (t >> 8) & 255, t & 255])
        if i in overflow_after:
            out += bytes([0, 240, 0, 0, 0])
            n_over += 1
    return bytes(out)


def rand_events(n, W, H, t_max=100_000, seed=0):
    rng = np.random.default_rng(seed)
    return E.make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n), rng.integers(0, H, n),
                         rng.integers(0, 2, n))


def test_real_nmnist_sample_has_4325_events():
    ev = E.read_nmnist_bin(FIXTURE_BIN)
    assert ev.dtype == E.EVENT_DTYPE
    assert ev.size == 4325
    assert ev["x"].max() < 34 and ev["y"].max() < 34 and set(np.unique(ev["p"])) == {0, 1}
    assert (np.diff(ev["t"]) >= 0).all() and 290_000 < ev["t"].max() < 320_000


def test_nmnist_roundtrip_with_overflow_marker(tmp_path):
    ev = rand_events(50, 34, 34)
    ev["t"][25:] += 2 ** 13  # after the marker: decoder must add 2**13
    f = tmp_path / "x.bin"
    f.write_bytes(encode_nmnist(ev, overflow_after={24}))
    got = E.read_nmnist_bin(f)
    assert got.size == 50
    for k in "txyp":
        np.testing.assert_array_equal(got[k], ev[k])


def test_truncated_bin_is_a_clear_error(tmp_path):
    f = tmp_path / "cut.bin"
    f.write_bytes(FIXTURE_BIN.read_bytes()[:-2])
    with pytest.raises(NeuromamlError, match=r"cut\.bin.*truncated.*multiple of 5"):
        E.read_nmnist_bin(f)


def test_bin_event_outside_sensor(tmp_path):
    f = tmp_path / "big.bin"
    f.write_bytes(encode_nmnist(E.make_events([5], [40], [3], [1])))
    with pytest.raises(NeuromamlError, match=r"big\.bin.*outside the 34x34 sensor"):
        E.read_nmnist_bin(f)


def test_asl_mat_2d_columns_are_flattened_and_rows_flipped(tmp_path):
    ev = rand_events(40, 240, 180)
    f = tmp_path / "a_0001.mat"
    col = lambda a: np.asarray(a, np.float64).reshape(-1, 1)  # noqa: E731 - MATLAB column vectors
    scipy.io.savemat(f, {"ts": col(ev["t"]), "x": col(ev["x"]), "y": col(179 - ev["y"]), "pol": col(ev["p"])})
    assert scipy.io.loadmat(f)["x"].ndim == 2
    got = E.read_asl_mat(f)
    for k in "txyp":
        np.testing.assert_array_equal(got[k], ev[k])


def test_asl_mat_without_keys(tmp_path):
    f = tmp_path / "b.mat"
    scipy.io.savemat(f, {"ts": np.arange(3), "x": np.arange(3)})
    with pytest.raises(NeuromamlError, match=r"b\.mat.*lacks key\(s\) \['y', 'pol'\]"):
        E.read_asl_mat(f)


def test_asl_not_a_mat(tmp_path):
    f = tmp_path / "c.mat"
    f.write_bytes(b"garbage")
    with pytest.raises(NeuromamlError, match=r"c\.mat.*not a readable"):
        E.read_asl_mat(f)


def write_folder(root, classes=("cat", "dog"), n=3, sensor=(20, 10, 2), dur=50_000):
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps({"sensor_size": list(sensor), "duration_us": dur}))
    for ci, c in enumerate(classes):
        (root / c).mkdir(exist_ok=True)
        for i in range(n):
            np.save(root / c / f"s{i}.npy", rand_events(30, sensor[0], sensor[1], dur, seed=10 * ci + i))
    return root


def test_generic_folder_scan_and_read(tmp_path):
    root = write_folder(tmp_path / "ev")
    meta, files = E.scan_event_folder(root)
    assert meta == {"sensor_size": (20, 10, 2), "duration_us": 50_000}
    assert sorted(files) == ["cat", "dog"] and len(files["dog"]) == 3
    got = E.read_npy_events(files["dog"][1], meta["sensor_size"])
    np.testing.assert_array_equal(got, rand_events(30, 20, 10, 50_000, seed=11))


def test_generic_folder_other_integer_dtypes_are_converted(tmp_path):
    root = write_folder(tmp_path / "ev", n=1)
    ev = np.zeros(2, dtype=[("x", "u1"), ("y", "u1"), ("p", "?"), ("t", "u4")])
    ev["x"], ev["y"], ev["p"], ev["t"] = [1, 2], [3, 4], [True, False], [10, 20]
    np.save(root / "cat" / "s0.npy", ev)
    got = E.read_npy_events(root / "cat" / "s0.npy", (20, 10, 2))
    assert got.dtype == E.EVENT_DTYPE and got["t"].tolist() == [10, 20] and got["p"].tolist() == [1, 0]


@pytest.mark.parametrize("bad, pattern", [
    ({"sensor_size": [20, 10], "duration_us": 5}, r"meta\.json.*'sensor_size'.*\[W, H, 2\]"),
    ({"sensor_size": [20, 10, 3], "duration_us": 5}, r"meta\.json.*'sensor_size'"),
    ({"sensor_size": [20, -1, 2], "duration_us": 5}, r"meta\.json.*'sensor_size'"),
    ({"sensor_size": [20, 10, 2], "duration_us": 0}, r"meta\.json.*'duration_us'"),
])
def test_meta_json_errors(tmp_path, bad, pattern):
    root = write_folder(tmp_path / "ev")
    (root / "meta.json").write_text(json.dumps(bad))
    with pytest.raises(NeuromamlError, match=pattern):
        E.scan_event_folder(root)


def test_missing_folder_and_empty_class(tmp_path):
    with pytest.raises(NeuromamlError, match=r"nowhere.*folder not found"):
        E.scan_event_folder(tmp_path / "nowhere")
    with pytest.raises(NeuromamlError, match=r"nowhere.*N-MNIST folder not found"):
        E.scan_nmnist(tmp_path / "nowhere")
    root = write_folder(tmp_path / "ev")
    (root / "empty").mkdir()
    with pytest.raises(NeuromamlError, match=r"empty.*empty class: no \*\.npy"):
        E.scan_event_folder(root)
    nm = tmp_path / "nm" / "Train"
    for d in range(10):
        (nm / str(d)).mkdir(parents=True)
        if d != 7:
            (nm / str(d) / "a.bin").write_bytes(b"")
    with pytest.raises(NeuromamlError, match=r"empty class: no \.bin files for digit 7"):
        E.scan_nmnist(tmp_path / "nm")
    with pytest.raises(NeuromamlError, match=r"letter 'a' not found"):
        E.scan_asl_dvs(tmp_path / "ev")


def test_events_outside_sensor_and_wrong_dtype(tmp_path):
    root = write_folder(tmp_path / "ev")
    bad = rand_events(5, 20, 10)
    bad["y"][3] = 10
    np.save(root / "cat" / "s0.npy", bad)
    with pytest.raises(NeuromamlError, match=r"s0\.npy.*1 event\(s\) outside the 20x10 sensor.*y=10"):
        E.read_npy_events(root / "cat" / "s0.npy", (20, 10, 2))
    np.save(root / "cat" / "s1.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(NeuromamlError, match=r"s1\.npy.*structured array"):
        E.read_npy_events(root / "cat" / "s1.npy", (20, 10, 2))
    fl = np.zeros(3, dtype=[("t", "f8"), ("x", "i2"), ("y", "i2"), ("p", "i1")])
    np.save(root / "cat" / "s2.npy", fl)
    with pytest.raises(NeuromamlError, match=r"s2\.npy.*field 't' has dtype float64"):
        E.read_npy_events(root / "cat" / "s2.npy", (20, 10, 2))
    nop = np.zeros(3, dtype=[("t", "i8"), ("x", "i2"), ("y", "i2")])
    np.save(root / "cat" / "s3.npy", nop)
    with pytest.raises(NeuromamlError, match=r"s3\.npy.*lack field\(s\) \['p'\]"):
        E.read_npy_events(root / "cat" / "s3.npy", (20, 10, 2))
    bp = rand_events(4, 20, 10)
    bp["p"][0] = -1
    with pytest.raises(NeuromamlError, match=r"'p' holds \[-1\]"):
        E.validate_events(bp, (20, 10, 2), "x.npy")


def test_events_to_frames_counts_and_sum_pooling():
    ev = E.make_events(t=[0, 999, 1000, 5000, 2500, 100_000], x=[0, 1, 3, 3, 4, 0], y=[0, 1, 2, 2, 0, 0],
                       p=[1, 1, 0, 0, 1, 1])
    fr = E.events_to_frames(ev, (5, 4, 2), time_steps=10, dt_us=1000, downsample=2)
    assert fr.shape == (2, 2, 2, 10) and fr.dtype == np.int32
    expect = np.zeros((2, 2, 2, 10), np.int32)
    expect[1, 0, 0, 0] = 2          # (0,0) and (1,1) pool into block (0,0), both in bin 0
    expect[0, 1, 1, 1] = 1          # (3,2) at 1000 us -> bin 1
    expect[0, 1, 1, 5] = 1          # (3,2) at 5000 us -> bin 5
    # x=4 lies beyond the last full 2x2 block of a 5-wide sensor; t=100 ms is past 10 bins
    np.testing.assert_array_equal(fr, expect)
    assert E.events_to_frames(ev, (5, 4, 2), 10).sum() == 5
