"""`neuromaml calibrate`: the rule's settings chosen on meta-validation tasks for any bundle.

The search space follows the bundle (weights, threshold, feature rates, readout window),
the choice is the sparsest setting within the tolerance, only the val split is looked at,
the manifest is rewritten atomically and nothing is written when the search fails.
"""
import dataclasses
import math
import json

import numpy as np
import pytest
import torch

from neuromaml import cli
from neuromaml.deploy.bundle import export_bundle, rule_status, write_manifest
from neuromaml.emulator.calibrate import calibrate, candidates, derive_space, select
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.emulate import build_batch, ncm_reference, pool_inputs
from neuromaml.emulator.episodes import EpisodeBatch, run_fast
from neuromaml.emulator.results import CalibrationSummary
from neuromaml.io import NeuromamlError
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.models import ModelConfig, build_model
from neuromaml.meta.tasks import TaskSampler

T, BURN = 100, 4


def _export(path, n_way=5, gain=3.0, silent=False, hidden=(24,)):
    torch.manual_seed(0)
    m = build_model(ModelConfig(time_steps=T, burn_in=BURN, name="small", hidden=list(hidden), n_way=n_way,
                                zero_head=False), seed=1)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 32, T))
        last = f"blocks.{len(m.blocks) - 1}."
        for name, p in m.named_parameters():      # silent: every layer below the plastic one
            p.mul_(0.0 if silent and not name.startswith(last) else gain)
    export_bundle(m, path, input_shape=(2, 16, 32), time_steps=T, burn_in=BURN)
    return path


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_metadataset):
    b = _export(tmp_path_factory.mktemp("cal") / "bundle")
    before = json.loads((b / "manifest.json").read_text())
    seen = []
    orig = TaskSampler.__init__

    def spy(self, dataset, split, *a, **kw):
        seen.append(split)
        orig(self, dataset, split, *a, **kw)

    TaskSampler.__init__ = spy
    try:
        s = calibrate(b, tiny_metadataset, tasks=3, queries=2, strict=False)
    finally:
        TaskSampler.__init__ = orig
    return b, before, s, seen


def test_calibration_writes_the_chosen_rule_into_the_manifest(calibrated, tiny_metadataset):
    b, before, s, seen = calibrated
    assert seen == ["val", "val"]              # screening and confirmation: never the test split
    man = json.loads((b / "manifest.json").read_text())
    adapt = man["adapt"]
    assert rule_status(before) == "uncalibrated" and rule_status(man) == "calibrated"
    assert adapt["rule"] == s.rule and adapt["weight_exp"] == s.weight_exp in s.space["weight_exp"]
    rec = adapt["calibration"]
    assert rec["split"] == "val" and rec["data"] == str(tiny_metadataset.resolve())
    assert len(rec["data_sha256"]) == 64 and rec["settings_tried"] == len(s.settings)
    for key in ("json", "markdown", "plot"):
        assert (b / "calibration").joinpath(s.outputs[key].split("/")[-1]).exists()
    written = json.loads((b / "calibration" / "calibration.json").read_text())
    assert written == s.to_dict() and CalibrationSummary.from_dict(written).to_dict() == written
    assert {k: written[k] for k in CalibrationSummary.RECORD} == rec       # the manifest's record
    # the bundle still loads (checksums of network.net / .nir unchanged) with the new exponent, and
    # the chosen setting re-run from the manifest reads what the sweep recorded
    dep = DeployedNet.load(b)
    assert dep.weight_exp == s.weight_exp and np.array_equal(dep.stored_w0, DeployedNet.load(b).stored_w0)
    ds = MetaDataset(tiny_metadataset)
    batch, pool = build_batch(TaskSampler(ds, "val", 5, 1, 2, seed=1001, disjoint_parts=True), 6)
    r = run_fast(dep, dep.frozen_features(pool_inputs(ds, pool)), batch)
    assert s.confirm_tasks == 6 and s.confirm_seed == 1001
    assert r.accuracy.mean() == pytest.approx(s.val_accuracy)     # the confirmation's fresh tasks
    # the label window the chosen setting was measured with is the one written and loaded
    assert adapt["label_window"] == s.label_window == list(dep.label_window)
    keys = ("eta_exp", "x1_impulse", "softmax_gain_exp", "factor_threshold", "surrogate", "input_norm_offset",
            "input_norm_shift", "input_norm_steps")
    chosen = [x for x in s.settings if x.get("confirm_accuracy") == s.val_accuracy and x["weight_exp"] == s.weight_exp
              and all(x[k] == s.rule[k] for k in keys)]
    assert chosen and s.label_window[0] in {x["label_start"] for x in chosen}
    assert s.screen_accuracy in {x["val_accuracy"] for x in chosen}


