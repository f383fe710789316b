"""The model registry: ``ModelConfig`` (network and readout fields) and the architectures a
config's ``model.name`` builds.

* ``ModelConfig``: the ``model`` section of a run's config (units in its docstring).
* ``register_model(name)``: a decorator registering ``blocks(cfg) -> [slayer blocks]``;
  ``MODELS`` holds the ``ModelSpec`` of each, ``MODEL_NAMES`` what ``model.name`` accepts,
  ``SPIKING`` what export deploys (``ann_cnn`` is the non-spiking baseline: no blocks).
* the builders of ``small`` / ``lava_mlp`` (dense), ``small_cnn``, ``cnn`` and ``paper_cnn``
  (lava-dl slayer CUBA blocks, imported on use), ``_blocks(cfg)`` the one that ``cfg`` names.
* ``model_defaults(name)``, ``config_from_dict(d)``: a model's own defaults, a strict reader.

The networks themselves (``SNN``, the ``ANN`` baseline, ``build_model``) are ``meta.models``,
which re-exports these names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from .surrogate import Surrogate


@dataclass
class ModelConfig:
    """Network and readout. Units: decays are fractions per 1 ms step, threshold
    in weight units (Loihi vThMant / 64), time in steps of 1 ms."""

    name: str = "small"                 # small | small_cnn | cnn | paper_cnn | lava_mlp | ann_cnn (baseline)
    n_way: int = 5                      # output neurons
    input_shape: tuple = (2, 16, 32)    # (C, H, W) of the frames
    time_steps: int = 100               # T
    burn_in: int = 70                   # readout and gradients over [burn_in, T)
    logit_scale: float = 0.5            # loss = CE(count * logit_scale)
    hidden: list | None = None          # dense widths (small: [128], lava_mlp: [512, 512] when None)
    conv: list = field(default_factory=lambda: [[16, 5], [32, 3]])  # cnn: [channels, kernel] per
                                        # conv (same padding), each followed by a 2x2 sum pool
    threshold: float = 1.25
    current_decay: float = 0.25
    voltage_decay: float = 0.03
    weight_scale: float = 2.0           # init scale of slayer synapses
    pool_weight: float = 1.5            # sum-pool weight (paper_cnn)
    surrogate: str = "fast_sigmoid"     # fast_sigmoid | exponential
    surrogate_scale: float = 1.0
    surrogate_width: float = 0.5        # 1/beta (fast_sigmoid) or tau (exponential), voltage units
    quantize: bool = True               # slayer's 8-bit weight pre-hook (as Loihi)
    zero_head: bool = True              # final layer starts at 0: one inner step is then
                                        # prototype-like and the outputs cannot start saturated
    init_rate: float = 0.0              # > 0: before training, scale each layer but the last (sum
                                        # pools included) so it spikes at this rate per neuron and
                                        # step on meta-train samples (meta.init); 0: slayer's init

    def __post_init__(self):
        if self.hidden is None:         # the model's own default width (the registry says)
            self.hidden = list(model_defaults(self.name).get("hidden", [128]))

    def surrogate_fn(self) -> Surrogate:
        return Surrogate(self.surrogate, self.surrogate_scale, self.surrogate_width)


def _neuron_params(cfg: ModelConfig) -> dict:
    return {"threshold": cfg.threshold, "current_decay": cfg.current_decay,
            "voltage_decay": cfg.voltage_decay, "tau_grad": 1.0, "scale_grad": 1.0,
            "requires_grad": False}


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry: how to build the network named ``name``."""

    name: str
    blocks: Callable[[ModelConfig], list] | None   # slayer blocks (None: not an SNN)
    spiking: bool = True
    about: str = ""
    defaults: dict = field(default_factory=dict)   # ModelConfig fields this model sets otherwise


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, spiking: bool = True, about: str = "", defaults: dict | None = None):
    """Register a builder ``blocks(cfg) -> [slayer blocks]`` under ``name`` (a decorator);
    ``model.name: NAME`` in a config then builds it. ``defaults``: ModelConfig fields whose
    default differs for this model (applied where a config does not give the field)."""
    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelSpec(name, fn, spiking, about, dict(defaults or {}))
        return fn
    return deco


def _cuba_and_params(cfg: ModelConfig):
    from neuromaml.lavacompat import quiet_lava_dl

    quiet_lava_dl()
    from lava.lib.dl import slayer

    return slayer.block.cuba, (lambda: _neuron_params(cfg))


