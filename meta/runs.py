"""Reading an existing meta-training run: its checkpoints, its config, and what resuming it checks.

* ``load_checkpoint(path)``: a ``ckpt.pt``/``best.pt`` as a dict (a missing, truncated or foreign
  file is a NeuromamlError naming the run's other checkpoint where it has one).
* ``load_run(RUN_DIR)``: (model, params, lrs, cfg) of a finished run, refused where the folder's
  ``config.yaml`` no longer describes the checkpoint.
* ``seen_class_note(RUN_DIR, ds)``: whether a test split holds classes the run trained on.
* ``resume_point`` / ``record_resume``: what ``meta.train.meta_train(resume=True)`` checks before
  and writes after it loads the checkpoint (an edited ``config.yaml``, another ``--config`` or
  ``--seed``, validation lines past the checkpoint, data changed since the run started).
* ``_init_from``: another run's best weights and inner rates as a new run's start (``--init``).

The training loop and the checkpoint writer are ``meta.train``; this module does not import it.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neuromaml.io import NeuromamlError, atomic_path, fail, write_json

from .architectures import ModelConfig
from .config import RunConfig, from_dict
from .maml import InnerLR, adapted_names, learned_rule_init
from .models import build_model

if TYPE_CHECKING:
    from .train import Trainer

CKPT_FORMAT = "neuromaml-meta-ckpt"


def load_checkpoint(path) -> dict:
    """Read a checkpoint; a missing, truncated or foreign file is a NeuromamlError."""
    path = Path(path)
    if not path.exists():
        raise fail(path, "checkpoint not found", "start without --resume, or point --out at the run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise fail(path, f"checkpoint is corrupt or unreadable ({exc.__class__.__name__})", _corrupt_fix(path)) from None
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise fail(path, "not a neuromaml meta-training checkpoint (format field missing)",
                   "point at a ckpt.pt/best.pt written by `neuromaml meta-train`")
    return state


def _corrupt_fix(path: Path) -> str:
    """What to do about a damaged checkpoint: use the run's other one where it has it (--resume and
    export fall back to it), else train again."""
    other = path.with_name({"ckpt.pt": "best.pt", "best.pt": "ckpt.pt"}.get(path.name, "ckpt.pt"))
    if other != path and other.is_file():
        return (f"delete it: --resume then continues from {other.name}" + (" (the best validated step)"
                if other.name == "best.pt" else "") + f" and export uses {other.name}")
    return (f"the run cannot be continued: train it again (meta-train without --resume, in a new --out or "
            f"after deleting {path.parent})")


def _load_states(path, *pairs) -> None:
    """``module.load_state_dict(sd)`` for each pair; a mismatch names the checkpoint."""
    for module, sd in pairs:
        try:
            module.load_state_dict(sd)
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise fail(path, f"its weights do not fit the config stored with them "
                       f"({str(exc).strip().splitlines()[-1].strip()[:200]})",
                       "use the checkpoint written with this config (or train the run again)") from None


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif (list(va) if isinstance(va, tuple) else va) != (list(vb) if isinstance(vb, tuple) else vb):
            out.append(f"{prefix}{k}")
    return out


def _config_yaml_diff(path: Path, stored: dict) -> list[str]:
    """Fields in which a run's config.yaml differs from the config stored in its checkpoint, both
    read with the defaults of today's fields (an older run lacks a field added since). outer.steps is
    left out: --resume --steps extends a run without rewriting config.yaml."""
    import yaml

    from .config import _load_yaml, _YamlDuplicate, from_dict

    try:
        folder = _load_yaml(path.read_text())      # as meta-train --config reads it (a key given twice)
    except _YamlDuplicate as exc:
        raise fail(path, f"key {exc.args[0]!r} appears twice in one section (line {exc.args[1]}); YAML would keep "
                   "only the last one: it was edited since the run started", "undo the edit") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise fail(path, f"cannot be parsed ({exc.__class__.__name__}): it was edited since the run started; the "
                   "run's config is the one stored in its checkpoint", "undo the edit (fix the syntax)") from None
    held, mine = from_dict(folder, path).to_dict(), from_dict(stored, path).to_dict()
    for d in (held, mine):
        d.get("outer", {}).pop("steps", None)
    return _config_diff(held, mine)


def load_run(run_dir, which: str = "best"):
    """(model, params, lrs, cfg) of a finished run (``which``: best | ckpt)."""
    run = Path(run_dir)
    path = run / f"{which}.pt"
    if which == "best" and not path.exists():
        path = run / "ckpt.pt"
    state = load_checkpoint(path)
    cfg = from_dict(state["config"], run / "config.yaml")
    if (run / "config.yaml").is_file():          # the folder's record must describe this checkpoint
        import yaml

        try:
            folder = yaml.safe_load((run / "config.yaml").read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            folder = None
        if isinstance(folder, dict) and isinstance(folder.get("model"), dict):
            mine = cfg.to_dict()["model"]
            # a field added after the run was written (model.init_rate) is missing from an older
            # run's config.yaml: there it means the field's default, as from_dict reads it
            older = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                     if f.name not in folder["model"] and f.default is not dataclasses.MISSING}
            folder_model = {**{k: v for k, v in older.items() if mine.get(k) == v}, **folder["model"]}
            diff = _config_diff(folder_model, mine, "model.")
            if diff:
                raise fail(run / "config.yaml", f"differs from the config stored in {path.name} in "
                           f"{', '.join(diff[:4])}: config.yaml was edited, or {path.name} comes from another run",
                           f"undo the edit of config.yaml (the checkpoint's config is the one trained), or put the "
                           f"run's own {path.name} back")
    model = build_model(cfg.model)
    lrs = InnerLR(adapted_names(model, cfg.inner), cfg.inner.lr, cfg.inner.learn_lr, learned_rule_init(cfg.inner))
    _load_states(path, (model, state["model"]), (lrs, state["lrs"]))
    return model, model.meta_params(), lrs, cfg


def seen_class_note(run, ds, split: str = "test") -> str | None:
    """A sentence where ``split`` of the meta-dataset ``ds`` holds classes the run meta-trained on
    (another class split of the same data, a file rebuilt with --digit-split ...): accuracy on
    them is not one-shot accuracy on new classes. None where nothing is shared, or the run
    predates the record (run.json ``trained_classes``)."""
    from neuromaml.io import read_json

    try:
        seen = set(read_json(Path(run) / "run.json").get("trained_classes") or [])
    except (NeuromamlError, AttributeError):
        return None
    both = sorted(ds.classes[int(c)] for c in ds.splits.get(split, []) if ds.classes[int(c)] in seen)
    if not both:
        return None
    return (f"{ds.path}: {len(both)} of the {len(ds.splits[split])} {split} classes (e.g. {both[0]!r}) are classes "
            f"{run} meta-trained on (train or val split of its data): if they are the same classes, this is not "
            "accuracy on new classes")


def resume_point(out: Path, cfg: RunConfig | None, seed: int | None, rank: int) -> tuple[Path, RunConfig, int]:
    """Where ``meta_train(resume=True)`` continues the run in ``out``: (the checkpoint to load, the
    run's config as stored in it, the run's seed). ``ckpt.pt``, else ``best.pt`` (said so); a missing
    ``config.yaml`` is written again from the checkpoint (rank 0); an edited one, a ``cfg`` (--config)
    or ``seed`` that differs from the run's is an error naming the fields."""
    import yaml

    ckpt = out / "ckpt.pt"
    resume_from = ckpt
    if not ckpt.exists() and (out / "best.pt").exists():
        resume_from = out / "best.pt"           # ckpt.pt deleted (damaged): continue from the best step
    if not resume_from.exists():
        raise fail(ckpt, "checkpoint not found: there is no run to resume here",
                   "start without --resume (in a new --out, or after deleting this folder's files)")
    state = load_checkpoint(resume_from)
    if resume_from != ckpt and rank == 0:
        print(f"note: {ckpt} is missing: resuming from {resume_from.name} (meta-step {state['step']}); the "
              "steps after it are trained again", file=sys.stderr)
    if not (out / "config.yaml").exists():
        if rank == 0:
            print(f"note: {out / 'config.yaml'} is missing: written again from the config stored in "
                  f"{resume_from.name}", file=sys.stderr)
            with atomic_path(out / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(state["config"], sort_keys=False))
    else:
        edited = _config_yaml_diff(out / "config.yaml", state["config"])
        if edited:
            raise fail(out / "config.yaml", f"differs from the config stored in {resume_from.name} in "
                       f"{', '.join(edited[:6])}" + (" ..." if len(edited) > 6 else "") + ": it was edited "
                       f"since the run started (--resume continues the checkpoint's config, not the file's), or "
                       f"{resume_from.name} comes from another run", "undo the edit to resume, or train the "
                       f"edited config as a new run: neuromaml meta-train --config {out / 'config.yaml'} "
                       "--out NEW_DIR")
    given, cfg = cfg, from_dict(state["config"], out / "config.yaml")
    if given is not None:
        given.outer.steps = cfg.outer.steps   # --steps is how a resumed run is extended
        given.seed = cfg.seed if seed is None else seed
        # frame shape and time steps are adopted from the data, not taken from --config
        given.model.input_shape, given.model.time_steps = cfg.model.input_shape, cfg.model.time_steps
        diff = _config_diff(given.to_dict(), cfg.to_dict())
        if diff:
            raise fail(out / "config.yaml", f"--resume continues this run with its own config, but the "
                       f"--config given differs in {', '.join(diff[:6])}" + (" ..." if len(diff) > 6 else ""),
                       "drop --config to resume (change only --steps), or start a new run in another --out")
    if seed is not None and seed != state["seed"]:
        raise fail(out / "config.yaml", f"--seed {seed} differs from the run's seed {state['seed']}",
                   "drop --seed to resume, or start a new run in another --out")
    return resume_from, cfg, state["seed"]


