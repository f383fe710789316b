"""Second-order MAML for CUBA SNNs with ``torch.func`` (no learn2learn/higher).

For a task with support set S and query set Q, the inner loop adapts the
adapted subset of the meta-parameters theta (the last ``n - frozen`` weight
layers) by N steps of

    theta_{k+1} = theta_k + M_k * U_k,    U_k = -alpha_l * grad L_S(theta_k)

where ``M_k = [|U_k| > tau * max|U_k|]`` (paper Eq. 6, ``threshold = tau``;
``tau = 0`` keeps every element) and ``alpha_l`` is the inner learning rate,
optionally learned per layer (``InnerLR``, stored as log alpha). The meta-loss
is ``L_Q(theta_N)``; its gradient w.r.t. theta flows through the inner updates
(second order, ``create_graph=True``) or not (``first_order=True``: the
inner gradients are treated as constants, FOMAML).

Frozen layers see the same weights in every inner step, so their features of
S and Q are computed once per task and reused ("cached frozen features"),
with their graph kept for the outer gradient.

``rule="three_factor"`` replaces the SGD inner step of the final layer by the
on-chip rule's torch twin (``neuromaml.onchip.torch_rule.update``), given the
final layer's pre-synaptic spikes, its output spikes and the labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F


class MetaNetwork(Protocol):
    """What MAML needs of a network (``meta.models.SNN`` and the ``ANN`` baseline): its config
    (``cfg.burn_in``, ``cfg.n_way``, ``cfg.logit_scale``), its blocks, the names of its learnable
    weights in layer order, the block a weight belongs to, a functional run over a block range
    (``run(params, x, start, stop, x_win) -> Activations(full, window)``) and the readout
    (``counts(window) -> (N, n_way)``)."""

    cfg: Any
    blocks: Any

    def param_names(self) -> list[str]: ...

    def block_of(self, name: str) -> int: ...

    def run(self, params: dict, x, start: int = 0, stop: int | None = None, x_win=None,
            burn_in: int | None = None): ...

    def counts(self, out): ...


RULES = ("sgd", "three_factor")


@dataclass
class InnerConfig:
    """Inner loop (adaptation). ``lr`` in weight units per unit gradient."""

    steps: int = 1              # N inner steps
    lr: float = 1.0             # alpha (initial value when learned)
    learn_lr: bool = False      # per-layer learned alpha (meta-SGD-lite)
    first_order: bool = False   # FOMAML
    frozen: int = -1            # weight layers not adapted, from the input; -1 = all but the last
    threshold: float = 0.0      # Eq. 6: keep |update| > threshold * max|update| (0 = off)
    rule: str = "sgd"           # sgd | three_factor
    rule_spec: dict = field(default_factory=dict)   # three_factor: RuleSpec fields (onchip.rule), e.g. the
                                                    # deployed, calibrated form; {} = RuleSpec defaults
    label_window: list = field(default_factory=list)  # three_factor: [start, stop) steps of each support
                                                      # sample with the label on; [] = [burn_in, T), as deployed
    learn_rule: list = field(default_factory=list)    # three_factor: rule hyperparameters meta-learned by
                                                      # gradient through the torch twin (LEARNABLE_RULE_FIELDS),
                                                      # from rule_spec's values; rounded to the chip's at export
    rule_lr: float = 0.0                              # Adam rate of the learned rule hyperparameters
                                                      # (0: outer.lr, which barely moves them)


# the rule's hyperparameters the torch twin takes as tensors (onchip.torch_rule.adapt_final_layer)
LEARNABLE_RULE_FIELDS = ("eta_exp", "x1_tau", "error_threshold", "factor_threshold", "surrogate_beta",
                         "eq6_threshold")


def learned_rule_init(cfg: "InnerConfig") -> dict:
    """Initial values of the meta-learned rule hyperparameters (``cfg.learn_rule``)."""
    if not cfg.learn_rule:
        return {}
    from neuromaml.onchip.rule import RuleSpec

    spec = RuleSpec(**cfg.rule_spec)
    return {name: float(getattr(spec, name)) for name in cfg.learn_rule}


class InnerLR(torch.nn.Module):
    """Per-layer inner learning rates alpha_l = exp(log_alpha_l) (learned when asked)."""

    def __init__(self, names: list[str], lr: float, learn: bool, rule: dict | None = None):
        super().__init__()
        self.names = list(names)
        # inner.lr 0 (no adaptation: a baseline) is exp(-inf); config validation requires lr > 0 when learned
        self.log_lr = torch.nn.Parameter(torch.full((len(names),), math.log(lr) if lr > 0 else -math.inf),
                                         requires_grad=learn)
        # the on-chip rule's meta-learned hyperparameters (inner.learn_rule), one scalar each
        self.rule = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(float(v)))
                                            for k, v in (rule or {}).items()})

    def rule_overrides(self) -> dict:
        """Tensors for ``torch_rule.update``'s keyword overrides (empty: the spec as given)."""
        return dict(self.rule.items())

    def lr(self, name: str) -> torch.Tensor:
        return self.log_lr[self.names.index(name)].exp()


