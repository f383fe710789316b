"""Verify an exported network bit for bit: Lava (``fixed_pt``) vs the fixed engine vs slayer.

``verify_netx(path, ...)`` runs the same input spikes through

* Lava's CPU backend (``Loihi2SimCfg(select_tag='fixed_pt')``, all samples in
  one run, see ``lava_run.run_lava_samples``),
* ``deploy.fixed.FixedPointNet`` (batched integer twin), and, when the source
  network is given,
* slayer's own forward of the quantized network (``model.blocks``),

and compares the output spikes (``all_layers=True``: every layer's). Lava's
one-step synapse delay is accounted for in ``deploy.fixed`` (``SYNAPSE_DELAY``);
slayer's ``delay_shift`` puts the same delay after every block, so all three
line up index for index. The report names the first differing layer, sample,
neuron (x, y, f) and step.

Why slayer's float path is bit-exact too: slayer keeps states as integers
(``s_scale = 4096``: weights ``W << 6``), decays with the same
round-toward-zero ``>> 12``, rounds its threshold onto the mantissa grid
itself (``int(theta * 64) / 64``) and fires at ``v >= theta + 0.01/4096``,
i.e. ``v > vThMant << 6``. The one thing it does not model is Loihi's 24-bit
registers: Lava wraps ``u`` past ``2**23`` and clips ``v`` at ``2**23 - 1``;
inputs that drive a state that far differ (pinned by a test).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from neuromaml.deploy.fixed import FixedPointNet, frames_to_xyf


def first_mismatch(a: np.ndarray, b: np.ndarray) -> dict[str, Any] | None:
    """Earliest step where spike arrays (N, T, ...) differ: sample, step, neuron index."""
    if a.shape != b.shape:
        return {"shape_a": list(a.shape), "shape_b": list(b.shape)}
    diff = np.argwhere(a != b)
    if diff.size == 0:
        return None
    d = diff[np.lexsort((diff[:, 0], diff[:, 1]))][0]       # smallest step, then sample
    return {"sample": int(d[0]), "step": int(d[1]), "neuron": [int(v) for v in d[2:]],
            "a": int(a[tuple(d)]), "b": int(b[tuple(d)]), "n_differ": int(len(diff))}


def compare(a_layers: list[np.ndarray], b_layers: list[np.ndarray], indices: list[int],
            names: tuple[str, str], net: FixedPointNet) -> dict[str, Any]:
    rows, first = [], None
    for k, a, b in zip(indices, a_layers, b_layers):
        mm = first_mismatch(np.asarray(a), np.asarray(b))
        L = net.layers[k]
        rows.append({"layer": k, "file_index": L.index, "kind": L.kind, "equal": mm is None,
                     f"spikes_{names[0]}": int(np.sum(a)), f"spikes_{names[1]}": int(np.sum(b))})
        if mm is not None and first is None:
            first = {"layer": k, "file_index": L.index, "kind": L.kind, **mm}
    return {"equal": first is None, "first_mismatch": first, "layers": rows}


def random_inputs(net: FixedPointNet, n: int, steps: int, rate: float = 0.2, seed: int = 0) -> np.ndarray:
    """Bernoulli spikes (n, steps, *input_shape) int8 in (x, y, f) order."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, steps) + tuple(net.input_shape)) < rate).astype(np.int8)


def slayer_layer_outputs(model: Any, x_xyf: np.ndarray) -> list[np.ndarray]:
    """slayer block outputs for input (N, T, x, y, f), one per computing block, in engine layout."""
    import torch

    from neuromaml.deploy.quantize import blocks_of

    x = torch.from_numpy(np.ascontiguousarray(np.asarray(x_xyf).transpose(0, 4, 3, 2, 1))).float()
    outs = []
    with torch.no_grad():
        for b in blocks_of(model):
            x = b(x)
            if hasattr(b, "neuron"):
                o = x.numpy()
                o = o.transpose(0, 4, 3, 2, 1) if o.ndim == 5 else o.transpose(0, 2, 1)
                outs.append(o.astype(np.int8))
    return outs


def _align(ref: list[np.ndarray], net: FixedPointNet) -> list[np.ndarray]:
    """Reshape slayer outputs to the engine's layer shapes (a pool lowered to dense is flat, CHW order)."""
    out = []
    for o, L in zip(ref, [L for L in net.layers if L.kind != "input"]):
        if o.shape[2:] != L.shape:
            o = o.transpose(0, 1, *range(o.ndim - 1, 1, -1)).reshape(o.shape[:2] + L.shape)
        out.append(o)
    return out


