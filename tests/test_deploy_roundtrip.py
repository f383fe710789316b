"""Round trip for every layer type: slayer network -> .net -> netx/Lava -> same spikes.

One helper (``roundtrip``) reused for dense, conv, lowered pool (grouped conv,
block-sparse dense, channel-diagonal conv) and flatten layers, the MLP and the
paper CNN: slayer's forward, the fixed engine and Lava's ``fixed_pt`` models
must agree bit for bit on every layer.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromaml.deploy.quantize import export_network
from neuromaml.deploy.verify import verify_netx

P = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03}


def cuba():
    from lava.lib.dl import slayer

    return slayer.block.cuba


def roundtrip(tmp_path, blocks, input_shape, *, steps=12, samples=2, lava=True, rate=0.3, seed=0):
    """Export ``blocks`` and check slayer == fixed engine (== Lava) on every layer."""
    torch.manual_seed(seed)
    blocks = torch.nn.ModuleList(blocks) if isinstance(blocks, list) else blocks
    path = tmp_path / "network.net"
    summary = export_network(blocks, path, input_shape)
    rep = verify_netx(path, samples=samples, steps=steps, all_layers=True, seed=seed, rate=rate,
                      model=blocks, lava=lava)
    assert rep["slayer_vs_fixed"]["equal"], rep["slayer_vs_fixed"]
    if lava:
        assert rep["lava_vs_fixed"]["equal"], rep["lava_vs_fixed"]
    # the check must not be vacuous: something spiked in every layer
    spikes = [r["spikes_fixed"] for r in rep["slayer_vs_fixed"]["layers"]]
    assert all(s > 0 for s in spikes[:-1]), spikes
    return rep, summary


def _seeded(fn):
    torch.manual_seed(1)
    return fn()


def test_dense_and_flatten(tmp_path):
    c = cuba()
    blocks = _seeded(lambda: [c.Flatten(), c.Dense(P, 2 * 4 * 3, 16, weight_scale=3),
                              c.Dense(P, 16, 4, weight_scale=4)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 4, 3))
    assert summary["layers"] == ["input", "flatten", "dense", "dense"]


def test_conv_then_flatten_dense(tmp_path):
    c = cuba()
    blocks = _seeded(lambda: [c.Conv(P, 2, 6, 3, padding=1, weight_scale=3),
                              c.Conv(P, 6, 5, 3, stride=2, weight_scale=3),
                              c.Flatten(), c.Dense(P, 5 * 2 * 3, 3, weight_scale=4)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 6, 8))
    assert summary["layers"] == ["input", "conv", "conv", "flatten", "dense"]


def test_pool_lowered_to_grouped_conv(tmp_path):
    c = cuba()
    blocks = _seeded(lambda: [c.Conv(P, 2, 8, 3, padding=1, weight_scale=3),
                              c.Pool(P, 2, weight_scale=1.5)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 6, 4))
    assert summary["lowered"][0]["to"] == "conv groups=8"


def test_pool_128_channels_lowered_to_dense(tmp_path):
    """128 channels: a grouped conv would be all zeros in Lava (int8 groups); dense is exact."""
    c = cuba()
    blocks = _seeded(lambda: [c.Conv(P, 2, 128, 3, padding=1, weight_scale=3),
                              c.Pool(P, 2, weight_scale=1.5), c.Flatten(),
                              c.Dense(P, 128 * 2 * 1, 3, weight_scale=4)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 4, 2), steps=10, rate=0.5)
    assert summary["lowered"][0]["to"] == "flatten + block-sparse dense"
    assert summary["layers"] == ["input", "conv", "flatten", "dense", "dense"]


def test_pool_129_channels_before_conv_lowered_to_diagonal_conv(tmp_path):
    c = cuba()
    blocks = _seeded(lambda: [c.Conv(P, 2, 129, 1, weight_scale=3), c.Pool(P, 2, weight_scale=1.5),
                              c.Conv(P, 129, 2, 1, weight_scale=1)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 2, 2), steps=8, samples=1, rate=0.6)
    assert summary["lowered"][0]["to"].startswith("conv groups=1")


@pytest.mark.lava
def test_lava_mlp(tmp_path):
    from neuromaml.meta.models import ModelConfig, build_model

    cfg = ModelConfig(name="lava_mlp", n_way=5, input_shape=(2, 16, 32), weight_scale=3.0, zero_head=False)
    rep, summary = roundtrip(tmp_path, build_model(cfg, seed=0), cfg.input_shape, steps=12, samples=2)
    assert summary["layers"] == ["input", "flatten", "dense", "dense", "dense"]


@pytest.mark.lava
def test_paper_cnn_few_steps(tmp_path):
    from neuromaml.meta.models import ModelConfig, build_model

    cfg = ModelConfig(name="paper_cnn", n_way=5, input_shape=(2, 16, 32), weight_scale=3.0, zero_head=False)
    rep, summary = roundtrip(tmp_path, build_model(cfg, seed=0), cfg.input_shape, steps=7, samples=1,
                             rate=0.4)
    assert [r["to"] for r in summary["lowered"]][:3] == ["conv groups=32", "conv groups=64",
                                                         "flatten + block-sparse dense"]


def test_pool_on_odd_size_is_end_padded_dense(tmp_path):
    """slayer pads odd sizes at the end only: a symmetric netx conv cannot, the dense form can."""
    c = cuba()
    blocks = _seeded(lambda: [c.Conv(P, 2, 4, 3, padding=1, weight_scale=3), c.Pool(P, 2, weight_scale=1.5),
                              c.Flatten(), c.Dense(P, 4 * 3 * 2, 3, weight_scale=3)])
    rep, summary = roundtrip(tmp_path, blocks, (2, 5, 3), rate=0.4)
    assert summary["lowered"][0]["to"] == "flatten + block-sparse dense (end-padded)"


def test_slayer_differs_from_lava_only_past_24_bit_state(tmp_path):
    """slayer already puts the threshold on the mantissa grid (``int(theta * 64) / 64``) and spikes
    at ``v >= theta + eps``, i.e. ``v > vThMant << 6`` for integer states; what it does not model
    is Loihi's 24-bit current register, which wraps (Lava: ``u > 2**23`` -> ``u - 2**24``)."""
    c = cuba()
    blk = c.Dense(dict(P, threshold=1.3), 1024, 4)
    assert blk.neuron.threshold == int(1.3 * 64) / 64
    reps = {}
    for n_on in (64, 1024):          # 64 * 254 << 6 < 2**23 fits; 1024 * 254 << 6 > 2**23 wraps
        blocks = torch.nn.ModuleList([c.Flatten(), c.Dense(P, 1024, 4)])
        with torch.no_grad():
            blocks[1].synapse.weight.fill_(3.96)        # stored 254
        export_network(blocks, tmp_path / "n.net", (4, 16, 16))
        x = np.zeros((1, 6, 16, 16, 4), np.int8)
        x.reshape(1, 6, -1)[:, 0, :n_on] = 1            # one volley at step 0
        reps[n_on] = verify_netx(tmp_path / "n.net", x=x, model=blocks, lava=n_on == 1024)
    assert reps[64]["slayer_vs_fixed"]["equal"] and reps[64]["output_spikes"] > 0
    first = reps[1024]["slayer_vs_fixed"]["first_mismatch"]
    assert first is not None and first["step"] == 1 and first["a"] == 1 and first["b"] == 0
    assert reps[1024]["lava_vs_fixed"]["equal"]          # Lava itself wraps: the engine follows it