def adapted_names(model: MetaNetwork, cfg: InnerConfig) -> list[str]:
    names = model.param_names()
    frozen = len(names) - 1 if cfg.frozen < 0 else min(cfg.frozen, len(names) - 1)
    return names[frozen:]


def task_loss(model: MetaNetwork, logits_fn_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of count * logit_scale; out_win: output spikes over [burn_in, T)."""
    logits = logits_fn_out.sum(-1) * model.cfg.logit_scale
    return F.cross_entropy(logits, y)


def threshold_update(update: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 6: zero the elements with |u| <= threshold * max|u| (mask carries no gradient)."""
    if threshold <= 0:
        return update
    mag = update.detach().abs()
    mask = (mag > threshold * mag.max()).to(update.dtype)
    return update * mask


def _features(model: MetaNetwork, params: dict, x: torch.Tensor, start_block: int):
    """Exact + windowed activations entering block ``start_block``."""
    return model.run(params, x, 0, start_block)


def _head(model: MetaNetwork, params: dict, feats, start_block: int, return_pre: bool = False):
    """Run blocks [start_block, end); return output spikes over [burn_in, T)."""
    full, win = feats
    if not return_pre:
        return model.run(params, full, start_block, None, x_win=win)[1]
    last = len(model.blocks) - 1
    pre = model.run(params, full, start_block, last, x_win=win)
    out = model.run(params, pre[0], last, None, x_win=pre[1])[1]
    return out, pre


def _rule_update(model, params, name, feats_s, y, n_way, cfg: InnerConfig | None = None,
                 lrs: "InnerLR | None" = None):
    """One support presentation of the on-chip rule's torch twin on the final
    layer; returns the weight change. ``feats_s``: the final layer's input.
    The rule's form is ``cfg.rule_spec`` with the label on during ``cfg.label_window``
    (default: the readout window [burn_in, T), as the deployed network gets it)."""
    from neuromaml.onchip import torch_rule  # optional stage
    from neuromaml.onchip.neuron import CubaParams
    from neuromaml.onchip.rule import RuleSpec

    full, win = feats_s
    b = model.cfg.burn_in
    pre = torch.cat([full[..., :b], win], -1)            # (N, I, T)
    pre = pre.reshape(pre.shape[0], -1, pre.shape[-1]).transpose(1, 2)
    c = model.cfg
    neuron = CubaParams.from_slayer(c.threshold, c.current_decay, c.voltage_decay)
    w = params[name]
    cfg = cfg or InnerConfig(rule="three_factor")
    window = tuple(cfg.label_window) if cfg.label_window else (b, pre.shape[1])
    overrides = lrs.rule_overrides() if lrs is not None else {}
    new = torch_rule.update(w.reshape(w.shape[0], -1), pre, y, n_way=n_way, neuron=neuron,
                            spec=RuleSpec(**cfg.rule_spec), label_window=window, **overrides)
    return new.reshape(w.shape) - w


def adapt(model: MetaNetwork, params: dict, x: torch.Tensor, y: torch.Tensor, cfg: InnerConfig,
          lrs: InnerLR | None = None, create_graph: bool | None = None, feats=None,
          record: list | None = None) -> dict:
    """Inner loop on the support set ``(x, y)``; returns the adapted parameter dict.

    ``record``: if given, each step's applied updates {name: tensor} are appended
    (for update-magnitude statistics).
    """
    if cfg.rule not in RULES:
        raise ValueError(f"inner rule {cfg.rule!r} not in {RULES}")
    names = adapted_names(model, cfg)
    start = model.block_of(names[0])
    if feats is None:
        feats = _features(model, params, x, start)
    create_graph = (not cfg.first_order) if create_graph is None else create_graph
    fast = dict(params)
    for _ in range(cfg.steps):
        if cfg.rule == "three_factor":
            if len(names) != 1:
                raise ValueError("inner rule three_factor adapts the final layer only: set inner.frozen = -1")
            updates = {names[0]: _rule_update(model, fast, names[0], feats, y, model.cfg.n_way, cfg, lrs)}
        else:
            out = _head(model, fast, feats, start)
            loss = task_loss(model, out, y)
            grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph)
            updates = {}
            for n, g in zip(names, grads):
                lr = lrs.lr(n) if lrs is not None else cfg.lr
                updates[n] = -lr * g
        updates = {n: threshold_update(u, cfg.threshold) for n, u in updates.items()}
        if record is not None:
            record.append({n: u.detach().clone() for n, u in updates.items()})
        fast = {**fast, **{n: fast[n] + u for n, u in updates.items()}}
    return fast


