"""Hostile and careless input, across every subcommand and file format.

Each case prepares its inputs in a fresh folder, runs ``neuromaml ...`` in-process and asserts:

* the exit code (2: an error the user can fix; argparse's usage errors are 2 too), never 3
  (the CLI boundary's "unexpected exception"), and no traceback on stderr;
* the message names the file or the field and says how to fix it (a regex per case);
* nothing was overwritten or lost: every file that existed before (the case's folder and the
  shared fixtures) has the same bytes after, and no temporary file is left behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuromaml import cli
from neuromaml.deploy.bundle import export_bundle, write_manifest
from neuromaml.meta.events import EVENT_DTYPE
from neuromaml.meta.models import ModelConfig, build_model

T, BURN = 100, 4
FIXTURE_NET = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "snn-maml" / "network_test.net"
TINY_RUN = {"model": {"name": "small", "hidden": [8], "burn_in": 90},
            "inner": {"lr": 0.5}, "outer": {"steps": 1, "meta_batch": 1, "val_every": 1, "val_tasks": 1,
                                             "checkpoint_every": 1},
            "task": {"n_way": 3, "k_shot": 1, "n_query": 1}, "seed": 1}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fx(tmp_path_factory, tiny_metadataset):
    """Shared, read-only inputs: data, a bundle, a run, an event folder, a config."""
    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    m = build_model(ModelConfig(time_steps=T, burn_in=BURN, name="small", hidden=[16], n_way=5,
                                zero_head=False), seed=1)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 32, T))
    export_bundle(m, root / "bundle", input_shape=(2, 16, 32), time_steps=T, burn_in=BURN)
    cfg = root / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(TINY_RUN))
    assert cli.main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg),
                     "--out", str(root / "run"), "--no-progress"]) == 0
    ev = root / "events"
    _event_folder(ev)
    return {"root": root, "data": Path(tiny_metadataset), "bundle": root / "bundle", "run": root / "run",
            "config": cfg, "events": ev}


def _event_folder(ev: Path, classes: int = 10, per: int = 3, sensor=(8, 6)) -> Path:
    ev.mkdir(parents=True)
    (ev / "meta.json").write_text(json.dumps({"sensor_size": [sensor[0], sensor[1], 2], "duration_us": 20_000}))
    rng = np.random.default_rng(0)
    for c in range(classes):
        (ev / f"c{c}").mkdir()
        for i in range(per):
            n = 50
            a = np.zeros(n, EVENT_DTYPE)
            a["t"] = np.sort(rng.integers(0, 20_000, n))
            a["x"], a["y"], a["p"] = rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.integers(0, 2, n)
            np.save(ev / f"c{c}" / f"{i}.npy", a)
    return ev


def _snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                if not p.is_file():             # a case's pipe: opening it would block
                    out[str(p)] = "not a regular file"
                    continue
                try:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError:                 # unreadable on purpose (a case's chmod)
                    out[str(p)] = "unreadable"
    return out


def _copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return dst


# ----------------------------------------------------------------------------- case builders
# Each builder gets (tmp: Path, fx: dict) and returns (argv, pattern); exit code 2 unless stated.
def _yaml(tmp: Path, text: str) -> str:
    p = tmp / "cfg.yaml"
    p.write_text(text)
    return str(p)


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def _h5_edit(tmp: Path, fx, edit) -> str:
    import h5py

    p = _copy(fx["data"], tmp / "d.h5")
    with h5py.File(p, "r+") as f:
        edit(f)
    return str(p)


def _dangling(tmp: Path) -> Path:
    (tmp / "dang.h5").symlink_to("nothere.h5")
    return tmp / "dang.h5"


def _h5_vds_gone(tmp: Path, fx) -> str:
    """The meta-dataset's /frames moved into src.h5 behind a virtual dataset, then src.h5 deleted."""
    import h5py

    p = _copy(fx["data"], tmp / "d.h5")
    with h5py.File(p, "r+") as f:
        frames = f["frames"][()]
        del f["frames"]
        with h5py.File(tmp / "src.h5", "w") as g:
            g["frames"] = frames
        layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
        layout[...] = h5py.VirtualSource(str(tmp / "src.h5"), "frames", shape=frames.shape)
        f.create_virtual_dataset("frames", layout, fillvalue=0)
    (tmp / "src.h5").unlink()
    return str(p)


def _h5_frames(tmp: Path, fx, make) -> str:
    """The meta-dataset with /frames replaced by what ``make(h5, frames, tmp)`` puts there (a link,
    a virtual dataset, a filtered dataset)."""
    import h5py

    p = _copy(fx["data"], tmp / "d.h5")
    with h5py.File(p, "r+") as f:
        frames = f["frames"][()]
        del f["frames"]
        make(f, frames, tmp)
    return str(p)


def _src(tmp: Path, frames, name: str = "src.h5") -> Path:
    import h5py

    with h5py.File(tmp / name, "w") as g:
        g["frames"] = frames
    return tmp / name


def _vds(f, frames, src_file, src_name: str = "frames", fill: int = 0, rows: int | None = None,
         src_rows: int | None = None) -> None:
    """/frames as a virtual dataset reading ``src_file:src_name`` (declared with ``src_rows`` rows),
    of which its first ``rows`` rows are mapped."""
    import h5py

    lay = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    src = h5py.VirtualSource(str(src_file), src_name, shape=(src_rows or len(frames), *frames.shape[1:]))
    lay[:rows] = src[:rows]
    f.create_virtual_dataset("frames", lay, fillvalue=fill)


def _h5_mid_vds_gone(t: Path, fx) -> str:
    """/frames an external link to mid.h5:/frames, a virtual dataset whose source gone.h5 is gone."""
    import h5py

    with h5py.File(fx["data"], "r") as s, h5py.File(t / "mid.h5", "w") as g:
        _vds(g, s["frames"][()], t / "gone.h5")
    return _h5_frames(t, fx, lambda h, fr, t: h.__setitem__("frames", h5py.ExternalLink("mid.h5", "/frames")))


def _unknown_filter(h, frames, t) -> None:
    """/frames compressed by a filter no HDF5 here has (its chunks written as they are)."""
    ds = h.create_dataset("frames", shape=frames.shape, dtype=frames.dtype, chunks=(1, *frames.shape[1:]),
                          compression=60000, allow_unknown_filter=True)
    for i in range(len(frames)):
        ds.id.write_direct_chunk((i, 0, 0, 0, 0), frames[i].tobytes())


def _declare_huge(h, names=("frames", "labels", "sample_ids")) -> None:
    """Datasets declared with 2,000,000,000 samples, nothing written (a 16 GB read for /labels)."""
    n = 2_000_000_000
    for name in names:
        shape = (n, *h[name].shape[1:])
        dtype = h[name].dtype
        del h[name]
        h.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]) if len(shape) > 1 else (1 << 20,))


_REC = {"split": "val", "val_accuracy": 0.5, "weight_exp": 0, "settings_tried": 3, "tasks": 2,   # a calibration record
        "fraction_synapses_updated": 0.5, "selection": "sparsest setting within 1 points of the best"}


def _bundle_edit(tmp: Path, fx, edit, sign: bool) -> str:
    b = _copy(fx["bundle"], tmp / "b")
    man = json.loads((b / "manifest.json").read_text())
    edit(man)
    if sign:
        write_manifest(b, man)      # a careful forger: the digest matches, the contents do not
    else:
        (b / "manifest.json").write_text(json.dumps(man))
    return str(b)


def _nan_run(tmp: Path, fx) -> str:
    r = _copy(fx["run"], tmp / "run")
    for ck in r.glob("*.pt"):
        state = torch.load(ck, map_location="cpu", weights_only=False)
        sd = state["model"] if "model" in state else state
        k = next(k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point())
        sd[k] = sd[k].clone().fill_(float("nan"))
        torch.save(state, ck)
    return str(r)


_ONE_QUERY = ("model: {name: small, hidden: [8], n_way: 2}\ntask: {n_way: 2, k_shot: 1, n_query: 1}\n"
              "outer: {steps: 1, meta_batch: 1}\n")


def _small_h5(tmp: Path) -> str:
    """A meta-dataset of 10 classes x 3 recordings, built from an event folder as a user's is."""
    out = tmp / "small.h5"
    assert cli.main(["data", "build", "--source", f"events:{_event_folder(tmp / 'ev')}", "--per-class", "3",
                     "--out", str(out)]) == 0
    return str(out)


def _short_h5(t: Path) -> Path:
    out = t / "short.h5"
    assert cli.main(["data", "build", "--source", f"events:{_event_folder(t / 'ev5')}", "--per-class", "3",
                     "--duration-us", "5000", "--out", str(out), "--quiet"]) == 0
    return out


def _calibration_json(t: Path, fx) -> Path:
    b = _copy(fx["bundle"], t / "other")
    (b / "calibration").mkdir()
    (b / "calibration" / "calibration.json").write_text("{}")
    return b / "calibration" / "calibration.json"


def _file_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path.parent)


def _ev_variant(tmp: Path, mutate) -> str:
    ev = _event_folder(tmp / "ev")
    mutate(ev)
    return f"events:{ev}"


def _write_npy(path: Path, arr) -> None:
    np.save(path, arr)


def _nmnist(tmp: Path, bad: bytes) -> str:
    root = tmp / "nmnist"
    rng = np.random.default_rng(0)
    for d in range(10):
        (root / "Train" / str(d)).mkdir(parents=True)
        rec = np.zeros((4, 5), np.uint8)
        rec[:, 0], rec[:, 1], rec[:, 4] = rng.integers(0, 34, 4), rng.integers(0, 34, 4), np.arange(4)
        for i in range(3):
            (root / "Train" / str(d) / f"{i}.bin").write_bytes(rec.tobytes())
    (root / "Train" / "3" / "1.bin").write_bytes(bad)
    return f"nmnist:{root}"


def _file(tmp: Path, name: str = "f", text: str = "x") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _nonempty_dir(tmp: Path, name: str = "d") -> Path:
    d = tmp / name
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    return d