def _halve(h: int, w: int, times: int) -> tuple[int, int]:
    for _ in range(times):  # slayer pools pad odd sizes up
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def _mlp(cfg: ModelConfig) -> list:
    cuba, npar = _cuba_and_params(cfg)
    c, h, w = cfg.input_shape
    blocks, n_in = [cuba.Flatten()], c * h * w
    for n_out in list(cfg.hidden) + [cfg.n_way]:
        blocks.append(cuba.Dense(npar(), n_in, n_out, weight_scale=cfg.weight_scale))
        n_in = n_out
    return blocks


register_model("small", about="dense: input-hidden...-N (model.hidden, default [128])")(_mlp)


@register_model("small_cnn", about="2a-16c5-2a-N")
def _small_cnn(cfg: ModelConfig) -> list:
    # convolution shares features across positions, so features learned for a digit on one side
    # transfer to the other side (with `--digit-split ordered` the meta-test classes 80..99 put 8
    # and 9 on the left, which the meta-train classes 0..63 never do)
    cuba, npar = _cuba_and_params(cfg)
    c, h, w = cfg.input_shape
    blocks = [
        cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight),
        cuba.Conv(npar(), c, 16, 5, padding=2, weight_scale=cfg.weight_scale),
        cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight),
        cuba.Flatten(),
    ]
    h, w = _halve(h, w, 2)
    blocks.append(cuba.Dense(npar(), 16 * h * w, cfg.n_way, weight_scale=cfg.weight_scale))
    return blocks


@register_model("cnn", about="model.conv: [channels, kernel] per conv (same padding), each + 2a; dense N")
def _cnn(cfg: ModelConfig) -> list:
    cuba, npar = _cuba_and_params(cfg)
    c, h, w = cfg.input_shape
    blocks, n_in = [], c
    for ch, k in cfg.conv:
        blocks += [cuba.Conv(npar(), n_in, ch, k, padding=k // 2, weight_scale=cfg.weight_scale),
                   cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight)]
        h, w = _halve(h, w, 1)
        n_in = ch
    blocks.append(cuba.Flatten())
    blocks.append(cuba.Dense(npar(), n_in * h * w, cfg.n_way, weight_scale=cfg.weight_scale))
    return blocks


@register_model("paper_cnn", about="Table 1: 32c5-2a-64c5-2a-128c5-2a-N")
def _paper_cnn(cfg: ModelConfig) -> list:
    cuba, npar = _cuba_and_params(cfg)
    c, h, w = cfg.input_shape
    blocks = [
        cuba.Conv(npar(), c, 32, 5, padding=2, weight_scale=cfg.weight_scale),
        cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight),
        cuba.Conv(npar(), 32, 64, 5, padding=2, weight_scale=cfg.weight_scale),
        cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight),
        cuba.Conv(npar(), 64, 128, 5, padding=2, weight_scale=cfg.weight_scale),
        cuba.Pool(npar(), 2, weight_scale=cfg.pool_weight),
        cuba.Flatten(),
    ]
    h, w = _halve(h, w, 3)
    blocks.append(cuba.Dense(npar(), 128 * h * w, cfg.n_way, weight_scale=cfg.weight_scale))
    return blocks


# the authors' network is input-512-512-N (../shared/fixtures/snn-maml/network_test.net): that
# is its default width; a config's model.hidden is taken as given, as for small
register_model("lava_mlp", about="the authors' Lava MLP: input-512-512-N", defaults={"hidden": [512, 512]})(_mlp)
register_model("ann_cnn", spiking=False, about="non-spiking CNN over summed frames (Table 2 baseline)")(None)


def _blocks(cfg: ModelConfig) -> list:
    spec = MODELS.get(cfg.name)
    if spec is None or spec.blocks is None:
        raise ValueError(f"unknown spiking model name {cfg.name!r}; choose one of {SPIKING}")
    return spec.blocks(cfg)


MODEL_NAMES = tuple(MODELS)                                   # what model.name accepts
SPIKING = tuple(n for n, m in MODELS.items() if m.spiking)    # what export deploys


def model_defaults(name) -> dict:
    """The ModelConfig fields model ``name`` sets otherwise than ModelConfig's defaults."""
    spec = MODELS.get(name) if isinstance(name, str) else None
    return dict(spec.defaults) if spec else {}


def config_from_dict(d: dict) -> ModelConfig:
    """A ModelConfig from its dict; a key ModelConfig does not have is an error (ValueError), not
    dropped: a misspelt field must not silently build another network."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ValueError(f"unknown model field(s) {unknown}; known: {sorted(known)}")
    kw = {**model_defaults(d.get("name")), **dict(d)}
    if "input_shape" in kw:
        kw["input_shape"] = tuple(kw["input_shape"])
    return ModelConfig(**kw)
