"""`neuromaml data build|info`, in process."""
import json

from neuromaml import cli
from neuromaml.meta.metadataset import MetaDataset
from test_events import write_folder


def test_build_events_folder_and_info(tmp_path, capsys):
    root = write_folder(tmp_path / "ev", classes=["a", "b", "c", "d"], n=3, sensor=(20, 10, 2), dur=20_000)
    out = tmp_path / "out" / "g.h5"
    rc = cli.main(["data", "build", "--source", f"events:{root}", "--out", str(out), "--per-class", "2",
                   "--seed", "1", "--fractions", "0.5", "0.25", "0.25"])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "g.h5.json").read_text())
    assert summary["num_classes"] == 4 and summary["num_samples"] == 8 and summary["shape"] == [2, 10, 20, 20]
    assert summary["splits"] == {"train": 2, "val": 1, "test": 1} and "versions" in summary
    assert MetaDataset(out).shape == (2, 10, 20, 20)
    capsys.readouterr()
    rc = cli.main(["data", "info", str(out), "--json", str(tmp_path / "info.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "classes      4: train 2, val 1, test 1" in text
    assert "per class    2 samples (8 in all)" in text
    assert "(N, 2, 10, 20, 20)" in text and "duration     20 ms" in text
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["samples_per_class"] == {"min": 2, "max": 2} and info["duration_us"] == 20_000
    assert sorted(sum(info["classes_per_split"].values(), [])) == ["a", "b", "c", "d"]


def test_build_synthetic_with_json_path(tmp_path, capsys):
    out = tmp_path / "s.h5"
    rc = cli.main(["data", "build", "--out", str(out), "--per-class", "1", "--quiet",
                   "--json", str(tmp_path / "sum.json")])
    assert rc == 0
    s = json.loads((tmp_path / "sum.json").read_text())
    assert s["source"] == "synthetic" and s["shape"] == [2, 16, 32, 100] and s["num_samples"] == 100
    assert s["splits"] == {"train": 64, "val": 16, "test": 20} and s["bytes"] == out.stat().st_size
    assert "wrote" in capsys.readouterr().out
    assert not (tmp_path / "s.h5.json").exists()


def test_user_errors_are_one_line(tmp_path, capsys):
    for argv, needle in [
        (["data", "build", "--source", f"nmnist:{tmp_path / 'none'}", "--out", str(tmp_path / "x.h5")],
         "none: N-MNIST folder not found"),
        (["data", "build", "--source", "mnist", "--out", str(tmp_path / "x.h5")], "--source 'mnist'"),
        (["data", "info", str(tmp_path)], "is not a regular file"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_build_notes_what_a_request_silently_changes(tmp_path, capsys):
    """Accepted but lossy requests are said: pooling that drops edge pixels, a duration cut to
    whole bins, a window longer than the recordings (blank frames)."""
    root = write_folder(tmp_path / "ev", classes=["a", "b", "c", "d"], n=2, sensor=(20, 10, 2), dur=20_000)
    out = tmp_path / "g.h5"
    assert cli.main(["data", "build", "--source", f"events:{root}", "--out", str(out), "--per-class", "2",
                     "--downsample", "3", "--duration-us", "30500", "--fractions", "0.5", "0.25", "0.25",
                     "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--downsample 3 does not divide the 20 x 10 px recordings: the last 2 column(s) and 1 row(s)" in err
    assert "not a whole number of 1000 us bins: the last 500 us are dropped" in err
    assert "longer than the recordings' 20000 us (meta.json duration_us): the last 10 frame(s)" in err
    assert len(json.loads((tmp_path / "g.h5.json").read_text())["notes"]) == 3
    assert cli.main(["data", "build", "--source", f"events:{root}", "--out", str(tmp_path / "h.h5"),
                     "--per-class", "2", "--fractions", "0.5", "0.25", "0.25", "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_build_notes_bins_clipped_at_255(tmp_path, capsys):
    import numpy as np

    from neuromaml.meta.events import make_events

    root = write_folder(tmp_path / "ev", classes=["a", "b", "c", "d"], n=2, sensor=(20, 10, 2), dur=20_000)
    n = 300                                     # 300 events in one pixel and one 1 ms bin
    np.save(root / "a" / "s0.npy", make_events(np.full(n, 5), np.full(n, 3), np.full(n, 2), np.ones(n, int)))
    assert cli.main(["data", "build", "--source", f"events:{root}", "--out", str(tmp_path / "g.h5"),
                     "--per-class", "2", "--fractions", "0.5", "0.25", "0.25", "--quiet"]) == 0
    assert "1 frame bin(s) held more than 255 events and were stored as 255" in capsys.readouterr().err
