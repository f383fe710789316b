"""Runs in, bundles out: the deploy stage's library (the CLI in ``deploy.cli`` only parses and prints).

* ``load_run(RUN_DIR)``: a meta-train run (``best.pt``/``ckpt.pt`` through ``meta.runs.load_run``)
  or another tool's run folder (a model config and a checkpoint) -> (model, ModelConfig, classes).
* ``trained_rule(RUN_DIR)``: the rule a run was meta-trained through (None for SGD runs).
* ``trained_label_window(RUN_DIR, steps)``: the label window it was meta-trained with (None: the default).
* ``export_run(RUN_DIR, OUT)``: what ``neuromaml export RUN_DIR`` does.
* ``reference_model(manifest)``: the slayer network a bundle came from, while it still is that.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from neuromaml.io import fail, is_meta_train_run, read_json

CHECKPOINT_NAMES = ("theta.pt", "model.pt", "checkpoint.pt", "final.pt", "best.pt")
CONFIG_NAMES = ("config.json", "config.yaml", "config.yml")     # (run.json is meta-train's record, not a config)


def _read_config(run_dir: Path) -> tuple[dict, Path]:
    for name in CONFIG_NAMES:
        p = run_dir / name
        if p.exists():
            if p.suffix == ".json":
                return read_json(p), p
            from neuromaml.meta.config import read_file

            return read_file(p), p
    raise fail(run_dir, f"no run config ({', '.join(CONFIG_NAMES)})",
               "give the output directory of neuromaml meta-train, or use --model NAME")


def _state_dict(obj: Any) -> dict | None:
    if isinstance(obj, dict):
        for key in ("theta", "state_dict", "model", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(hasattr(v, "shape") for v in obj.values()) and obj:
            return obj
    return None


def _check_spiking(path, name: str) -> None:
    from neuromaml.meta.architectures import SPIKING

    if name not in SPIKING:
        raise fail(path, f"model.name is {name!r}, a non-spiking baseline: it has no Loihi neuron to export",
                   f"export a run of a spiking model ({', '.join(SPIKING)})")


def load_run(run_dir: Path):
    """A meta-train RUN_DIR -> (model with trained weights, model config, classes or None).

    ``neuromaml meta-train`` runs (``best.pt`` / ``ckpt.pt``) load through
    ``neuromaml.meta.runs.load_run``; other directories need a config (``config.json``
    with a ``model`` section) and a checkpoint (``theta.pt``, ``model.pt``, ... holding a
    state dict, or a dict with ``theta`` / ``state_dict`` / ``model``).
    """
    import torch

    from neuromaml.meta.architectures import config_from_dict
    from neuromaml.meta.models import build_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise fail(run_dir, "not a directory", "give the output directory of neuromaml meta-train")
    if is_meta_train_run(run_dir):
        from neuromaml.io import live_writer
        from neuromaml.meta.train import LOCK_NAME
        from neuromaml.meta.runs import load_run as meta_load_run

        pid = live_writer(run_dir, LOCK_NAME)
        if pid:
            print(f"note: {run_dir}: meta-train (pid {pid}) is still writing this run: its best.pt so far is used",
                  file=sys.stderr)

        model, _params, _lrs, cfg = meta_load_run(run_dir)
        _check_spiking(run_dir, cfg.model.name)
        return model, cfg.model, None
    cfg_dict, cfg_path = _read_config(run_dir)
    try:
        if not isinstance(cfg_dict, dict) or not isinstance(cfg_dict.get("model", cfg_dict), dict):
            raise TypeError("the config (or its 'model' section) is not a mapping")
        section = cfg_dict["model"] if "model" in cfg_dict else {
            k: v for k, v in cfg_dict.items() if k not in ("classes", "task", "inner", "outer", "seed")}
        mcfg = config_from_dict(section)
        if "n_way" not in cfg_dict.get("model", {}) and isinstance(cfg_dict.get("task"), dict):
            mcfg.n_way = int(cfg_dict["task"].get("n_way", mcfg.n_way))
    except (TypeError, ValueError) as exc:
        raise fail(cfg_path, f"not a model config ({exc})",
                   "give a mapping with a 'model' section (name, hidden, ...) as meta/configs/small.yaml") from None
    ckpts = [run_dir / n for n in CHECKPOINT_NAMES if (run_dir / n).exists()] or sorted(run_dir.glob("*.pt"))
    if not ckpts:
        raise fail(run_dir, "no checkpoint (*.pt)", "finish meta-training, or use --model NAME")
    try:
        obj = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a user error
        raise fail(ckpts[0], f"cannot read checkpoint ({exc.__class__.__name__})", "re-run meta-training") from None
    sd = _state_dict(obj)
    if sd is None:
        raise fail(ckpts[0], "no state dict (keys theta/state_dict/model)", "re-run meta-training")
    _check_spiking(cfg_path, mcfg.name)
    model = build_model(mcfg)
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if k in own}
    missing = [k for k in model.param_names() if k not in sd]
    if missing:
        raise fail(ckpts[0], f"checkpoint lacks {missing[:3]}", f"check that {cfg_path.name} matches the checkpoint")
    try:
        model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        raise fail(ckpts[0], f"weights do not fit model {mcfg.name!r} ({str(exc).splitlines()[-1].strip()})",
                   f"check {cfg_path.name}") from None
    return model, mcfg, _classes(cfg_dict.get("classes"), mcfg.n_way, cfg_path)


def _classes(classes, n_out: int, cfg_path: Path) -> list[str] | None:
    """A foreign run's ``classes``: one name per output neuron (numbers become text), else refused
    here: a bundle written with them would be refused by every reader."""
    if classes is None:
        return None
    if not isinstance(classes, list) or not all(isinstance(c, (str, int)) and not isinstance(c, bool)
                                                for c in classes):
        raise fail(cfg_path, f"field 'classes' is {str(classes)[:80]}, not a list of class names",
                   "give one name per output neuron, or remove the field")
    if len(classes) != n_out:
        raise fail(cfg_path, f"field 'classes' names {len(classes)} classes but the model has {n_out} output "
                   "neurons", "give one name per output neuron, or remove the field")
    names = [str(c) for c in classes]
    if any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise fail(cfg_path, f"field 'classes' holds empty or repeated names ({str(names)[:80]}; numbers count as "
                   "their text)", "give each output neuron its own name, or remove the field")
    return names


def _rule_inner(run_dir: Path) -> tuple[dict, Path] | None:
    """The ``inner`` section of a run meta-trained through the rule (``inner.rule: three_factor``)
    and the path of its config; None for other runs."""
    from neuromaml.meta.config import read_file

    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.exists():
        return None
    inner = read_file(cfg_path).get("inner") or {}
    return (inner, cfg_path) if inner.get("rule") == "three_factor" else None


def trained_label_window(run_dir: Path, steps: int) -> list[int] | None:
    """The label window a rule-trained run was meta-trained with (``inner.label_window``, steps of
    each support sample; None: the default readout window [burn_in, T)). The bundle presents labels
    over the same steps (``adapt.label_window``, relative to the same sample start)."""
    found = _rule_inner(run_dir)
    if found is None or not found[0].get("label_window"):
        return None
    inner, cfg_path = found
    win = [int(v) for v in inner["label_window"]]
    if win[1] > steps:
        raise fail(cfg_path, f"'inner.label_window' is {win}, beyond the bundle's {steps} time steps",
                   f"export with --steps {win[1]} or more (the run was trained with the window)")
    return win


def trained_rule(run_dir: Path):
    """The rule a run was meta-trained through (``inner.rule: three_factor``): the
    deployed rule must be that one. None for SGD-trained runs (default rule)."""
    found = _rule_inner(run_dir)
    if found is None:
        return None
    inner, cfg_path = found
    from neuromaml.onchip.rule import RuleError, RuleSpec

    fields = dict(inner.get("rule_spec") or {})
    if inner.get("learn_rule"):
        try:
            e_max = RuleSpec(**fields).e_max
        except (RuleError, TypeError) as exc:
            raise fail(cfg_path, f"'inner.rule_spec': {exc}", "fix the run's config") from None
        fields.update(_learned_rule_values(Path(run_dir), list(inner["learn_rule"]), e_max))
    try:
        return RuleSpec(**fields)
    except RuleError as exc:
        raise fail(cfg_path, f"the run's trained rule is not representable ({exc})",
                   "meta-train again with a narrower inner.rule_spec, or export and run neuromaml calibrate") from None


# what the chip represents, for each meta-learned hyperparameter (onchip.rule.RuleSpec's ranges)
_ROUNDING = {"eta_exp": (int, -10, 5), "x1_tau": (int, 1, 255), "error_threshold": (int, 0, 126),
             "factor_threshold": (int, 0, 126), "eq6_threshold": (int, 0, 510), "surrogate_beta": (float, 0.0, 1e6)}


def _learned_rule_values(run_dir: Path, names: list[str], e_max: int) -> dict:
    """The meta-learned rule hyperparameters of a run's best checkpoint (``inner.learn_rule``),
    rounded to what the chip represents (as the torch twin rounds them in its forward pass)."""
    import torch

    path = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "ckpt.pt"
    try:
        lrs = torch.load(path, map_location="cpu", weights_only=False)["lrs"]
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a user error
        raise fail(path, f"cannot read the learned rule hyperparameters ({type(exc).__name__})",
                   "re-run meta-training") from None
    out = {}
    for name in names:
        key = f"rule.{name}"
        if key not in lrs:
            raise fail(path, f"holds no learned '{name}' (inner.learn_rule names it)", "re-run meta-training")
        kind, lo, hi = _ROUNDING[name]
        hi = min(hi, e_max - 1) if name == "error_threshold" else hi
        v = min(max(float(lrs[key]), lo), hi)
        out[name] = int(round(v)) if kind is int else v
    return out


def _model_config_dict(mcfg) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(mcfg).items()}


def _burn_in(mcfg, steps: int, where) -> int:
    """A trained run's readout window must fit the exported sample length; a fresh ``--model``
    network (deployment checks) takes the window ``[min(burn_in, steps - 1), steps)``."""
    if where is None:
        if steps <= mcfg.burn_in:
            print(f"note: --steps {steps}: the readout window is [{steps - 1}, {steps}) (the model's burn-in "
                  f"{mcfg.burn_in} does not fit)", file=sys.stderr)
        return min(int(mcfg.burn_in), steps - 1)
    if steps <= mcfg.burn_in:
        raise fail(where, f"--steps {steps} leaves no readout window after the model's burn-in of {mcfg.burn_in} "
                   "steps", f"pass --steps {mcfg.burn_in + 1} or more (it was trained with {mcfg.time_steps})")
    return int(mcfg.burn_in)


def export_run(run_dir: Path, out: Path, *, steps: int | None = None, allow_clip: bool = False,
               overwrite: bool = False, input_shape: tuple[int, int, int] | None = None) -> dict:
    """Export a meta-train RUN_DIR as a bundle (what ``neuromaml export RUN_DIR`` does).

    A run meta-trained through the rule deploys exactly that rule (``adapt.rule_source``
    'trained') and the label window it was trained with; an SGD-trained run gets the default rule, to be fitted by
    ``neuromaml calibrate``. ``input_shape`` (C, H, W), when given, must be the model's.
    Returns the manifest.
    """
    from neuromaml.deploy.bundle import export_bundle, weights_fingerprint

    run_dir = Path(run_dir)
    model, mcfg, classes = load_run(run_dir)
    if input_shape and tuple(input_shape) != tuple(mcfg.input_shape):
        raise fail(run_dir, f"--input-shape {tuple(input_shape)} disagrees with the model's "
                   f"{tuple(mcfg.input_shape)}", "leave --input-shape out")
    steps = steps or mcfg.time_steps
    rule = trained_rule(run_dir)
    man = export_bundle(model, out, input_shape=tuple(mcfg.input_shape), time_steps=steps,
                        burn_in=_burn_in(mcfg, steps, run_dir), classes=classes, source_run=str(run_dir.resolve()),
                        rule=rule, rule_source="trained" if rule is not None else None,
                        label_window=trained_label_window(run_dir, steps),
                        allow_clip=allow_clip, overwrite=overwrite,
                        extra={"model_config": _model_config_dict(mcfg), "fresh_init_seed": None,
                               "source_weights_sha256": weights_fingerprint(model)})
    return man


def reference_model(man: dict | None):
    """The slayer network a bundle came from: its source RUN_DIR, or a fresh init re-built by seed."""
    if not man:
        return None
    from neuromaml.deploy.bundle import as_dict, source_run_changed

    man = as_dict(man)
    src = man.get("source_run")
    if src and Path(src).is_dir():
        model = load_run(Path(src))[0]
        if source_run_changed(man, model):
            print(f"warning: {src}: the source run's weights changed since this bundle was exported (trained "
                  "on?); they are not the bundle's, so slayer is not compared (fix: re-export to compare)",
                  file=sys.stderr)
            return None
        return model
    if man.get("fresh_init_seed") is not None and man.get("model_config"):
        from neuromaml.meta.architectures import config_from_dict
        from neuromaml.meta.models import build_model

        return build_model(config_from_dict(man["model_config"]), seed=int(man["fresh_init_seed"]))
    return None
