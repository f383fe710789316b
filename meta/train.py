"""Meta-training loop: Adam + cosine decay over meta-batches of tasks, atomic
checkpoints, resume, best-on-validation, optional torch.distributed scale-out.

Meta-step ``s`` (0-based) uses the training tasks ``s*B .. s*B + B - 1`` of a
``TaskSampler(train, seed)`` (tasks are pure functions of (seed, index)), so a
resumed run sees exactly the tasks an uninterrupted one would. The outer
learning rate at step ``s`` of ``S`` is

    lr_s = lr * (r + (1 - r) * (1 + cos(pi * s / S)) / 2),   r = lr_min_ratio.

Run directory::

    config.yaml     resolved configuration      run.json   seed, data, versions
    ckpt.pt         latest checkpoint           best.pt    best on meta-validation
    history.jsonl   one line per validation     summary.json

Reading a run that exists (its checkpoints, ``load_run``, what ``--resume`` checks) is
``meta.runs``; its public names stay importable from here.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from neuromaml.io import NeuromamlError, atomic_path, fail, folder_lock, package_versions, write_json

from .config import RunConfig, validate
from .maml import InnerLR, adapted_names, evaluate_task, learned_rule_init
from .models import build_model
from .runs import (CKPT_FORMAT, _file_sha256, _init_from, _load_states, _trained_classes, load_checkpoint,
                   record_resume, resume_point)
from .runs import _config_diff, load_run, seen_class_note  # noqa: F401 (re-exported: meta.runs is their home)

from .distributed import (_world, distributed_meta_gradient, finish_distributed,  # noqa: F401 (re-exported)
                          maybe_init_distributed, resolve_device)


def cosine_lr(step: int, total: int, ratio: float) -> float:
    """Multiplier of the outer lr at ``step`` (see module docstring)."""
    if total <= 0:
        return 1.0
    return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


class Trainer:
    """Holds model, inner learning rates, optimizer and the samplers of one run."""

    def __init__(self, cfg: RunConfig, data_path, seed: int, device="cpu"):
        from .metadataset import MetaDataset
        from .tasks import TaskSampler

        self.cfg, self.seed, self.data_path = cfg, seed, Path(data_path)
        self.device = torch.device(device)
        self.ds = MetaDataset(data_path)
        t = cfg.task
        self.train_tasks = TaskSampler(self.ds, "train", t.n_way, t.k_shot, t.n_query, seed=seed)
        self.val_tasks = TaskSampler(self.ds, "val", t.n_way, t.k_shot, t.n_query, seed=seed + 1)
        self.model = build_model(cfg.model, seed=seed).to(self.device)
        self.params = self.model.meta_params()
        self.lrs = InnerLR(adapted_names(self.model, cfg.inner), cfg.inner.lr, cfg.inner.learn_lr,
                           learned_rule_init(cfg.inner)).to(self.device)
        rule_hp = list(self.lrs.rule.parameters())
        others = [p for p in self.lrs.parameters() if p.requires_grad and all(p is not q for q in rule_hp)]
        train_list = list(self.params.values()) + others
        self.trained = train_list + rule_hp
        # the rule's hyperparameters live on the chip's integer grid: they need steps of a good
        # fraction of one unit to move at all, not the weights' outer rate (inner.rule_lr)
        groups = [{"params": train_list}] + ([{"params": rule_hp, "lr": cfg.inner.rule_lr or cfg.outer.lr}]
                                             if rule_hp else [])
        self.opt = torch.optim.Adam(groups, lr=cfg.outer.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: cosine_lr(s, cfg.outer.steps, cfg.outer.lr_min_ratio))
        self.step = 0
        self.best_val = -1.0
        self.best_step = -1
        # The run's own random stream, seeded by the run's seed. The process-wide torch generator
        # is seeded at random when torch starts (torch.initial_seed() differs per process), so
        # saving it made two identical runs' checkpoints differ, and restoring it on resume
        # reached outside the run. Tasks come from the seeded TaskSamplers and the initial
        # weights from build_model(seed); anything random added to training draws from this.
        self.generator = torch.Generator().manual_seed(int(seed))

    # -- checkpoints ----------------------------------------------------
    def state(self) -> dict:
        return {"format": CKPT_FORMAT, "version": 1, "step": self.step, "config": self.cfg.to_dict(),
                "seed": self.seed, "model": self.model.state_dict(), "lrs": self.lrs.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "rng": self.generator.get_state(), "best_val": self.best_val, "best_step": self.best_step}

    def save(self, path) -> None:
        for p in self.params.values():
            if not torch.isfinite(p).all():
                name = next(k for k, v in self.params.items() if not torch.isfinite(v).all())
                run = Path(path).parent
                fix = ("meta-train again into a new --out with a lower outer.lr or inner.lr"
                       + (f", adding --init {run} to start from this run's last good weights"
                          if (run / "best.pt").exists() or (run / "ckpt.pt").exists() else "")
                       + "; check the data for empty or saturated frames (neuromaml data info)")
                raise fail(path, f"parameter '{name}' is not finite (NaN or inf) at meta-step {self.step}: "
                           "training diverged; this checkpoint was not written", fix)
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    def load(self, path) -> None:
        state = load_checkpoint(path)
        _load_states(path, (self.model, state["model"]), (self.lrs, state["lrs"]))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.generator.set_state(state["rng"])
        self.step, self.best_val, self.best_step = state["step"], state["best_val"], state["best_step"]

    # -- steps ------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        b = self.cfg.outer.meta_batch
        tasks = [self.train_tasks.sample(self.step * b + j).to(self.device) for j in range(b)]
        self.opt.zero_grad(set_to_none=True)
        try:
            loss, acc = distributed_meta_gradient(self.model, self.params, tasks, self.cfg.inner, self.lrs)
        except FloatingPointError:
            loss = float("nan")
        if not math.isfinite(loss):
            raise NeuromamlError(
                f"meta-loss is not finite at step {self.step} (fix: lower outer.lr / inner.lr or "
                f"model.logit_scale; the last good checkpoint was kept)")
        if self.cfg.outer.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.trained, self.cfg.outer.clip_grad)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return loss, acc

    def validate(self, n_tasks: int | None = None) -> float:
        n = n_tasks or self.cfg.outer.val_tasks
        accs = [evaluate_task(self.model, self.params, self.val_tasks.sample(i).to(self.device), self.cfg.inner, self.lrs)
                for i in range(n)]
        return sum(accs) / len(accs)


def _check_data(cfg: RunConfig, shape, path, adopt: bool) -> None:
    c, h, w, t = shape
    m = cfg.model
    if adopt:
        given = (tuple(int(v) for v in m.input_shape), int(m.time_steps))
        if given != ((c, h, w), t) and given != ((2, 16, 32), 100):     # (2, 16, 32), 100: the defaults
            print(f"note: the config's model.input_shape {given[0]} / time_steps {given[1]} are replaced by the "
                  f"data's {(c, h, w)} / {t} ({path})", file=sys.stderr)
        m.input_shape, m.time_steps = (c, h, w), t
        if not 0 <= m.burn_in < t:
            raise fail(path, f"frames have {t} time step(s), not more than the config's model.burn_in {m.burn_in} "
                       "(the readout and the gradients cover [burn_in, T))",
                       f"set model.burn_in below {t} in the config, or rebuild the data with a longer --duration-us")
        return
    if tuple(m.input_shape) != (c, h, w) or m.time_steps != t:
        raise fail(path, f"frames are (C,H,W,T)={tuple(shape)} but the model expects "
                   f"{tuple(m.input_shape) + (m.time_steps,)}", "use the data file the run was trained on")


LOCK_NAME = ".neuromaml-run.lock"


@contextlib.contextmanager
def _run_lock(out: Path):
    """One writer per run folder: a second meta-train of the same --out (another --resume, say)
    is refused while the first runs; a lock left by a killed process (its pid is gone) is taken
    over. Rank 0 holds it under torchrun."""
    if _world()[0] != 0:
        yield
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, "another meta-train (pid {pid}) is writing this run", LOCK_NAME):
            yield
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()                               # a run that failed before writing anything


def meta_train(data, cfg: RunConfig | None, out_dir, resume: bool = False, steps: int | None = None,
               seed: int | None = None, progress: bool = True, on_step=None, init=None,
               device: str | None = "cpu") -> dict:
    """Meta-train (or resume) into ``out_dir`` (see ``_meta_train``), holding the run's lock."""
    with _run_lock(Path(out_dir)):
        return _meta_train(data, cfg, out_dir, resume=resume, steps=steps, seed=seed, progress=progress,
                           on_step=on_step, init=init, device=device)