def test_calibration_tries_the_error_normaliser(calibrated):
    _, _, s, _ = calibrated
    sp, R = s.space, s.space["derived_from"]["active_inputs_per_step"]
    assert sp["input_norm_offset"] == sorted({max(1, round(m * R)) for m in (4, 16)})
    tau = s.rule["x1_tau"]
    assert sp["label_start"] == sorted({max(BURN, 2 * tau), max(BURN, 4 * tau)})
    norm = [x for x in s.settings if x["stage"] == "normalise" and not x["input_norm_steps"]]
    assert len(norm) == len(sp["label_start"]) * len(sp["input_norm_offset"]) * len(sp["weight_exp"]) * 4
    # the rate form: prior 4 steps of the mean input, 2^s from a quarter to twice the input per step
    rn, lg = sp["rate_norm"], int(math.floor(math.log2(max(R, 1))))
    assert rn["input_norm_steps"] == 4 and rn["input_norm_offset"] == max(1, round(4 * R))
    # each impulse (1, top / 2, top): nine magnitudes log2(impulse) + s + eta - L = -12..-4, each
    # at the largest s <= L + 1 with eta >= -10 (those reachable: here L = 1)
    sets = rn["impulse_shift_eta"]
    imps = sorted({i for i, _, _ in sets})
    assert imps[0] == 1 and len(imps) >= 2 and all(i & (i - 1) == 0 and i <= 64 for i in imps)
    for imp in imps:
        k = int(math.log2(imp))
        mags = [k + sh + e - lg for i, sh, e in sets if i == imp]
        want = [m for m in range(-12, -3) if 0 <= min(lg + 1, m - k + lg + 10) and m - k + lg - min(lg + 1, m - k + lg + 10) >= -10]
        assert mags == want and all(sh == min(lg + 1, m - k + lg + 10) for (i, sh, _), m in
                                    zip([x for x in sets if x[0] == imp], mags))
    rate = [x for x in s.settings if x["input_norm_steps"] and x["stage"] != "edge"]
    assert all(x["stage"] == "normalise" and x["input_norm_offset"] == rn["input_norm_offset"]
               and [x["x1_impulse"], x["input_norm_shift"], x["eta_exp"]] in sets for x in rate)
    assert len(rate) == len(sp["label_start"]) * len(sets) > 0
    assert len({x["weight_exp"] for x in rate}) == 1       # the best step setting's
    for x in norm:       # the numerator: the largest power of two <= d + input expected before the label
        assert x["input_norm_offset"] in sp["input_norm_offset"] and x["label_start"] in sp["label_start"]
        assert 2 ** x["input_norm_shift"] <= x["input_norm_offset"] + R * x["label_start"] \
            < 2 ** (x["input_norm_shift"] + 1)
    assert {x["label_start"] for x in s.settings if x["stage"] not in ("normalise", "edge")} == {BURN}


def test_calibration_tries_the_gain_beyond_the_grid_where_a_best_setting_sits_on_its_end(calibrated):
    _, _, s, _ = calibrated
    gains = s.space["softmax_gain_exp"]
    grid = [x for x in s.settings if x["stage"] != "edge"]
    top3 = sorted(grid, key=lambda x: -x["val_accuracy"])[:3]
    on_end = [x for x in top3 if x["softmax_gain_exp"] in (gains[0], gains[-1])]
    edge = [x for x in s.settings if x["stage"] == "edge"]
    assert 0 < len(edge) <= len(on_end)        # (the fixture's best settings sit on an end)
    same = lambda a, b: all(a[k] == b[k] for k in a if k not in ("stage", "softmax_gain_exp") and
                            not k.startswith(("val_", "confirm_", "fraction", "mean_abs")))
    for x in edge:
        src = [t for t in on_end if same(t, x)]
        assert src, x
        g = src[0]["softmax_gain_exp"]
        assert x["softmax_gain_exp"] == (max(g - 2, -12) if g == gains[0] else min(g + 2, 6)) != g