def record_resume(out: Path, data, done: int, total: int, ds, steps: int | None) -> None:
    """After a resumed run loaded its checkpoint at meta-step ``done`` (rank 0): history.jsonl cut
    back to it, notes on the data and the step count, and ``config.yaml``'s outer.steps kept the
    run's target ``total`` (``steps``: the --steps given, None when not)."""
    import yaml

    _truncate_history(out / "history.jsonl", done)
    _resume_notes(out, data, done, total, ds)
    if not (out / "config.yaml").exists():
        return
    # config.yaml is the run's record: keep its outer.steps the run's target (--steps extends a
    # resumed run; an edit of the file's value is not how, and is said so)
    folder = yaml.safe_load((out / "config.yaml").read_text())
    held = (folder.get("outer") or {}).get("steps") if isinstance(folder, dict) else None
    if isinstance(folder, dict) and isinstance(folder.get("outer") or {}, dict) and held != total:
        if steps is None:
            print(f"note: {out / 'config.yaml'} says outer.steps {held!r}; --resume runs the checkpoint's "
                  f"{total} (pass --steps N to extend the run); the file now says so", file=sys.stderr)
        folder.setdefault("outer", {})["steps"] = total
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(folder, sort_keys=False))


def _truncate_history(path: Path, step: int) -> None:
    """Drop validation lines written after the checkpoint a run resumes from (they are
    computed again), so history.jsonl has one line per validation step."""
    if not path.exists():
        return
    keep = []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise fail(path, "is not a text file (damaged)", "delete or move it: --resume writes it again") from None
    for line in text.splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            continue
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in keep))


