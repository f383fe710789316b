"""Face 2 (torch twin) == Face 3 in the forward pass; differentiable (2nd order)."""
import dataclasses
import numpy as np
import pytest
import torch

from neuromaml.onchip.fixed_rule import run_support
from neuromaml.onchip.neuron import CubaParams, CubaState, cuba_init_int, cuba_step, cuba_step_int
from neuromaml.onchip.rule import RuleError, RuleSpec
from neuromaml.onchip.torch_rule import adapt_final_layer, sequential_support, update

NRN = CubaParams(du=800, dv=300, vth=60)
SPECS = [RuleSpec(eta_exp=-6, rng_seed=3),
         RuleSpec(eta_exp=-3, x1_tau=5, error_threshold=10, factor_threshold=4,
                  surrogate="none", rng_seed=9),
         RuleSpec(eta_exp=-9, error_bits=5, softmax_gain_exp=2, surrogate_beta=1.0),
         RuleSpec(eta_exp=-7, eq6_threshold=3, rng_seed=1)]


def _data(seed, B=8, T=40, I=24, O=5):
    rng = np.random.default_rng(seed)
    return ((rng.random((B, T, I)) < 0.3).astype(np.int64),
            rng.integers(-80, 80, (O, I)), rng.integers(0, O, B))


@pytest.mark.parametrize("i", range(len(SPECS)))
def test_torch_forward_equals_fixed_float64(i):
    spec = SPECS[i]
    pre, w, lab = _data(i)
    r = run_support(spec, w, pre, lab, NRN, weight_exp=-1 if i == 2 else 0)
    scale = 4.0                                   # slayer units = Lava units / 4
    nw, sp = adapt_final_layer(spec, torch.tensor(w / scale), torch.tensor(pre),
                               torch.tensor(lab), NRN, weight_scale=scale,
                               weight_exp=-1 if i == 2 else 0, return_spikes=True)
    assert np.array_equal(nw.numpy() * scale, r.weights)
    assert np.array_equal(sp.numpy(), r.spikes)
    assert (r.weights != r.initial).mean() > 0.1


def test_torch_float32_close_and_sequential_support():
    spec = SPECS[0]
    pre, w, _ = _data(5, B=3, T=20)
    labels = np.array([0, 2, 4])
    seq_pre, seq_lab = sequential_support(torch.tensor(pre), torch.tensor(labels))
    r = run_support(spec, w, seq_pre.numpy()[None], seq_lab.numpy()[None], NRN,
                    reset_interval=20)
    nw = adapt_final_layer(spec, torch.tensor(w, dtype=torch.float32), seq_pre.float(),
                           seq_lab, NRN, reset_interval=20)
    assert nw.shape == (5, 24)
    diff = np.abs(nw.numpy() - r.weights[0])
    assert diff.mean() < 0.05 and diff.max() <= 3


def test_cuba_step_torch_matches_int():
    rng = np.random.default_rng(0)
    a = rng.integers(-40, 60, (30, 6))
    st_i = cuba_init_int((6,))
    st_t = CubaState(torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64))
    for k in range(30):
        s_i, v_i, st_i = cuba_step_int(a[k], st_i, NRN)
        s_t, v_t, st_t = cuba_step(torch.tensor(a[k], dtype=torch.float64), st_t, NRN)
        assert np.array_equal(s_t.numpy(), s_i) and np.array_equal(v_t.numpy(), v_i)


