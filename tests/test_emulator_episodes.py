"""The emulator's two engines run the same episodes and must agree bit for bit.

An episode: weights reset to theta0*, support samples with labels (learning on),
queries without (learning off), in one continuous stream (see emulator.deployed).
"""
import numpy as np
import pytest
import torch

from neuromaml.deploy.bundle import export_bundle
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.episodes import EpisodeBatch, run_fast, run_lava, step_labels
from neuromaml.io import NeuromamlError
from neuromaml.meta.models import ModelConfig, build_model

T, BURN = 24, 8


def _bundle(tmp_path, dirname, **cfg):
    torch.manual_seed(0)
    m = build_model(ModelConfig(time_steps=T, burn_in=BURN, zero_head=False, **cfg), seed=1)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 32, T))
        for block in m.blocks:         # strong enough weights that every layer spikes
            if type(block).__name__ != "Pool":      # (pool weights are fixed and at the 8-bit edge)
                for p in block.parameters():
                    p.mul_(3.0)
    export_bundle(m, tmp_path / dirname, input_shape=(2, 16, 32), time_steps=T, burn_in=BURN)
    return DeployedNet.load(tmp_path / dirname)


def _episodes(n_tasks, n_way=5, rate=0.15, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((12, T, 32, 16, 2)) < rate).astype(np.int8)
    order = np.stack([rng.permutation(12)[:n_way + 4] for _ in range(n_tasks)])
    labels = np.concatenate([np.tile(np.arange(n_way), (n_tasks, 1)),
                             rng.integers(0, n_way, (n_tasks, 4))], axis=1)
    return x, EpisodeBatch(order, labels, n_way)


CALIBRATED = dict(eta_exp=-7, x1_impulse=4, surrogate="none", softmax_gain_exp=-8)   # the demo's rule form


@pytest.mark.lava
@pytest.mark.parametrize("cfg,rule,scaled", [(dict(name="small", hidden=[24]), None, False),
                                             (dict(name="small", hidden=[32, 16]), None, False),
                                             (dict(name="small", hidden=[24]), CALIBRATED, False),
                                             (dict(name="small_cnn"), CALIBRATED, False),
                                             (dict(name="small", hidden=[24]), CALIBRATED, True)],
                         ids=["mlp1", "mlp2", "mlp1-calibrated-rule", "cnn-flatten-dense",
                              "mlp1-plastic-weight-exp"])
def test_fast_engine_equals_lava(tmp_path, cfg, rule, scaled):
    import dataclasses

    dep = _bundle(tmp_path, "b", **cfg)
    if scaled:
        # the calibrated plastic layer: theta0* << k held at weight_exp -k (k as large as fits, >= 1)
        from neuromaml.emulator.deployed import weight_range_ok

        k = max(k for k in range(0, 9) if weight_range_ok(dep.w0, k))
        assert k >= 1, "test is vacuous"
        dep = dep.with_weight_exp(-k)
        assert dep.weight_exp == -k and np.array_equal(dep.stored_w0 << k, dep.w0)
    spec = dataclasses.replace(dep.rule, **rule) if rule else None
    x, batch = _episodes(3)
    lava = run_lava(dep, x, batch, spec)            # the three episodes in one Lava graph
    length = -(-dep.stream_length(batch.order.shape[1]) // T) * T
    np.testing.assert_array_equal(lava.step_offsets, [0, length, 2 * length])
    assert lava.graphs_built == 1
    feats = dep.frozen_features(x)
    fast = run_fast(dep, feats, batch, spec, step_offsets=lava.step_offsets)
    assert fast.spikes.sum() > 0 and (fast.weights != fast.initial).any(), "test is vacuous"
    # one graph, not three: the later episodes saw the engine's random streams run on
    fresh = run_fast(dep, feats, batch, spec)
    np.testing.assert_array_equal(fresh.weights[0], lava.weights[0])
    assert (fresh.weights[1:] != lava.weights[1:]).any()
    np.testing.assert_array_equal(fast.spikes, lava.spikes)
    np.testing.assert_array_equal(fast.weights, lava.weights)
    np.testing.assert_array_equal(fast.predictions, lava.predictions)


def test_learning_only_in_support_windows(tmp_path):
    dep = _bundle(tmp_path, "b", name="small", hidden=[24])
    x, batch = _episodes(3)
    lab = step_labels(dep, batch)
    # labels exactly in each support sample's learning window (the readout window), nowhere else
    assert dep.label_window == (BURN, T)
    expect = np.full_like(lab, -1)
    for s in range(batch.n_support):
        a = dep.sample_start(s)
        expect[:, a + BURN:a + T] = batch.labels[:, s:s + 1]
    np.testing.assert_array_equal(lab, expect)
    # the plastic windows start where the onchip processes reset (k % T == 0)
    assert (dep.prefix + dep.depth) % T == 0
    feats = dep.frozen_features(x)
    no_support = EpisodeBatch(batch.order, batch.labels, 0)
    r = run_fast(dep, feats, no_support)
    assert (r.weights == r.initial).all()      # no label, no error, no update


def test_features_are_per_sample(tmp_path):
    """Frozen features of a sample do not depend on which other samples are computed with it."""
    dep = _bundle(tmp_path, "b", name="small", hidden=[32, 16])
    x, _ = _episodes(1)
    all_f = dep.frozen_features(x, batch=5)
    one = dep.frozen_features(x[7:8])
    np.testing.assert_array_equal(all_f[7:8], one)


def test_bad_burn_in_is_a_clear_error(tmp_path):
    m = build_model(ModelConfig(time_steps=T, burn_in=BURN, hidden=[16], zero_head=False), seed=1)
    m(torch.zeros(1, 2, 16, 32, T))
    export_bundle(m, tmp_path / "b", input_shape=(2, 16, 32), time_steps=T, burn_in=1)
    with pytest.raises(NeuromamlError, match=r"burn_in.*pipeline depth 2"):
        DeployedNet.load(tmp_path / "b")


def test_frames_of_wrong_shape_are_refused(tmp_path):
    dep = _bundle(tmp_path, "b", name="small", hidden=[16])
    with pytest.raises(NeuromamlError, match=r"\(C,H,W\) = \(2, 30, 80\).*expects \(2, 16, 32\)"):
        dep.check_frames(np.zeros((1, 2, 30, 80, T)), "asl.h5")


@pytest.mark.lava
def test_lava_graph_is_stopped_when_an_episode_fails(tmp_path, monkeypatch):
    """An error between episodes (here: resetting the plastic layer) stops the Lava runtime:
    no worker process is left behind, and the graph refuses to run again."""
    import multiprocessing

    from neuromaml.emulator import episodes

    dep = _bundle(tmp_path, "b", name="small", hidden=[16])
    x, batch = _episodes(2)

    def broken(self):
        raise RuntimeError("injected failure while resetting the plastic layer")

    monkeypatch.setattr(episodes.LavaEpisodes, "_reset", broken)
    graph = episodes.LavaEpisodes(dep, x, batch)
    graph.run_next()                                   # the first episode builds and runs the graph
    assert multiprocessing.active_children(), "the Lava runtime should be running between episodes"
    with pytest.raises(NeuromamlError, match="injected failure"):
        graph.run_next()
    assert not multiprocessing.active_children()       # runtime stopped, workers joined
    with pytest.raises(NeuromamlError, match="was stopped"):
        graph.run_next()
