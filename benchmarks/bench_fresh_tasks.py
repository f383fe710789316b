"""How a calibrated rule reads off the tasks it was chosen on (issue 12: the winner's curse).

    .venv/bin/python benchmarks/bench_fresh_tasks.py BUNDLE DATA.h5 [--tasks 200] [--val-seed 3000]
        [--set 'softmax_gain_exp=-12' --set 'label_start=50,x1_impulse=64' ...]

Runs the bundle's rule (fast engine, bit-exact to Lava) on the val tasks ``calibrate``
screened on (``TaskSampler(val, seed 1000)``, its first 50), on ``--tasks`` fresh val tasks
(``--val-seed``, neither calibrate's screening 1000 nor its confirmation 1001) and on the
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
from neuromaml.emulator.emulate import build_batch, pool_inputs  # noqa: E402
from neuromaml.emulator.episodes import run_fast  # noqa: E402
from neuromaml.meta.metadataset import MetaDataset  # noqa: E402
from neuromaml.meta.tasks import TaskSampler  # noqa: E402


def _overrides(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        out[k.strip()] = v.strip() if k.strip() == "surrogate" else int(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("data")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--screen-tasks", type=int, default=50, help="calibrate's --tasks")
    ap.add_argument("--val-seed", type=int, default=3000)
    ap.add_argument("--set", action="append", default=[], help="k=v[,k=v]: a row with those fields replaced")
    a = ap.parse_args()
    dep0, ds = DeployedNet.load(a.bundle), MetaDataset(a.data)
    sets = {}
    for name, split, seed, n in (("screening val", "val", 1000, a.screen_tasks), ("fresh val", "val", a.val_seed, a.tasks),
                                 ("test", "test", 0, a.tasks)):
        batch, pool = build_batch(TaskSampler(ds, split, dep0.n_out, 1, 5, seed=seed, disjoint_parts=True), n)
        sets[name] = (batch, dep0.frozen_features(pool_inputs(ds, pool)))
    for text in [""] + a.set:
        over = _overrides(text)
        wexp = over.pop("weight_exp", dep0.weight_exp)
        start = over.pop("label_start", dep0.label_window[0])
        dep = dataclasses.replace(dep0.with_weight_exp(wexp), label_window=(start, dep0.time_steps))
        spec = dataclasses.replace(dep0.rule, **over)
        row = {"setting": text or "the bundle's rule"}
        for name, (batch, feats) in sets.items():
            r = run_fast(dep, feats, batch, spec)
            row[name] = round(100 * float(r.accuracy.mean()), 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