CASES = {
    # ---------------------------------------------------------------- data build: output paths
    "build-out-exists": lambda t, f: (["data", "build", "--out", str(_file(t, "x.h5")), "--per-class", "1"],
                                      r"x\.h5: exists and would be overwritten.*--overwrite"),
    "build-out-is-dir": lambda t, f: (["data", "build", "--out", str(_nonempty_dir(t)), "--per-class", "1"],
                                      r"existing directory, a file is wanted"),
    "build-out-under-file": lambda t, f: (["data", "build", "--out", str(_file(t) / "x.h5"), "--per-class", "1"],
                                          r"is a file, not a folder"),
    "build-json-is-dir": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--json", str(_nonempty_dir(t)),
                                        "--per-class", "1"], r"--json is an existing directory"),
    "build-out-dot": lambda t, f: (["data", "build", "--out", ".", "--per-class", "1"], r"directory"),
    # ---------------------------------------------------------------- data build: flags
    "build-per-class-0": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class", "0"],
                                       r"--per-class: invalid positive_int value|not >= 1"),
    "build-per-class-text": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class", "many"],
                                          r"not a whole number"),
    "build-downsample-huge": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class", "1",
                                            "--downsample", "100"], r"--downsample 100 is larger.*use --downsample <="),
    "build-fractions-nan": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--fractions", "0.5", "0.5", "nan"],
                                         r"not finite"),
    "build-source-unknown": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", "imagenet"],
                                          r"imagenet.*(use|fix)"),
    "build-duration-0": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--duration-us", "0"],
                                      r"not >= 1"),
    # ---------------------------------------------------------------- data build: event folders
    "events-missing-dir": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", f"events:{t / 'nope'}"],
                                        r"nope: event folder not found"),
    "events-no-meta": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                     _ev_variant(t, lambda ev: (ev / "meta.json").unlink())], r"meta\.json not found"),
    "events-meta-not-json": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                           _ev_variant(t, lambda ev: (ev / "meta.json").write_text("{oops"))],
                                          r"meta\.json: not valid JSON"),
    "events-meta-binary": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                         _ev_variant(t, lambda ev: (ev / "meta.json").write_bytes(b"\xff\xfe\x00"))],
                                        r"meta\.json: not a UTF-8 text file"),
    "events-meta-deep": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: (ev / "meta.json").write_text('{"sensor_size": [8, 6, 2], "x": ' + "[" * 100000 + "]" * 100000 + "}"))],
        r"meta\.json: JSON nested too deeply"),
    "events-meta-duplicate-key": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: (ev / "meta.json").write_text('{"sensor_size": [8, 6, 2], "duration_us": 20000, '
                                                     '"duration_us": 5000}'))],
        r"meta\.json: key 'duration_us' appears twice"),
    "verify-manifest-binary": lambda t, f: (["verify", _file_bytes(_copy(f["bundle"], t / "b") / "manifest.json",
                                                                   bytes(range(256))), "--no-lava"],
                                            r"manifest\.json: not a UTF-8 text file"),
    "train-config-duplicate-section": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                     "--config", _yaml(t, "outer:\n  steps: 2\nouter:\n  lr: 0.001\n")],
                                                    r"key 'outer' appears twice in one section \(line 3\)"),
    "export-json-is-own-manifest": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"), "--json",
                                                  str(t / "b" / "manifest.json")], r"--json is inside .*b, the folder"),
    "import-json-is-own-nir": lambda t, f: (["import", str(FIXTURE_NET), "--input-shape", "2,16,32", "--classes", "5",
                                             "--out", str(t / "b"), "--json", str(t / "b" / "network.nir")],
                                            r"--json is inside .*b, the folder this command writes"),
    "cost-json-is-own-md": lambda t, f: (["cost", str(f["bundle"]), "--out", str(t / "c"), "--json",
                                          str(t / "c" / "cost.md")], r"--json is inside .*c, the folder"),
    "emulate-json-is-own-md": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks", "1",
                                             "--out", str(t / "e"), "--json", str(t / "e" / "emulate.md")],
                                            r"--json is inside .*e, the folder"),
    # sizes that would run for hours and fill the disk: refused at once, with the estimate
    "generate-classes-huge": lambda t, f: (["data", "generate", "gestures", "--out", str(t / "g"), "--classes",
                                            "100000000", "--per-class", "100000000", "--quiet"],
                                           r"--classes 100,000,000 is more than this generator writes \(10,000\).*"
                                           r"--classes 10,000 or fewer"),
    "generate-too-big-for-the-disk": lambda t, f: (["data", "generate", "gestures", "--out", str(t / "g"), "--classes",
                                                    "10000", "--per-class", "100000", "--quiet"],
                                                   r"g: --classes 10,000 x --per-class 100,000 = 1,000,000,000 "
                                                   r"recordings, about 12\.0 TB; .* is free on .*fewer classes"),
    "generate-json-inside-out": lambda t, f: (["data", "generate", "gestures", "--out", str(t / "g"), "--json",
                                               str(t / "g" / "meta.json")], r"--json is inside .*g, the folder"),
    "emulate-forged-sgd-reference": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].__setitem__(
        "calibration", {**_REC, "sgd_reference": {"lr": -64}}), sign=True), "--data",
        str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"field 'adapt\.calibration\.sgd_reference' is .*positive finite learning rate"),
    "emulate-forged-label-window-false": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].__setitem__(
        "label_window", False), sign=True), "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"field 'adapt\.label_window' is False, not \[start, end\)"),
    "emulate-forged-calibrated-empty-rule": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: (
        m["adapt"].__setitem__("rule", {}), m["adapt"].__setitem__("rule_source", "calibrated")), sign=True),
        "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"field 'adapt\.rule' is \{\} but 'adapt\.rule_source' says calibrated"),
    "emulate-forged-rule-field": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"]["rule"].__setitem__(
        "eta_exp", 99), sign=True), "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"field 'adapt\.rule': adapt\.rule\.eta_exp=99 is not representable.*run neuromaml calibrate"),
    "verify-forged-rule-field": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["adapt"]["rule"].__setitem__(
        "input_norm_offset", -5), sign=True), "--no-lava", "--samples", "1"],
        r"b/manifest\.json: field 'adapt\.rule': adapt\.rule\.input_norm_offset=-5 is not representable.*run neuromaml "
        r"calibrate"),
    "cost-forged-rule-field": lambda t, f: (["cost", _bundle_edit(t, f, lambda m: m["adapt"]["rule"].__setitem__(
        "input_norm_offset", -5), sign=True), "--out", str(t / "c")],
        r"b/manifest\.json: field 'adapt\.rule': adapt\.rule\.input_norm_offset=-5 is not representable"),
    "emulate-forged-record-weight-exp-text": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].__setitem__(
        "calibration", {**_REC, "weight_exp": "-6"}), sign=True), "--data", str(f["data"]), "--tasks", "1", "--out",
        str(t / "e")], r"field 'adapt\.calibration\.weight_exp' is '-6', not a whole number"),
    "emulate-forged-label-window-not-calibrated": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: (
        m["adapt"].__setitem__("calibration", {**_REC, "label_window": [40, m["input"]["time_steps"]]}),
        m["adapt"].__setitem__("label_window", [10, m["input"]["time_steps"]])), sign=True), "--data", str(f["data"]),
        "--tasks", "1", "--out", str(t / "e")], r"calibrated with another label window"),
    "train-config-val-tasks-huge": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                  "--config", _yaml(t, "outer:\n  val_tasks: 100000000\n")],
                                                 r"'outer\.val_tasks' is 100000000, more than any run needs"),
    "train-config-frozen-too-many": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                   "--config", _yaml(t, "inner:\n  frozen: 99\n")],
                                                  r"'inner\.frozen' is 99 but model 'small' has 2 trainable layers"),
    "rule-check-sweep-too-big": lambda t, f: (["rule-check", str(f["bundle"]), "--data", str(f["data"]), "--tasks",
                                               "100000", "--bits", "1,2,3,4,5,6,7,8", "--eta-exp=" + ",".join(
                                                   str(v) for v in range(-10, 6)), "--thresholds", ",".join(
                                                   str(v) for v in range(127)), "--out", str(t / "rc")],
                                              r"the sweep asks for .* settings .*sweep fewer"),
    "export-model-input-huge": lambda t, f: (["export", "--model", "small", "--input-shape", "2", "4096", "4096",
                                              "--out", str(t / "b")], r"33,554,432 input neurons"),
    "export-foreign-run-misspelt-field": lambda t, f: (["export", str(_foreign_run(t, "model:\n  name: small\n  hiden: [8]\n")),
                                                        "--out", str(t / "b")], r"unknown model field\(s\) \['hiden'\]"),
    "emulate-json-is-a-checkpoint": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks",
                                                   "1", "--out", str(t / "e"), "--json",
                                                   str(_copy(f["run"], t / "run") / "best.pt")],
                                                  r"best\.pt: --json would replace a file of a bundle, a run"),
    "cost-json-is-another-manifest": lambda t, f: (["cost", str(f["bundle"]), "--out", str(t / "c"), "--json",
                                                    str(_copy(f["bundle"], t / "b2") / "manifest.json")],
                                                   r"manifest\.json: --json would replace a file of a bundle"),
    "info-json-is-a-metadataset": lambda t, f: (["data", "info", str(f["data"]), "--json",
                                                 str(_copy(f["data"], t / "victim.h5"))],
                                                r"victim\.h5: --json would replace a file that is not a JSON summary"),
    "events-recording-in-two-classes": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: ((ev / "c1" / "0.npy").unlink(), (ev / "c1" / "0.npy").symlink_to(ev / "c0" / "0.npy")))],
        r"0\.npy: is the same recording as .*c0.*0\.npy"),
    "evaluate-a-bundle": lambda t, f: (["evaluate", str(f["bundle"]), "--tasks", "1", "--trials", "1", "--quick",
                                        "--no-transfer", "--out", str(t / "ev")],
                                       r"bundle: is a deployment bundle, not a meta-train run"),
    "calibrate-a-run": lambda t, f: (["calibrate", str(f["run"]), "--data", str(f["data"]), "--tasks", "1", "--out",
                                      str(t / "c")], r"run: is a meta-train run, not a deployment bundle.*export it first"),
    "train-data-shorter-than-burn-in": lambda t, f: (["meta-train", "--data", str(_short_h5(t)), "--out", str(t / "r"),
                                                      "--config", "small"],
                                                     r"short\.h5: frames have 5 time step\(s\), not more than .*burn_in"),
    "train-config-label-window-with-sgd": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                         "--config", _yaml(t, "inner:\n  label_window: [70, 100]\n")],
                                                        r"'inner\.label_window' is \[70, 100\] but inner\.rule is 'sgd'"),
    "info-json-dash": lambda t, f: (["data", "info", str(f["data"]), "--json", "-"], r"--json -: standard output"),
    "bundle-format-version-zero": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m.__setitem__(
        "format_version", 0), sign=True), "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"field 'format_version' is 0, not a bundle version"),
    "events-class-names-look-alike": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: os.rename(ev / "c9", ev / "c8 "))], r"looks like the class folder 'c8'"),
    "events-recordings-in-a-subfolder": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: ((ev / "c2" / "more").mkdir(), os.rename(ev / "c2" / "0.npy", ev / "c2" / "more" / "0.npy")))],
        r"more: holds \*\.npy files in a sub-folder of class 'c2'"),
    "evaluate-out-is-a-bundle": lambda t, f: (["evaluate", str(f["run"]), "--tasks", "1", "--trials", "1", "--quick",
                                               "--no-transfer", "--out", str(_copy(f["bundle"], t / "b"))],
                                              r"b: holds other files .*not an evaluate report folder"),
    "verify-json-into-another-bundles-report": lambda t, f: (["verify", str(f["bundle"]), "--no-lava", "--json",
                                                              str(_calibration_json(t, f))],
                                                             r"calibration\.json: --json would replace a file of a bundle"),
    "train-config-task-n-way-text": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                   "--config", _yaml(t, "task:\n  n_way: '3'\n")],
                                                  r"'task\.n_way' must be an integer"),
    "train-config-alias-bomb": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"), "--config",
                                              _yaml(t, "a: &a [8, 8, 8, 8, 8, 8, 8, 8, 8, 8]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                                                    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nmodel:\n  hidden: *e\n")],
                                             r"expands to more than 100,000 values"),
    "events-meta-list": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                       _ev_variant(t, lambda ev: (ev / "meta.json").write_text("[1, 2]"))],
                                      r"sensor_size"),
    "events-sensor-huge": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                         _ev_variant(t, lambda ev: (ev / "meta.json").write_text(
                                             json.dumps({"sensor_size": [20000, 20000, 2], "duration_us": 1000})))],
                                        r"larger than any event sensor"),
    "events-duration-negative": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                               _ev_variant(t, lambda ev: (ev / "meta.json").write_text(
                                                   json.dumps({"sensor_size": [8, 6, 2], "duration_us": -5})))],
                                              r"duration_us"),
    "events-npy-plain-floats": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                              _ev_variant(t, lambda ev: _write_npy(ev / "c1" / "0.npy", np.zeros(5)))],
                                             r"0\.npy: events must be a structured array"),
    "events-npy-out-of-sensor": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                               _ev_variant(t, lambda ev: _write_npy(ev / "c2" / "1.npy", np.array(
                                                   [(0, 99, 0, 1)], EVENT_DTYPE)))], r"outside the 8x6 sensor"),
    "events-npy-garbage": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                         _ev_variant(t, lambda ev: (ev / "c0" / "2.npy").write_bytes(os.urandom(64)))],
                                        r"2\.npy: not a readable \.npy"),
    "events-npy-negative-time": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                               _ev_variant(t, lambda ev: _write_npy(ev / "c3" / "0.npy", np.array(
                                                   [(-4, 1, 1, 1)], EVENT_DTYPE)))], r"negative timestamps"),
    "events-npy-bad-polarity": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                              _ev_variant(t, lambda ev: _write_npy(ev / "c3" / "1.npy", np.array(
                                                  [(4, 1, 1, 7)], EVENT_DTYPE)))], r"field 'p' holds \[7\]"),
    "events-empty-class": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                         _ev_variant(t, lambda ev: (ev / "c99").mkdir())], r"c99: empty class"),
    "events-no-classes": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                        _ev_variant(t, lambda ev: [shutil.rmtree(ev / f"c{c}") for c in range(10)])],
                                       r"no class folders"),
    "nmnist-zero-bytes": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class", "1",
                                        "--source", _nmnist(t, b"")], r"1\.bin: empty N-MNIST file"),
    "nmnist-truncated": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class", "1",
                                       "--source", _nmnist(t, b"\x01" * 7)], r"truncated N-MNIST file"),
    # ---------------------------------------------------------------- data info: damaged files
    "info-missing": lambda t, f: (["data", "info", str(t / "none.h5")], r"none\.h5: meta-dataset file not found"),
    "info-truncated": lambda t, f: (["data", "info", str(_truncate(f["data"], t / "cut.h5"))],
                                    r"cut\.h5: .*(truncated or damaged|not an HDF5)"),
    "info-text-file": lambda t, f: (["data", "info", str(_file(t, "x.h5", "hello"))], r"x\.h5: not an HDF5 file"),
    "info-splits-overlap": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h["splits/test"].__setitem__(slice(None), h["splits/train"][: h["splits/test"].shape[0]])))],
                                         r"splits 'train' and 'test' share"),
    "info-split-repeats-a-class": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h["splits/val"].__setitem__(1, h["splits/val"][0])))], r"'/splits/val' names class '\d+' more than once"),
    "info-composition-not-text": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("composition", np.complex64(1 + 2j))))], r"attribute 'composition' is .*not text"),
    "info-frames-link-loop": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__delitem__("frames"), h.__setitem__("frames", __import__("h5py").SoftLink("/frames"))))],
                                           r"d\.h5: malformed layout"),
    "build-out-dangling-link": lambda t, f: (["data", "build", "--source", "synthetic", "--out", str(_dangling(t))],
                                             r"is a dangling symbolic link \(to nothere\.h5"),
    "info-version-not-whole": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("version", 1.7)))], r"attribute 'version' is 1\.7, not a whole number"),
    "emulate-out-in-another-bundle": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks",
                                                    "1", "--out", str(_copy(f["bundle"], t / "other") / "emulate-test")],
                                                   r"--out is a report folder of another bundle"),
    "info-frames-is-a-group": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__delitem__("frames"), h.create_group("frames")))], r"'/frames' is a group, not a dataset"),
    "info-duration-infinite": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("duration_us", np.inf)))], r"d\.h5: attribute 'duration_us' is inf, not a positive"),
    "info-frames-external-link-gone": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__delitem__("frames"), h.__setitem__("frames", __import__("h5py").ExternalLink("gone.h5", "/frames"))))],
                                                    r"'/frames' is an HDF5 external link to 'gone\.h5', which is missing"),
    "info-frames-virtual-source-gone": lambda t, f: (["data", "info", _h5_vds_gone(t, f)],
                                                     r"'/frames' is a virtual dataset whose source file .*src\.h5.* "
                                                     r"is missing \(HDF5 would read it as zeros\)"),
    "info-frames-virtual-source-dataset-missing": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _vds(h, fr, _src(t, fr), "nothere")))], r"d\.h5: '/frames' is a virtual dataset whose source .*src\.h5:nothere "
                                                r"does not exist \(HDF5 would read it as zeros\).*fix: restore nothere"),
    "info-frames-virtual-same-file-dataset-missing": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _vds(h, fr, ".", "nothere")))], r"'/frames' is a virtual dataset whose source d\.h5:nothere does not exist"),
    "info-frames-virtual-fill-not-zero": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _vds(h, fr, _src(t, fr), "nothere", fill=1)))], r"'/frames' is a virtual dataset with fill value 1"),
    "info-frames-virtual-half-mapped": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _vds(h, fr, _src(t, fr), rows=len(fr) // 2)))],
        r"'/frames' is a virtual dataset whose sources cover [\d,]+ of its [\d,]+ values \(HDF5 would read the rest "
        r"as zeros\)"),
    "info-frames-virtual-source-too-short": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _vds(h, fr, _src(t, fr[:len(fr) // 2]))))],
        r"'/frames' is a virtual dataset that reads more of .*src\.h5:frames than its shape \(\d+, 2, 16, 32, 100\)"),
    "info-frames-external-link-to-virtual-source-gone": lambda t, f: (["data", "info", _h5_mid_vds_gone(t, f)],
        r"d\.h5: '/frames' \(an external link to mid\.h5:/frames\) is a virtual dataset whose source file "
        r"'.*gone\.h5' is missing.*fix: copy .*gone\.h5 next to mid\.h5"),
    "info-frames-external-link-object-missing": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _src(t, fr), h.__setitem__("frames", __import__("h5py").ExternalLink("src.h5", "/nothere"))))],
        r"d\.h5: '/frames' is an HDF5 external link to src\.h5:/nothere, which does not exist in src\.h5 "
        r"\(fix: restore /nothere in src\.h5"),
    "info-frames-external-link-not-hdf5": lambda t, f: (["data", "info", _h5_frames(t, f, lambda h, fr, t: (
        _file(t, "noth5.h5", "hello"), h.__setitem__("frames", __import__("h5py").ExternalLink("noth5.h5", "/frames"))))],
        r"d\.h5: '/frames' is an HDF5 external link to 'noth5\.h5', which is not an HDF5 file.*fix: restore noth5"),
    "info-frames-filter-not-available": lambda t, f: (["data", "info", _h5_frames(t, f, _unknown_filter)],
        r"d\.h5: '/frames' uses HDF5 filter 60000 \(unnamed\), not available here \(fix: pip install hdf5plugin, or "
        r"set HDF5_PLUGIN_PATH"),
    "emulate-data-filter-not-available": lambda t, f: (["emulate", str(f["bundle"]), "--data", _h5_frames(
        t, f, _unknown_filter), "--tasks", "1", "--out", str(t / "e")], r"'/frames' uses HDF5 filter 60000"),
    "info-declares-2e9-samples": lambda t, f: (["data", "info", _h5_edit(t, f, _declare_huge)],
        r"d\.h5: '/frames' declares shape \(2000000000, 2, 16, 32, 100\) but stores 0 of its 2,000,000,000 chunks "
        r"\(d\.h5 is [\d,]+ bytes\)"),
    "info-labels-declare-2e9-samples": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: _declare_huge(
        h, ("labels", "sample_ids")))], r"d\.h5: '/labels' declares shape \(2000000000,\) but stores 0 of its"),
    "info-classes-2d": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        _replace(h, "classes", np.array(h["classes"][()]).astype("S").reshape(-1, 2))))],
        r"d\.h5: '/classes' has shape \(50, 2\), expected a 1-D list"),
    "info-duration-negative": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("duration_us", -5)))], r"attribute 'duration_us' is -5, not a positive whole number"),
    "info-dt-zero": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("dt_us", 0)))], r"attribute 'dt_us' is 0, not a positive whole number"),
    "info-duration-not-steps-times-dt": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.attrs.__setitem__("duration_us", 50_000)))],
        r"attributes duration_us=50000 and dt_us=1000 do not match the 100 time steps of '/frames'"),
    "events-recordings-2d": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: np.save(ev / "c3" / "0.npy", np.stack([np.load(ev / "c3" / "1.npy")] * 2)))],
        r"0\.npy: events have shape \(2, 50\).*one recording per \.npy file"),
    "events-class-folder-link": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: (ev / "d3").symlink_to(ev / "c3"))], r"d3: is the same folder as c3 \(a symbolic link\)"),
    "events-class-name-not-utf8": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: os.rename(ev / "c9", os.path.join(os.fsencode(ev), b"c\xff9")))],
        r"class folder's name is not valid UTF-8"),
    "info-float-frames": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__delitem__("frames"), h.create_dataset("frames", data=np.full((len(h["labels"]), 2, 1, 1, 1), np.nan))))],
                                       r"'/frames' has dtype float64"),
    "info-missing-labels": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: h.__delitem__("labels"))],
                                         r"dataset '/labels' is missing"),
    "info-labels-out-of-range": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: h["labels"].__setitem__(0, 999))],
                                              r"'/labels' holds class indices outside"),
    # ---------------------------------------------------------------- meta-train: configs
    "train-config-list": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                        "--config", _yaml(t, "- 1\n- 2\n")], r"cfg\.yaml: the top level must be a mapping"),
    "train-config-inf-lr": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                          "--config", _yaml(t, "outer:\n  lr: .inf\n")],
                                         r"'outer\.lr' is inf, not a finite number"),
    "train-config-nan": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                       "--config", _yaml(t, "inner:\n  lr: .nan\n")], r"'inner\.lr' is nan"),
    "train-config-huge-threshold": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                  "--config", _yaml(t, "model:\n  threshold: 1.0e+308\n")],
                                                 r"model\.threshold"),
    "train-config-unknown-key": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                               "--config", _yaml(t, "model:\n  hiden: [4]\n")],
                                              r"unknown key 'model\.hiden'"),
    "train-config-bad-yaml": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                            "--config", _yaml(t, "model: [\n")], r"cannot parse config"),
    "train-config-wrong-type": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                              "--config", _yaml(t, "outer:\n  steps: ten\n")],
                                             r"'outer\.steps' must be an integer"),
    "train-config-missing": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                           "--config", str(t / "nope.yaml")], r"nope\.yaml: config file not found"),
    "train-config-binary": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                          "--config", str(_copy(f["data"], t / "c.yaml"))], r"c\.yaml"),
    # ---------------------------------------------------------------- meta-train: paths and runs
    "train-out-under-file": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                           "--out", str(_file(t) / "run")], r"is a file, not a folder"),
    "train-out-is-file": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                        "--out", str(_file(t))], r"an existing file, a directory is wanted"),
    "train-out-existing-run": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                             "--out", str(_copy(f["run"], t / "run"))], r"add --resume"),
    "train-out-nonempty": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                         "--out", str(_nonempty_dir(t))], r"not empty.*add --resume|choose a new"),
    "train-resume-other-config": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume",
                                                "--out", str(_copy(f["run"], t / "run")),
                                                "--config", _yaml(t, yaml_with(hidden=[12]))],
                                               r"--config given differs in model\.hidden"),
    "train-resume-other-seed": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--seed", "9",
                                              "--out", str(_copy(f["run"], t / "run"))], r"--seed 9 differs"),
    "train-resume-nothing": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume",
                                           "--out", str(t / "empty")], r"no run to resume"),
    # a config.yaml edited in place is not ignored by --resume (nor blamed on the checkpoint by export)
    "train-resume-config-edited": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--out",
                                                 str(_edited_config(t, f, "burn_in: 90", "burn_in: 80"))],
                                                r"run/config\.yaml: differs from the config stored in ckpt\.pt in "
                                                r"model\.burn_in: it was edited since the run started.*undo the edit"),
    "train-resume-config-unparsable": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--out",
                                                     str(_edited_config(t, f, "burn_in: 90", "burn_in: [90"))],
                                                    r"config\.yaml: cannot be parsed.*edited.*fix the syntax"),
    # a damaged ckpt.pt's advice is one that works: with best.pt there, delete it and resume
    "train-resume-ckpt-corrupt": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--out",
                                                str(_cut_ckpt(t, f))],
                                               r"ckpt\.pt: checkpoint is corrupt.*delete it: --resume then continues "
                                               r"from best\.pt"),
    "train-data-missing": lambda t, f: (["meta-train", "--data", str(t / "none.h5"), "--out", str(t / "r")],
                                        r"none\.h5: meta-dataset not found"),
    "train-steps-negative": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                           "--steps", "-3"], r"not >= 0"),
    "train-device-bogus": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                         "--out", str(t / "r"), "--device", "tpu"], r"--device 'tpu': unknown device"),
    "train-data-truncated": lambda t, f: (["meta-train", "--data", str(_truncate(f["data"], t / "cut.h5")),
                                           "--out", str(t / "r")], r"cut\.h5"),
    # ---------------------------------------------------------------- evaluate
    "evaluate-missing-run": lambda t, f: (["evaluate", str(t / "nope")], r"nope: run directory not found"),
    "evaluate-tasks-0": lambda t, f: (["evaluate", str(f["run"]), "--tasks", "0"], r"not >= 1"),
    "evaluate-bad-baseline": lambda t, f: (["evaluate", str(f["run"]), "--baseline", "fomaml"],
                                           r"is not LABEL=RUN_DIR"),
    "evaluate-out-under-file": lambda t, f: (["evaluate", str(f["run"]), "--out", str(_file(t) / "e")],
                                             r"is a file, not a folder"),
    # ---------------------------------------------------------------- export
    "export-out-exists": lambda t, f: (["export", str(f["run"]), "--out", str(_nonempty_dir(t))],
                                       r"not empty.*--overwrite"),
    "export-out-is-file": lambda t, f: (["export", str(f["run"]), "--out", str(_file(t))],
                                        r"an existing file, a directory is wanted"),
    "export-nan-weights": lambda t, f: (["export", _nan_run(t, f), "--out", str(t / "b")],
                                        r"holds \d+ non-finite value"),
    "export-no-run": lambda t, f: (["export", "--out", str(t / "b")], r"give exactly one of RUN_DIR or --model"),
    "export-run-missing": lambda t, f: (["export", str(t / "nope"), "--out", str(t / "b")], r"nope"),
    "export-calibrate-on-missing": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"), "--calibrate-on",
                                                  str(t / "none.h5")], r"none\.h5: meta-dataset not found"),
    "export-input-shape-zero": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"), "--input-shape",
                                              "0", "16", "32"], r"not >= 1"),
    "export-input-shape-wrong": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"), "--input-shape",
                                               "2", "8", "8"], r"disagrees with the model's"),
    # ---------------------------------------------------------------- inspect / verify
    "inspect-truncated-net": lambda t, f: (["inspect", str(_truncate(f["bundle"] / "network.net", t / "n.net"))],
                                           r"n\.net"),
    "inspect-missing": lambda t, f: (["inspect", str(t / "nope.net")], r"nope\.net"),
    "verify-manifest-edited": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["input"].__setitem__(
        "shape_chw", [2, 8, 64]), sign=False), "--no-lava"], r"manifest_sha256' does not match.*edited"),
    # a version-1 manifest (no digest required) cannot hold the rate form: no version-1 writer wrote it
    "emulate-v1-manifest-rate-form": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: (
        m.__setitem__("format_version", 1), m.pop("manifest_sha256"), m["adapt"].__setitem__("rule", {
            **(m["adapt"].get("rule") or {}), "input_norm_offset": 8, "input_norm_shift": 1, "input_norm_steps": 4})),
        sign=False), "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"input_norm_steps' \(the normaliser's rate form\) in a format-version 1 manifest.*edited"),
    # deleting the digest with the edit does not turn the check off (format version 2)
    "verify-manifest-digest-deleted": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: (m["input"].__setitem__(
        "shape_chw", [2, 8, 64]), m.pop("manifest_sha256")), sign=False), "--no-lava"],
        r"manifest_sha256' is missing.*edited after it was written"),
    "verify-manifest-forged-shape": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["input"].update(
        shape_chw=[2, 8, 8], shape_xyf=[8, 8, 2]), sign=True), "--no-lava"], r"gives 128 inputs.*takes 1024"),
    "verify-manifest-forged-outputs": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["output"].update(
        neurons=7), sign=True), "--no-lava"], r"'output\.neurons' is 7, network\.net's last layer has 5"),
    "verify-manifest-forged-layers": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["layers"][0].update(
        type="conv"), sign=True), "--no-lava"], r"field 'layers' disagrees with network\.net at layer 0"),
    "verify-net-replaced": lambda t, f: (["verify", str(_tamper_net(t, f)), "--no-lava"],
                                         r"network\.net: sha256 .* does not match"),
    "verify-manifest-missing": lambda t, f: (["verify", str(_drop(t, f, "manifest.json")), "--no-lava"],
                                             r"manifest\.json: missing"),
    "verify-manifest-not-json": lambda t, f: (["verify", str(_garble(t, f, "manifest.json")), "--no-lava"],
                                              r"manifest\.json: not valid JSON"),
    "verify-rate-2": lambda t, f: (["verify", str(f["bundle"]), "--rate", "2"], r"not in \[0, 1\]"),
    "verify-samples-0": lambda t, f: (["verify", str(f["bundle"]), "--samples", "0"], r"not >= 1"),
    # ---------------------------------------------------------------- emulate
    "emulate-data-other-shape": lambda t, f: (["emulate", str(f["bundle"]), "--data", _other_shape_data(t),
                                               "--tasks", "1"], r"shape|frames"),
    "emulate-tasks-0": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks", "0"],
                                     r"not >= 1"),
    "emulate-out-under-file": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]),
                                             "--out", str(_file(t) / "e")], r"is a file, not a folder"),
    "emulate-data-truncated": lambda t, f: (["emulate", str(f["bundle"]), "--data",
                                             str(_truncate(f["data"], t / "cut.h5")), "--tasks", "1"], r"cut\.h5"),
    "emulate-not-a-bundle": lambda t, f: (["emulate", str(_nonempty_dir(t)), "--data", str(f["data"])],
                                          r"manifest\.json: missing"),
    # ---------------------------------------------------------------- import
    "import-missing": lambda t, f: (["import", str(t / "x.net"), "--input-shape", "2,16,32", "--classes", "5",
                                     "--out", str(t / "b")], r"x\.net"),
    "import-bad-shape": lambda t, f: (["import", str(f["bundle"] / "network.net"), "--input-shape", "2,a,32",
                                       "--classes", "5", "--out", str(t / "b")], r"input-shape"),
    "import-wrong-classes": lambda t, f: (["import", str(f["bundle"] / "network.net"), "--input-shape", "2,16,32",
                                           "--classes", "7", "--out", str(t / "b")], r"--classes is 7.*pass --classes 5"),
    "import-out-exists": lambda t, f: (["import", str(f["bundle"] / "network.net"), "--input-shape", "2,16,32",
                                        "--classes", "5", "--out", str(_nonempty_dir(t))], r"not empty.*--overwrite"),
    "import-not-hdf5": lambda t, f: (["import", str(_file(t, "x.net", "not hdf5")), "--input-shape", "2,16,32",
                                      "--classes", "5", "--out", str(t / "b")], r"x\.net"),
    # ---------------------------------------------------------------- calibrate / rule-check
    "calibrate-tolerance-5": lambda t, f: (["calibrate", str(f["bundle"]), "--data", str(f["data"]),
                                            "--tolerance", "5"], r"not in \[0, 1\]"),
    "calibrate-out-is-another-bundle": lambda t, f: (["calibrate", str(f["bundle"]), "--data", str(f["data"]),
                                                      "--out", str(_copy(f["bundle"], t / "other"))],
                                                     r"other: holds other files \(manifest\.json.*not a calibrate report"),
    "emulate-out-is-a-run": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks", "1",
                                           "--out", str(_copy(f["run"], t / "run"))], r"run: holds other files.*no emulate\.json"),
    "cost-out-nonempty": lambda t, f: (["cost", str(f["bundle"]), "--out", str(_nonempty_dir(t))],
                                       r"holds other files.*not a cost report folder"),
    "calibrate-data-missing": lambda t, f: (["calibrate", str(f["bundle"]), "--data", str(t / "none.h5")],
                                            r"none\.h5"),
    "calibrate-json-is-dir": lambda t, f: (["calibrate", str(f["bundle"]), "--data", str(f["data"]),
                                            "--json", str(_nonempty_dir(t))], r"--json is an existing directory"),
    "rulecheck-eta-text": lambda t, f: (["rule-check", str(f["bundle"]), "--data", str(f["data"]),
                                         "--eta-exp=abc"], r"--eta-exp 'abc' is not a comma-separated list"),
    "rulecheck-bits-empty": lambda t, f: (["rule-check", str(f["bundle"]), "--data", str(f["data"]),
                                           "--bits", ","], r"--bits ',' holds no value"),
    # ---------------------------------------------------------------- demo
    "demo-out-foreign-dir": lambda t, f: (["demo", "--quick", "--out", str(_nonempty_dir(t))],
                                          r"holds no demo\.json: not a demo folder"),
    "demo-fresh-foreign-dir": lambda t, f: (["demo", "--quick", "--fresh", "--out", str(_nonempty_dir(t))],
                                            r"deleted by --fresh"),
    "demo-out-is-file": lambda t, f: (["demo", "--quick", "--out", str(_file(t))],
                                      r"an existing file, a directory is wanted"),
    "demo-data-missing": lambda t, f: (["demo", "--quick", "--out", str(t / "d"), "--data", str(t / "none.h5")],
                                       r"none\.h5: meta-dataset not found"),
    "demo-data-test-split-too-small": lambda t, f: (
        ["demo", "--quick", "--out", str(t / "d"), "--data", _small_h5(t), "--config", _yaml(t, _ONE_QUERY)],
        r"small\.h5: split 'val' holds classes of 3 recordings; the demo's calibrate stage.*at least 6 recordings"),
    "demo-data-too-few-classes": lambda t, f: (
        ["demo", "--quick", "--out", str(t / "d"), "--data", _small_h5(t)], r"small\.h5: split '\w+' has \d+ classes"),
    # ---------------------------------------------------------------- files of the wrong kind
    "info-directory": lambda t, f: (["data", "info", str(_nonempty_dir(t))], r"is not a regular file"),
    "inspect-metadataset-h5": lambda t, f: (["inspect", str(f["data"])], r"tiny\.h5"),
    "import-metadataset-h5": lambda t, f: (["import", str(f["data"]), "--input-shape", "2,16,32", "--classes", "5",
                                            "--out", str(t / "b")], r"tiny\.h5"),
    "verify-text-net": lambda t, f: (["verify", str(_file(t, "x.net", "text")), "--no-lava"], r"x\.net"),
    "train-config-toml-bad": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                            "--config", str(_file(t, "c.toml", "a = ["))], r"c\.toml: cannot parse"),
    "evaluate-truncated-ckpt": lambda t, f: (["evaluate", str(_cut_ckpts(t, f)), "--tasks", "1", "--trials", "1",
                                              "--quick"], r"\.pt"),
    "export-run-no-checkpoint": lambda t, f: (["export", str(_drop_run_file(t, f, "*.pt")), "--out",
                                               str(t / "b")], r"run.*checkpoint|checkpoint.*run"),
    "emulate-queries-too-many": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks", "1",
                                               "--queries", "50"], r"quer|sample"),
    # ---------------------------------------------------------------- an output that is an input
    "info-json-is-the-data": lambda t, f: (["data", "info", str(_copy(f["data"], t / "d.h5")), "--json",
                                            str(t / "d.h5")], r"--json would overwrite this command's input"),
    "build-json-is-out": lambda t, f: (["data", "build", "--source", f"events:{_event_folder(t / 'ev')}", "--out",
                                        str(t / "x.h5"), "--json", str(t / "x.h5")], r"--json would overwrite"),
    "build-out-is-a-recording": lambda t, f: (["data", "build", "--source", f"events:{_event_folder(t / 'ev')}",
                                               "--out", str(t / "ev" / "c0" / "0.npy"), "--overwrite"],
                                              r"--out would overwrite a file of the input folder"),
    "build-out-new-file-in-recordings": lambda t, f: (["data", "build", "--source",
                                                       f"events:{_event_folder(t / 'ev')}", "--out",
                                                       str(t / "ev" / "c0" / "new.h5")],
                                                      r"--out would overwrite a file of the input folder"),
    "emulate-json-is-manifest": lambda t, f: (["emulate", str(_copy(f["bundle"], t / "b")), "--data", str(f["data"]),
                                               "--tasks", "1", "--json", str(t / "b" / "manifest.json")],
                                              r"would overwrite this command's input"),
    "emulate-out-is-bundle": lambda t, f: (["emulate", str(_copy(f["bundle"], t / "b")), "--data", str(f["data"]),
                                            "--tasks", "1", "--out", str(t / "b")], r"would overwrite"),
    "emulate-json-is-data": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(_copy(f["data"], t / "d.h5")),
                                           "--tasks", "1", "--json", str(t / "d.h5")], r"would overwrite"),
    "verify-json-is-net": lambda t, f: (["verify", str(_copy(f["bundle"], t / "b")), "--no-lava", "--json",
                                         str(t / "b" / "network.net")], r"would overwrite"),
    "calibrate-out-is-bundle-parent": lambda t, f: (["calibrate", str(_copy(f["bundle"], t / "b")), "--data",
                                                     str(f["data"]), "--out", str(t)], r"would overwrite"),
    "export-out-is-the-run": lambda t, f: (["export", str(_copy(f["run"], t / "run")), "--out", str(t / "run"),
                                            "--overwrite"], r"--out would overwrite this command's input"),
    "train-out-is-the-data-folder": lambda t, f: (["meta-train", "--data", str(_copy(f["data"], t / "d.h5")),
                                                   "--config", str(f["config"]), "--out", str(t)],
                                                  r"would overwrite|not empty"),
    "info-json-is-a-pipe": lambda t, f: (["data", "info", str(f["data"]), "--json", str(_fifo(t / "p.json"))],
                                         r"device, pipe or socket"),
    # ---------------------------------------------------------------- seeds and malformed attributes
    "build-seed-negative": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--seed", "-1"],
                                         r"not in \[0, 2\*\*32\)"),
    "verify-seed-huge": lambda t, f: (["verify", str(f["bundle"]), "--no-lava", "--seed", str(2 ** 70)],
                                      r"not in \[0, 2\*\*32\)"),
    "train-config-seed-huge": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                             "--config", _yaml(t, f"seed: {2 ** 70}\n")], r"'seed' is"),
    "emulate-tasks-absurd": lambda t, f: (["emulate", str(f["bundle"]), "--data", str(f["data"]), "--tasks",
                                           "100000000"], r"more than 100,000"),
    "info-version-text": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: h.attrs.__setitem__("version", "one"))],
                                       r"attribute 'version'|malformed layout"),
    "info-duration-text": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: h.attrs.__setitem__(
        "duration_us", "abc"))], r"attribute 'duration_us' is 'abc', not a positive whole number"),
    "info-labels-2d": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__setitem__("labels2", h["labels"][()].reshape(-1, 1)), h.__delitem__("labels"),
        h.move("labels2", "labels")))], r"must be 1-D"),
    "info-no-time-steps": lambda t, f: (["data", "info", _h5_edit(t, f, lambda h: (
        h.__delitem__("frames"), h.create_dataset("frames", shape=(len(h["labels"]), 2, 16, 32, 0), dtype="u1")))],
                                        r"'/frames' has shape"),
    "train-init-missing": lambda t, f: (["meta-train", "--data", str(f["data"]), "--config", str(f["config"]),
                                         "--out", str(t / "r"), "--init", str(t / "nope")],
                                        r"--init: not a meta-train run directory"),
    "train-val-split-empty": lambda t, f: (["meta-train", "--data", _h5_edit(t, f, lambda h: (
        h.__delitem__("splits/val"), h.create_dataset("splits/val", data=np.zeros(0, np.int32)))),
        "--config", str(f["config"]), "--out", str(t / "r")], r"d\.h5: split 'val' has 0 classes.*at least 3"),
    # ---------------------------------------------------------------- forged but re-signed manifests
    "manifest-time-steps-text": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["input"].update(
        time_steps="abc"), sign=True), "--data", str(f["data"]), "--tasks", "1"], r"'input\.time_steps' is 'abc'"),
    "manifest-time-steps-huge": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["input"].update(
        time_steps=10 ** 9), sign=True), "--no-lava"], r"'input\.time_steps' is 1000000000"),
    "manifest-burn-in-null": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["output"].update(
        burn_in=None), sign=True), "--data", str(f["data"]), "--tasks", "1"], r"'output\.burn_in' is None"),
    "manifest-engine-layer-text": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].update(
        engine_layer="last"), sign=True), "--data", str(f["data"]), "--tasks", "1"], r"'adapt\.engine_layer'"),
    "manifest-label-window-text": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].update(
        label_window="ab"), sign=True), "--data", str(f["data"]), "--tasks", "1"], r"'adapt\.label_window'"),
    "manifest-format-version-text": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m.update(
        format_version="one"), sign=True), "--no-lava"], r"'format_version' is 'one'"),
    "manifest-shape-bool": lambda t, f: (["verify", _bundle_edit(t, f, lambda m: m["input"].update(
        shape_chw=[True, 16, 32], shape_xyf=[32, 16, True]), sign=True), "--no-lava"], r"'input\.shape_chw'"),
    "bundle-file-is-a-device": lambda t, f: (["emulate", str(_link_dev(t, f)), "--data", str(f["data"]),
                                              "--tasks", "1"], r"network\.nir: is not a regular file"),
    # ---------------------------------------------------------------- runs whose parts disagree
    "export-run-config-list": lambda t, f: (["export", str(_foreign_run(t, "- 1\n- 2\n")), "--out", str(t / "b")],
                                            r"config\.yaml: not a model config"),
    "export-run-model-text": lambda t, f: (["export", str(_foreign_run(t, "model: small\n")), "--out",
                                            str(t / "b")], r"not a model config"),
    "export-ckpt-config-mismatch": lambda t, f: (["export", str(_mismatched_run(t, f)), "--out", str(t / "b")],
                                                 r"config\.yaml: differs from the config stored in best\.pt in model\.hidden: "
                                                 r"config\.yaml was edited, or best\.pt comes from another run.*undo the edit"),
    "evaluate-ckpt-config-mismatch": lambda t, f: (["evaluate", str(_mismatched_run(t, f)), "--tasks", "1",
                                                    "--trials", "1", "--quick"], r"differs from .*config\.yaml"),
    "resume-ckpt-config-mismatch": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--out",
                                                  str(_mismatched_run(t, f))], r"config\.yaml: differs from the config stored in "
                                                  r"ckpt\.pt in model\.hidden: it was edited.*undo the edit"),
    "resume-stillborn-run": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--out",
                                           str(_stillborn(t, f))], r"stopped before its first checkpoint.*without --resume"),
    # ---------------------------------------------------------------- configs of the wrong types
    "train-hidden-text": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                       "--config", _yaml(t, "model:\n  hidden: [a]\n")], r"'model\.hidden'"),
    "train-hidden-fraction": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                           "--config", _yaml(t, "model:\n  hidden: [1.5]\n")], r"'model\.hidden'"),
    "train-hidden-huge": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                        "--config", _yaml(t, "model:\n  hidden: [100000]\n")], r"'model\.hidden'"),
    "train-input-shape-text": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                             "--config", _yaml(t, "model:\n  input_shape: [a, 1, 1]\n")],
                                            r"'model\.input_shape'"),
    "train-label-window-fraction": lambda t, f: (["meta-train", "--data", str(f["data"]), "--out", str(t / "r"),
                                                  "--config", _yaml(t, "inner:\n  label_window: [1.5, 99.9]\n")],
                                                 r"'inner\.label_window'"),
    # ---------------------------------------------------------------- event files that wrap or block
    "events-x-wraps-int16": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: _write_npy(ev / "c3" / "0.npy", _wide_events("x", np.int32, 65539)))],
                                          r"field 'x' holds 65539"),
    "events-t-uint64": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: _write_npy(ev / "c3" / "0.npy", _wide_events("t", np.uint64, 2 ** 64 - 5)))],
                                     r"field 't' holds 18446744073709551611"),
    "events-npy-is-a-pipe": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source", _ev_variant(
        t, lambda ev: _fifo(ev / "c3" / "9.npy"))], r"9\.npy: is not a regular file"),
    # ---------------------------------------------------------------- flags that do not apply, advice
    "build-fractions-on-digits": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--fractions", "0.5",
                                                "0.25", "0.25"], r"--fractions applies to events:DIR"),
    "build-fractions-over-one": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                               f"events:{_event_folder(t / 'ev')}", "--fractions", "0.9", "0.9",
                                               "0.9"], r"sum to <= 1"),
    "build-split-file-on-events": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--source",
                                                 f"events:{_event_folder(t / 'ev')}", "--split-file",
                                                 str(_file(t, "s.json", "{}"))], r"--split-file applies to asl-dvs"),
    "build-per-class-absurd": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--per-class",
                                             "100000000"], r"more than 100,000"),
    "import-input-layer-network": lambda t, f: (["import", str(_fixture("lava-dl-netx/pilotnet_lif/network.net")),
                                                 "--input-shape", "3,66,200", "--classes", "1", "--out", str(t / "b")],
                                                r"input neuron layer driven by its bias"),
    "import-time-steps-1": lambda t, f: (["import", str(f["bundle"] / "network.net"), "--input-shape", "2,16,32",
                                          "--classes", "5", "--time-steps", "1", "--out", str(t / "b")],
                                         r"--time-steps 1 leaves no readout window"),
    "evaluate-baseline-not-a-run": lambda t, f: (["evaluate", str(f["run"]), "--baseline",
                                                  f"x={_nonempty_dir(t)}"], r"--baseline x: not a meta-train run"),
    "evaluate-baseline-twice": lambda t, f: (["evaluate", str(f["run"]), "--baseline", f"a={f['run']}",
                                              "--baseline", f"a={f['run']}"], r"label 'a' is given twice"),
    "export-calibrate-on-wrong-data": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"),
                                                     "--calibrate-on", _other_shape_data(t)], r"other\.h5"),
    # ---------------------------------------------------------------- netx files damaged inside
    "inspect-net-no-weight": lambda t, f: (["inspect", _net_edit(t, f, lambda h: h.__delitem__("layer/3/weight"))],
                                           r"layer/3 \(dense\) has no weight dataset"),
    "import-net-no-neuron": lambda t, f: (["import", _net_edit(t, f, lambda h: h.__delitem__("layer/3/neuron")),
                                           "--input-shape", "2,16,32", "--classes", "5", "--out", str(t / "b")],
                                          r"layer/3 \(dense\) has no neuron registers"),
    # third-party netx files: what the engines do not model is refused at import, with a fix for a file
    "import-net-delay": lambda t, f: (["import", _net_edit(t, f, lambda h: h.create_dataset(
        f"layer/{_last(h)}/delay", data=np.full(5, 3.0))), "--input-shape", "2,16,32", "--classes", "5", "--out",
        str(t / "b")], r"n\.net: layer/\d+/delay: synaptic delays \(up to 3 steps\).*without synaptic delays"),
    "import-net-delay-nan": lambda t, f: (["import", _net_edit(t, f, lambda h: h.create_dataset(
        f"layer/{_last(h)}/delay", data=np.full(5, np.nan))), "--input-shape", "2,16,32", "--classes", "5", "--out",
        str(t / "b")], r"layer/\d+/delay holds \[nan.*not whole, non-negative.*without synaptic delays"),
    "import-net-delay-text": lambda t, f: (["import", _net_edit(t, f, lambda h: h.create_dataset(
        f"layer/{_last(h)}/delay", data=np.array([b"x"] * 5))), "--input-shape", "2,16,32", "--classes", "5",
        "--out", str(t / "b")], r"layer/\d+/delay holds .*not whole, non-negative"),
    "import-net-delay-negative": lambda t, f: (["import", _net_edit(t, f, lambda h: h.create_dataset(
        f"layer/{_last(h)}/delay", data=np.full(5, -1.0))), "--input-shape", "2,16,32", "--classes", "5", "--out",
        str(t / "b")], r"layer/\d+/delay holds \[-1\.0.*not whole, non-negative"),
    "import-net-bias-per-neuron": lambda t, f: (["import", _net_edit(t, f, lambda h: h.create_dataset(
        f"layer/{_last(h)}/bias", data=np.arange(5.0))), "--input-shape", "2,16,32", "--classes", "5", "--out",
        str(t / "b")], r"layer/\d+/bias differs per neuron.*cannot adapt on chip.*one bias.*import it again"),
    "import-net-weight-300": lambda t, f: (["import", _net_edit(t, f, lambda h: _set_weight(h, 300)), "--input-shape",
                                            "2,16,32", "--classes", "5", "--out", str(t / "b")],
                                           r"weight spans -?\d+\.\.300, outside the plastic weight range.*"
                                           r"quantize the final layer.*import it again"),
    # a layer type netx cannot load: the advice depends on the type (only slayer's sum pools lower)
    "import-net-average-layer": lambda t, f: (["import", _net_edit(t, f, lambda h: _replace(
        h, f"layer/{_last(h)}/type", np.bytes_(b"average"))), "--input-shape", "2,16,32", "--classes", "5", "--out",
        str(t / "b")], r"type = '?b?'?average'?: netx cannot load.*rebuild the network without"),
    # an imported bundle has no run to export: the advice is the import that wrote it
    "emulate-imported-bad-rule": lambda t, f: (["emulate", _resign(_imported(t, f), lambda m: m["adapt"].__setitem__(
        "rule", {"input_norm_offset": 8, "input_norm_steps": -1})), "--data", str(f["data"]), "--tasks", "1", "--out",
        str(t / "e")], r"adapt\.rule\.input_norm_steps.*re-run the import: neuromaml import"),
    "emulate-imported-net-changed": lambda t, f: (["emulate", str(_imported(t, f, damage="network.net")), "--data",
                                                   str(f["data"]), "--tasks", "1"],
                                                  r"network\.net: sha256 .*fix: re-run the import: neuromaml import "
                                                  r".*n\.net --input-shape 2,16,32 --time-steps 100 --classes 5"),
    "emulate-imported-wrong-steps": lambda t, f: (["emulate", str(_imported(t, f, steps=300)), "--data",
                                                   str(f["data"]), "--tasks", "1"],
                                                  r"b: imported with --time-steps 300, but the frames of .*tiny\.h5 "
                                                  r"have 100.*import it again with --time-steps 100"),
    "inspect-net-weight-text": lambda t, f: (["inspect", _net_edit(t, f, lambda h: _replace(
        h, "layer/3/weight", np.full((5, 16), b"ab")))], r"layer/3/weight has dtype \|S2"),
    "import-net-register-text": lambda t, f: (["import", _net_edit(t, f, lambda h: _replace(
        h, "layer/3/neuron/vThMant", np.bytes_(b"eighty"))), "--input-shape", "2,16,32", "--classes", "5",
        "--out", str(t / "b")], r"layer/3/neuron/vThMant is"),
    "import-net-decay-fraction": lambda t, f: (["import", _net_edit(t, f, lambda h: _replace(
        h, "layer/3/neuron/iDecay", np.float64(0.5))), "--input-shape", "2,16,32", "--classes", "5",
        "--out", str(t / "b")], r"layer/3/neuron/iDecay is 0\.5"),
    "import-net-shape-disagrees": lambda t, f: (["import", _net_edit(t, f, lambda h: _replace(
        h, "layer/3/shape", np.array([7]))), "--input-shape", "2,16,32", "--classes", "7", "--out", str(t / "b")],
                                                r"the file is inconsistent"),
    # ---------------------------------------------------------------- records, histories, links
    "emulate-calibration-record-text": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].update(
        calibration="yes"), sign=True), "--data", str(f["data"]), "--tasks", "1"], r"'adapt\.calibration'"),
    "emulate-calibration-on-test": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].update(
        calibration={"split": "test", "val_accuracy": 1.5}), sign=True), "--data", str(f["data"]), "--tasks", "1"],
                                                 r"'adapt\.calibration' is not a calibration record on the 'val'"),
    "resume-history-binary": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--steps", "2",
                                            "--out", str(_garbled_history(t, f))], r"history\.jsonl: is not a text"),
    "build-duration-beyond-synthetic": lambda t, f: (["data", "build", "--out", str(t / "x.h5"), "--duration-us",
                                                      "500000"], r"--duration-us 500000: the synthetic recordings"),
    "export-model-one-way": lambda t, f: (["export", "--model", "small", "--n-way", "1", "--out", str(t / "b")],
                                          r"--n-way 1: a one-shot task needs at least 2"),
    "export-run-with-n-way": lambda t, f: (["export", str(f["run"]), "--n-way", "7", "--out", str(t / "b")],
                                           r"--n-way applies to --model"),
    "export-steps-below-burn-in": lambda t, f: (["export", str(f["run"]), "--steps", "50", "--out", str(t / "b")],
                                                r"--steps 50 leaves no readout window after the model's burn-in of 90"),
    "export-steps-absurd": lambda t, f: (["export", "--model", "small", "--steps", "1000000", "--out", str(t / "b")],
                                         r"more than 100,000"),
    "import-time-steps-absurd": lambda t, f: (["import", str(f["bundle"] / "network.net"), "--input-shape",
                                               "2,16,32", "--classes", "5", "--time-steps", "1000000", "--out",
                                               str(t / "b")], r"more than 100,000"),
    "rulecheck-bits-fraction": lambda t, f: (["rule-check", str(f["bundle"]), "--data", str(f["data"]), "--bits",
                                              "7.5"], r"write e.g\. --bits 8,6,4"),
    "cost-tasks-without-data": lambda t, f: (["cost", str(f["bundle"]), "--tasks", "5", "--out", str(t / "c")],
                                             r"--tasks set the measured part, which needs --data"),
    "train-resume-with-init": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--init",
                                             str(f["run"]), "--out", str(_copy(f["run"], t / "run"))],
                                            r"--init starts a new run"),
    "info-newline-in-name": lambda t, f: (["data", "info", str(t / "no\nsuch.h5")], r"no\\nsuch\.h5"),
    "export-out-is-a-link": lambda t, f: (["export", str(f["run"]), "--out", str(_dir_link(t)), "--overwrite"],
                                          r"is a symbolic link"),
    # ---------------------------------------------------------------- round 9
    # every reader checks adapt.weight_exp's range, not emulate alone (verify and cost ran it)
    "cost-weight-exp-out-of-range": lambda t, f: (["cost", _bundle_edit(t, f, lambda m: m["adapt"].update(
        weight_exp=10 ** 9), sign=True), "--out", str(t / "c")],
        r"'adapt\.weight_exp' is 1000000000, not a whole number in \[-8, 0\].*fix: run neuromaml calibrate"),
    # a damaged field calibrate writes: 'remove it' broke the digest; the fix is calibrate
    "emulate-label-window-text-advice": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m["adapt"].update(
        label_window="40:100"), sign=True), "--data", str(f["data"]), "--tasks", "1", "--out", str(t / "e")],
        r"'adapt\.label_window' is '40:100'.*fix: run neuromaml calibrate .*b --data FILE\.h5 \(it rewrites"),
    "cost-classes-disagree": lambda t, f: (["cost", _bundle_edit(t, f, lambda m: m["output"].update(
        classes=["a", "b"]), sign=True), "--out", str(t / "c")],
        r"'output\.classes' is \['a', 'b'\], not a list of 5 class names"),
    # the re-export advice names the run and the bundle the manifest knows, not RUN and BUNDLE
    "emulate-exported-advice-names-run": lambda t, f: (["emulate", _bundle_edit(t, f, lambda m: m.update(
        source_run="/runs/r1", format_version="2"), sign=True), "--data", str(f["data"]), "--tasks", "1"],
        r"fix: re-export the bundle \(neuromaml export /runs/r1 --out .*b --overwrite\)"),
    "export-calibrate-on-a-folder": lambda t, f: (["export", str(f["run"]), "--out", str(t / "b"), "--calibrate-on",
                                                   str(f["bundle"])], r"bundle: is a folder, not a meta-dataset file"),
    "resume-config-key-twice": lambda t, f: (["meta-train", "--data", str(f["data"]), "--resume", "--steps", "2",
                                              "--out", str(_config_appended(t, f, "outer:\n  steps: 1\n"))],
                                             r"config\.yaml: key 'outer' appears twice in one section \(line \d+\)"),
    # an input bias Lava's int16 bias_mant cannot hold: both engines cast it alike ('bit-exact', OK)
    "verify-input-bias-huge": lambda t, f: (["verify", str(TINYNET / "tiny.net"), "--input-bias", _bias(t, 1e30),
                                             "--no-slayer", "--samples", "1", "--steps", "5"],
                                            r"b\.npy: holds 1e\+30: a bias mantissa is a whole number in "
                                            r"\[-32768, 32767\]"),
    "verify-input-bias-fraction": lambda t, f: (["verify", str(TINYNET / "tiny.net"), "--input-bias",
                                                 _bias(t, 2.5), "--no-slayer", "--samples", "1", "--steps", "5"],
                                                r"b\.npy: holds 2\.5: a bias mantissa is a whole number"),
    "info-no-recordings": lambda t, f: (["data", "info", _h5_edit(t, f, _no_recordings)],
                                        r"d\.h5: holds no recordings \('/labels' has 0 entries"),
}


