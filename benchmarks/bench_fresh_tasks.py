"""How a calibrated rule reads off the tasks it was chosen on (issue 12: the winner's curse).

    .venv/bin/python benchmarks/bench_fresh_tasks.py BUNDLE DATA.h5 [--tasks 200] [--val-seed 3000]
        [--set 'softmax_gain_exp=-12' --set 'label_start=50,x1_impulse=64' ...]

Runs the bundle's rule (fast engine, bit-exact to Lava) on the val tasks ``calibrate``
screened on (its record's seed, queries and task count; a bundle never calibrated has no such
row), on ``--tasks`` fresh val tasks (``--val-seed``, refused where calibrate used it) and on the
``--tasks`` meta-test tasks ``emulate`` draws (``TaskSampler(test, seed 0)``); each ``--set``
adds a row with fields of the rule (``onchip.rule.RuleSpec``) or ``weight_exp`` /
``label_start`` replaced. Prints one JSON line per row.
"""
import argparse
import dataclasses
import json

from neuromaml.lavacompat import prepare_lava

prepare_lava()
from neuromaml.emulator.deployed import DeployedNet  # noqa: E402
from neuromaml.io import positive_int  # noqa: E402
from neuromaml.emulator.emulate import build_batch, pool_inputs  # noqa: E402
from neuromaml.emulator.episodes import run_fast  # noqa: E402
from neuromaml.meta.metadataset import MetaDataset  # noqa: E402
from neuromaml.meta.tasks import TaskSampler  # noqa: E402
from neuromaml.onchip.rule import RuleError  # noqa: E402


def _overrides(text: str) -> dict:
    """'k=v,k=v' -> {k: v}: fields of the rule (whole numbers; 'surrogate' by name), ``weight_exp``
    or ``label_start``; anything else is an argparse error."""
    from neuromaml.onchip.rule import RuleSpec

    allowed = {f.name for f in dataclasses.fields(RuleSpec)} | {"weight_exp", "label_start"}
    out = {}
    for part in filter(None, text.split(",")):
        k, eq, v = part.partition("=")
        k, v = k.strip(), v.strip()
        if not eq or k not in allowed:
            raise argparse.ArgumentTypeError(f"{part!r}: want FIELD=VALUE with FIELD one of {sorted(allowed)}")
        if k == "surrogate":
            out[k] = v
            continue
        try:
            out[k] = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: {k} takes a whole number") from None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("data")
    ap.add_argument("--tasks", type=positive_int, default=200)
    ap.add_argument("--val-seed", type=int, default=3000)
    ap.add_argument("--set", type=_overrides, action="append", default=[],
                    help="k=v[,k=v]: a row with those fields replaced")
    a = ap.parse_args()
    dep0, ds = DeployedNet.load(a.bundle), MetaDataset(a.data)
    settings = []          # every row checked before any task is drawn
    for i, over in enumerate([{}] + a.set):
        over = dict(over)
        wexp = over.pop("weight_exp", dep0.weight_exp)
        start = over.pop("label_start", dep0.label_window[0])
        if not 0 <= start < dep0.time_steps:
            ap.error(f"label_start={start}: want a step in [0, {dep0.time_steps})")
        try:
            dep = dataclasses.replace(dep0.with_weight_exp(wexp), label_window=(start, dep0.time_steps))
            spec = dataclasses.replace(dep0.rule, **over)
        except (RuleError, ValueError) as exc:
            ap.error(f"--set {a.set[i - 1]}: {exc}")
        text = ",".join(f"{k}={v}" for k, v in {"weight_exp": wexp, "label_start": start, **over}.items())
        settings.append((text if i else "the bundle's rule", dep, spec))
    cal = dep0.manifest.adapt.calibration if isinstance(dep0.manifest.adapt.calibration, dict) else {}
    rows = []
    if cal:      # calibrate's own screening tasks (its seed, queries and task count)
        if a.val_seed in (cal.get("seed"), cal.get("confirm_seed")):
            ap.error(f"--val-seed {a.val_seed} is a seed calibrate used on this bundle: those tasks are not fresh")
        rows.append(("screening val", "val", int(cal["seed"]), int(cal.get("n_query", 5)), int(cal["tasks"])))
    rows += [("fresh val", "val", a.val_seed, 5, a.tasks), ("test", "test", 0, 5, a.tasks)]
    sets = {}
    for name, split, seed, queries, n in rows:
        batch, pool = build_batch(TaskSampler(ds, split, dep0.n_out, 1, queries, seed=seed, disjoint_parts=True), n)
        sets[name] = (batch, dep0.frozen_features(pool_inputs(ds, pool)))
    for text, dep, spec in settings:
        row = {"setting": text}
        for name, (batch, feats) in sets.items():
            row[name] = round(100 * float(run_fast(dep, feats, batch, spec).accuracy.mean()), 2)
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