def _meta_train(data, cfg: RunConfig | None, out_dir, resume: bool = False, steps: int | None = None,
                seed: int | None = None, progress: bool = True, on_step=None, init=None,
                device: str | None = "cpu") -> dict:
    """Meta-train (or resume) into ``out_dir``; returns the summary dict.

    ``device``: where the network and tasks live (``resolve_device``: auto, cpu, cuda,
    cuda:N). On a GPU the forward and both loops run in torch's CUDA ops (twice
    differentiable; slayer's CUDA neuron kernels are not used), convolutions with
    torch's default TF32; checkpoints load on any device.

    ``init``: a finished run directory whose best initialization (weights and inner
    learning rates) this run starts from instead of a random one, e.g. to continue
    meta-training an SGD-trained theta0* through the on-chip rule.

    ``on_step(trainer)`` is called after each meta-step (tests use it to interrupt).
    """
    import yaml
    from tqdm import tqdm

    out = Path(out_dir)
    rank, _ = _world()
    ckpt = out / "ckpt.pt"
    if resume:
        resume_from, cfg, seed = resume_point(out, cfg, seed, rank)
    else:
        seed = cfg.seed if seed is None else seed
        cfg.seed = seed
        if ckpt.exists():
            raise fail(ckpt, "a run already exists in this directory", "add --resume or choose a new --out")
    if steps is not None:
        if steps < 0:
            raise fail(None, f"--steps is {steps}", "use a count >= 0")
        cfg.outer.steps = steps
    from .metadataset import MetaDataset

    ds = MetaDataset(data)
    _check_data(cfg, ds.shape, data, adopt=not resume)
    validate(cfg, out / "config.yaml" if (out / "config.yaml").exists() else None,
             {s: len(v) for s, v in ds.splits.items() if s in ("train", "val")}, data=data)
    dev = resolve_device(device)
    tr = Trainer(cfg, data, seed, dev)
    if resume:
        tr.load(resume_from)
        if rank == 0:
            record_resume(out, data, tr.step, cfg.outer.steps, ds, steps)
    elif init is not None:
        _init_from(tr, Path(init))
    pre_hist = act_init = None
    rate = cfg.model.init_rate
    if not resume and init is None:
        from .init import activity_init

        act_init = activity_init(tr.model, tr.ds, tr.device)     # model.init_rate; None when 0
        if rate and rank == 0:
            missed = [f"{r['kind']} {r['block']} ({r['rate_after']:.3f})" for r in act_init or [] if not r["reached"]]
            if act_init == []:
                print(f"note: model.init_rate {rate}: the network has no block but the last to scale; "
                      "nothing was changed", file=sys.stderr)
            elif missed:
                print(f"note: model.init_rate {rate} not reached by {', '.join(missed)} within the scale range "
                      "(run.json 'activity_init' has every block's rate)", file=sys.stderr)
    elif rate and init is not None and rank == 0:
        print(f"note: model.init_rate {rate} is not applied: the run starts from --init {init}'s weights",
              file=sys.stderr)
    if not resume and init is None and cfg.outer.pretrain_epochs > 0:
        pre_hist = _pretrain(tr, progress and rank == 0)
    if not resume and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if pre_hist is not None:
            write_json(out / "pretrain.json", {"epochs": cfg.outer.pretrain_epochs, "lr": cfg.outer.pretrain_lr,
                                               "history": pre_hist})
        write_json(out / "run.json", {"seed": seed, "data": str(Path(data).resolve()),
                                      "data_sha256": _file_sha256(data),
                                      # the classes this run learned from: evaluating on them is not meta-test
                                      "trained_classes": _trained_classes(ds),
                                      "versions": package_versions(), "started": time.time(),
                                      "device": str(dev),
                                      "init": str(Path(init).resolve()) if init is not None else None,
                                      "activity_init": act_init})
    o = cfg.outer
    t0 = time.perf_counter()
    bar = tqdm(total=o.steps, initial=tr.step, disable=not progress or rank != 0, desc="meta-train")
    loss = acc = float("nan")
    flat, collapsed_at = 0, None          # steps in a row whose loss is ln(n_way): all logits equal
    while tr.step < o.steps:
        loss, acc = tr.train_step()
        flat = flat + 1 if abs(loss - math.log(cfg.task.n_way)) < 1e-6 else 0
        if flat == max(10, o.val_every) and collapsed_at is None and rank == 0:
            collapsed_at = tr.step - flat + 1
            bar.write(f"warning: {out}: the meta-loss has been ln({cfg.task.n_way}) since step {collapsed_at}: every "
                      "output neuron gives the same count after adaptation (silent outputs: activity collapsed), "
                      f"so meta-training has stopped learning; best.pt keeps step {tr.best_step} (fix: lower outer.lr, "
                      "raise model.weight_scale or inner.lr, or stop here)", file=sys.stderr)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}",
                        val=f"{tr.best_val:.2f}" if tr.best_val >= 0 else "n/a")    # -1: not validated yet
        if rank == 0:
            if tr.step % o.val_every == 0 or tr.step == o.steps:
                val = tr.validate()
                with open(out / "history.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": tr.step, "loss": loss, "acc": acc, "val_acc": val}) + "\n")
                if val > tr.best_val:
                    tr.best_val, tr.best_step = val, tr.step
                    tr.save(out / "best.pt")
            if tr.step % o.checkpoint_every == 0 or tr.step == o.steps:
                tr.save(ckpt)
        if on_step is not None:
            on_step(tr)
    bar.close()
    summary = {"steps": tr.step, "seed": seed, "final_loss": loss, "final_train_acc": acc,
               "best_val_acc": tr.best_val, "best_step": tr.best_step, "collapsed_at_step": collapsed_at,
               "seconds_this_run": time.perf_counter() - t0, "device": str(dev), "config": cfg.to_dict(),
               "pretrain_final": pre_hist[-1] if pre_hist else None,
               "checkpoint": str(ckpt), "best": str(out / "best.pt")}
    if rank == 0:
        if not ckpt.exists():
            tr.save(ckpt)
        write_json(out / "summary.json", summary)
    return summary


def _pretrain(tr: Trainer, progress: bool) -> list[dict]:
    """``outer.pretrain_epochs``: the run's network trained first as a classifier of all
    meta-train classes (``meta.transfer.pretrain``); every layer but the final one then
    starts meta-training from it (the final layer as the model config initialises it: at
    zero by default, so one inner step starts prototype-like on pre-trained features).
    A run killed during pre-training has no checkpoint and starts again from scratch."""
    from .transfer import TransferConfig, load_features, pretrain

    o = tr.cfg.outer
    t0 = time.perf_counter()
    pre, hist = pretrain(tr.cfg.model, tr.ds, TransferConfig(epochs=o.pretrain_epochs, lr=o.pretrain_lr),
                         seed=tr.seed, progress=progress, device=tr.device)
    load_features(tr.model, pre)
    hist[-1]["seconds_total"] = time.perf_counter() - t0
    return hist
