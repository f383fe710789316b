"""`neuromaml demo`: the whole path on the embedded default data.

Stages (each writes its outputs and JSON summary under OUT/, and is skipped
when a complete result is already there, so a second run reuses the first;
an interrupted meta-training resumes from its checkpoint):

1. data      OUT/data.h5            synthetic Double-digits meta-dataset (or --data FILE.h5, read in place)
2. train     OUT/run/               second-order MAML of the default network
   baselines OUT/baselines/         first-order MAML of it, MAML of the non-spiking CNN
3. evaluate  OUT/run/eval/          Table 2 (with the baselines) / Figs. 3-6 of the paper
4. export    OUT/bundle/            `neuromaml export` + `neuromaml calibrate` (meta-val tasks only)
5. verify    OUT/bundle/verify.json Lava vs fixed engine vs slayer, bit for bit
6. emulate   OUT/emulate/           one-shot learning on meta-test tasks: fast engine on
                                    many tasks, Lava on a few, agreement checked
7. report    OUT/report.md          the accuracy table, timings and plots
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

from neuromaml.emulator.demo_report import write_report  # noqa: F401 (the demo's report; re-exported)
from neuromaml.emulator.results import DemoSummary, EmulateSummary
from neuromaml.io import NeuromamlError, fail, package_versions, read_json, write_json

STAGES = ("data", "train", "baselines", "evaluate", "export", "verify", "emulate", "report")
# a stage built from another's outputs runs again whenever that one did (not reused)
DEPENDS = {"evaluate": ("train", "baselines"), "export": ("train",), "verify": ("export",),
           "emulate": ("export",)}


def _differs(recorded: dict, asked: dict) -> list[str]:
    """The one reuse check of the demo's stages: what a stage file records it was made with
    against what this run asks for, as 'key=recorded (asked value)' for each that differs."""
    return [f"{k}={recorded.get(k)!r} (asked {v!r})" for k, v in asked.items() if recorded.get(k) != v]


def _stale(path: Path, diff: list[str]) -> bool:
    """Say on stderr why a stage file is not reused (it runs again); True when it is not."""
    if diff:
        print(f"note: {path} was made with other settings ({', '.join(diff[:6])}"
              + (" ..." if len(diff) > 6 else "") + "): that stage runs again", file=sys.stderr)
    return bool(diff)


def _same_data(asked: dict, recorded: dict, data: Path, data_sha: str | None) -> dict:
    """``asked`` plus what identifies the data a stage file was made from: its sha256 where the file
    records one (a demo folder moved or copied elsewhere holds the same data under another path:
    its calibration and emulation stand), else its resolved path."""
    from neuromaml.deploy.bundle import sha256

    if recorded.get("data_sha256"):
        return {**asked, "data_sha256": data_sha or sha256(data)}
    return {**asked, "data": str(Path(data).resolve()), "data_sha256": data_sha or sha256(data)}


def demo_per_class(quick: bool) -> int:
    from neuromaml.meta.metadataset import DEFAULT_PER_CLASS

    return 8 if quick else DEFAULT_PER_CLASS


def _reused_json(path: Path, stage: str) -> dict | None:
    """A stage's summary file from an earlier run of this folder; None where the stage must run
    (again): the file is missing, or damaged (not a JSON object: said on stderr)."""
    if not path.exists():
        return None
    try:
        d = read_json(path)
    except NeuromamlError as exc:
        d = exc
    if isinstance(d, dict):
        return {**d, "reused": True, "reused_from": str(path)}
    why = str(d).removeprefix(f"{path}: ") if isinstance(d, NeuromamlError) else "not a JSON object"
    print(f"note: {path}: damaged ({why}): the {stage} stage runs again", file=sys.stderr)
    return None


def _stage_data(out: Path, quick: bool, seed: int, data: Path | None = None) -> dict:
    from neuromaml.meta.metadataset import MetaDataset, build_metadataset

    if data is not None:            # the user's meta-dataset, read in place
        return {"path": str(data), "reused": True, "user_data": True, **MetaDataset(data).summary()}
    path = out / "data.h5"
    if path.exists():
        try:
            ds = MetaDataset(path)
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(ds.attrs).items()}
            if not _stale(path, _differs(attrs, {"source": "synthetic", "per_class": demo_per_class(quick),
                                                 "seed": seed})):
                return {"path": str(path), "reused": True, **ds.summary()}
        except NeuromamlError:
            pass                    # a damaged file from an earlier run: rebuild it
        path.unlink()
    s = build_metadataset("synthetic", path, per_class=demo_per_class(quick), seed=seed, progress=True)
    return {"path": str(path), "reused": False, **s, **MetaDataset(path).summary()}


def demo_config(config: Path | None, quick: bool):
    from neuromaml.meta.config import load_config

    cfg = load_config(config or "small")
    if quick:
        # two meta-steps leave a zero head at zero after 8-bit quantization, and netx cannot load
        # an all-zero layer: smoke tests start from a random final layer
        cfg.model.zero_head = False
        cfg.outer.steps = 2
        cfg.outer.meta_batch = 1
        cfg.outer.val_every = 2
        cfg.outer.val_tasks = 2
        cfg.outer.checkpoint_every = 1
        cfg.outer.pretrain_epochs = min(cfg.outer.pretrain_epochs, 1)
        cfg.task.n_query = 2
    return cfg


def _run_differs(run: Path, cfg, seed: int, data_sha: str) -> list[str]:
    """What a run folder was trained with (config.yaml, run.json) against this demo's resolved
    config, seed and data: an edited --config file or other data retrains it."""
    import yaml

    from neuromaml.meta.config import from_dict
    from neuromaml.meta.runs import _config_diff

    try:
        held = from_dict(yaml.safe_load((run / "config.yaml").read_text()), run / "config.yaml").to_dict()
        meta = read_json(run / "run.json")
        meta = meta if isinstance(meta, dict) else {}
    except (OSError, NeuromamlError, yaml.YAMLError, UnicodeDecodeError, TypeError, ValueError):
        return ["config.yaml/run.json unreadable"]
    want = {**cfg.to_dict(), "seed": seed}
    for d in (held, want):       # adopted from the data by meta-train; the data's sha256 covers them
        d["model"] = {k: v for k, v in d["model"].items() if k not in ("input_shape", "time_steps")}
    return ([f"config {k}" for k in _config_diff(held, want)]
            + _differs(meta, {"seed": seed, "data_sha256": data_sha}))


def _stage_train(out: Path, data: Path, cfg, seed: int, run: Path | None = None,
                 data_sha: str | None = None) -> dict:
    from neuromaml.deploy.bundle import sha256
    from neuromaml.meta.train import meta_train

    run = out / "run" if run is None else run
    data_sha = data_sha or sha256(data)
    if (run / "config.yaml").exists() and _stale(run, _run_differs(run, cfg, seed, data_sha)):
        shutil.rmtree(run)          # the demo's own run, of another config or data: trained anew
    s = _reused_json(run / "summary.json", "train")
    if s is not None and s.get("steps") == cfg.outer.steps:
        return {**s, "run": str(run)}
    resume = (run / "ckpt.pt").exists()
    s = meta_train(data, cfg, run, resume=resume, seed=seed)
    return {**s, "reused": False, "resumed": resume, "run": str(run)}


def baseline_configs(cfg) -> dict:
    """The paper's Table 2 baselines, trained like the main run (same task, steps,
    meta-batch, seed): first-order MAML of the same SNN, and the same MAML on the
    non-spiking CNN over summed frames (``ann_cnn``)."""
    from neuromaml.meta.config import load_config

    fo = dataclasses.replace(cfg, inner=dataclasses.replace(cfg.inner, first_order=True))
    ann = load_config("ann_cnn")
    ann = dataclasses.replace(ann, seed=cfg.seed, outer=dataclasses.replace(cfg.outer),
                              task=dataclasses.replace(cfg.task),
                              model=dataclasses.replace(ann.model, n_way=cfg.model.n_way,
                                                        zero_head=cfg.model.zero_head))
    return {"fomaml": fo, "ann_cnn": ann}


def _stage_baselines(out: Path, data: Path, cfg, seed: int, data_sha: str | None = None) -> dict:
    return {name: _stage_train(out, data, c, seed, run=out / "baselines" / name, data_sha=data_sha)
            for name, c in baseline_configs(cfg).items()}


def _stage_evaluate(out: Path, data_file: Path, quick: bool, force: bool = False) -> dict:
    from neuromaml.meta.evaluate import evaluate_run

    run = out / "run"
    res = run / "eval" / "report.json"
    rep = _reused_json(res, "evaluate") if not force else None
    if rep is not None:
        return rep
    base = {name: out / "baselines" / name for name in ("fomaml", "ann_cnn")
            if (out / "baselines" / name / "summary.json").exists()}
    return evaluate_run(run, data_file, trials=2 if quick else 10, tasks_per_trial=3 if quick else 10,
                        out_dir=run / "eval", quick=quick, baselines=base)


def _stage_export(out: Path, data: Path, quick: bool, seed: int, force: bool = False,
                  data_sha: str | None = None) -> dict:
    """``neuromaml export RUN --out BUNDLE`` then ``neuromaml calibrate BUNDLE --data DATA``
    (the same library calls; a run meta-trained through the rule keeps its trained form)."""
    from neuromaml.deploy.bundle import load_bundle, rule_status
    from neuromaml.deploy.manifest import Manifest
    from neuromaml.deploy.runs import export_run
    from neuromaml.emulator.calibrate import calibrate

    bundle = out / "bundle"
    if (bundle / "manifest.json").exists() and not force:
        try:
            man = Manifest.from_dict(load_bundle(bundle)[0])
            cal = man.adapt.calibration if isinstance(man.adapt.calibration, dict) else {}
            calibrated_as_asked = rule_status(man) == "trained" or not _stale(bundle / "manifest.json", _differs(
                cal, _same_data({"split": "val"}, cal, data, data_sha)))
            # a moved demo folder's bundle names the old run folder: exported again from this one
            from_here = bool(man.source_run) and Path(man.source_run).resolve() == (out / "run").resolve()
            if not from_here:
                print(f"note: {bundle}: exported from {man.source_run}, not {out / 'run'}: exported again",
                      file=sys.stderr)
            if rule_status(man) != "uncalibrated" and calibrated_as_asked and from_here:
                return {"bundle": str(bundle), "reused": True, "rule_status": rule_status(man),
                        "calibration": man.adapt.calibration}
        except NeuromamlError:
            pass
    t0 = time.perf_counter()
    man = Manifest.from_dict(export_run(out / "run", bundle, overwrite=True))
    r = {"bundle": str(bundle), "reused": False, "layers": [x["type"] for x in man.layers],
         "rule_status": rule_status(man)}
    if r["rule_status"] == "uncalibrated":
        cal = calibrate(bundle, data, tasks=4 if quick else 50, seed=seed, strict=not quick)
        r.update(rule_status="calibrated",
                 calibration=Manifest.from_dict(read_json(bundle / "manifest.json")).adapt.calibration,
                 calibration_outputs=cal.outputs)
    r["seconds"] = time.perf_counter() - t0
    return r


def verify_differs(rep, samples: int, steps: int, manifest_sha256: str | None) -> list[str]:
    """Why a verify.json does not stand for the demo's check of the bundle as it is now: not a pass,
    Lava (or slayer, where it ran) not compared bit-exact, other sizes, another state of the bundle."""
    if not isinstance(rep, dict):
        return ["not a verify report"]
    lava, sl = rep.get("lava_vs_fixed"), rep.get("slayer_vs_fixed")
    recorded = {**rep, "lava_vs_fixed": isinstance(lava, dict) and lava.get("equal") is True,
                "slayer_vs_fixed": sl is None or (isinstance(sl, dict) and sl.get("equal") is True)}
    return _differs(recorded, {"ok": True, "lava_vs_fixed": True, "slayer_vs_fixed": True, "samples": samples,
                               "steps": steps, "bundle_manifest_sha256": manifest_sha256})


def _stage_verify(out: Path, quick: bool, force: bool = False) -> dict:
    from neuromaml.deploy.bundle import MANIFEST_DIGEST, load_bundle
    from neuromaml.deploy.manifest import Manifest
    from neuromaml.deploy.runs import reference_model
    from neuromaml.deploy.verify import verify_netx

    res = out / "bundle" / "verify.json"
    man, net = load_bundle(out / "bundle")
    samples, steps = 2 if quick else 4, Manifest.from_dict(man).time_steps
    rep = _reused_json(res, "verify") if not force else None
    # a failed verify, or one of other sizes, without Lava, or of another state of the bundle, runs again
    if rep is not None and not _stale(res, verify_differs(rep, samples, steps, man.get(MANIFEST_DIGEST))):
        return rep
    rep = verify_netx(net, samples=samples, steps=steps, model=reference_model(man))
    rep["bundle_manifest_sha256"] = man.get(MANIFEST_DIGEST)
    write_json(res, rep)
    if not rep.get("ok"):
        raise fail(res, "the exported network does not match slayer/Lava bit for bit",
                   "see the report's first mismatch; file an issue with verify.json")
    return rep


def _stage_emulate(out: Path, data_file: Path, tasks: int, lava_tasks: int, quick: bool, seed: int,
                   force: bool = False, data_sha: str | None = None) -> dict:
    from neuromaml.deploy.bundle import MANIFEST_DIGEST
    from neuromaml.emulator.emulate import emulate

    res = out / "emulate" / "emulate.json"
    queries = 2 if quick else 5
    if res.exists() and not force:
        try:
            s = EmulateSummary.from_dict(read_json(res))
        except (NeuromamlError, TypeError, AttributeError, ValueError):
            s = None                     # damaged or edited: emulate runs again (below)
        try:   # the bundle emulated then must be the bundle now (a calibrate since changes its manifest)
            current = read_json(out / "bundle" / "manifest.json").get(MANIFEST_DIGEST)
        except (NeuromamlError, AttributeError):
            current = None
        if s is not None and s.usable() and current is not None:
            # what the demo reports as its meta-test numbers: this data, split, tasks, seed and bundle
            recorded = {**s.to_dict(), "data": str(Path(s.data).resolve()), "lava_agrees": s.lava_agrees,
                        "lava_episodes": s.lava.agreement["episodes"] if s.lava_agrees is not None else None}
            asked = {**_same_data({"split": "test"}, recorded, data_file, data_sha), "tasks": tasks, "k_shot": 1,
                     "n_query": queries, "seed": seed, "bundle_manifest_sha256": current, "lava_agrees": True,
                     "lava_episodes": min(tasks, lava_tasks)}
            if not _stale(res, _differs(recorded, asked)):
                return {**s.to_dict(), "reused": True}
    s = emulate(out / "bundle", data_file, split="test", tasks=tasks, shots=1,
                queries=queries, engine="both", lava_tasks=lava_tasks,
                slayer_tasks=min(tasks, 4 if quick else 100), seed=seed, out=out / "emulate", progress=True)
    if s.lava_agrees is False:
        raise fail(res, "Lava and the fast engine disagree", "file an issue with emulate.json")
    return s.to_dict()


def _check_data(data: Path, cfg, quick: bool) -> None:
    """Every split the stages will draw from can give their tasks, checked before any work:
    a test split too small for emulate's queries must not surface after meta-training."""
    from neuromaml.meta.metadataset import MetaDataset
    from neuromaml.meta.tasks import TaskSampler

    ds = MetaDataset(data)
    t = cfg.task
    TaskSampler(ds, "train", t.n_way, t.k_shot, t.n_query)          # meta-train (the config's task)
    TaskSampler(ds, "val", t.n_way, t.k_shot, t.n_query)            # its validation
    for split, stage, queries in (("val", "calibrate", 5), ("test", "emulate", 2 if quick else 5)):
        counts = ds.class_sizes(split)
        if len(counts) >= t.n_way and min(counts) < 1 + queries:
            raise fail(data, f"split {split!r} holds classes of {min(counts)} recordings; the demo's {stage} stage "
                       f"draws 1-shot tasks with {queries} queries per class ({1 + queries} recordings)",
                       f"give every {split} class at least {1 + queries} recordings, or run `neuromaml {stage}` "
                       "yourself with fewer --queries")
        TaskSampler(ds, split, t.n_way, 1, queries, disjoint_parts=True)