def _resume_notes(out: Path, data, done: int, total: int, ds=None) -> None:
    """What a resumed run does differently from what the user may expect, said on stderr; a run
    resumed on other data (another path, or the same path rewritten) adds that data's classes to
    run.json's ``trained_classes`` (evaluate and emulate compare test splits with them)."""
    try:
        meta = json.loads((out / "run.json").read_text())
        was, was_sha = meta.get("data"), meta.get("data_sha256")
    except (OSError, ValueError, AttributeError):
        meta, was, was_sha = None, None, None
    now = str(Path(data).resolve())
    sha = _file_sha256(data) if was_sha else None
    other = (was and Path(was) != Path(now)) or (was_sha and sha != was_sha)
    if was and Path(was) != Path(now):
        print(f"note: resuming on {now}, but the run started on {was} (same frame shape; "
              "tasks are drawn from the file given now)", file=sys.stderr)
    elif was_sha and sha != was_sha:
        print(f"note: {now} changed since the run started (its sha256 differs): tasks are drawn from the file "
              "as it is now", file=sys.stderr)
    if other and isinstance(meta, dict) and ds is not None and done < total:
        meta["trained_classes"] = sorted(set(meta.get("trained_classes") or []) | set(_trained_classes(ds)))
        meta.setdefault("resumed_on", []).append({"data": now, "data_sha256": sha or _file_sha256(data),
                                                  "from_step": done})
        write_json(out / "run.json", meta)
    if done >= total:
        print(f"note: the run already has {done} meta-steps (asked for {total}): nothing to train; "
              f"pass --steps above {done} to continue it", file=sys.stderr)


def _file_sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _trained_classes(ds) -> list[str]:
    return sorted(ds.classes[int(c)] for s in ("train", "val") for c in ds.splits[s])


def _init_from(tr: Trainer, run: Path) -> None:
    """Load another run's best weights and inner rates into a fresh trainer."""
    path = run / "best.pt" if (run / "best.pt").exists() else run / "ckpt.pt"
    if not path.exists():
        raise fail(run, "--init: not a meta-train run directory (no best.pt or ckpt.pt)",
                   "give --init a finished run's --out folder")
    state = load_checkpoint(path)
    try:
        tr.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise fail(path, f"its weights do not fit this run's model ({str(exc).splitlines()[-1].strip()})",
                   "use --init with a run of the same model config") from None
    if list(state["lrs"]["log_lr"].shape) == list(tr.lrs.log_lr.shape):
        with torch.no_grad():
            tr.lrs.log_lr.copy_(state["lrs"]["log_lr"])
