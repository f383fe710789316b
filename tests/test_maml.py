"""MAML meta-gradients: second order proven against finite differences."""
from types import SimpleNamespace

import pytest
import torch

from neuromaml.meta.maml import (InnerConfig, InnerLR, adapt, adapted_names, meta_gradient,
                                 task_forward, threshold_update)
from neuromaml.meta.models import ModelConfig, build_model


class SmoothNet:
    """A smooth stand-in with the SNN's interface (run/param_names/blocks/cfg):
    layer l maps (N, I, T) -> (N, O, T) by tanh (hidden) or sigmoid (output)."""

    def __init__(self, sizes=(3, 4, 3), seed=0):
        g = torch.Generator().manual_seed(seed)
        self.cfg = SimpleNamespace(burn_in=0, logit_scale=0.7, n_way=sizes[-1])
        self.blocks = [None] * (len(sizes) - 1)
        self.p = {f"blocks.{i}.w": (torch.randn(o, i_, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
                  for i, (i_, o) in enumerate(zip(sizes[:-1], sizes[1:]))}

    def param_names(self):
        return list(self.p)

    def block_of(self, name):
        return int(name.split(".")[1])

    def run(self, params, x, start=0, stop=None, x_win=None):
        stop = len(self.blocks) if stop is None else stop
        win = x if x_win is None else x_win
        for i in range(start, stop):
            z = torch.einsum("oi,nit->not", params[f"blocks.{i}.w"], win)
            win = torch.sigmoid(z) if i == len(self.blocks) - 1 else torch.tanh(z)
        return win.detach(), win


def _toy_task(seed=1, n_way=3, t=4):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(support_x=torch.randn(n_way, 3, t, generator=g, dtype=torch.float64),
                           support_y=torch.arange(n_way),
                           query_x=torch.randn(2 * n_way, 3, t, generator=g, dtype=torch.float64),
                           query_y=torch.arange(n_way).repeat(2))


def _meta_loss_value(net, flat, names, shapes, task, cfg):
    params, k = {}, 0
    for n, s in zip(names, shapes):
        m = int(torch.tensor(s).prod())
        params[n] = flat[k:k + m].reshape(s).clone().requires_grad_()
        k += m
    loss, _ = task_forward(net, params, task, cfg)
    return loss.item()


@pytest.mark.parametrize("frozen,steps", [(-1, 1), (0, 2)])
def test_second_order_meta_gradient_equals_finite_differences(frozen, steps):
    net, task = SmoothNet(), _toy_task()
    cfg = InnerConfig(steps=steps, lr=0.9, frozen=frozen)
    loss, _ = task_forward(net, net.p, task, cfg)
    grads = torch.autograd.grad(loss, list(net.p.values()))
    g = torch.cat([x.flatten() for x in grads])
    names, shapes = list(net.p), [v.shape for v in net.p.values()]
    flat = torch.cat([v.detach().flatten() for v in net.p.values()])
    eps, fd = 1e-6, torch.zeros_like(flat)
    for i in range(flat.numel()):
        d = torch.zeros_like(flat); d[i] = eps
        fd[i] = (_meta_loss_value(net, flat + d, names, shapes, task, cfg)
                 - _meta_loss_value(net, flat - d, names, shapes, task, cfg)) / (2 * eps)
    assert torch.allclose(g, fd, rtol=1e-5, atol=1e-8)
    # first order is a different (biased) gradient
    fo, _ = task_forward(net, net.p, task, InnerConfig(steps=steps, lr=0.9, frozen=frozen, first_order=True))
    gfo = torch.cat([x.flatten() for x in torch.autograd.grad(fo, list(net.p.values()))])
    assert (gfo - fd).abs().max() > 1e-4


def test_learned_inner_lr_gets_a_meta_gradient():
    net, task = SmoothNet(), _toy_task()
    cfg = InnerConfig(steps=1, lr=0.5, frozen=0, learn_lr=True)
    lrs = InnerLR(adapted_names(net, cfg), 0.5, True).double()
    loss, _ = task_forward(net, net.p, task, cfg, lrs)
    (g,) = torch.autograd.grad(loss, [lrs.log_lr])
    eps = 1e-6
    with torch.no_grad():
        lrs.log_lr[0] += eps
    up = task_forward(net, net.p, task, cfg, lrs)[0].item()
    with torch.no_grad():
        lrs.log_lr[0] -= 2 * eps
    down = task_forward(net, net.p, task, cfg, lrs)[0].item()
    assert g[0].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def test_threshold_zeroes_small_updates():
    u = torch.tensor([0.001, -0.04, 0.5, -1.0, 0.06])
    out = threshold_update(u, 0.05)  # keep |u| > 0.05 * 1.0
    assert out.tolist() == [0.0, 0.0, 0.5, -1.0, pytest.approx(0.06)]
    assert torch.equal(threshold_update(u, 0.0), u)


def test_thresholded_inner_loop_applies_fewer_updates():
    net, task = SmoothNet(), _toy_task()
    rec_all, rec_thr = [], []
    adapt(net, net.p, task.support_x, task.support_y, InnerConfig(lr=0.5, frozen=0), record=rec_all)
    adapt(net, net.p, task.support_x, task.support_y, InnerConfig(lr=0.5, frozen=0, threshold=0.3), record=rec_thr)
    nz = lambda rec: sum(int((u != 0).sum()) for u in rec[0].values())
    assert nz(rec_thr) < nz(rec_all)
    for n, u in rec_thr[0].items():
        kept = u != 0
        assert torch.equal(u[kept], rec_all[0][n][kept])
        assert (u[kept].abs() > 0.3 * rec_all[0][n].abs().max()).all()


def test_frozen_layers_do_not_change():
    net, task = SmoothNet(), _toy_task()
    fast = adapt(net, net.p, task.support_x, task.support_y, InnerConfig(lr=0.5, frozen=-1))
    assert fast["blocks.0.w"] is net.p["blocks.0.w"]
    assert not torch.equal(fast["blocks.1.w"], net.p["blocks.1.w"])


def _snn_task(cfg, n_way=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(n_way, *cfg.input_shape, 1, generator=g) * 0.3
    def draw(k):
        x = (torch.rand(n_way * k, *cfg.input_shape, cfg.time_steps, generator=g)
             < protos.repeat_interleave(k, 0)).float()
        return x, torch.arange(n_way).repeat_interleave(k)
    sx, sy = draw(1)
    qx, qy = draw(2)
    return SimpleNamespace(support_x=sx, support_y=sy, query_x=qx, query_y=qy)


@pytest.mark.parametrize("frozen", [-1, 0])
def test_snn_second_and_first_order_differ(frozen):
    cfg = ModelConfig(name="small", n_way=3, input_shape=(2, 4, 4), hidden=[16], time_steps=20, burn_in=8,
                      weight_scale=4.0, surrogate_scale=0.1, zero_head=False)
    model = build_model(cfg, seed=0)
    task = _snn_task(cfg)
    params = model.meta_params()
    out = {}
    for order in ("second", "first"):
        icfg = InnerConfig(lr=1.0, frozen=frozen, first_order=order == "first")
        loss, _ = task_forward(model, params, task, icfg)
        out[order] = torch.autograd.grad(loss, list(params.values()))
    for a, b in zip(out["second"], out["first"]):
        assert torch.isfinite(a).all()
    diff = max((a - b).abs().max().item() for a, b in zip(out["second"], out["first"]))
    assert diff > 1e-6 * max(a.abs().max().item() for a in out["second"])


def test_snn_meta_gradient_accumulates_mean_over_tasks():
    cfg = ModelConfig(name="small", n_way=3, input_shape=(2, 4, 4), hidden=[16], time_steps=20, burn_in=8,
                      weight_scale=4.0, surrogate_scale=0.1, zero_head=False)
    model = build_model(cfg, seed=0)
    params = model.meta_params()
    tasks = [_snn_task(cfg, seed=s) for s in (1, 2)]
    icfg = InnerConfig(lr=1.0)
    meta_gradient(model, params, tasks, icfg)
    acc = [p.grad.clone() for p in params.values()]
    ref = [torch.zeros_like(p) for p in params.values()]
    for t in tasks:
        loss, _ = task_forward(model, params, t, icfg)
        for r, g in zip(ref, torch.autograd.grad(loss, list(params.values()))):
            r += g / 2
    for a, r in zip(acc, ref):
        assert torch.allclose(a, r, atol=1e-7)


def test_three_factor_rule_needs_final_layer_only():
    net, task = SmoothNet(), _toy_task()
    with pytest.raises((ValueError, ImportError)):
        adapt(net, net.p, task.support_x, task.support_y, InnerConfig(frozen=0, rule="three_factor"))


def test_three_factor_inner_rule_is_differentiable():
    pytest.importorskip("neuromaml.onchip.torch_rule")
    cfg = ModelConfig(name="small", n_way=3, input_shape=(2, 4, 4), hidden=[16], time_steps=20, burn_in=8,
                      weight_scale=4.0, surrogate_scale=0.1, zero_head=False)
    model = build_model(cfg, seed=0)
    task = _snn_task(cfg)
    params = model.meta_params()
    icfg = InnerConfig(frozen=-1, rule="three_factor")
    rec = []
    fast = adapt(model, params, task.support_x, task.support_y, icfg, record=rec)
    last = model.param_names()[-1]
    assert not torch.equal(fast[last], params[last])
    loss, _ = task_forward(model, params, task, icfg)
    grads = torch.autograd.grad(loss, list(params.values()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert grads[-1].abs().max() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where one is at hand)")
@pytest.mark.parametrize("name", ["small", "cnn"])
def test_second_order_on_gpu_takes_a_twice_differentiable_path(name):
    # slayer's CUDA neuron kernels have no double backward; our forward does not use them
    # (exact recurrence in tensor ops, gradients through the linear filter): the GPU's
    # second-order meta-gradient equals the CPU's and differs from first order
    cfg = ModelConfig(name=name, n_way=3, input_shape=(2, 8, 8), hidden=[16], conv=[[4, 3]], time_steps=20,
                      burn_in=8, weight_scale=4.0, surrogate_scale=0.1, zero_head=False)
    task = _snn_task(cfg)
    grads = {}
    # cuDNN convolutions default to TF32 (10-bit mantissa): the conv net's surrogate gradients
    # then differ from the CPU's by ~1e-3 (seen on an H100); compare in full float32
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        for dev in ("cpu", "cuda"):
            model = build_model(cfg, seed=0).to(dev)
            t = SimpleNamespace(**{k: v.to(dev) for k, v in vars(task).items()})
            params = model.meta_params()
            for order in ("second", "first"):
                icfg = InnerConfig(lr=1.0, frozen=0, first_order=order == "first")
                loss, _ = task_forward(model, params, t, icfg)
                grads[dev, order] = [g.cpu() for g in torch.autograd.grad(loss, list(params.values()))]
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    for a, b in zip(grads["cpu", "second"], grads["cuda", "second"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * a.abs().max().item())
    diff = max((a - b).abs().max().item() for a, b in zip(grads["cuda", "second"], grads["cuda", "first"]))
    assert diff > 1e-6 * max(a.abs().max().item() for a in grads["cuda", "second"])
