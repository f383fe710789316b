"""The fast CUBA forward is bit-exact to slayer's blocks and has slayer's gradients."""
import dataclasses

import h5py
import pytest
import torch

from neuromaml.meta.models import (ModelConfig, S_SCALE, _sum_pool, build_model, cuba_exact, cuba_exact_torch,
                                   leak_kernel)


def _x(n, shape, t, seed=0, rate=0.15):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, t, generator=g) < rate).float()


@pytest.mark.parametrize("name,burn_in", [("small", 10), ("small_cnn", 10), ("cnn", 10), ("lava_mlp", 10),
                                          ("paper_cnn", 10), ("small", 0), ("paper_cnn", 0)])
def test_every_layer_bit_exact_to_slayer(name, burn_in):
    # burn_in 0 takes the path where the exact synaptic input is the windowed one
    cfg = ModelConfig(name=name, time_steps=30, burn_in=burn_in, zero_head=False)
    model = build_model(cfg, seed=1)
    x = _x(2, cfg.input_shape, 30)
    params = dict(model.named_parameters())
    ref = x
    total = 0
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            ref = block(ref)
            full, win = model.run(params, x, 0, i + 1)
            assert torch.equal(full, ref), f"block {i}"
            assert torch.equal(win, ref[..., cfg.burn_in:]), f"block {i} window"
            total += ref.sum().item()
    assert total > 0  # something spiked
    out, pre = model(x, return_pre=True)
    assert out.shape == (2, cfg.n_way, 30)
    assert pre.shape[0] == 2 and pre.shape[-1] == 30
    assert torch.equal(out, model.slayer_forward(x))


def test_counts_in_window_and_readout():
    cfg = ModelConfig(name="small", time_steps=20, burn_in=5, logit_scale=0.5)
    m = build_model(cfg, seed=0)
    out = torch.zeros(1, 5, 20)
    out[0, 2, :5] = 1  # burn-in spikes do not count
    out[0, 3, 5:8] = 1
    assert m.counts(out).tolist() == [[0, 0, 0, 3, 0]]
    assert m.logits(out)[0, 3].item() == 1.5


@pytest.mark.parametrize("name", ["small", "small_cnn", "cnn", "paper_cnn"])
def test_gradients_equal_slayer_with_its_surrogate(name):
    # slayer's own surrogate: exponential, tau = 100 * threshold, scale 0.1; no burn-in
    cfg = ModelConfig(name=name, time_steps=25, burn_in=0, surrogate="exponential",
                      surrogate_scale=0.1, surrogate_width=125.0, zero_head=False)
    m = build_model(cfg, seed=2)
    x = _x(2, cfg.input_shape, 25, seed=3, rate=0.3)
    p = list(m.meta_params().values())
    c = torch.arange(cfg.n_way, dtype=torch.float32)
    ga = torch.autograd.grad((m.slayer_forward(x).sum(-1) * c).sum(), p)
    gb = torch.autograd.grad((m(x).sum(-1) * c).sum(), p)
    for a, b in zip(ga, gb):
        assert a.abs().max() > 0
        assert (a - b).norm() <= 1e-4 * a.norm()


def test_leak_kernel_matches_recurrence():
    d_i, d_v, n = 1024, 123, 12
    z = torch.randn(3, n, dtype=torch.float64)
    h = leak_kernel(n, d_i, d_v, torch.float64)
    cur = torch.zeros(3, dtype=torch.float64); vol = torch.zeros(3, dtype=torch.float64)
    ref = []
    for t in range(n):
        cur = cur * (1 - d_i / S_SCALE) + z[:, t]
        vol = vol * (1 - d_v / S_SCALE) + cur
        ref.append(vol)
    assert torch.allclose(z @ h.T, torch.stack(ref, -1))


def test_cuba_exact_golden_trace():
    # constant input 0.5: current 2048 per step in 1/4096, decay 1024 (0.25), no voltage leak
    z = torch.full((1, 6), 0.5)
    v, s = cuba_exact(z, 1024, 0, int(1.25 * S_SCALE))
    # i: 2048, 3584, 4736, 5600, 6248, 6734; v resets to 0 after each step with v > 5120
    assert (v * S_SCALE).long().tolist() == [[2048, 5632, 4736, 10336, 6248, 6734]]
    assert s.tolist() == [[0, 1, 0, 1, 1, 1]]


@pytest.mark.parametrize("d_i,d_v,theta,scale", [(1024, 128, 5120, 1.0), (0, 0, 64, 3.0), (4096, 4095, 10, 0.5),
                                                 (17, 4000, 77, 3000.0)])
def test_compiled_cuba_kernel_bit_exact_to_torch_reference(d_i, d_v, theta, scale):
    # the numba kernel against the tensor-op recurrence, bit for bit: negative and
    # large inputs (the rshift0 rounding toward zero, int64 -> float32 rounding of v)
    g = torch.Generator().manual_seed(d_i + d_v)
    z = (torch.randn(3, 7, 11, 40, generator=g) * scale).float()
    z[0, 0] = torch.round(z[0, 0] * 64) / 64  # 8-bit-weight-like values too
    v_ref, s_ref = cuba_exact_torch(z, d_i, d_v, theta)
    v, s = cuba_exact(z, d_i, d_v, theta)
    assert s_ref.sum() > 0 and (s_ref == 0).sum() > 0
    assert torch.equal(v, v_ref) and torch.equal(s, s_ref)
    # non-contiguous input takes the same path
    v2, s2 = cuba_exact(z.transpose(0, 1), d_i, d_v, theta)
    assert torch.equal(v2, v_ref.transpose(0, 1)) and torch.equal(s2, s_ref.transpose(0, 1))


