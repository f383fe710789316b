"""Meta-training configuration: YAML or TOML files mapped onto nested dataclasses.

A file holds any subset of the sections below; missing keys keep their
defaults. An unknown key or an impossible value raises ``NeuromamlError``
naming the file and the dotted key. Named defaults ship in ``meta/configs/``
(``load_config("small")`` finds ``configs/small.yaml``).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from neuromaml.io import NeuromamlError, fail

from .maml import RULES, InnerConfig
from .architectures import MODEL_NAMES, ModelConfig
from .surrogate import KINDS

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TaskConfig:
    """Episodes: N-way K-shot with Q queries per class."""

    n_way: int = 5
    k_shot: int = 1
    n_query: int = 10


@dataclass
class OuterConfig:
    """Outer loop: Adam with cosine decay from ``lr`` to ``lr * lr_min_ratio``."""

    steps: int = 300            # meta-steps
    meta_batch: int = 4         # tasks per meta-step
    lr: float = 2e-3
    lr_min_ratio: float = 0.05
    clip_grad: float = 0.0      # clip the meta-gradient's global norm to this (0: off)
    pretrain_epochs: int = 0    # first train the network as a classifier of the meta-train
                                # classes (Adam, pretrain_lr, batch 32), then meta-train from it
                                # with the final layer as the model config starts it (0: off)
    pretrain_lr: float = 1e-3
    val_every: int = 50         # meta-validation period (steps)
    val_tasks: int = 40
    checkpoint_every: int = 25


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _merge(obj, data: dict, path, prefix: str):
    if not isinstance(data, dict):
        raise fail(path, f"{prefix or 'top level'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise fail(path, f"unknown key '{dotted}'", f"valid keys here: {', '.join(sorted(fields))}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            _merge(cur, value, path, dotted)
            continue
        if isinstance(cur, bool):
            if not isinstance(value, bool):
                raise fail(path, f"'{dotted}' must be true or false, got {value!r}")
        elif isinstance(cur, int) and not (isinstance(value, int) and not isinstance(value, bool)):
            raise fail(path, f"'{dotted}' must be an integer, got {value!r}")
        elif isinstance(cur, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fail(path, f"'{dotted}' must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or abs(value) > 1e12:
                raise fail(path, f"'{dotted}' is {value!r}, not a finite number of a sensible size",
                           "use a finite value (no .inf / .nan, |value| <= 1e12)")
        elif isinstance(cur, dict):
            if not isinstance(value, dict):
                raise fail(path, f"'{dotted}' must be a mapping, got {value!r}")
            value = dict(value)
        elif isinstance(cur, (tuple, list)):
            if not isinstance(value, (list, tuple)):
                raise fail(path, f"'{dotted}' must be a list, got {value!r}")
            value = type(cur)(value)
        elif isinstance(cur, str) and not isinstance(value, str):
            raise fail(path, f"'{dotted}' must be a string, got {value!r}")
        setattr(obj, key, value)


MAX_WIDTH = 65_536      # neurons in one hidden layer (a Loihi 2 chip holds 1M in all)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


MAX_COUNT = 10_000_000      # meta-steps, intervals
MAX_INPUTS = 1 << 20        # C x H x W input neurons (a Loihi 2 chip holds 1M neurons in all)
MAX_TASKS = 100_000         # tasks per batch or validation (as the CLI's --tasks)


def validate(cfg: RunConfig, path=None, n_classes: dict | None = None, data=None) -> RunConfig:
    """Check values; ``n_classes`` (split -> number of classes of the meta-dataset ``data``)
    checks n_way."""
    m, i, o, t = cfg.model, cfg.inner, cfg.outer, cfg.task

    def need(cond: bool, key: str, what: str, fix: str):
        if not cond:
            raise fail(path, f"'{key}' {what}", fix)

    need(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2 ** 32, "seed", f"is {cfg.seed!r}",
         "use a whole number in [0, 2**32)")
    need(m.name in MODEL_NAMES, "model.name", f"is {m.name!r}", f"use one of {', '.join(MODEL_NAMES)}")
    need(m.surrogate in KINDS, "model.surrogate", f"is {m.surrogate!r}", f"use one of {', '.join(KINDS)}")
    need(len(m.input_shape) == 3 and all(_whole(v) and v > 0 for v in m.input_shape), "model.input_shape",
         f"is {m.input_shape}", "give [C, H, W] with positive sizes")
    need(math.prod(int(v) for v in m.input_shape) <= MAX_INPUTS, "model.input_shape",
         f"is {m.input_shape}: {math.prod(int(v) for v in m.input_shape):,} input neurons",
         f"use at most {MAX_INPUTS:,} (C x H x W; pool the frames with data build --downsample)")
    need(m.time_steps > 0, "model.time_steps", f"is {m.time_steps}", "use a positive number of steps")
    need(0 <= m.burn_in < m.time_steps, "model.burn_in", f"is {m.burn_in}, not in [0, time_steps={m.time_steps})",
         "use a burn-in shorter than the sample")
    need(0 < m.threshold <= 2 ** 17 / 64 and (m.threshold * 64) == int(m.threshold * 64), "model.threshold",
         f"is {m.threshold}", "use a positive multiple of 1/64 up to 2048 (Loihi's 17-bit threshold mantissa)")
    for k in ("current_decay", "voltage_decay"):
        v = getattr(m, k)
        need(0 <= v <= 1, f"model.{k}", f"is {v}", "use a fraction in [0, 1]")
    for k in ("logit_scale", "surrogate_scale", "surrogate_width", "weight_scale"):
        need(getattr(m, k) > 0 and math.isfinite(getattr(m, k)), f"model.{k}", f"is {getattr(m, k)}", "use a positive number")
    need(isinstance(m.init_rate, (int, float)) and not isinstance(m.init_rate, bool) and 0 <= m.init_rate < 1,
         "model.init_rate", f"is {m.init_rate!r}", "use a spike rate per neuron and step in (0, 1), e.g. 0.1, or 0 "
         "for slayer's initialisation")
    need(not m.init_rate or m.name != "ann_cnn", "model.init_rate",
         f"is {m.init_rate} but model.name 'ann_cnn' has no spiking layer to set to a rate", "use 0 with ann_cnn")
    need(all(_whole(h) and 0 < h <= MAX_WIDTH for h in m.hidden), "model.hidden", f"is {m.hidden}",
         f"use whole layer widths in [1, {MAX_WIDTH}]")
    need(isinstance(m.conv, (list, tuple)) and len(m.conv) > 0 and all(
        isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                             for v in c) and c[1] % 2 == 1 for c in m.conv),
         "model.conv", f"is {m.conv!r}", "use a list of [channels, odd kernel size] pairs, e.g. [[16, 5], [32, 3]]")
    need(o.clip_grad >= 0 and math.isfinite(o.clip_grad), "outer.clip_grad", f"is {o.clip_grad}",
         "use a norm > 0, or 0 for no clipping")
    need(isinstance(o.pretrain_epochs, int) and not isinstance(o.pretrain_epochs, bool) and o.pretrain_epochs >= 0,
         "outer.pretrain_epochs", f"is {o.pretrain_epochs!r}", "use a whole number of epochs >= 0 (0: no pre-training)")
    need(o.pretrain_lr > 0 and math.isfinite(o.pretrain_lr), "outer.pretrain_lr", f"is {o.pretrain_lr}",
         "use a learning rate > 0")
    need(i.steps >= 1, "inner.steps", f"is {i.steps}", "use at least 1 inner step")
    need(i.lr >= 0 and math.isfinite(i.lr), "inner.lr", f"is {i.lr}", "use a learning rate >= 0")
    need(i.learn_lr is False or i.lr > 0, "inner.lr", "must be > 0 when inner.learn_lr is true", "set inner.lr > 0")
    need(0 <= i.threshold < 1, "inner.threshold", f"is {i.threshold}", "use a fraction in [0, 1) of the update range")
    need(i.rule in RULES, "inner.rule", f"is {i.rule!r}", f"use one of {', '.join(RULES)}")
    need(m.name != "ann_cnn" or i.rule == "sgd", "inner.rule",
         f"is {i.rule!r} but model.name 'ann_cnn' has no spiking layer for the on-chip rule", "use inner.rule: sgd")
    if i.rule_spec:
        from neuromaml.onchip.rule import RuleError, RuleSpec

        try:
            RuleSpec(**i.rule_spec)
        except TypeError as exc:
            raise fail(path, f"'inner.rule_spec' {exc}".replace("__init__() ", ""),
                       "use the fields of neuromaml.onchip.rule.RuleSpec") from None
        except RuleError as exc:
            raise fail(path, f"'inner.rule_spec' {exc}", "use a value the rule can represent") from None
    from .maml import LEARNABLE_RULE_FIELDS

    need(all(k in LEARNABLE_RULE_FIELDS for k in i.learn_rule) and len(set(i.learn_rule)) == len(i.learn_rule),
         "inner.learn_rule", f"is {i.learn_rule}", f"list distinct names among {', '.join(LEARNABLE_RULE_FIELDS)}")
    need(i.rule_lr >= 0 and math.isfinite(i.rule_lr), "inner.rule_lr", f"is {i.rule_lr}",
         "use a learning rate >= 0 (0: outer.lr)")
    need(not i.learn_rule or i.rule == "three_factor", "inner.learn_rule",
         f"is {i.learn_rule} but inner.rule is {i.rule!r}: only the on-chip rule has these hyperparameters",
         "set inner.rule: three_factor, or inner.learn_rule: []")
    need(not i.label_window or i.rule == "three_factor", "inner.label_window",
         f"is {i.label_window} but inner.rule is {i.rule!r}: only the on-chip rule presents labels over a window",
         "remove inner.label_window, or set inner.rule: three_factor")
    need(not i.label_window or (len(i.label_window) == 2 and all(_whole(v) for v in i.label_window)
                                and 0 <= int(i.label_window[0]) < int(i.label_window[1])
                                <= m.time_steps), "inner.label_window", f"is {i.label_window}",
         f"use [start, stop) with 0 <= start < stop <= time_steps ({m.time_steps}), or [] for [burn_in, T)")
    need(i.frozen >= -1, "inner.frozen", f"is {i.frozen}", "use -1 (all but the last layer) or a count >= 0")
    need(o.steps >= 0, "outer.steps", f"is {o.steps}", "use a count >= 0")
    need(o.meta_batch >= 1, "outer.meta_batch", f"is {o.meta_batch}", "use at least 1 task")
    need(o.lr > 0 and math.isfinite(o.lr), "outer.lr", f"is {o.lr}", "use a learning rate > 0")
    need(0 <= o.lr_min_ratio <= 1, "outer.lr_min_ratio", f"is {o.lr_min_ratio}", "use a fraction in [0, 1]")
    for k in ("val_every", "val_tasks", "checkpoint_every"):
        need(getattr(o, k) >= 1, f"outer.{k}", f"is {getattr(o, k)}", "use a count >= 1")
    # upper bounds: a count no run needs is a typo (1e8 validation tasks hung without a word)
    for key, val, hi in (("outer.steps", o.steps, MAX_COUNT), ("outer.meta_batch", o.meta_batch, MAX_TASKS),
                         ("outer.val_tasks", o.val_tasks, MAX_TASKS), ("outer.val_every", o.val_every, MAX_COUNT),
                         ("outer.checkpoint_every", o.checkpoint_every, MAX_COUNT),
                         ("outer.pretrain_epochs", o.pretrain_epochs, 10_000), ("inner.steps", i.steps, 1_000),
                         ("model.time_steps", m.time_steps, 100_000), ("task.n_way", t.n_way, 10_000),
                         ("task.k_shot", t.k_shot, 10_000), ("task.n_query", t.n_query, 10_000)):
        need(val <= hi, key, f"is {val}, more than any run needs (at most {hi:,})", f"use a count <= {hi:,}")
    n_layers = {"small": len(m.hidden) + 1, "lava_mlp": len(m.hidden) + 1, "cnn": len(m.conv) + 1,
                "small_cnn": 2, "paper_cnn": 4}.get(m.name)     # weight layers (pools are fixed)
    need(n_layers is None or i.frozen < n_layers, "inner.frozen",
         f"is {i.frozen} but model {m.name!r} has {n_layers} trainable layers",
         f"use -1 (all but the last) or a count < {n_layers}")
    need(t.n_way >= 2, "task.n_way", f"is {t.n_way}", "use at least 2 classes")
    need(t.k_shot >= 1, "task.k_shot", f"is {t.k_shot}", "use at least 1 shot")
    need(t.n_query >= 1, "task.n_query", f"is {t.n_query}", "use at least 1 query per class")
    need(m.n_way == t.n_way, "model.n_way", f"is {m.n_way} but task.n_way is {t.n_way}",
         "leave model.n_way out (it follows task.n_way) or make them equal")
    lowest = min((n_classes or {}).values(), default=None)
    for split, n in (n_classes or {}).items():
        if t.n_way > n:
            raise fail(data or path, f"split '{split}' has {n} classes, fewer than task.n_way = {t.n_way}",
                       (f"use task.n_way <= {lowest} (the smallest split), or " if lowest >= 2 else "")
                       + f"a meta-dataset with at least {t.n_way} classes in '{split}'")
    return cfg


def from_dict(data: dict, path=None) -> RunConfig:
    cfg = RunConfig()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(path, f"the top level must be a mapping of sections (model, inner, outer, task), "
                   f"got a {type(data).__name__}", "write e.g. 'model:\n  hidden: [128]' (see meta/configs/small.yaml)")
    data = dict(data)
    nw = data["task"].get("n_way") if isinstance(data.get("task"), dict) else None
    if isinstance(nw, int) and not isinstance(nw, bool):      # a wrong value is reported as task.n_way
        model = dict(data.get("model") or {})
        model.setdefault("n_way", data["task"]["n_way"])
        data["model"] = model
    if isinstance(data.get("model"), dict):       # the model's own defaults, where not given
        from .architectures import model_defaults

        data["model"] = {**model_defaults(data["model"].get("name")), **data["model"]}
    _merge(cfg, data, path, "")
    shape = cfg.model.input_shape
    if not (isinstance(shape, (list, tuple)) and all(_whole(v) for v in shape)):
        raise fail(path, f"'model.input_shape' is {shape!r}", "give [C, H, W] as whole numbers (or leave it out: "
                   "meta-train takes it from the data)")
    cfg.model.input_shape = tuple(int(v) for v in shape)
    return validate(cfg, path)


MAX_CONFIG_VALUES = 100_000


def _too_big(obj, cap: int = MAX_CONFIG_VALUES) -> bool:
    """Whether a loaded config holds more than ``cap`` values, counting shared (aliased) parts
    each time they occur, as the config reader would walk them."""
    left, stack = cap, [obj]
    while stack:
        x = stack.pop()
        left -= 1
        if left < 0:
            return True
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            if len(x) > left:
                return True
            stack.extend(x)
    return False


class _YamlDuplicate(ValueError):
    pass


def _load_yaml(text: str):
    """yaml.safe_load, but a key given twice in one mapping is an error (PyYAML keeps the last
    silently), and numbers are read as YAML 1.2 reads them: 1e-3 is a float (YAML 1.1, which
    PyYAML implements, reads it as a string) and 010 is ten, not octal eight."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":      # `<<: *base` merges; its keys may be overridden
                continue
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise _YamlDuplicate(key, key_node.start_mark.line + 1)
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    def as_int(loader, node):
        return int(loader.construct_scalar(node).replace("_", ""), 10)

    Loader.construct_mapping = mapping
    Loader.yaml_implicit_resolvers = {k: [(t, r) for t, r in v if t not in ("tag:yaml.org,2002:float",
                                                                          "tag:yaml.org,2002:int")]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."))
    Loader.add_constructor("tag:yaml.org,2002:int", as_int)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def read_file(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise fail(path, "config file not found", "give a YAML/TOML file or a name in " + str(CONFIG_DIR))
    if not path.is_file():
        raise fail(path, "is not a file", "give a YAML or TOML config file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise fail(path, "is not a text file (not UTF-8)", "give a YAML or TOML config file") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib  # type: ignore[import-not-found]
            except ModuleNotFoundError:
                import tomli as tomllib
            return tomllib.loads(text)
        data = _load_yaml(text)
        if _too_big(data):
            raise fail(path, f"expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases repeating a list?)",
                       "write the config out plainly; no run needs that many values")
        if data is None:
            import sys

            print(f"note: {path} holds no settings: every value is the default (meta/configs/small.yaml)",
                  file=sys.stderr)
        return data or {}
    except NeuromamlError:
        raise
    except _YamlDuplicate as exc:
        raise fail(path, f"key {exc.args[0]!r} appears twice in one section (line {exc.args[1]}); YAML would keep "
                   "only the last one", "merge the two into one") from None
    except Exception as exc:  # parse errors of either format
        raise fail(path, f"cannot parse config ({exc.__class__.__name__}: {exc})", "fix the syntax") from None


def load_config(name_or_path: str | os.PathLike, overrides: dict | None = None) -> RunConfig:
    """Load a config file, or a named default (``small``, ``paper_cnn``, ``lava_mlp``)."""
    p = Path(name_or_path)
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if (not p.exists() or p.is_dir()) and named.exists() and "/" not in str(name_or_path):
        p = named                   # a named default, even where a folder of that name is at hand
    data = read_file(p)
    for dotted, value in (overrides or {}).items():
        node = data
        *head, last = dotted.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return from_dict(data, p)
