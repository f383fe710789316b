"""Data-driven initialisation of a spiking network to a target activity (``model.init_rate``).

The authors' model code (kennetms/snn_maml, FIELD-NOTES) initialises each layer from data
(LSUV-style) so that every layer spikes at 10-50% of steps, none dies, and the inner- and
outer-loop gradients neither vanish nor explode. With slayer's fixed ``weight_scale`` and the
paper CNN's sum pools (weight 1.5 above the threshold 1.25: any input spike makes a pool neuron
fire) the paper CNN starts with most pool neurons spiking on more than half of the steps and
a third of the conv neurons silent (BENCHMARKS.md, "The paper CNN at initialisation").

``init_to_activity`` walks the blocks in order and scales each one's synapse weights (conv,
dense and the fixed sum-pool weights) by a single factor, found by bisection on its log, so
that the block's mean spike rate on a batch of meta-train samples is ``target``; the blocks
after it then see the re-scaled activity. The final block is left as the model config made it
(zero with ``zero_head``: the inner loop writes it). Surrogate-gradient flow needs neurons that
are neither silent nor saturated; the rate is the quantity the chip also pays for (SynOps).
"""
from __future__ import annotations

import torch


def _weight(block):
    syn = getattr(block, "synapse", None)
    return getattr(syn, "weight", None)


@torch.no_grad()
def init_to_activity(model, x: torch.Tensor, target: float, iters: int = 10,
                     span: float = 8.0) -> list[dict]:
    """Scale each spiking block but the last so its mean spike rate on ``x`` (N, C, H, W, T,
    binary spikes) is ``target`` (spikes per neuron per step). Returns one record per block:
    index, kind, rate before, rate after, scale. The factor is searched in 2^[-span, span];
    a block whose rate cannot reach the target there keeps the nearest end (the record says
    so: ``reached`` False)."""
    if not 0 < target < 1:
        raise ValueError(f"init target rate {target!r} must be in (0, 1)")
    params = dict(model.named_parameters())
    blocks = list(model.blocks)
    last = max(i for i, b in enumerate(blocks) if hasattr(b, "neuron"))
    h, out = x, []
    for i, block in enumerate(blocks):
        w = _weight(block)

        def rate(scale: float) -> tuple[float, torch.Tensor]:
            if w is not None:
                w.mul_(scale)
            try:
                s, _ = model.run(params, h, i, i + 1, burn_in=0)
            finally:
                if w is not None:
                    w.div_(scale)
            return float(s.float().mean()), s

        if not hasattr(block, "neuron") or w is None or i == last:
            h, _ = model.run(params, h, i, i + 1, burn_in=0)
            continue
        before, _ = rate(1.0)
        lo, hi = -span, span
        r_lo, _ = rate(2.0 ** lo)
        r_hi, _ = rate(2.0 ** hi)
        if r_lo >= target:
            best = lo
        elif r_hi <= target:
            best = hi
        else:
            for _ in range(iters):
                mid = (lo + hi) / 2
                r, _ = rate(2.0 ** mid)
                lo, hi = (mid, hi) if r < target else (lo, mid)
            best = hi                       # the smallest scale found with rate >= target
        w.mul_(2.0 ** best)
        after, h = rate(1.0)
        # reached: the rate measured after scaling is within a quarter of the target (the bisection's
        # end can sit on a step of the weights' 8-bit grid, or at the end of the search range)
        out.append({"block": i, "kind": type(block).__name__, "rate_before": before, "rate_after": after,
                    "scale": 2.0 ** best, "reached": abs(after - target) <= 0.25 * target})
    return out


def init_samples(ds, n_classes: int = 8, per_class: int = 2):
    """The batch ``init_to_activity`` measures on: the first ``per_class`` recordings of the first
    ``n_classes`` meta-train classes (deterministic; never val or test), binary spikes."""
    cls = list(ds.splits["train"])[:n_classes]
    idx = [int(j) for c in cls for j in ds.indices_of(c)[:per_class]]
    return ds.frames(idx, binary=True)


def activity_init(model, ds, device="cpu") -> list[dict] | None:
    """``init_to_activity`` at the model config's ``init_rate`` on ``init_samples(ds)``; None (nothing
    done) when ``init_rate`` is 0 or the model is not spiking."""
    from .models import SNN

    rate = float(getattr(model.cfg, "init_rate", 0.0) or 0.0)
    if not rate or not isinstance(model, SNN):
        return None
    return init_to_activity(model, init_samples(ds).to(device), rate)
