"""`neuromaml rule-check`: the precision / eta / threshold sweep against float SGD.

The sweep must reproduce the chip at 8 bits (bit for bit the fast engine), keep lower
precisions on their grid, and its float SGD reference must see the same network the
rule sees (same readout as the fixed engine when it does not learn).
"""
import argparse
import dataclasses
import functools
import json

import numpy as np
import pytest
import torch

from neuromaml.deploy.bundle import export_bundle
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.emulate import build_batch, pool_inputs
from neuromaml.emulator.episodes import EpisodeBatch, run_fast
from neuromaml.emulator.results import RuleCheckSummary
from neuromaml.emulator.rulecheck import _window_inputs, float_counts, rule_check, rule_check_cli, sgd_reference
from neuromaml.io import NeuromamlError
from neuromaml.meta.metadataset import MetaDataset
from neuromaml.meta.models import ModelConfig, build_model
from neuromaml.meta.tasks import TaskSampler
from neuromaml.onchip.rule import RuleSpec, grid_round, grid_step, weight_update

T, BURN, TASKS = 100, 4, 4


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model(ModelConfig(time_steps=T, burn_in=BURN, name="small", hidden=[24], zero_head=False), seed=1)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 32, T))
        for p in m.parameters():       # strong enough weights that every layer spikes
            p.mul_(3.0)
    out = tmp_path_factory.mktemp("rc") / "bundle"
    export_bundle(m, out, input_shape=(2, 16, 32), time_steps=T, burn_in=BURN)
    return out


@pytest.fixture(scope="module")
def episodes(bundle, tiny_metadataset):
    dep = DeployedNet.load(bundle)
    ds = MetaDataset(tiny_metadataset)
    sampler = TaskSampler(ds, "test", dep.n_out, 1, 2, seed=0, disjoint_parts=True)
    batch, pool = build_batch(sampler, TASKS)
    return dep, dep.frozen_features(pool_inputs(ds, pool)), batch


