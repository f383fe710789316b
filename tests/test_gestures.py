"""The embedded synthetic DVS gestures: deterministic, motion-defined classes, a generic event folder."""
import json
import os

import numpy as np
import pytest

from neuromaml import cli
from neuromaml.io import NeuromamlError
from neuromaml.meta import gestures as G
from neuromaml.meta.events import EVENT_DTYPE, events_to_frames, read_npy_events, scan_event_folder, validate_events
from neuromaml.meta.metadataset import MetaDataset, build_metadataset
from neuromaml.meta.synthetic import DVSParams

CLASSES, PER_CLASS = 5, 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("gestures") / "g"
    summary = G.write_gesture_folder(root, classes=CLASSES, per_class=PER_CLASS, seed=0, progress=False)
    return root, summary


def test_deterministic_seeded_and_batch_independent():
    a = G.gesture_events(3, 1, seed=0)
    assert a.tobytes() == G.gesture_events(3, 1, seed=0).tobytes()
    assert a.tobytes() == G.gesture_recordings(3, [0, 1, 2], seed=0)[1].tobytes()
    assert a.tobytes() != G.gesture_events(3, 1, seed=1).tobytes()
    assert a.tobytes() != G.gesture_events(3, 2, seed=0).tobytes()
    assert a.tobytes() != G.gesture_events(4, 1, seed=0).tobytes()


def test_recordings_valid_in_sensor_and_window_with_both_polarities():
    for c in range(3):
        for ev in G.gesture_recordings(c, range(3), seed=0):
            assert ev.dtype == EVENT_DTYPE and ev.size > 100
            validate_events(ev, G.SENSOR_SIZE)          # raises if outside 32 x 16
            assert (np.diff(ev["t"]) >= 0).all() and ev["t"].min() >= 0 and ev["t"].max() < 100_000
            assert 0.3 < ev["p"].mean() < 0.7           # a bright object: ON leading, OFF trailing edges


def test_events_follow_the_moving_hand():
    """Without noise, events lie near the hand's path; ON events ahead of it, OFF behind."""
    params = G.GestureParams(dvs=DVSParams(noise_hz=0.0))
    for c in range(4):
        ev = G.gesture_events(c, 0, seed=0, params=params)
        pos = G.gesture_trajectory(c, 0, ev["t"], seed=0, params=params)
        vel = G.gesture_trajectory(c, 0, ev["t"] + 250, seed=0, params=params) - \
            G.gesture_trajectory(c, 0, ev["t"] - 250, seed=0, params=params)
        rel = np.stack([ev["x"], ev["y"]], 1) - pos
        assert np.quantile(np.linalg.norm(rel, axis=1), 0.95) < 6.0     # px
        ahead = (rel * vel).sum(1)
        assert ahead[ev["p"] == 1].mean() > 0 > ahead[ev["p"] == 0].mean()


def test_folder_is_read_by_the_generic_reader_and_built(folder, tmp_path):
    root, summary = folder
    meta, files = scan_event_folder(root)        # extra meta.json keys (generator, seed, params) are tolerated
    assert meta == {"sensor_size": (32, 16, 2), "duration_us": 100_000}
    assert sorted(files) == [f"g{c:03d}" for c in range(CLASSES)]
    assert all(len(v) == PER_CLASS for v in files.values())
    assert read_npy_events(files["g002"][3], meta["sensor_size"]).tobytes() == G.gesture_events(2, 3, 0).tobytes()
    assert json.loads((root / "meta.json").read_text())["generator"] == G.GENERATOR
    assert summary["num_recordings"] == CLASSES * PER_CLASS and summary["events_per_recording"]["min"] > 0
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]      # no temp folder left
    out = tmp_path / "g.h5"
    s = build_metadataset(f"events:{root}", out, per_class=PER_CLASS, seed=0)
    assert s["shape"] == [2, 16, 32, 100] and s["num_samples"] == CLASSES * PER_CLASS
    ds = MetaDataset(out)
    assert ds.frames(range(len(ds))).shape == (CLASSES * PER_CLASS, 2, 16, 32, 100)


def test_classes_differ_more_than_recordings_of_a_class(folder):
    """In time-resolved, polarity-resolved frames (10 bins of 10 ms) every class, the other
    direction of its own movement included, is farther from the others than its recordings are
    from each other."""
    root, _ = folder
    meta, files = scan_event_folder(root)
    X, y = [], []
    for c, name in enumerate(sorted(files)):
        for f in files[name]:
            x = events_to_frames(read_npy_events(f, meta["sensor_size"]), meta["sensor_size"], 100)
            x = x.reshape(*x.shape[:-1], 10, 10).sum(-1).reshape(-1).astype(np.float64)
            X.append(x / np.linalg.norm(x))
            y.append(c)
    X, y = np.array(X), np.array(y)
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    for c in range(CLASSES):
        m = y == c
        intra = D[np.ix_(m, m)][np.triu_indices(int(m.sum()), 1)].mean()
        nearest_other = min(D[np.ix_(m, y == d)].mean() for d in range(CLASSES) if d != c)
        assert intra < nearest_other, (c, intra, nearest_other)