def test_chosen_setting_is_the_sparsest_within_tolerance_on_fresh_tasks(calibrated):
    """Screening on --tasks val tasks, then the 5 most accurate settings and the screening's own
    pick re-measured on twice as many fresh val tasks; the choice comes from the re-measurement."""
    _, _, s, _ = calibrated
    screened = sorted(s.settings, key=lambda x: -x["val_accuracy"])
    conf = [x for x in s.settings if "confirm_accuracy" in x]
    assert 5 <= len(conf) <= 6 and all(x in conf for x in screened[:5])
    assert s.best_screen_accuracy == screened[0]["val_accuracy"]
    best = max(x["confirm_accuracy"] for x in conf)
    assert s.best_val_accuracy == best
    near = [x for x in conf if x["confirm_accuracy"] >= best - 0.01 - 1e-12]
    assert s.fraction_synapses_updated == min(x["confirm_fraction"] for x in near)


def test_candidates_unit():
    rows = [dict(val_accuracy=a, fraction_synapses_updated=f) for a, f in
            [(0.9, 0.9), (0.89, 0.8), (0.5, 0.1), (0.7, 0.7), (0.6, 0.6), (0.85, 0.85), (0.3, 0.3)]]
    c = candidates(rows, 0.01, None, top=3)
    assert c == [rows[0], rows[1], rows[5]]                 # the sparsest within 1 point is among them
    c = candidates(rows, 0.45, None, top=3)
    assert c == [rows[0], rows[1], rows[5], rows[2]]        # ... or added
    c[0]["confirm_accuracy"], c[0]["confirm_fraction"] = 0.7, 0.9
    c[1]["confirm_accuracy"], c[1]["confirm_fraction"] = 0.8, 0.8
    c[2]["confirm_accuracy"], c[2]["confirm_fraction"] = 0.795, 0.2
    c[3]["confirm_accuracy"], c[3]["confirm_fraction"] = 0.4, 0.1
    assert select(c, 0.01, key="confirm_accuracy") is c[2]
    assert select(c, 0.5, floor=0.5, key="confirm_accuracy") is c[2]


def test_select_unit():
    rows = [dict(val_accuracy=0.90, fraction_synapses_updated=0.9),
            dict(val_accuracy=0.895, fraction_synapses_updated=0.2),
            dict(val_accuracy=0.85, fraction_synapses_updated=0.01)]
    assert select(rows, 0.01) is rows[1]
    assert select(rows, 0.0) is rows[0]
    assert select(rows, 0.1) is rows[2]
    # a loose tolerance never reaches a setting at chance (no learning: all synapses untouched)
    rows.append(dict(val_accuracy=0.21, fraction_synapses_updated=0.0))
    assert select(rows, 0.99) is rows[3]
    assert select(rows, 0.99, floor=0.3) is rows[2]
    assert select(rows[3:], 0.99, floor=0.3) is rows[3]      # none above: the best there is