@pytest.mark.parametrize("h,w", [(16, 32), (5, 7), (9, 8)])
def test_sum_pool_equals_slayer_pool(h, w):
    from lava.lib.dl import slayer

    blk = slayer.block.cuba.Pool({"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03}, 2,
                                 weight_scale=1.5)
    x = (torch.rand(3, 4, h, w, 10, generator=torch.Generator().manual_seed(h)) < 0.4).float()
    fast = _sum_pool(blk.synapse, x)
    assert fast is not None and torch.equal(fast, blk.synapse(x))
    # a pool of another form is left to slayer
    blk3 = slayer.block.cuba.Pool({"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03}, 3, stride=1)
    assert _sum_pool(blk3.synapse, x) is None


def test_export_hdf5(tmp_path):
    m = build_model(ModelConfig(name="small", hidden=[16]), seed=0)
    path = tmp_path / "net.net"
    m.export_hdf5(path)
    with h5py.File(path) as h:
        assert sorted(h["layer"].keys()) == ["0", "1", "2"]
        assert h["layer/1/type"][()] in (b"dense", "dense")


def test_same_seed_same_weights_and_bad_name():
    a = build_model(ModelConfig(), seed=5).meta_params()
    b = build_model(ModelConfig(), seed=5).meta_params()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError):
        build_model(ModelConfig(name="resnet"))


def test_zero_head_starts_silent():
    m = build_model(ModelConfig(name="small", hidden=[8]), seed=0)
    assert m.blocks[-1].synapse.weight.abs().max() == 0
    assert m(torch.ones(1, 2, 16, 32, 100)).sum() == 0


def test_model_registry_builds_every_name_and_honours_hidden():
    from neuromaml.meta.config import from_dict
    from neuromaml.meta.models import MODEL_NAMES, MODELS, SPIKING, register_model

    assert MODEL_NAMES == ("small", "small_cnn", "cnn", "paper_cnn", "lava_mlp", "ann_cnn")
    assert "ann_cnn" not in SPIKING and set(SPIKING) < set(MODEL_NAMES)
    for name in MODEL_NAMES:
        m = build_model(ModelConfig(name=name, time_steps=4, burn_in=0), seed=0)
        assert (type(m).__name__ == "SNN") == MODELS[name].spiking
    # lava_mlp's own default width, and an explicit width taken as given (it was once ignored)
    widths = lambda cfg: [b.synapse.weight.shape[0] for b in build_model(cfg).blocks[1:]]  # noqa: E731
    assert widths(ModelConfig(name="lava_mlp")) == [512, 512, 5]
    assert widths(ModelConfig(name="lava_mlp", hidden=[128])) == [128, 5]
    assert from_dict({"model": {"name": "lava_mlp"}}).model.hidden == [512, 512]
    assert from_dict({"model": {"name": "lava_mlp", "hidden": [64]}}).model.hidden == [64]
    assert from_dict({"model": {"name": "small"}}).model.hidden == [128]
    with pytest.raises(ValueError, match="unknown model name 'nope'"):
        build_model(ModelConfig(name="nope"))
    with pytest.raises(ValueError, match="registered twice"):
        register_model("small")(lambda cfg: [])


@pytest.mark.parametrize("name", ["small", "small_cnn"])
def test_activity_init_reaches_the_target_rate(name, tiny_metadataset):
    """meta.init: every block but the last (sum pools included) spikes at the target rate on the
    init samples after scaling; the zero head stays zero; samples from other classes stay near."""
    from neuromaml.meta.init import activity_init, init_samples
    from neuromaml.meta.metadataset import MetaDataset

    ds = MetaDataset(tiny_metadataset)
    x = init_samples(ds)
    cfg = ModelConfig(name=name, input_shape=tuple(x.shape[1:4]), time_steps=x.shape[-1], hidden=[64],
                      conv=[[8, 5], [16, 3]], init_rate=0.25)
    m = build_model(cfg, seed=0)
    before = {n: p.clone() for n, p in m.named_parameters()}
    rec = activity_init(m, ds)
    scaled = [b for b in m.blocks if hasattr(b, "neuron")][:-1]
    assert [r["block"] for r in rec] == [i for i, b in enumerate(m.blocks) if any(b is s for s in scaled)]
    assert all(r["reached"] and abs(r["rate_after"] - 0.25) < 0.03 for r in rec), rec
    assert any(abs(r["rate_before"] - 0.25) > 0.05 for r in rec)          # the init did something
    head = f"blocks.{len(m.blocks) - 1}.synapse.weight"
    assert torch.equal(dict(m.named_parameters())[head], before[head]) and not before[head].any()
    for r in rec:                                                           # one factor per block
        w0, w1 = before[f"blocks.{r['block']}.synapse.weight"], dict(m.named_parameters())[f"blocks.{r['block']}.synapse.weight"]
        torch.testing.assert_close(w1, w0 * r["scale"])
    # off by default: nothing happens
    m2 = build_model(dataclasses.replace(cfg, init_rate=0.0), seed=0)
    assert activity_init(m2, ds) is None
