"""Benchmark: does another framework run the bundle's network.nir as Lava does? (issue 15)

Loads BUNDLE/network.nir into snntorch (``deploy.nir_check``), runs the same input spikes
through it, the fixed-point engine (bit-exact to Lava) and, with ``--slayer``, the source
slayer network, and prints JSON: per layer the spike totals, the Pearson correlation of the
per-neuron spike counts, the L1 count error (sum |n_nir - n_fixed| / sum n_fixed) and the
share of identical spike trains; the output's class decisions (argmax over the readout window)
agreement; and, with ``--data``, a decision that needs no trained output layer: leave-one-out
nearest class mean of the last hidden layer's spike counts (the plastic layer's input), each
engine on its own counts. Usage:

    .venv/bin/python benchmarks/bench_nir.py BUNDLE [--data FILE.h5] [--samples 100]
        [--steps T] [--nir FILE.nir | --reexport] [--slayer] [--json out.json]

Without ``--data`` the input is Bernoulli spikes (``--rate``). ``--data`` takes samples of
the meta-test split (``--split``), frames clipped to 1 spike per step, as ``emulate`` does.
``--reexport`` writes the graph from BUNDLE/network.net with this neuromaml's exporter (for
bundles exported before the NIR fixes, whose network.nir snntorch cannot import).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _inputs(args, net, steps):
    if args.data is None:
        from neuromaml.deploy.verify import random_inputs

        return random_inputs(net, args.samples, steps, args.rate, args.seed), None
    from neuromaml.deploy.fixed import frames_to_xyf
    from neuromaml.meta.metadataset import MetaDataset

    ds = MetaDataset(args.data)
    classes = ds.splits[args.split]
    if args.classes:
        classes = classes[: args.classes]
    idx = np.flatnonzero(np.isin(ds.labels, classes))
    rng = np.random.default_rng(args.seed)
    # the same number from each class (the nearest-class-mean decision needs every class)
    per = max(2, args.samples // len(classes))
    pick = np.sort(np.concatenate([rng.permutation(idx[ds.labels[idx] == c])[:per] for c in classes]))
    x = frames_to_xyf(ds.frames(pick, binary=True)).astype(np.int8)
    if x.shape[1] < steps:
        raise SystemExit(f"{args.data}: samples have {x.shape[1]} steps, fewer than --steps {steps}")
    return x[:, :steps], ds.labels[pick]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--data", type=Path, default=None, help="meta-dataset .h5 (else random spikes)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--classes", type=int, default=None, help="use the split's first N classes")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--steps", type=int, default=None, help="default: the manifest's time_steps")
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nir", type=Path, default=None, help="NIR file to test (default BUNDLE/network.nir)")
    ap.add_argument("--reexport", action="store_true", help="test a graph re-exported from network.net")
    ap.add_argument("--slayer", action="store_true", help="also compare with the source slayer network")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from neuromaml.deploy.bundle import load_bundle
    from neuromaml.deploy.fixed import FixedPointNet
    from neuromaml.deploy.netxfile import read_layers
    from neuromaml.deploy.nir_check import check_nir, ncm_agreement
    from neuromaml.io import package_versions, write_json

    man, net_path = load_bundle(args.bundle)
    steps = args.steps or int(man["input"]["time_steps"])
    burn = min(int(man["output"].get("burn_in", 0)), steps - 1)
    net = FixedPointNet.from_netx(net_path)
    x, labels = _inputs(args, net, steps)
    tmp = None
    nir_src = args.nir or args.bundle / "network.nir"
    if args.reexport:
        from neuromaml.deploy.nir_export import write_nir

        tmp = tempfile.TemporaryDirectory()
        nir_src = write_nir(read_layers(net_path), Path(tmp.name) / "network.nir")
    model = None
    if args.slayer:
        from neuromaml.deploy.runs import reference_model

        model = reference_model(man)
    t0 = time.perf_counter()
    fixed = net.run(x, return_all=True)
    t_fixed = time.perf_counter() - t0
    rep, got = check_nir(nir_src, net, x, model=model, window=(burn, steps), fixed=fixed, return_spikes=True)
    c = rep["nir_vs_fixed"]
    out = {"benchmark": "nir_consumer", "bundle": str(args.bundle), "nir": "re-exported from network.net"
           if args.reexport else str(nir_src), "consumer": f"{rep['consumer']} {rep['consumer_version']}",
           "input": f"{args.data} split {args.split}" if args.data else f"Bernoulli rate {args.rate}",
           "samples": int(x.shape[0]), "steps": steps, "readout_window": [burn, steps],
           "input_spikes_per_sample": float(x.reshape(x.shape[0], -1).sum(1).mean()),
           "layers": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in c["layers"]],
           "decision_agreement": c["decision_agreement"], "output_silent_fixed": c["output_silent_fixed"],
           "decisions_fixed_per_class": np.bincount(c["decisions_fixed"],
                                                    minlength=c["layers"][-1]["neurons"]).tolist(),
           "decision_agreement_nonsilent": c["decision_agreement_nonsilent"],
           "min_count_corr": c["min_count_corr"], "verify_ok": rep["ok"],
           "fixed_seconds": round(t_fixed, 3), "nir_seconds": round(rep["nir_seconds"], 3)}
    if model is not None:
        s = rep["nir_vs_slayer"]
        out["slayer"] = {"decision_agreement": s["decision_agreement"], "min_count_corr": s["min_count_corr"],
                         "seconds": round(rep["slayer_seconds"], 3)}
    if labels is not None and len(c["layers"]) >= 2:
        comp = [f for f, L in zip(fixed, net.layers) if L.kind != "input"]
        hid = len(comp) - 2
        fa = comp[hid][:, burn:].reshape(len(x), steps - burn, -1).sum(1)
        fb = got[hid][:, burn:].reshape(len(x), steps - burn, -1).sum(1)
        out["ncm_last_hidden"] = {"layer": hid, "window": [burn, steps], **ncm_agreement(fa, fb, labels),
                                  "classes": int(len(np.unique(labels)))}
        out["ncm_last_hidden"]["accuracy_fixed"] = out["ncm_last_hidden"].pop("accuracy_a")
        out["ncm_last_hidden"]["accuracy_nir"] = out["ncm_last_hidden"].pop("accuracy_b")
    out["versions"] = package_versions()
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