TINYNET = FIXTURE_NET.parents[1] / "lava-dl-netx" / "tinynet"


def _bias(t: Path, value: float) -> str:
    b = np.load(TINYNET / "input_bias.npy").astype(np.float64)
    b.flat[0] = value
    np.save(t / "b.npy", b)
    return str(t / "b.npy")


def _no_recordings(h) -> None:
    for name in ("frames", "labels", "sample_ids", "part_ids"):
        if name in h:
            shape, dtype = (0, *h[name].shape[1:]), h[name].dtype
            del h[name]
            h.create_dataset(name, shape=shape, dtype=dtype)


def _net_edit(t: Path, fx, edit) -> str:
    import h5py

    p = _copy(fx["bundle"] / "network.net", t / "n.net")
    with h5py.File(p, "r+") as h:
        edit(h)
    return str(p)


def _last(h) -> int:
    return max(int(k) for k in h["layer"])


def _set_weight(h, value) -> None:
    name = f"layer/{_last(h)}/weight"
    w = h[name][()]
    w.flat[0] = value
    _replace(h, name, w)


def _resign(b: Path, edit) -> str:
    man = json.loads((b / "manifest.json").read_text())
    edit(man)
    write_manifest(b, man)
    return str(b)


def _imported(t: Path, fx, damage: str | None = None, steps: int = 100) -> Path:
    from neuromaml.emulator.importer import import_netx

    net = _copy(fx["bundle"] / "network.net", t / "n.net")
    import_netx(net, t / "b", input_shape=(2, 16, 32), classes=5, time_steps=steps)
    if damage:
        with open(t / "b" / damage, "ab") as fh:
            fh.write(b"x")
    return t / "b"


