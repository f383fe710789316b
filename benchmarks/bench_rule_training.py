"""Meta-trained with SGD vs meta-trained through the on-chip rule (issue 5's second target).

Starts from an SGD-trained run (the demo's ``demo-out/run``) and the rule form its bundle
was calibrated to on meta-validation tasks (``demo-out/bundle/manifest.json``), continues
meta-training theta0* *through* that rule (``inner.rule: three_factor`` with the bundle's
``rule_spec``, ``meta-train --init``), exports the result with the same rule, and runs both
bundles on the same meta-test episodes with the fast engine. Prints JSON.

    .venv/bin/python benchmarks/bench_rule_training.py demo-out --steps 60 --out /tmp/rule-trained

About 9 minutes on 2 cores for 60 meta-steps (about 7 s each: the rule's differentiable
twin presents the support set for T steps per sample).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo_out", type=Path, help="a `neuromaml demo` output directory (run/, bundle/, data.h5)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-4, help="outer Adam rate of the continued meta-training")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--learn-rule", default="",
                    help="also meta-learn these rule hyperparameters (inner.learn_rule), e.g. eta_exp,error_threshold,"
                         "surrogate_beta: the exported rule is the learned one, rounded (issue 12 item 6)")
    ap.add_argument("--rule-lr", type=float, default=0.05, help="Adam rate of the learned rule hyperparameters")
    args = ap.parse_args()

    import yaml

    from neuromaml.deploy.bundle import export_bundle
    from neuromaml.deploy.runs import load_run, trained_rule
    from neuromaml.emulator.emulate import emulate
    from neuromaml.io import read_json
    from neuromaml.meta.config import from_dict
    from neuromaml.meta.train import meta_train
    from neuromaml.onchip.rule import RuleSpec

    data = args.demo_out / "data.h5"
    man = read_json(args.demo_out / "bundle" / "manifest.json")
    fields = {f.name for f in dataclasses.fields(RuleSpec)}
    spec = {k: v for k, v in man["adapt"]["rule"].items() if k in fields}
    cfg = yaml.safe_load((args.demo_out / "run" / "config.yaml").read_text())
    cfg["inner"].update({"rule": "three_factor", "learn_lr": False, "rule_spec": spec, "label_window": [],
                         "learn_rule": [v for v in args.learn_rule.split(",") if v], "rule_lr": args.rule_lr})
    cfg["outer"].update({"steps": args.steps, "lr": args.lr, "val_every": 20, "val_tasks": 40,
                         "checkpoint_every": 5})
    run = args.out / "run"
    t0 = time.perf_counter()
    summary = meta_train(data, from_dict(cfg), run, resume=(run / "ckpt.pt").exists(),
                         init=args.demo_out / "run", progress=False)
    t_train = time.perf_counter() - t0
    model, mcfg, classes = load_run(run)
    bundle = args.out / "bundle"
    export_bundle(model, bundle, input_shape=tuple(mcfg.input_shape), time_steps=mcfg.time_steps,
                  burn_in=mcfg.burn_in, classes=classes, source_run=str(run.resolve()), overwrite=True,
                  rule=trained_rule(run),
                  extra={"model_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(mcfg).items()}})
    res = {}
    for name, b in (("sgd_trained", args.demo_out / "bundle"), ("rule_trained", bundle)):
        s = emulate(b, data, split="test", tasks=args.tasks, shots=1, queries=args.queries, engine="fast",
                    seed=0, out=args.out / f"emulate-{name}")
        res[name] = {"onchip": s.onchip.mean, "float_inner_as_trained": s.slayer["float"].mean,
                     "fixed_point_sgd": s.slayer["fixed_sgd"].mean, "tasks": s.tasks}
    print(json.dumps({"rule": spec, "deployed_rule": trained_rule(run).to_dict(),
                      "learn_rule": cfg["inner"]["learn_rule"], "steps": summary["steps"], "best_val_acc": summary["best_val_acc"],
                      "train_seconds": t_train, "results": res}, indent=1))


if __name__ == "__main__":
    main()