def test_search_space_follows_the_bundle(tmp_path, tiny_metadataset):
    dep = DeployedNet.load(_export(tmp_path / "b"))
    ds = MetaDataset(tiny_metadataset)
    feats = dep.frozen_features(pool_inputs(ds, np.arange(12)))
    sp = derive_space(dep, feats)
    k_hi = sp["derived_from"]["k_hi"]
    # twice the largest head weight fits the 9-bit range at k_hi, not at k_hi + 1
    head = np.abs(dep.stored_w0).max()
    assert 2 * head << k_hi <= 255 or k_hi == 0
    # a head with 4x smaller weights leaves room for a larger exponent (when the neuron allows it)
    small = dataclasses.replace(dep, w0=dep.w0 // 4)
    assert derive_space(small, feats)["derived_from"]["k_hi"] >= k_hi
    # the softmax gain keeps 2^g x (readout window) <= 1
    window = T - BURN
    assert max(sp["softmax_gain_exp"]) == -int(np.ceil(np.log2(window)))
    assert sp["factor_threshold"][0] == 0 and max(sp["factor_threshold"]) == dep.rule.e_max // 2


@pytest.mark.parametrize("where", ["everywhere", "confirmation"])
def test_failed_calibration_writes_nothing(tmp_path, tiny_metadataset, monkeypatch, where):
    """No setting above chance, on the screening's tasks or only on the confirmation's fresh ones
    (the screening's best can be luck): refused, nothing written."""
    from neuromaml.emulator import episodes

    b = _export(tmp_path / "b")
    before = (b / "manifest.json").read_bytes()
    real_run = episodes.run_fast

    def at_chance(*a, **k):             # every setting reads chance (there)
        r = real_run(*a, **k)
        if where == "everywhere":
            r.accuracy = np.full_like(r.accuracy, 0.2)
        elif len(r.accuracy) == 4:      # the confirmation's 2 x 2 tasks
            r.accuracy = np.full_like(r.accuracy, 0.2)
        else:
            r.accuracy = np.full_like(r.accuracy, 0.9)
        return r

    monkeypatch.setattr(episodes, "run_fast", at_chance)
    with pytest.raises(NeuromamlError, match=r"no rule setting learns.*nothing was written"):
        calibrate(b, tiny_metadataset, tasks=2, queries=2)
    assert (b / "manifest.json").read_bytes() == before and not (b / "calibration").exists()


@pytest.mark.parametrize("case,pattern", [
    ("shape", r"frames are \(C,H,W\) = \(2, 16, 32\) but the bundle expects \(2, 8, 16\)"),
    ("classes", r"split 'val' has 16 classes, fewer than the bundle's 20 outputs.*rebuild"),
    ("silent", r"receives no spikes"),
    ("tasks", r"--tasks 0: need at least one"),
])
def test_bad_input_is_a_clear_error(tmp_path, tiny_metadataset, case, pattern):
    if case == "shape":
        torch.manual_seed(0)
        m = build_model(ModelConfig(time_steps=T, burn_in=BURN, name="small", hidden=[8], zero_head=False,
                                    input_shape=(2, 8, 16)), seed=1)
        with torch.no_grad():
            m(torch.zeros(1, 2, 8, 16, T))
        b = tmp_path / "b"
        export_bundle(m, b, input_shape=(2, 8, 16), time_steps=T, burn_in=BURN)
    else:
        b = _export(tmp_path / "b", n_way=20 if case == "classes" else 5, silent=case == "silent")
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(NeuromamlError, match=pattern):
        calibrate(b, tiny_metadataset, tasks=0 if case == "tasks" else 2, queries=2)
    assert (b / "manifest.json").read_bytes() == before


def test_bad_weight_exp_in_manifest(tmp_path):
    b = _export(tmp_path / "b")
    man = json.loads((b / "manifest.json").read_text())
    for val, pat in ((3, r"adapt.weight_exp' is 3, not a whole number in \[-8, 0\]"),   # load_bundle, every reader
                     (-8, r"adapt.weight_exp' = -8: theta0\* << 8 spans")):
        man["adapt"]["weight_exp"] = val
        write_manifest(b, man)      # signed: the value is what is under test, not the edit
        with pytest.raises(NeuromamlError, match=pat):
            DeployedNet.load(b)


def test_ncm_reference_by_hand():
    # 2 classes, inputs 0-1 belong to class 0, inputs 2-3 to class 1; D = 2 -> window starts at 1
    dep = type("D", (), {"depth": 2, "time_steps": 4})()
    feats = np.zeros((4, 5, 4), np.int8)
    feats[0, 1:5, 0:2] = 1                # support class 0
    feats[1, 1:5, 2:4] = 1                # support class 1
    feats[2, 1:3, 0] = 1                  # query, class 0 pattern
    feats[3, 1:3, 3] = 1                  # query, class 1 pattern
    feats[3, 0, 0:2] = 1                  # outside the window: ignored
    b = EpisodeBatch(np.array([[0, 1, 2, 3], [0, 1, 3, 2]]), np.array([[0, 1, 0, 1], [0, 1, 0, 1]]), 2)
    r = ncm_reference(dep, feats, b)
    assert r["tasks"] == 2 and r["mean"] == pytest.approx(0.5)     # episode 0 right, episode 1 swapped


def test_cli_calibrate_and_the_uncalibrated_warning(tmp_path, tiny_metadataset, capsys):
    b = _export(tmp_path / "b")
    assert cli.main(["emulate", str(b), "--data", str(tiny_metadataset), "--tasks", "2", "--queries", "2",
                     "--out", str(tmp_path / "em")]) == 0
    out = capsys.readouterr()
    assert "rule in manifest.json is uncalibrated" in out.err and "**The bundle's rule is uncalibrated**" in out.out
    em = json.loads((tmp_path / "em" / "emulate.json").read_text())
    assert em["rule_status"] == "uncalibrated"
    assert {"bundle_sgd", "ncm"} <= set(em["references"])
    # the typed summary reads back what was written, field for field, and writes it back exactly
    from neuromaml.emulator.results import Column, EmulateSummary

    typed = EmulateSummary.from_dict(em)
    assert typed.to_dict() == em and typed.tasks == 2 and isinstance(typed.onchip, Column)
    assert typed.onchip.mean == em["onchip"]["mean"] and typed.references["ncm"].tasks == 2
    assert typed.lava is None and typed.lava_agrees is None and "lava" not in em
    bad = tmp_path / "nope.h5"
    assert cli.main(["calibrate", str(b), "--data", str(bad), "--tasks", "2"]) == 2
    assert str(bad) in capsys.readouterr().err


# ---------------------------------------------------------------- a bundle and its report kept whole
def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt, 130), (NeuromamlError("x.h5: no setting learns"), 2)])
def test_export_calibrate_on_keeps_the_old_bundle_until_the_new_one_is_calibrated(tmp_path, tiny_metadataset,
                                                                                  monkeypatch, capsys, stop, code):
    from neuromaml.emulator import calibrate as cal_mod

    b = tmp_path / "b"
    assert cli.main(["export", "--model", "small", "--out", str(b)]) == 0
    before = _tree(b)

    def fails(*a, **k):
        raise stop

    monkeypatch.setattr(cal_mod, "calibrate", fails)
    capsys.readouterr()
    assert cli.main(["export", "--model", "small", "--seed", "5", "--out", str(b), "--overwrite",
                     "--calibrate-on", str(tiny_metadataset)]) == code
    err = capsys.readouterr().err
    assert _tree(b) == before, "the old bundle was replaced or deleted"
    assert f"{b} was not changed" in err and ("interrupted" in err) == (code == 130)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "a staging folder was left behind"