def _replace(h, name: str, value) -> None:
    del h[name]
    h[name] = value


def _config_appended(t: Path, fx, text: str) -> Path:
    r = _copy(fx["run"], t / "run")
    with open(r / "config.yaml", "a") as fh:
        fh.write(text)
    return r


def _garbled_history(t: Path, fx) -> Path:
    r = _copy(fx["run"], t / "run")
    (r / "history.jsonl").write_bytes(bytes(range(128, 256)) * 2)
    return r


def _dir_link(t: Path) -> Path:
    (t / "target").mkdir()
    (t / "target" / "keep.txt").write_text("precious")
    (t / "link").symlink_to("target")
    return t / "link"


def _fixture(rel: str) -> Path:
    p = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / rel
    if not p.exists():
        pytest.skip(f"third-party fixture {rel} not found beside the project")
    return p


def _wide_events(field: str, dtype, value) -> np.ndarray:
    dt = [(n, dtype if n == field else d) for n, d in (("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1"))]
    a = np.zeros(3, dt)
    a[field][0] = value
    return a


def _link_dev(t: Path, fx) -> Path:
    b = _copy(fx["bundle"], t / "b")
    (b / "network.nir").unlink()
    (b / "network.nir").symlink_to("/dev/zero")
    return b


def _foreign_run(t: Path, config_text: str) -> Path:
    r = t / "frun"
    r.mkdir()
    (r / "config.yaml").write_text(config_text)
    torch.save({"w": torch.zeros(2)}, r / "theta.pt")
    return r