def task_forward(model, params: dict, task, cfg: InnerConfig, lrs: InnerLR | None = None,
                 create_graph: bool | None = None):
    """Adapt on the task's support set, evaluate on its query set.

    Returns (query loss, query accuracy as float). Frozen-layer features of
    support and query are computed once.
    """
    names = adapted_names(model, cfg)
    start = model.block_of(names[0])
    feats_s = _features(model, params, task.support_x, start)
    fast = adapt(model, params, task.support_x, task.support_y, cfg, lrs, create_graph, feats=feats_s)
    feats_q = _features(model, params, task.query_x, start)
    out = _head(model, fast, feats_q, start)
    loss = task_loss(model, out, task.query_y)
    acc = (out.sum(-1).argmax(-1) == task.query_y).float().mean().item()
    return loss, acc


def meta_gradient(model: MetaNetwork, params: dict, tasks, cfg: InnerConfig, lrs: InnerLR | None = None,
                  weight: float | None = None):
    """Accumulate d(mean query loss)/d(params, lrs) into ``.grad``; returns
    (mean loss, mean acc). ``weight`` scales each task's loss (default 1/len)."""
    weight = 1.0 / len(tasks) if weight is None else weight
    tot_loss, tot_acc = 0.0, 0.0
    for task in tasks:  # one graph at a time keeps peak memory at one task
        loss, acc = task_forward(model, params, task, cfg, lrs)
        if not torch.isfinite(loss):
            raise FloatingPointError("meta-loss is not finite")
        (loss * weight).backward()
        tot_loss += loss.item()
        tot_acc += acc
    return tot_loss / len(tasks), tot_acc / len(tasks)


def evaluate_task(model: MetaNetwork, params: dict, task, cfg: InnerConfig, lrs: InnerLR | None = None) -> float:
    """Query accuracy after adaptation, no outer graph kept."""
    names = set(adapted_names(model, cfg))
    params = {n: p.detach().requires_grad_(n in names) for n, p in params.items()}
    loss, acc = task_forward(model, params, task, cfg, lrs, create_graph=False)
    return acc