def _check_same_settings(out: Path, **settings) -> None:
    """A demo folder is reused stage by stage, so a re-run must ask for what it holds: a
    --quick run's tiny data and 2-step network must never pass for a full run's."""
    prev = out / "demo.json"
    if not prev.exists():
        return
    try:
        old = read_json(prev)
    except NeuromamlError:
        return                      # unreadable: the stages check their own outputs
    if not isinstance(old, dict):
        raise fail(prev, f"is not a demo summary (a JSON {type(old).__name__}, not an object)",
                   "add --fresh to start over in this folder, or choose another --out")
    if not old.get("stages"):
        return                      # no stage finished (an input check failed): nothing to keep
    held = {k: old.get(k) for k in settings}
    if held != settings:
        diff = ", ".join(f"{k}={held[k]!r} (asked {settings[k]!r})" for k in settings if held[k] != settings[k])
        raise fail(prev, f"this folder holds a demo run with other settings: {diff}",
                   "add --fresh to start over in it, or choose another --out")


def demo(out: Path, *, config: Path | None = None, tasks: int = 200, lava_tasks: int = 2,
         fresh: bool = False, quick: bool = False, seed: int = 0, data: Path | None = None) -> DemoSummary:
    """The path on the embedded default data, or on the user's meta-dataset ``data``."""
    from tqdm import tqdm

    from neuromaml.deploy.bundle import sha256

    out = Path(out)
    if data is not None:
        data = Path(data).resolve()
        if not data.is_file():
            raise fail(data, "meta-dataset not found (--data)", "give a .h5 written by neuromaml data build")
    if out.is_dir() and any(out.iterdir()) and not (out / "demo.json").exists():
        raise fail(out, "exists, is not empty and holds no demo.json: not a demo folder; its files would be "
                   "mixed with the demo's" + (" or deleted by --fresh" if fresh else ""),
                   "choose a new or empty --out")
    if fresh and out.exists():
        shutil.rmtree(out)
    # the data's samples per class and class split are settings too: a folder from an older
    # version (20 per class, 00..63 / 64..79 / 80..99) must not pass for today's default
    data_setting = ({"file": str(data), "sha256": sha256(data)} if data is not None
                    else {"per_class": demo_per_class(quick), "split": "authors"})
    settings = {"quick": quick, "seed": seed, "config": str(config) if config else None, "data": data_setting}
    _check_same_settings(out, **settings)
    cfg = demo_config(config, quick)
    if data is not None:
        _check_data(data, cfg, quick)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        tasks, lava_tasks = min(tasks, 6), min(lava_tasks, 1)
    data_file = data if data is not None else out / "data.h5"
    summary = DemoSummary(out=str(out), **settings, package_versions=package_versions())
    if not (out / "demo.json").exists():   # marks the folder as a demo's from the first stage on
        write_json(out / "demo.json", summary.to_dict())
    bar = tqdm(STAGES, desc="demo", unit="stage")
    t_all = time.perf_counter()
    data_sha = data_setting.get("sha256")
    ran: set[str] = set()              # the stages that ran (not reused) in this run
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        force = any(dep in ran for dep in DEPENDS.get(name, ()))
        if name == "data":
            from neuromaml.meta.data_cli import summary_lines

            r = _stage_data(out, quick, seed, data)
            data_sha = data_sha or sha256(data_file)
            bar.write("meta-dataset " + ("(reused)" if r["reused"] else "(built)") + ": "
                      + "\n".join(summary_lines(r)))
        elif name == "train":
            r = _stage_train(out, data_file, cfg, seed, data_sha=data_sha)
            r["config_sha256"] = sha256(config) if config and Path(config).is_file() else None
        elif name == "baselines":
            r = _stage_baselines(out, data_file, cfg, seed, data_sha=data_sha)
        elif name == "evaluate":
            r = _stage_evaluate(out, data_file, quick, force=force)
        elif name == "export":
            r = _stage_export(out, data_file, quick, seed, force=force, data_sha=data_sha)
        elif name == "verify":
            r = _stage_verify(out, quick, force=force)
        elif name == "emulate":
            r = _stage_emulate(out, data_file, tasks, lava_tasks, quick, seed, force=force, data_sha=data_sha)
        else:
            summary.seconds["total"] = time.perf_counter() - t_all
            try:
                r = write_report(out, summary)
            except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:
                reused = summary.reused()
                if not reused:
                    raise
                # a stage file of an earlier run was edited or damaged (text where a number belongs)
                raise fail(out, f"the report cannot be written from the stages reused from an earlier run "
                           f"({', '.join(reused)}): one of their files was edited or damaged "
                           f"({type(exc).__name__}: {exc})", "add --fresh to rebuild this folder") from None
        if not all(v.get("reused") for v in (r.values() if name == "baselines" else [r])):
            ran.add(name)
        summary.stages[name] = r
        summary.seconds[name] = time.perf_counter() - t0
        write_json(out / "demo.json", summary.to_dict())
    bar.close()
    summary.seconds["total"] = time.perf_counter() - t_all
    write_json(out / "demo.json", summary.to_dict())
    return summary


def demo_cli(args) -> int:
    s = demo(args.out, config=args.config, tasks=args.tasks, lava_tasks=args.lava_tasks,
             fresh=args.fresh, quick=args.quick, seed=args.seed, data=args.data)
    print((Path(args.out) / "report.md").read_text())
    print(f"wrote {Path(args.out) / 'report.md'} and {Path(args.out) / 'demo.json'} "
          f"in {s.seconds['total']:.0f} s")
    return 0