def test_export_calibrate_on_publishes_the_calibrated_bundle_under_its_name(tmp_path, tiny_metadataset, monkeypatch):
    from neuromaml.emulator import calibrate as cal_mod

    real = cal_mod.calibrate
    monkeypatch.setattr(cal_mod, "calibrate", lambda b, d, **k: real(b, d, tasks=1, queries=1, strict=False,
                                                                      publish_as=k["publish_as"]))
    b = tmp_path / "b"
    assert cli.main(["export", "--model", "small", "--out", str(b)]) == 0
    assert cli.main(["export", "--model", "small", "--seed", "5", "--out", str(b), "--overwrite",
                     "--calibrate-on", str(tiny_metadataset)]) == 0
    man = json.loads((b / "manifest.json").read_text())
    rep = json.loads((b / "calibration" / "calibration.json").read_text())
    assert man["fresh_init_seed"] == 5 and rule_status(man) == "calibrated"
    assert rep["bundle"] == str(b) and rep["outputs"]["json"] == str(b / "calibration" / "calibration.json")
    assert rep["bundle_manifest_sha256"] == man["manifest_sha256"] and rep["rule"] == man["adapt"]["rule"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_bundle_being_calibrated_is_not_replaced(tmp_path, capsys):
    """export/import --overwrite while a calibrate holds the bundle's lock: refused, nothing changed
    (calibrate would otherwise write its rule into the new network's manifest)."""
    import subprocess

    b = tmp_path / "b"
    assert cli.main(["export", "--model", "small", "--out", str(b)]) == 0
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (b / ".neuromaml-calibrate.lock").write_text(str(holder.pid))
        before = _tree(b)
        capsys.readouterr()
        assert cli.main(["export", "--model", "small", "--seed", "5", "--out", str(b), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"a calibrate (pid {holder.pid}) is choosing this bundle's rule" in err and "wait for" in err
        assert _tree(b) == before
    finally:
        holder.kill()
        holder.wait()


def test_calibrate_refuses_a_bundle_exported_again_during_the_sweep(tmp_path, tiny_metadataset, monkeypatch):
    from neuromaml.emulator import calibrate as cal_mod

    b = _export(tmp_path / "b")
    real = cal_mod.select

    def reexport(*a, **k):              # another command replaces the bundle meanwhile (once)
        if (tmp_path / "other").exists():
            return real(*a, **k)
        _export(tmp_path / "other", hidden=(12,))
        for name in ("network.net", "network.nir", "manifest.json"):
            (b / name).write_bytes((tmp_path / "other" / name).read_bytes())
        return real(*a, **k)

    monkeypatch.setattr(cal_mod, "select", reexport)
    with pytest.raises(NeuromamlError, match=r"changed while calibrating.*nothing was written"):
        calibrate(b, tiny_metadataset, tasks=1, queries=1, strict=False)
    assert _tree(b) == _tree(tmp_path / "other") and not (b / "calibration").exists()   # the new bundle, as written


def test_an_interrupt_while_publishing_leaves_the_manifest_and_the_report_agreeing(tmp_path, tiny_metadataset,
                                                                                  monkeypatch):
    """Ctrl-C as the manifest is written: the manifest and calibration.json/.md/.png are published
    together (the interrupt is raised once they are), never a report of a rule the manifest lacks."""
    import os
    import signal

    b = _export(tmp_path / "b")
    calibrate(b, tiny_metadataset, tasks=1, queries=1, strict=False)
    real = os.replace

    def interrupted(src, dst, *a, **k):
        if str(dst).endswith("manifest.json"):
            os.kill(os.getpid(), signal.SIGINT)
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        calibrate(b, tiny_metadataset, tasks=2, queries=1, seed=3, strict=False)
    monkeypatch.setattr(os, "replace", real)
    man = json.loads((b / "manifest.json").read_text())
    rep = json.loads((b / "calibration" / "calibration.json").read_text())
    assert rep["rule"] == man["adapt"]["rule"] and rep["tasks"] == man["adapt"]["calibration"]["tasks"] == 2
    assert rep["bundle_manifest_sha256"] == man["manifest_sha256"]
    assert "2 tasks" in (b / "calibration" / "calibration.md").read_text()
    assert [p.name for p in (b / "calibration").iterdir() if p.name.startswith(".")] == []


def test_calibrate_checks_its_report_files_before_the_sweep(tmp_path, tiny_metadataset, monkeypatch):
    """A calibration.json that cannot be replaced (another user's, immutable) is found before the
    sweep, named, and nothing is written (`open` stands in for chattr +i: root ignores modes)."""
    import builtins

    from neuromaml.emulator import calibrate as cal_mod

    b = _export(tmp_path / "b")
    (b / "calibration").mkdir()
    (b / "calibration" / "calibration.json").write_text("{}")

    def no_write(path, mode="r", *a, **k):
        if str(path).endswith("calibration.json") and mode != "r":
            raise PermissionError(1, "Operation not permitted", str(path))
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(cal_mod, "open", no_write, raising=False)
    ran = []
    monkeypatch.setattr(cal_mod, "_calibrate", lambda *a, **k: ran.append(1))
    with pytest.raises(NeuromamlError, match=r"calibration\.json: cannot be replaced \(Operation not permitted\).*fix"):
        calibrate(b, tiny_metadataset, tasks=1, queries=1)
    assert not ran