def verify_netx(path: str | os.PathLike, *, samples: int = 4, steps: int = 50, all_layers: bool = False,
                seed: int = 0, rate: float = 0.2, x: np.ndarray | None = None, model: Any = None,
                lava: bool = True, input_bias: np.ndarray | None = None) -> dict[str, Any]:
    """Run the checks; returns a JSON-able report with ``compared`` (the comparisons made) and
    ``ok`` (at least one was made, and every one is exact).

    A network whose first layer is a bias-driven input neuron layer (lava-dl's tinynet) takes
    no spikes: give ``input_bias`` (that layer's bias, x y f) and it runs one sample of
    ``steps`` steps driven by it, on Lava and on the fixed engine (no slayer network exists).
    """
    t0 = time.perf_counter()
    net = FixedPointNet.from_netx(path)
    if net.layers[0].kind == "input":
        return _verify_bias_driven(path, net, input_bias, steps, all_layers, lava, t0)
    if input_bias is not None:
        from neuromaml.io import fail
        raise fail(path, "--input-bias is given but the network has no input neuron layer to bias",
                   "leave --input-bias out: this network takes input spikes")
    if x is None:
        x = random_inputs(net, samples, steps, rate, seed)
    else:
        x = np.asarray(x)
        if x.ndim == 5 and model is not None and x.shape[-1] != net.input_shape[-1]:
            x = frames_to_xyf(x)
    n_samples, n_steps = x.shape[:2]
    idx = list(range(len(net.layers))) if all_layers else [len(net.layers) - 1]
    report: dict[str, Any] = {"file": str(path), "samples": int(n_samples), "steps": int(n_steps),
                              "all_layers": all_layers, "seed": seed, "rate": rate,
                              "layers": [f"{L.kind}{list(L.shape)}" for L in net.layers]}
    t = time.perf_counter()
    fixed = net.run(x, return_all=True)
    report["fixed_seconds"] = time.perf_counter() - t
    fixed_sel = [fixed[k] for k in idx]
    ok, compared = True, []
    if lava:
        from neuromaml.deploy.lava_run import run_lava_samples

        biased = any(L.neuron.bias is not None and np.any(L.neuron.bias) for L in net.layers)
        r = run_lava_samples(path, x, record="all" if all_layers else "output", biased=biased)
        report["lava_seconds"] = r["seconds"]
        report["lava_vs_fixed"] = compare(r["spikes"], fixed_sel, idx, ("lava", "fixed"), net)
        ok &= report["lava_vs_fixed"]["equal"]
        compared.append("lava_vs_fixed")
    if model is not None:
        t = time.perf_counter()
        ref = _align(slayer_layer_outputs(model, x), net)
        report["slayer_seconds"] = time.perf_counter() - t
        report["slayer_vs_fixed"] = compare([ref[k] for k in idx], fixed_sel, idx, ("slayer", "fixed"), net)
        ok &= report["slayer_vs_fixed"]["equal"]
        compared.append("slayer_vs_fixed")
    report["output_spikes"] = int(fixed[-1].sum())
    report["compared"] = compared
    report["ok"] = bool(ok and compared)        # nothing compared is not a pass
    report["seconds"] = time.perf_counter() - t0
    return report


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"verify {rep['file']}: {rep['samples']} samples x {rep['steps']} steps, "
             f"{'all layers' if rep['all_layers'] else 'output layer'}"]
    for key in ("lava_vs_fixed", "slayer_vs_fixed"):
        if rep.get(key):
            c = rep[key]
            a, b = key.split("_vs_")
            if c["equal"]:
                lines.append(f"  {a} == {b}: bit-exact ({sum(r[f'spikes_{a}'] for r in c['layers'])} spikes)")
            else:
                m = c["first_mismatch"]
                lines.append(f"  {a} != {b}: first at layer {m['layer']} ({m['kind']}, file layer "
                             f"{m['file_index']}), sample {m.get('sample')}, step {m.get('step')}, "
                             f"neuron {m.get('neuron')} ({a}={m.get('a')}, {b}={m.get('b')}; "
                             f"{m.get('n_differ')} differ)")
    compared = [sum(r[f"spikes_{key.split('_vs_')[0]}"] for r in rep[key]["layers"])
                for key in ("lava_vs_fixed", "slayer_vs_fixed") if rep.get(key)]
    if not compared and not rep.get("nir"):
        lines.append("  nothing was compared (no Lava and no slayer network): drop --no-lava")
    elif compared and max(compared) == 0:
        lines.append("  warning: the compared layers emitted no spike on this input, so agreement says little "
                     "(a zero-initialised head, learned on chip, is silent): add --all-layers, or raise --rate")
    lines.append("NOT VERIFIED" if not (compared or rep.get("nir")) else "OK" if rep["ok"] else "MISMATCH")
    return "\n".join(lines)


def _verify_bias_driven(path, net: FixedPointNet, input_bias, steps: int, all_layers: bool, lava: bool,
                        t0: float) -> dict[str, Any]:
    from neuromaml.io import fail

    if input_bias is None:
        raise fail(path, "the network starts with a bias-driven input neuron layer: it takes no input "
                   "spikes, its input layer's bias drives it", "pass --input-bias BIAS.npy (x, y, f)")
    bias = np.asarray(input_bias)
    want = tuple(net.layers[0].shape)
    if bias.shape != want:
        raise fail(path, f"--input-bias has shape {bias.shape}, the input layer is {want} (x, y, f)",
                   f"give an array of shape {want}")
    idx = list(range(len(net.layers))) if all_layers else [len(net.layers) - 1]
    report: dict[str, Any] = {"file": str(path), "samples": 1, "steps": int(steps), "all_layers": all_layers,
                              "input": "bias-driven input layer", "seed": None, "rate": None,
                              "layers": [f"{L.kind}{list(L.shape)}" for L in net.layers]}
    t = time.perf_counter()
    fixed = net.run(None, steps=steps, input_bias=bias[None], return_all=True)
    report["fixed_seconds"] = time.perf_counter() - t
    fixed_sel = [fixed[k] for k in idx]
    ok, compared = True, []
    if lava:
        from neuromaml.deploy.lava_run import run_lava

        r = run_lava(path, steps=steps, input_bias=bias, record="all")
        report["lava_seconds"] = r["seconds"]
        lava_sel = [np.asarray(r["spikes"][k])[None] for k in idx]
        report["lava_vs_fixed"] = compare(lava_sel, fixed_sel, idx, ("lava", "fixed"), net)
        ok &= report["lava_vs_fixed"]["equal"]
        compared.append("lava_vs_fixed")
    report["output_spikes"] = int(fixed[-1].sum())
    report["compared"] = compared
    report["ok"] = bool(ok and compared)        # nothing compared is not a pass
    report["seconds"] = time.perf_counter() - t0
    return report