NO_JITTER = G.GestureParams(phase_jitter=0.0, speed_jitter=0.0, scale_jitter=0.0, rotation_jitter_deg=0.0,
                            shift_px=(0.0, 0.0), shape_jitter=0.0)


def test_direction_pairs_trace_one_path_in_opposite_directions():
    """Classes 2m and 2m + 1 are movement m forwards and backwards: without the per-recording
    jitter, class 2m + 1 at time t is where class 2m is at -t (same path, size, speed, start
    pose), and the two part from the start on."""
    assert [G.movement_of(c) for c in range(5)] == [0, 0, 1, 1, 2]
    assert [G.direction_of(c) for c in range(4)] == [1, -1, 1, -1]
    t = np.linspace(0, 100_000, 201)
    for m in range(4):
        fwd = G.gesture_trajectory(2 * m, 0, t, seed=0, params=NO_JITTER)
        back = G.gesture_trajectory(2 * m + 1, 0, t, seed=0, params=NO_JITTER)
        np.testing.assert_allclose(back, G.gesture_trajectory(2 * m, 0, -t, seed=0, params=NO_JITTER), atol=1e-9)
        np.testing.assert_allclose(fwd[0], back[0], atol=1e-9)                   # one start pose
        assert np.abs(fwd - back).max() > 2.0                                     # px: opposite ways
        assert np.abs(fwd - G.gesture_trajectory(2 * m + 2, 0, t, seed=0, params=NO_JITTER)).max() > 1.0
        # a recording's own jitter is independent between the two directions
        assert not np.allclose(G.gesture_trajectory(2 * m + 1, 0, -t, seed=0),
                               G.gesture_trajectory(2 * m, 0, t, seed=0))


def test_all_classes_are_performed_around_the_sensor_centre():
    """Placement is no class cue: the box centre of every class's path is the sensor centre,
    moved only by the recording's shift (and a little by its shape and rotation jitter)."""
    params = G.GestureParams()
    centre = np.array([(G.SENSOR_SIZE[0] - 1) / 2, (G.SENSOR_SIZE[1] - 1) / 2])
    t = np.linspace(0, 300_000, 3001)          # >= 2 cycles at the slowest speed
    for c in range(12):
        q = G.gesture_trajectory(c, 0, t, seed=0, params=NO_JITTER)
        np.testing.assert_allclose((q.min(0) + q.max(0)) / 2, centre, atol=0.05)
        for i in range(3):
            q = G.gesture_trajectory(c, i, t, seed=0, params=params)
            assert (np.abs((q.min(0) + q.max(0)) / 2 - centre) <= np.array(params.shift_px) + 1.0).all(), (c, i)


def test_refuses_a_non_empty_folder_and_leaves_nothing_on_error(tmp_path, monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(NeuromamlError, match="not empty"):
        G.write_gesture_folder(busy, classes=2, per_class=1, progress=False)
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    with pytest.raises(NeuromamlError, match="--classes"):
        G.write_gesture_folder(tmp_path / "one", classes=1, per_class=1, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    G.write_gesture_folder(empty, classes=2, per_class=1, progress=False)    # an empty folder is filled
    assert sorted(p.name for p in empty.iterdir()) == ["g000", "g001", "meta.json"]

    calls = []

    def boom(c, *a, **k):
        calls.append(c)
        if c == 1:
            raise RuntimeError("simulated crash")
        return real(c, *a, **k)
    real = G.gesture_recordings
    monkeypatch.setattr(G, "gesture_recordings", boom)
    with pytest.raises(RuntimeError):
        G.write_gesture_folder(tmp_path / "crash", classes=3, per_class=1, progress=False)
    assert calls == [0, 1] and not (tmp_path / "crash").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "gest"
    argv = ["data", "generate", "gestures", "--out", str(out), "--classes", "3", "--per-class", "2",
            "--seed", "1", "--quiet"]
    assert cli.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    summary = json.loads((tmp_path / "gest.json").read_text())
    assert summary["classes"] == 3 and summary["per_class"] == 2 and summary["seed"] == 1 and "versions" in summary
    assert sorted(scan_event_folder(out)[1]) == ["g000", "g001", "g002"]
    ev = read_npy_events(out / "g001" / "001.npy", G.SENSOR_SIZE)
    assert ev.tobytes() == G.gesture_events(1, 1, seed=1).tobytes()
    for bad, needle in ((argv, "not empty"),
                        (["data", "generate", "gestures", "--out", str(tmp_path / "x"), "--classes", "1"], "--classes"),
                        (["data", "generate", "gestures", "--out", str(tmp_path / "x"), "--per-class", "0"],
                         "--per-class")):
        try:
            rc = cli.main(bad)
        except SystemExit as exc:        # argparse's usage error for a flag's type
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