def _mismatched_run(t: Path, fx) -> Path:
    r = _copy(fx["run"], t / "run")
    for ck in r.glob("*.pt"):
        state = torch.load(ck, map_location="cpu", weights_only=False)
        state["config"]["model"]["hidden"] = [16]          # the weights are 8 wide
        torch.save(state, ck)
    return r


def _stillborn(t: Path, fx) -> Path:
    r = t / "run"
    r.mkdir()
    for name in ("config.yaml", "run.json"):
        shutil.copy2(fx["run"] / name, r / name)
    return r


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _cut_ckpts(t: Path, fx) -> Path:
    r = _copy(fx["run"], t / "run")
    for ck in r.glob("*.pt"):
        _truncate(ck, ck, 0.3)
    return r


def _edited_config(t: Path, fx, old: str, new: str) -> Path:
    r = _copy(fx["run"], t / "run")
    text = (r / "config.yaml").read_text()
    assert old in text
    (r / "config.yaml").write_text(text.replace(old, new))
    return r


def _cut_ckpt(t: Path, fx) -> Path:
    r = _copy(fx["run"], t / "run")
    _truncate(r / "ckpt.pt", r / "ckpt.pt", 0.3)
    return r


def _drop_run_file(t: Path, fx, name: str) -> Path:
    r = _copy(fx["run"], t / "run")
    for p in r.glob(name):
        p.unlink()
    return r