def test_second_order_gradients_through_the_rule():
    torch.manual_seed(0)
    pre = (torch.rand(30, 16) < 0.3).double()
    w = (torch.randn(3, 16, dtype=torch.float64) * 30).requires_grad_()
    eta = torch.tensor(-6.0, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    th = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    nw = adapt_final_layer(RuleSpec(), w, pre, 1, NRN, eta_exp=eta, x1_tau=tau,
                           factor_threshold=th, surrogate_beta=beta)
    query = (torch.rand(30, 16) < 0.3).double().sum(0)
    loss = -torch.log_softmax(nw @ query / 1000.0, 0)[1]
    grads = torch.autograd.grad(loss, [w, eta, tau, th, beta], create_graph=True)
    assert all(float(g.abs().sum()) > 0 for g in grads)
    g_w = grads[0]
    (gg,) = torch.autograd.grad(g_w.pow(2).sum(), w)
    assert float(gg.abs().sum()) > 0           # a second derivative exists


def test_torch_bad_input():
    with pytest.raises(RuleError, match="nearest representable: 2"):
        adapt_final_layer(RuleSpec(), torch.zeros(3, 4), torch.zeros(5, 4), 3, NRN)
    with pytest.raises(RuleError, match="weight must be"):
        adapt_final_layer(RuleSpec(), torch.zeros(3, 5), torch.zeros(5, 4), 0, NRN)


def test_deterministic_mode_ignores_seed_stochastic_mode_uses_it():
    pre, w, lab = _data(7, B=2)
    args = (torch.tensor(w, dtype=torch.float64), torch.tensor(pre), torch.tensor(lab), NRN)
    d0 = adapt_final_layer(RuleSpec(rng_seed=0), *args, stochastic=False)
    d5 = adapt_final_layer(RuleSpec(rng_seed=5), *args, stochastic=False)
    s0 = adapt_final_layer(RuleSpec(rng_seed=0), *args)
    s5 = adapt_final_layer(RuleSpec(rng_seed=5), *args)
    assert torch.equal(d0, d5) and not torch.equal(s0, s5)


def test_update_is_sequential_support_with_slayer_units():
    torch.manual_seed(1)
    pre = (torch.rand(3, 15, 10) < 0.3).double()
    w = torch.randn(3, 10, dtype=torch.float64)       # slayer units (x 64 -> Lava units)
    nrn = CubaParams.from_slayer(1.25, 0.25, 0.03)
    assert (nrn.vth, nrn.du, nrn.dv, nrn.bias_exp) == (80, 1023, 123, 6)
    new = update(w, pre, torch.tensor([2, 0, 1]), n_way=3, spec=SPECS[0])
    seq = run_support(SPECS[0], np.rint(w.numpy() * 64), pre.reshape(1, 45, 10).numpy()
                      .astype(np.int64), np.repeat([2, 0, 1], 15)[None], nrn, reset_interval=15)
    assert np.array_equal(new.numpy() * 64, seq.weights[0])
    with pytest.raises(RuleError, match="n_way"):
        update(w, pre, torch.tensor([0, 1, 2]), n_way=5)


def test_label_window_limits_learning_to_its_steps():
    import torch

    from neuromaml.onchip.torch_rule import sequential_support

    pre = torch.ones(2, 6, 3)
    seq, lab = sequential_support(pre, torch.tensor([1, 0]), label_window=(4, 6))
    assert seq.shape == (12, 3)
    assert lab.tolist() == [-1, -1, -1, -1, 1, 1, -1, -1, -1, -1, 0, 0]
    _, full = sequential_support(pre, torch.tensor([1, 0]))
    assert full.tolist() == [1] * 6 + [0] * 6


def _random_case(seed):
    """A random rule, neuron, weights, input and labels within what the chip represents."""
    rng = np.random.default_rng(1000 + seed)
    error_bits = int(rng.integers(3, 9))
    spec = RuleSpec(eta_exp=int(rng.integers(-10, -2)), x1_impulse=int(rng.integers(1, 128)),
                    x1_tau=int(rng.integers(1, 40)), error_bits=error_bits,
                    error_threshold=int(rng.integers(0, min(4, 2 ** (error_bits - 1) - 1))), factor_threshold=int(rng.integers(0, 3)),
                    surrogate=str(rng.choice(["fast_sigmoid", "none"])),
                    surrogate_beta=float(rng.choice([0.5, 1.0, 4.0, 10.0])),
                    softmax_gain_exp=int(rng.integers(-3, 4)), rng_seed=int(rng.integers(0, 1000)),
                    eq6_threshold=int(rng.choice([0, 0, 2, 5])))
    nrn = CubaParams(du=int(rng.integers(-1, 4096)), dv=int(rng.integers(0, 4096)),
                     vth=int(rng.integers(5, 300)), bias=int(rng.integers(-20, 21)))
    B, T, I, O = int(rng.integers(1, 6)), int(rng.integers(5, 60)), int(rng.integers(1, 40)), int(rng.integers(2, 8))
    pre = (rng.random((B, T, I)) < rng.uniform(0.05, 0.6)).astype(np.int64)
    lab = rng.integers(-1, O, (B, T)) if rng.random() < 0.3 else rng.integers(0, O, B)
    w = rng.integers(-256, 256, (O, I))
    wexp, nbits = int(rng.choice([0, 0, -1, -2])), int(rng.choice([8, 8, 7, 6]))
    if rng.random() < 0.5:                 # the error normaliser (drawn last: earlier draws unchanged)
        d = int(rng.integers(1, 300))
        spec = dataclasses.replace(spec, input_norm_offset=d, input_norm_shift=int(rng.integers(0, d.bit_length() + 2)))
        if rng.random() < 0.5:             # its rate form
            spec = dataclasses.replace(spec, input_norm_steps=int(rng.integers(1, 20)))
    return spec, nrn, pre, w, lab, wexp, nbits


@pytest.mark.parametrize("seed", range(40))
def test_torch_forward_equals_fixed_on_random_specs(seed):
    """Faces 2 and 3 run the same kernels (onchip.rule with IntRuleOps / SteRuleOps): equal
    weights and spikes, bit for bit in float64, on random rules, neurons and inputs."""
    spec, nrn, pre, w, lab, wexp, nbits = _random_case(seed)
    r = run_support(spec, w, pre, lab, nrn, weight_exp=wexp, num_weight_bits=nbits)
    nw, sp = adapt_final_layer(spec, torch.tensor(w, dtype=torch.float64), torch.tensor(pre),
                               torch.tensor(lab), nrn, weight_scale=1.0, weight_exp=wexp,
                               num_weight_bits=nbits, return_spikes=True)
    np.testing.assert_array_equal(nw.numpy(), r.weights)
    np.testing.assert_array_equal(sp.numpy(), r.spikes)
