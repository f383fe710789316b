"""The surrogate spike function is exact forward and twice differentiable."""
import pytest
import torch

from neuromaml.meta.surrogate import KINDS, Surrogate, derivative, primitive, slayer_params, spike


@pytest.mark.parametrize("kind", KINDS)
def test_primitive_twice_differentiable(kind):
    x = (torch.rand(20, dtype=torch.float64) - 0.5) * 4 + 0.01  # avoid exactly 0
    x.requires_grad_(True)
    f = lambda t: primitive(t, kind, 0.7, 0.3)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("kind", KINDS)
def test_spike_value_and_derivatives(kind):
    sg = Surrogate(kind, scale=0.7, width=0.3)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)[torch.arange(41) != 20].requires_grad_(True)
    s = spike(x, sg)
    assert torch.equal(s.detach(), (x > 0).double())  # exact Heaviside forward
    (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    assert torch.allclose(g, derivative(x.detach(), kind, 0.7, 0.3))
    (gg,) = torch.autograd.grad(g.sum(), x)
    # second derivative of the closed form, by finite differences of sigma'
    eps = 1e-6
    fd = (derivative(x.detach() + eps, kind, 0.7, 0.3) - derivative(x.detach() - eps, kind, 0.7, 0.3)) / (2 * eps)
    assert torch.allclose(gg, fd, rtol=1e-5, atol=1e-7)
    assert gg.abs().max() > 0


def test_fast_sigmoid_is_paper_form():
    x = torch.tensor([0.0, 0.5, -1.0], dtype=torch.float64)
    beta = 4.0
    assert torch.allclose(derivative(x, "fast_sigmoid", 1.0, 1 / beta), 1 / (beta * x.abs() + 1) ** 2)


def test_heaviside_override_and_slayer_params():
    sg = slayer_params(1.25, tau_grad=1.0, scale_grad=2.0)
    assert sg.kind == "exponential" and sg.width == pytest.approx(125.0) and sg.scale == pytest.approx(0.2)
    x = torch.tensor([0.1, -0.1], requires_grad=True)
    s = spike(x, sg, heaviside=torch.tensor([0.0, 1.0]))
    assert s.tolist() == [0.0, 1.0]


def test_bad_surrogate():
    with pytest.raises(ValueError):
        Surrogate("box")
    with pytest.raises(ValueError):
        Surrogate("fast_sigmoid", width=0)


@pytest.mark.parametrize("kind", KINDS)
def test_derivative_at_exactly_threshold(kind):
    # voltages often sit exactly on the (quantized) threshold: the gradient there is the peak
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(spike(x, Surrogate(kind, 0.7, 0.3)).sum(), x)
    assert g.item() == pytest.approx(derivative(torch.zeros(1), kind, 0.7, 0.3).item())
