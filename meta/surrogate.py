"""Twice-differentiable surrogate spike functions.

A spike is the Heaviside step ``s = H(x)`` of the distance to threshold
``x = v - theta`` (voltage units of the neuron). Its true derivative is zero
almost everywhere, so training replaces it by a smooth *surrogate derivative*
``sigma'(x)``. MAML differentiates the inner-loop gradient once more, so the
surrogate path must itself be differentiable: here the spike is written as

    s = H(x) + (P(x) - stopgrad(P(x)))

where ``P`` is a primitive of the surrogate derivative (``P' = sigma'``). The
value is exactly ``H(x)`` (``P - P`` is an exact float zero), the first
derivative is ``sigma'(x)`` and the second ``sigma''(x)``, all by ordinary
autograd: no custom ``autograd.Function`` whose backward would not be
differentiable (slayer's ``Spike`` is such a one).

Kinds
-----
``fast_sigmoid`` (Stewart & Neftci 2022, Zenke & Ganguli's SuperSpike)::

    sigma'(x) = scale / (beta |x| + 1)^2          P(x) = scale * x / (1 + beta |x|)

``exponential`` (slayer's CUBA neuron)::

    sigma'(x) = scale / (2 tau) * exp(-|x| / tau)  P(x) = scale/2 * sign(x) * (1 - exp(-|x|/tau))

slayer uses ``tau = 100 * tau_grad * threshold`` and ``scale = 0.1 * scale_grad``
(``slayer_params``), measured in the neuron's voltage units.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("fast_sigmoid", "exponential")


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative: ``kind`` in KINDS, ``scale`` (peak height for
    fast_sigmoid, area for exponential), ``width``: 1/beta (fast_sigmoid) or
    tau (exponential), in voltage units."""

    kind: str = "fast_sigmoid"
    scale: float = 1.0
    width: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"surrogate kind {self.kind!r} not in {KINDS}")
        if not self.width > 0:
            raise ValueError(f"surrogate width must be > 0, got {self.width}")

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return primitive(x, self.kind, self.scale, self.width)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return derivative(x, self.kind, self.scale, self.width)


def primitive(x: torch.Tensor, kind: str, scale: float, width: float) -> torch.Tensor:
    """P(x), a smooth primitive of the surrogate derivative (P(0) = 0)."""
    if kind == "fast_sigmoid":
        beta = 1.0 / width
        return scale * x / (1.0 + beta * x.abs())
    if kind == "exponential":
        # written with where (not sign/abs) so that P'(0) = scale / (2 width), as slayer
        pos = x >= 0
        return 0.5 * scale * torch.where(pos, 1.0 - torch.exp(-x.clamp(min=0) / width),
                                         torch.exp(x.clamp(max=0) / width) - 1.0)
    raise ValueError(f"surrogate kind {kind!r} not in {KINDS}")


def derivative(x: torch.Tensor, kind: str, scale: float, width: float) -> torch.Tensor:
    """sigma'(x), the closed form (for tests and histograms)."""
    if kind == "fast_sigmoid":
        return scale / (x.abs() / width + 1.0) ** 2
    if kind == "exponential":
        return scale / (2.0 * width) * torch.exp(-x.abs() / width)
    raise ValueError(f"surrogate kind {kind!r} not in {KINDS}")


def spike(x: torch.Tensor, surrogate: Surrogate, heaviside: torch.Tensor | None = None) -> torch.Tensor:
    """Spikes ``H(x)`` (1.0 where x > 0) with the surrogate's gradients.

    ``heaviside`` overrides the forward value (e.g. exact integer spikes of the
    fixed-point neuron, which may differ from ``x > 0`` by float rounding).
    """
    if heaviside is None:
        heaviside = (x > 0).to(x.dtype)
    p = surrogate.primitive(x)
    return heaviside.detach() + (p - p.detach())


def slayer_params(threshold: float, tau_grad: float = 1.0, scale_grad: float = 1.0) -> Surrogate:
    """The exponential surrogate that ``slayer.neuron.cuba.Neuron`` uses."""
    return Surrogate("exponential", scale=0.1 * scale_grad, width=100.0 * tau_grad * threshold)