@pytest.fixture(scope="module")
def summary(bundle, tiny_metadataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("rc_out")
    return rule_check(bundle, tiny_metadataset, split="test", tasks=TASKS, shots=1, queries=2,
                      bits=[8, 4, 2], eta_exps=[-9, -7], thresholds=[0, 20], factor_thresholds=[0, 4],
                      seed=0, out=out, sgd_lrs=[0.0, 16.0, 256.0])


def test_grid_update_at_8_bits_is_the_engine_update():
    rng = np.random.default_rng(0)
    spec = RuleSpec(eta_exp=-6)
    upd = functools.partial(weight_update, bits=8)
    for i in range(20):
        w = rng.integers(-256, 256, (3, 5, 7))
        x1 = rng.integers(0, 128, (3, 7))
        y2 = rng.integers(-127, 128, (3, 5))
        r = rng.random()
        np.testing.assert_array_equal(upd(w, x1, y2, spec, r), weight_update(w, x1, y2, spec, r))


def test_coarse_grid_update_stays_on_grid_and_is_unbiased():
    spec = RuleSpec(eta_exp=-3)
    w = np.zeros((1, 1, 1), np.int64)
    x1, y2 = np.array([[100]]), np.array([[-3]])           # dw = 2^-3 * floor(300/8)*8 = 37 LSB
    upd = functools.partial(weight_update, bits=3)                            # q = 32
    rs = np.random.default_rng(1).random(4000)
    out = np.array([upd(w, x1, y2, spec, r)[0, 0, 0] for r in rs])
    assert set(np.unique(out)) == {32, 64}
    assert abs(out.mean() - 37) < 1.5                      # E[w'] = w + dw
    assert grid_step(8) == 1 and grid_step(2) == 64
    np.testing.assert_array_equal(grid_round(np.array([-256, -33, -32, 31, 32, 250, 255]), 2),
                                  [-256, -64, 0, 0, 64, 192, 192])


@pytest.mark.parametrize("change", [{}, dict(eta_exp=-6, error_threshold=10, eq6_threshold=2)],
                         ids=["bundle_rule", "thresholds_eq6"])
def test_8_bit_point_equals_run_fast_bit_for_bit(episodes, change):
    dep, feats, batch = episodes
    spec = dataclasses.replace(dep.rule, **change)
    ref = run_fast(dep, feats, batch, spec)
    got = run_fast(dep, feats, batch, spec, bits=8)
    assert (ref.weights != ref.initial).any() and ref.spikes.sum() > 0, "test is vacuous"
    np.testing.assert_array_equal(got.weights, ref.weights)
    np.testing.assert_array_equal(got.initial, ref.initial)
    np.testing.assert_array_equal(got.spikes, ref.spikes)
    np.testing.assert_array_equal(got.accuracy, ref.accuracy)


@pytest.mark.parametrize("bits", [4, 2])
def test_lower_precision_keeps_weights_on_its_grid(episodes, bits):
    dep, feats, batch = episodes
    spec = dataclasses.replace(dep.rule, eta_exp=-5)     # larger steps: updates survive the grid
    r = run_fast(dep, feats, batch, spec, bits=bits)
    q = grid_step(bits)
    assert (r.initial % q == 0).all() and (r.weights % q == 0).all()
    assert r.weights.max() <= 256 - q and r.weights.min() >= -256
    assert (r.weights != r.initial).any(), "no update on the coarse grid: test is vacuous"
    r8 = run_fast(dep, feats, batch, spec, bits=8)
    assert not np.array_equal(r8.weights, r.weights)


def test_float_reference_sees_what_the_engine_sees(episodes):
    """Integer initial weights, no SGD step: float readout == fixed engine with learning off."""
    dep, feats, batch = episodes
    off = run_fast(dep, feats, EpisodeBatch(batch.order, batch.labels, 0))
    assert off.counts.sum() > 0, "test is vacuous"
    x = torch.from_numpy(_window_inputs(dep, feats, batch.order))
    w = torch.from_numpy(off.initial.astype(np.float64))
    c = float_counts(dep, w, x, beta=4.0).numpy()
    np.testing.assert_array_equal(c, off.counts)


def test_sgd_reference_learns_and_zero_lr_changes_nothing(episodes):
    dep, feats, batch = episodes
    s = sgd_reference(dep, feats, batch, lrs=[0.0, 64.0], steps=1)
    assert s["per_lr"][0]["fraction_synapses_updated"] == 0.0
    assert s["per_lr"][1]["fraction_synapses_updated"] > 0.0
    assert s["lr"] in (0.0, 64.0)
    assert sum(s["update_magnitude"]["hist"]["counts"]) == round(
        s["update_magnitude"]["synapses"] * (1 - s["update_magnitude"]["zero_fraction"]))


def test_sweep_outputs(summary, episodes):
    dep, feats, batch = episodes
    from pathlib import Path

    out = Path(summary.outputs["json"]).parent
    for name in ("rule-check.json", "rule-check.md", "accuracy-vs-bits.png",
                 "accuracy-vs-threshold.png", "update-histogram.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy-vs-bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    js = json.loads((out / "rule-check.json").read_text())
    # the typed summary reads back from its file unchanged, every field written
    assert RuleCheckSummary.from_dict(js).to_dict() == js == summary.to_dict()
    assert set(js) >= {f.name for f in dataclasses.fields(RuleCheckSummary)} - {"extra", "present"}
    prec = [s for s in js["settings"] if "precision" in s["sweeps"]]
    assert sorted((s["bits"], s["eta_exp"]) for s in prec) == sorted(
        (b, e) for b in (8, 4, 2) for e in (-9, -7))
    # the sweep's bundle point is the plain fast engine on the same tasks
    ref = run_fast(dep, feats, batch)
    bund = [s for s in js["settings"] if "bundle" in s["sweeps"]][0]
    assert bund["bits"] == 8 and bund["accuracy"]["mean"] == pytest.approx(ref.accuracy.mean())
    assert bund["fraction_synapses_updated"] == pytest.approx((ref.n_updates / ref.weights[0].size).mean())
    assert any(s["error_threshold"] == 20 for s in js["settings"])
    assert js["sgd"]["lr"] in (0.0, 16.0, 256.0) and len(js["sgd"]["per_lr"]) == 3
    md = (out / "rule-check.md").read_text()
    assert "| bits |" in md and "float final-layer SGD" in md


def _args(bundle, data, tmp_path, **kw):
    a = dict(bundle=bundle, data=data, split="test", tasks=1, shots=1, queries=1, bits=[8],
             eta_exp=[-9], thresholds=[0], seed=0, out=tmp_path / "o", json=None)
    a.update(kw)
    return argparse.Namespace(**a)


@pytest.mark.parametrize("kw, pattern", [
    (dict(bits=[8, 9]), r"--bits 9.*1\.\.8.*nearest representable value: 8"),
    (dict(bits=[0]), r"--bits 0.*nearest representable value: 1"),
    (dict(eta_exp=[7]), r"--eta-exp 7.*eta_exp=7.*nearest representable value: 5"),
    (dict(thresholds=[500]), r"--thresholds 500.*error_threshold.*nearest representable value: 126"),
    (dict(shots=6), r"fewer than k_shot \+ n_query"),
    (dict(tasks=0), r"--tasks 0"),
])
def test_bad_input_is_a_clear_error(bundle, tiny_metadataset, tmp_path, kw, pattern):
    with pytest.raises(NeuromamlError, match=pattern):
        rule_check_cli(_args(bundle, tiny_metadataset, tmp_path, **kw))


def test_cli_prints_markdown_and_writes_json(bundle, tiny_metadataset, tmp_path, capsys):
    from neuromaml.cli import main

    argv = ["rule-check", str(bundle), "--data", str(tiny_metadataset), "--tasks", "1",
            "--queries", "1", "--bits", "8,2", "--eta-exp=-9,-8", "--thresholds", "0",
            "--out", str(tmp_path / "o"), "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    assert "# Rule check" in capsys.readouterr().out
    js = json.loads((tmp_path / "s.json").read_text())
    assert js["tasks"] == 1 and js["sweep"]["bits"] == [8, 2] and js["sweep"]["eta_exps"] == [-9, -8]
    assert main(argv[:-4] + ["--bits", "12"]) == 2
    assert "--bits 12" in capsys.readouterr().err


def test_logit_scale_comes_from_the_source_run(tmp_path):
    from neuromaml.emulator.rulecheck import _run_logit_scale

    (tmp_path / "config.yaml").write_text("model:\n  logit_scale: 0.2\n")
    assert _run_logit_scale({"source_run": str(tmp_path)}) == (0.2, str(tmp_path / "config.yaml"))
    assert _run_logit_scale({"source_run": None})[0] == 0.5