def yaml_with(**model) -> str:
    import yaml

    d = json.loads(json.dumps(TINY_RUN))
    d["model"].update(model)
    return yaml.safe_dump(d)


def _tamper_net(t: Path, fx) -> Path:
    b = _copy(fx["bundle"], t / "b")
    raw = bytearray((b / "network.net").read_bytes())
    raw[-1] ^= 0xFF
    (b / "network.net").write_bytes(bytes(raw))
    return b


def _drop(t: Path, fx, name: str) -> Path:
    b = _copy(fx["bundle"], t / "b")
    (b / name).unlink()
    return b


def _garble(t: Path, fx, name: str) -> Path:
    b = _copy(fx["bundle"], t / "b")
    (b / name).write_text("{not json")
    return b


def _other_shape_data(t: Path) -> str:
    from neuromaml.meta.metadataset import build_metadataset

    ev = _event_folder(t / "ev", classes=12, per=2)
    out = t / "other.h5"
    build_metadataset(f"events:{ev}", out, per_class=2, seed=0)
    return str(out)


def test_enough_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name, fx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    argv, pattern = CASES[name](case_dir, fx)
    before = _snapshot(case_dir, fx["root"])
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except SystemExit as exc:        # argparse's usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, f"{name}: exit {rc}, stderr:\n{err}"
    assert "Traceback" not in err and "unexpected" not in err, err
    import re

    assert re.search(pattern, err, re.S), f"{name}: {pattern!r} not in:\n{err}"
    after = _snapshot(case_dir, fx["root"])
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"{name}: changed or lost {changed}"
    new = sorted(set(after) - set(before))
    assert not new, f"{name}: an error left files behind: {new}"


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_during_a_lava_run_stops_every_worker(fx, tmp_path):
    """Ctrl-C goes to the whole foreground process group, Lava's forked workers included: the
    command must still end in one line and exit 130, with no worker traceback, no process left
    and no output written (the workers ignore SIGINT; the parent stops the runtime)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "emu"
    p = subprocess.Popen([sys.executable, "-m", "neuromaml.cli", "emulate", str(fx["bundle"]), "--data",
                          str(fx["data"]), "--engine", "lava", "--tasks", "50", "--shots", "1",
                          "--queries", "1", "--out", str(out)],
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while len(_group_pids(p.pid)) < 4 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)                   # the parent, the resource tracker and Lava's workers
        assert p.poll() is None, "the run ended before it could be interrupted"
        assert len(_group_pids(p.pid)) >= 4, "Lava's workers never started"
        time.sleep(1.0)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
        deadline = time.monotonic() + 20      # the resource tracker exits once it sees EOF
        while _group_pids(p.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [(q, Path(f"/proc/{q}/cmdline").read_bytes()[:120]) for q in _group_pids(p.pid)]
    finally:
        if p.poll() is None or _group_pids(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert left == [], f"processes left running after the interrupt: {left}"
    assert not out.exists()


def test_a_source_run_trained_on_after_export_is_not_taken_for_the_bundle(fx, tmp_path, capsys):
    """The manifest fingerprints the weights it was exported from; a source run whose weights
    changed since (trained on, replaced) is not compared as if it were the bundle's."""
    from neuromaml.deploy.bundle import load_bundle, source_run_changed
    from neuromaml.deploy.runs import load_run, reference_model

    run = _copy(fx["run"], tmp_path / "run")
    assert cli.main(["export", str(run), "--out", str(tmp_path / "b")]) == 0
    man, _ = load_bundle(tmp_path / "b")
    assert man["source_weights_sha256"] and not source_run_changed(man, load_run(run)[0])
    assert reference_model(man) is not None
    for name in ("best.pt", "ckpt.pt"):            # the run trained on: other weights
        ck = torch.load(run / name, weights_only=False)
        ck["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ck["model"].items()}
        torch.save(ck, run / name)
    assert source_run_changed(man, load_run(run)[0])
    capsys.readouterr()
    assert reference_model(man) is None
    assert "changed since this bundle was exported" in capsys.readouterr().err


def test_evaluate_notes_test_classes_the_run_trained_on(fx, tmp_path, capsys):
    """A meta-dataset with another class split (here --digit-split ordered) puts classes the run
    meta-trained on into its test split: evaluate says so instead of reporting it as meta-test."""
    other = tmp_path / "ordered.h5"
    assert cli.main(["data", "build", "--per-class", "6", "--digit-split", "ordered", "--out", str(other),
                     "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(fx["run"]), "--data", str(other), "--trials", "1", "--tasks", "1", "--quick",
                     "--no-transfer", "--out", str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err
    assert "test classes" in err and "meta-trained on" in err
    assert cli.main(["export", str(fx["run"]), "--out", str(tmp_path / "b")]) == 0      # emulate says it too
    capsys.readouterr()
    assert cli.main(["emulate", str(tmp_path / "b"), "--data", str(other), "--tasks", "1", "--out",
                     str(tmp_path / "em")]) == 0
    assert "meta-trained on" in capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["evaluate", str(fx["run"]), "--data", str(fx["data"]), "--trials", "1", "--tasks", "1",
                     "--quick", "--no-transfer", "--out", str(tmp_path / "ev2")]) == 0
    assert "meta-trained on" not in capsys.readouterr().err


def test_calibrate_refuses_a_read_only_bundle_before_the_sweep(fx, tmp_path, monkeypatch, capsys):
    """The chosen rule goes into BUNDLE/manifest.json: a bundle that cannot be written is refused
    before minutes of sweep, with nothing written (os.access stands in for a read-only mount; root
    ignores permission bits)."""
    import neuromaml.emulator.calibrate as cal

    b = _copy(fx["bundle"], tmp_path / "ro")
    real = os.access
    monkeypatch.setattr(cal.os, "access", lambda p, mode: False if Path(p) == b else real(p, mode))
    ran = []
    monkeypatch.setattr(cal, "_calibrate", lambda *a, **k: ran.append(1))
    assert cli.main(["calibrate", str(b), "--data", str(fx["data"]), "--tasks", "1", "--out", str(tmp_path / "c")]) == 2
    assert "is not writable: calibrate writes the chosen rule" in capsys.readouterr().err and not ran


def test_a_run_trained_with_a_label_window_exports_with_it(fx, tmp_path, capsys):
    """A run meta-trained through the rule with inner.label_window (here the readout window
    [burn_in, T) itself, then a later one) exports (was refused with advice to meta-train again):
    the bundle presents labels over the steps the run was trained with (adapt.label_window)."""
    import yaml

    from neuromaml.emulator.deployed import DeployedNet

    for window in ([90, 100], [95, 100]):
        run, cfg = tmp_path / f"run{window[0]}", tmp_path / f"lw{window[0]}.yaml"
        cfg.write_text(yaml.safe_dump(dict(TINY_RUN, inner={"lr": 0.5, "rule": "three_factor",
                                                            "label_window": window})))
        assert cli.main(["meta-train", "--data", str(fx["data"]), "--config", str(cfg), "--out", str(run),
                         "--no-progress"]) == 0
        assert cli.main(["export", str(run), "--out", str(tmp_path / f"b{window[0]}")]) == 0, capsys.readouterr().err
        man = json.loads((tmp_path / f"b{window[0]}" / "manifest.json").read_text())
        assert man["adapt"]["label_window"] == window and man["adapt"]["rule_source"] == "trained"
        assert DeployedNet.load(tmp_path / f"b{window[0]}").label_window == tuple(window)
    capsys.readouterr()
    assert cli.main(["export", str(run), "--out", str(tmp_path / "short"), "--steps", "97"]) == 2
    err = capsys.readouterr().err
    assert "'inner.label_window' is [95, 100], beyond the bundle's 97 time steps" in err and "--steps 100" in err
    assert not (tmp_path / "short").exists()


def test_a_label_window_before_the_pipeline_depth_is_noted(fx, tmp_path, capsys):
    """adapt.label_window [0, 2) on a network of pipeline depth 2: every support label meets the
    previous sample's spikes (on-chip accuracy at chance, was reported without a word). emulate
    says so on stderr, in emulate.md and in emulate.json, which records the window."""
    from neuromaml.emulator.emulate import _chance_note
    from neuromaml.emulator.results import Column, EmulateSummary

    b = _bundle_edit(tmp_path, fx, lambda m: m["adapt"].__setitem__("label_window", [0, 2]), sign=True)
    capsys.readouterr()
    assert cli.main(["emulate", b, "--data", str(fx["data"]), "--tasks", "2", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "manifest.json: adapt.label_window [0, 2) starts before step 2" in err and "the whole window" in err
    em = json.loads((tmp_path / "e" / "emulate.json").read_text())
    assert em["stream"]["label_window"] == [0, 2] and "starts before step 2" in em["notes"][0]
    assert "starts before step 2" in (tmp_path / "e" / "emulate.md").read_text()
    # a rule that stays at chance while the nearest class mean of the same input separates the classes
    s = EmulateSummary(n_way=5, onchip=Column(mean=0.2, fraction_synapses_updated=0.66),
                       references={"ncm": Column(mean=0.9)}, stream={"label_window": [0, 2]})
    assert "stays near chance (20.0%" in _chance_note(s) and "adapt.label_window [0, 2)" in _chance_note(s)
    s.onchip.mean = 0.85
    assert _chance_note(s) is None


def test_calibrate_says_when_the_normaliser_label_starts_do_not_fit(fx, tmp_path):
    """A rule whose trace outlasts the sample (x1_tau 60, T 100: the normaliser's label starts 120
    and 240): the normaliser stage was skipped, and calibration.md said "error normaliser off" as if
    off had been chosen. It is tried with labels from burn_in, and calibration.json/md say why."""
    from neuromaml.emulator.calibrate import calibrate

    b = _bundle_edit(tmp_path, fx, lambda m: m["adapt"]["rule"].__setitem__("x1_tau", 60), sign=True)
    s = calibrate(b, fx["data"], tasks=2, queries=2, strict=False, out=tmp_path / "cal")
    assert s.space["label_start"] == [BURN]
    assert {x["label_start"] for x in s.settings if x["stage"] == "normalise"} == {BURN}
    note = json.loads((tmp_path / "cal" / "calibration.json").read_text())["space"]["label_start_note"]
    assert "not searched" in note and "= 120 and" in note and "= 240 (x1_tau 60)" in note
    assert note in (tmp_path / "cal" / "calibration.md").read_text()


def test_a_damaged_stage_file_the_demo_reuses_is_named(tmp_path, capsys):
    """The demo reuses each stage's summary file. One that is not JSON runs its stage again (a
    verify.json of random bytes stopped the demo with "re-create the file"); one whose values the
    report cannot format is named with the fix to delete it, which re-runs that stage only (was:
    "one of their files" among six stages, and --fresh, which throws the meta-trained run away)."""
    from neuromaml.emulator import demo as D
    from neuromaml.io import NeuromamlError

    (tmp_path / "verify.json").write_bytes(b"\xff\xfe\x00garbage")
    assert D._reused_json(tmp_path / "verify.json", "verify") is None
    assert "verify.json: damaged (not a UTF-8 text file" in capsys.readouterr().err
    (tmp_path / "run" / "eval").mkdir(parents=True)
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"steps": 2, "best_val_acc": "abc", "best_step": 1}))
    (tmp_path / "run" / "eval" / "report.json").write_text(json.dumps(
        {"table2": {"train": {"mean": "x", "std": 0, "trials": 1, "tasks_per_trial": 1}}}))
    stages = {"train": D._reused_json(tmp_path / "run" / "summary.json", "train")}
    summary = {"stages": stages, "data": {}, "config": None, "seed": 0, "quick": True, "seconds": {}}
    with pytest.raises(NeuromamlError, match=r"run/summary\.json: reused from an earlier run of this folder, it holds "
                       r"values the report cannot use \(ValueError.*\(fix: delete .*run/summary\.json and run the "
                       r"demo again \(the train stage runs again\)\)"):
        D.write_report(tmp_path, summary)
    stages["train"]["best_val_acc"] = 0.5
    stages["evaluate"] = D._reused_json(tmp_path / "run" / "eval" / "report.json", "evaluate")
    with pytest.raises(NeuromamlError, match=r"eval/report\.json: reused .*the evaluate stage runs again"):
        D.write_report(tmp_path, summary)
    assert not (tmp_path / "report.md").exists()


def test_verify_with_nothing_to_compare_is_not_a_pass(tmp_path, capsys):
    """An imported network has no slayer source; with --no-lava nothing is compared: the verdict is
    NOT VERIFIED and exit 1, never OK."""
    assert cli.main(["import", str(FIXTURE_NET), "--input-shape", "2,16,32", "--classes", "5", "--out",
                     str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert cli.main(["verify", str(tmp_path / "b"), "--no-lava", "--samples", "1", "--steps", "20"]) == 1
    out = capsys.readouterr().out
    assert "NOT VERIFIED" in out and "\nOK" not in out
    rep = json.loads((tmp_path / "b" / "verify.json").read_text())     # what a reader of the file sees
    assert rep["ok"] is False and rep["compared"] == []


@pytest.mark.parametrize("lost", ["config.yaml", "ckpt.pt"])
def test_resume_recovers_a_run_missing_its_config_or_last_checkpoint(fx, tmp_path, capsys, lost):
    """config.yaml gone: it is written again from the checkpoint; ckpt.pt gone (the advice for a
    damaged one is to delete it): the run continues from best.pt. Neither points back at --resume."""
    import yaml

    run = _copy(fx["run"], tmp_path / "run")
    want = yaml.safe_load((run / "config.yaml").read_text())
    (run / lost).unlink()
    capsys.readouterr()
    assert cli.main(["meta-train", "--data", str(fx["data"]), "--resume", "--steps", "2", "--out", str(run),
                     "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{run / lost} is missing" in err
    want["outer"]["steps"] = 2                       # the run's record of its target (--steps extends it)
    assert yaml.safe_load((run / "config.yaml").read_text()) == want
    assert json.loads((run / "summary.json").read_text())["steps"] == 2 and (run / "ckpt.pt").exists()


def test_inspect_marks_synaptic_delays_not_deployable(fx, tmp_path, capsys):
    import h5py

    net = _copy(fx["bundle"] / "network.net", tmp_path / "n.net")
    with h5py.File(net, "r+") as h:
        h.create_dataset(f"layer/{_last(h)}/delay", data=np.full(5, 3.0))
    assert cli.main(["inspect", str(net)]) == 1
    assert "synaptic delays (delay): not modelled" in capsys.readouterr().out


def test_import_of_a_flat_dense_first_network_notes_what_it_cannot_check(tmp_path, capsys):
    assert cli.main(["import", str(FIXTURE_NET), "--input-shape", "1,32,32", "--classes", "5", "--out",
                     str(tmp_path / "b")]) == 0
    assert "only the product of --input-shape 1,32,32 could be checked" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, source", [("calibration", {**_REC, "settings_tried": "x"}, None),
                                                  ("label_window", [5, 2], None), ("weight_exp", "-6", "calibrated")])
def test_calibrate_replaces_a_damaged_field_it_writes(fx, tmp_path, capsys, field, value, source):
    """A damaged calibration record, label window or weight exponent stops emulate with the fix
    'run neuromaml calibrate again'; calibrate, which rewrites exactly those fields, must then not
    refuse the bundle for them (it did: the advice looped), also where the bundle was calibrated
    before (its rule_source 'calibrated' went on without the rule calibrate drops). It notes the
    damage and calibrates."""
    from neuromaml.onchip.rule import RuleSpec

    def edit(m):
        m["adapt"][field] = value
        if source:
            m["adapt"].update(rule_source=source, rule=RuleSpec().to_dict())

    b = Path(_bundle_edit(tmp_path, fx, edit, sign=True))
    assert cli.main(["emulate", str(b), "--data", str(fx["data"]), "--tasks", "1", "--out", str(tmp_path / "e")]) == 2
    assert f"adapt.{field}" in capsys.readouterr().err
    from neuromaml.emulator.calibrate import calibrate

    # (strict=False: the tiny fixture's rule need not beat chance on one task; the point is that
    # the damaged field does not stop the command that replaces it)
    calibrate(b, fx["data"], tasks=1, queries=1, out=tmp_path / "c", strict=False)
    err = capsys.readouterr().err
    assert f"adapt.{field}" in err and "calibrating from the default rule" in err
    man = json.loads((b / "manifest.json").read_text())
    assert man["adapt"]["rule_source"] == "calibrated" and man["adapt"][field] != value
    assert cli.main(["emulate", str(b), "--data", str(fx["data"]), "--tasks", "1", "--out", str(tmp_path / "e2")]) == 0


def test_a_signed_version_1_manifest_with_the_rate_form_loads(fx, tmp_path):
    """The rate form (input_norm_steps) was written into version-1 manifests, signed, before
    format 2 existed (f8fac78..552609f): such a bundle is genuine and loads; without its digest
    it is still refused (case emulate-v1-manifest-rate-form)."""
    from neuromaml.deploy.bundle import MANIFEST_DIGEST, load_bundle, manifest_digest

    b = _copy(fx["bundle"], tmp_path / "b")
    man = json.loads((b / "manifest.json").read_text())
    man["format_version"] = 1
    man["adapt"]["rule"] = {**(man["adapt"].get("rule") or {}), "input_norm_offset": 45, "input_norm_shift": 3,
                            "input_norm_steps": 4}
    man.pop(MANIFEST_DIGEST, None)
    man[MANIFEST_DIGEST] = manifest_digest(man)
    (b / "manifest.json").write_text(json.dumps(man))
    assert load_bundle(b)[0]["adapt"]["rule"]["input_norm_steps"] == 4


def test_a_full_disk_under_torch_save_is_named(tmp_path):
    """torch.save on a full disk raises 'unexpected pos N vs M' while it closes, the disk error
    ('file write failed') being its context: named as a full disk (was exit 3)."""
    from neuromaml.io import NeuromamlError, atomic_path

    with pytest.raises(NeuromamlError, match=r"best\.pt: could not be written: no space left") as info:
        with atomic_path(tmp_path / "best.pt"):
            try:
                raise RuntimeError("[enforce fail at inline_container.cc:764] . PytorchStreamWriter failed "
                                   "writing file data/2: file write failed")
            except RuntimeError:
                raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 9472 vs 9360")
    assert info.value.disk_full and list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_ends_in_one_line(fx, tmp_path, monkeypatch, capsys):
    """The bundle's HDF5 files are built in memory and written as bytes: HDF5 writing straight to
    a full disk printed tracebacks from its destructors and crashed (exit 139), leaving the
    temporary bundle folder."""
    import errno
    import pathlib

    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.name.startswith(".network.nir."):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    assert cli.main(["export", str(fx["run"]), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"b: could not be written: no space left on device", err), err
    assert list(tmp_path.iterdir()) == []


def test_calibrate_on_a_full_disk_names_its_report_folder(tmp_path, monkeypatch):
    """A full disk while the report is staged names the report folder, not a file of the staging
    folder (gone by the time the message is read); the manifest is not touched."""
    import errno

    import neuromaml.emulator.calibrate_report as cal
    from neuromaml.io import NeuromamlError

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cal, "write_json", full)
    saved = []
    summary = type("S", (), {"to_dict": lambda self: {}})()
    with pytest.raises(NeuromamlError, match=r"calibration: could not be written: no space left") as info:
        cal._publish_report(tmp_path / "calibration", summary, tmp_path, {}, lambda *a: saved.append(a))
    assert ".tmp" not in str(info.value) and not saved and list((tmp_path / "calibration").iterdir()) == []


def _conv_first(t: Path) -> Path:
    """lava-dl's tinynet without its (bias-driven) input layer, plus flatten and a dense layer of 5:
    a conv-first netx file as lava-dl writes one, the input shape left to netx's Network(input_shape)."""
    import h5py

    out = t / "cf.net"
    with h5py.File(TINYNET / "tiny.net", "r") as s, h5py.File(out, "w") as d:
        for i in (1, 2):
            s.copy(s[f"layer/{i}"], d, name=f"layer/{i - 1}")
        d["layer/2/type"], d["layer/2/shape"] = np.array([b"flatten"], "S10"), np.array([36])
        d["layer/3/type"], d["layer/3/shape"] = np.array([b"dense"], "S10"), np.array([5])
        d["layer/3/weight"] = np.where(np.arange(5 * 36).reshape(5, 36) % 7 == 0, 60.0, -20.0).astype(np.float32)
        s.copy(s["layer/2/neuron"], d, name="layer/3/neuron")
    return out


def test_import_of_a_conv_first_network_adds_its_input_layer(tmp_path, capsys):
    """A conv-first file without an input layer: --input-shape gives the conv's input (was refused
    with 'add an input layer'); the bundle's file gets the input layer export writes, so verify
    and the other readers load it, and an --input-shape the conv cannot take names the file's layer."""
    net = _conv_first(tmp_path)
    assert cli.main(["import", str(net), "--input-shape", "3,16,20", "--classes", "5", "--out",
                     str(tmp_path / "bad")]) == 2
    assert re.search(r"cf\.net: layer/0: conv of input \(20, 16, 3\)", capsys.readouterr().err)
    assert cli.main(["import", str(net), "--input-shape", "3,16,16", "--classes", "5", "--out",
                     str(tmp_path / "b")]) == 0
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [r["type"] for r in man["layers"]] == ["input", "conv", "conv", "flatten", "dense"]
    assert man["adapt"]["layer"] == 4 and man["input"]["shape_chw"] == [3, 16, 16]
    assert cli.main(["verify", str(tmp_path / "b"), "--no-lava", "--no-slayer", "--samples", "1",
                     "--steps", "5"]) == 1          # loads (nothing compared: exit 1, not a load error)
    assert "NOT VERIFIED" in capsys.readouterr().out


@pytest.mark.parametrize("key, value", [("confirm_tasks", "many"), ("confirm_tasks", 0), ("confirm_seed", 1.5),
                                        ("screen_accuracy", 1e30), ("best_val_accuracy", -0.1)])
def test_a_forged_confirmation_field_is_named(fx, tmp_path, capsys, key, value):
    """calibrate's confirmation fields (since session 11) are checked like the rest of the record:
    a signed manifest with 'many' there reached the demo report as 're-measured on many fresh ones'."""
    b = _bundle_edit(tmp_path, fx, lambda m: m["adapt"].__setitem__("calibration", {**_REC, key: value}), sign=True)
    assert cli.main(["verify", b, "--samples", "1"]) == 2
    err = capsys.readouterr().err
    assert f"adapt.calibration.{key}" in err and "calibrate again" in err and "Traceback" not in err
