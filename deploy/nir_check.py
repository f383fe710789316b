"""Run a bundle's ``network.nir`` in another framework and measure how it agrees with Lava.

Lava and lava-dl are archived; the NIR graph is how the network outlives them. This module
loads ``network.nir`` with an independent consumer, **snntorch** (``snntorch.import_nir``,
the ``nir`` extra: ``pip install -e '.[nir]'``), runs input spikes through it step by step
and compares every layer's spikes with the fixed-point engine (``deploy.fixed``, bit-exact
to Lava) and, when the source network is given, slayer's forward (itself bit-exact to the
engine, see ``deploy.verify``).

Exact equality is not expected: snntorch runs the NIR neuron in float32, Loihi in integers
(decays truncated toward zero on a grid of 1/64 of a weight unit, 24-bit registers), so a
neuron near its threshold can fire one step earlier or later, and that difference then
travels up the layers. What is measured, per layer: the spike totals, the Pearson correlation
of the per-neuron spike counts (all samples' neurons pooled), the L1 count error
``sum |n_nir - n_fixed| / sum n_fixed``, and the share of neurons whose whole spike train is
identical; for the output, the class decision (argmax of the spike count over the readout
window, Lava's time axis) agreement. ``verify --nir`` passes when every spiking layer has
``count_corr >= MIN_COUNT_CORR`` and ``count_l1 <= MAX_COUNT_L1`` and the decisions agree in at
least ``MIN_DECISION_AGREEMENT`` of the samples.

Conventions (see ``deploy.nir_export``): the consumer takes one time step per call, input
``(N, C, H, W)`` (or ``(N, n)``) floats; the graph has no synaptic delays, so its layer ``k``
(0-based) is shifted ``k + 1`` steps later onto Lava's axis before comparing.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.deploy.fixed import FixedPointNet, delay, to_net_input
from neuromaml.io import fail

CONSUMER = "snntorch"
# what `verify --nir` requires of every spiking layer and of the output decisions. Measured
# (BENCHMARKS.md, "NIR"): a correct graph gives count corr >= 0.999 and L1 count error <= 0.02
# (paper CNN, 7 layers); the pre-fix discretisation (tau = -dt / ln(1 - d)) gives L1 0.08 on
# the 1024-128-5 MLP, a threshold in register units (x64) corr 0.34 and L1 ~1.
MIN_COUNT_CORR = 0.99
MAX_COUNT_L1 = 0.05
MIN_DECISION_AGREEMENT = 0.75
INSTALL_FIX = "pip install -e '.[nir]'"


def _consumer():
    try:
        from snntorch.import_nir import import_from_nir
    except ImportError as exc:
        own = exc.name is None or exc.name.split(".")[0] == CONSUMER
        missing = CONSUMER if own else f"{exc.name} (needed by {CONSUMER}'s import_nir)"
        raise fail(None, f"{missing} is not installed", INSTALL_FIX) from None
    return import_from_nir


def read_graph(path: str | os.PathLike):
    """``nir.read`` with a clear error for a file that NIR itself cannot read back."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise fail(path, "NIR file not found", "export the bundle with `neuromaml export`")
    try:
        return nir.read(path)
    except Exception as exc:  # noqa: BLE001 - nir raises ValueError/KeyError/OSError for bad files
        raise fail(path, f"nir cannot read it ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})",
                   "re-export the bundle with this neuromaml (`neuromaml export`): older exports wrote "
                   "grouped convolutions that NIR cannot type") from None


def lif_chain(graph) -> list[str]:
    """Names of the graph's neuron nodes in order from the input (a feed-forward chain)."""
    import nir

    nxt = {a: b for a, b in graph.edges}
    start = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    names, node, seen = [], start[0] if start else None, set()
    while node is not None and node not in seen:
        seen.add(node)
        if isinstance(graph.nodes[node], (nir.CubaLIF, nir.LIF, nir.IF)):
            names.append(node)
        node = nxt.get(node)
    return names


def load_nir(graph_or_path: Any, source: Any = None):
    """(snntorch module, NIR graph, neuron node names in order)."""
    import_from_nir = _consumer()
    graph = read_graph(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    src = source or (graph_or_path if isinstance(graph_or_path, (str, os.PathLike)) else "NIR graph")
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = import_from_nir(graph)
    except Exception as exc:  # noqa: BLE001 - snntorch asserts on what it does not support
        raise fail(src, f"{CONSUMER} cannot import the graph ({exc.__class__.__name__}: {exc})",
                   "re-export the bundle with this neuromaml (`neuromaml export`)") from None
    return net, graph, lif_chain(graph)


def run_nir(net, names: list[str], x: np.ndarray, input_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Run spikes ``x`` (N, T, *input_shape) in (x, y, f) order through the loaded graph.

    Returns each neuron layer's spikes (N, T, *shape (x, y, f)) int8, shifted onto Lava's time
    axis (layer ``k`` by ``k + 1`` steps), i.e. in ``FixedPointNet.run(..., return_all=True)``
    layout.
    """
    import torch

    x = (to_net_input(np.asarray(x), tuple(input_shape)) != 0)
    N, T = x.shape[:2]
    # (N, T, x, y, f) -> (T, N, C, H, W); (N, T, n) -> (T, N, n)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, *range(x.ndim - 1, 1, -1))).astype(np.float32))
    outs: dict[str, list] = {n: [] for n in names}
    state = None
    net.eval()
    with torch.no_grad():
        for t in range(T):
            _, state = net(xt[t], state)
            for n in names:
                outs[n].append(state.cache[n].to(torch.int8).numpy())
    layers = []
    for k, n in enumerate(names):
        s = np.stack(outs[n], axis=1)                                   # (N, T, C, H, W) or (N, T, n)
        s = s.transpose(0, 1, *range(s.ndim - 1, 1, -1))                 # -> (N, T, x, y, f)
        layers.append(delay(np.ascontiguousarray(s), k + 1))
    return layers


def _counts(s: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Spike counts (N, neurons) over steps ``[start, stop)`` of spikes (N, T, ...)."""
    s = np.asarray(s)
    return s[:, start:stop].sum(axis=1, dtype=np.int64).reshape(s.shape[0], -1)


def count_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two count arrays; 1.0 when both are equal constants, 0.0 when only one is."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def decisions(out: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Argmax of the output spike count over ``[start, stop)`` (ties: lowest index)."""
    return _counts(out, start, stop).argmax(axis=1)


def compare_layers(ref: list[np.ndarray], got: list[np.ndarray], names: tuple[str, str],
                   window: tuple[int, int | None] = (0, None)) -> dict[str, Any]:
    """Per-layer agreement of two runs (engine layout) and the output decisions over ``window``."""
    a_name, b_name = names
    rows = []
    for k, (a, b) in enumerate(zip(ref, got)):
        ca, cb = _counts(a), _counts(b)
        rows.append({"layer": k, "neurons": int(ca.shape[1]), f"spikes_{a_name}": int(ca.sum()),
                     f"spikes_{b_name}": int(cb.sum()), "count_corr": count_corr(ca, cb),
                     "count_l1": float(np.abs(ca - cb).sum() / max(1, ca.sum())),
                     "trains_equal": float(np.mean(np.all(np.asarray(a).reshape(a.shape[0], a.shape[1], -1)
                                                          == np.asarray(b).reshape(b.shape[0], b.shape[1], -1),
                                                          axis=1))),
                     "steps_equal": float(np.mean(np.asarray(a) == np.asarray(b)))})
    start, stop = window
    ca, cb = _counts(ref[-1], start, stop), _counts(got[-1], start, stop)
    da, db = ca.argmax(axis=1), cb.argmax(axis=1)
    silent = ca.sum(axis=1) == 0
    return {"layers": rows, "decision_agreement": float(np.mean(da == db)),
            "decisions_" + a_name: da.tolist(), "decisions_" + b_name: db.tolist(),
            "output_silent_" + a_name: float(np.mean(silent)),
            "decision_agreement_nonsilent": float(np.mean((da == db)[~silent])) if (~silent).any() else None,
            "min_count_corr": min(r["count_corr"] for r in rows),
            "window": [int(start), None if stop is None else int(stop)]}


def ncm_agreement(feat_a: np.ndarray, feat_b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out nearest-class-mean decisions on two runs' spike counts (N, n) with the same
    labels: each run's decisions, their agreement and each one's accuracy. A class decision that
    needs no trained output layer (a meta-trained head starts at zero; the chip learns it)."""
    labels = np.asarray(labels)
    out = {}
    dec = []
    for f in (np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)):
        classes = np.unique(labels)
        sums = np.stack([f[labels == c].sum(0) for c in classes])
        ns = np.array([(labels == c).sum() for c in classes], np.float64)
        d = np.empty(len(f), np.int64)
        for i in range(len(f)):
            own = np.searchsorted(classes, labels[i])
            means = sums.copy()
            cnt = ns.copy()
            means[own] -= f[i]
            cnt[own] -= 1
            means = means / np.maximum(cnt, 1)[:, None]
            d[i] = classes[np.argmin(((means - f[i]) ** 2).sum(1))]
        dec.append(d)
    out["agreement"] = float(np.mean(dec[0] == dec[1]))
    out["accuracy_a"] = float(np.mean(dec[0] == labels))
    out["accuracy_b"] = float(np.mean(dec[1] == labels))
    return out


def check_nir(nir_source: Any, net: FixedPointNet, x: np.ndarray, *, model: Any = None,
              window: tuple[int, int | None] = (0, None), fixed: list[np.ndarray] | None = None,
              return_spikes: bool = False):
    """Run ``x`` (N, T, *input_shape, x y f) through the NIR graph (path or graph), the fixed
    engine (or its precomputed ``fixed`` layers) and, given ``model``, slayer; compare.

    Returns the JSON-able report (``ok``: every spiking layer's count correlation and the
    decisions meet ``MIN_COUNT_CORR`` / ``MIN_DECISION_AGREEMENT``), with ``return_spikes``
    ``(report, the NIR run's spikes per layer)``."""
    t0 = time.perf_counter()
    mod, graph, names = load_nir(nir_source)
    n_compute = len([L for L in net.layers if L.kind != "input"])
    if len(names) != n_compute:
        raise fail(nir_source if isinstance(nir_source, (str, os.PathLike)) else None,
                   f"the NIR graph has {len(names)} neuron layers, the netx network {n_compute}",
                   "re-export the bundle (network.nir and network.net disagree)")
    rep: dict[str, Any] = {"consumer": CONSUMER, "consumer_version": _version(CONSUMER),
                           "samples": int(x.shape[0]), "steps": int(x.shape[1]),
                           "time_axis": "Lava's (NIR layer k shifted k+1 steps)"}
    t = time.perf_counter()
    try:
        got = run_nir(mod, names, x, net.input_shape)
    except (RuntimeError, ValueError) as exc:     # shapes of another network
        raise fail(nir_source if isinstance(nir_source, (str, os.PathLike)) else None,
                   f"the NIR graph cannot run this network's input ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:160]})", "re-export the bundle (network.nir and network.net "
                   "disagree)") from None
    rep["nir_seconds"] = time.perf_counter() - t
    if fixed is None:
        t = time.perf_counter()
        fixed = net.run(x, return_all=True)
        rep["fixed_seconds"] = time.perf_counter() - t
    fixed = [f for f, L in zip(fixed, net.layers) if L.kind != "input"]
    rep["nir_vs_fixed"] = compare_layers(fixed, got, ("fixed", "nir"), window)
    if model is not None:
        from neuromaml.deploy.verify import _align, slayer_layer_outputs

        t = time.perf_counter()
        ref = _align(slayer_layer_outputs(model, x), net)
        rep["slayer_seconds"] = time.perf_counter() - t
        rep["nir_vs_slayer"] = compare_layers(ref, got, ("slayer", "nir"), window)
    c = rep["nir_vs_fixed"]
    spiking = [r for r in c["layers"] if r["spikes_fixed"] or r["spikes_nir"]]
    rep["thresholds"] = {"min_count_corr": MIN_COUNT_CORR, "max_count_l1": MAX_COUNT_L1,
                         "min_decision_agreement": MIN_DECISION_AGREEMENT}
    rep["ok"] = bool(all(r["count_corr"] >= MIN_COUNT_CORR and r["count_l1"] <= MAX_COUNT_L1 for r in spiking)
                     and c["decision_agreement"] >= MIN_DECISION_AGREEMENT)
    rep["seconds"] = time.perf_counter() - t0
    return (rep, got) if return_spikes else rep


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


def format_nir_report(rep: dict[str, Any]) -> str:
    c = rep["nir_vs_fixed"]
    lines = [f"  nir ({rep['consumer']} {rep['consumer_version']}) vs fixed (= Lava): "
             f"{rep['samples']} samples x {rep['steps']} steps, decisions agree "
             f"{c['decision_agreement']:.0%} (window {c['window']}; output silent in "
             f"{c['output_silent_fixed']:.0%} of samples)"]
    for r in c["layers"]:
        lines.append(f"    layer {r['layer']} ({r['neurons']} neurons): spikes fixed {r['spikes_fixed']} "
                     f"nir {r['spikes_nir']}, count corr {r['count_corr']:.4f}, L1 count error "
                     f"{r['count_l1']:.2%}, identical trains {r['trains_equal']:.0%}")
    if rep.get("nir_vs_slayer"):
        s = rep["nir_vs_slayer"]
        lines.append(f"  nir vs slayer: decisions agree {s['decision_agreement']:.0%}, min count corr "
                     f"{s['min_count_corr']:.4f}")
    lines.append(f"  nir {'OK' if rep['ok'] else 'DISAGREES'} (needs, in every spiking layer, count corr >= "
                 f"{MIN_COUNT_CORR} and L1 count error <= {MAX_COUNT_L1:.0%}; decisions >= "
                 f"{MIN_DECISION_AGREEMENT:.0%})")
    return "\n".join(lines)


def require_consumer() -> None:
    """Fail early, with the install command, when snntorch is missing."""
    _consumer()


def verify_nir(net_path: str | os.PathLike, nir_path: str | os.PathLike | None, *, samples: int = 4,
               steps: int = 50, rate: float = 0.2, seed: int = 0, model: Any = None,
               burn_in: int = 0) -> dict[str, Any]:
    """``neuromaml verify --nir``: the NIR graph (``nir_path``, else exported in memory from
    ``net_path``) against the fixed engine on verify's random input spikes (same seed)."""
    from neuromaml.deploy.verify import random_inputs

    net = FixedPointNet.from_netx(net_path)
    if net.layers[0].kind == "input":
        raise fail(net_path, "--nir: the network starts with a bias-driven input neuron layer, which the NIR "
                   "graph does not carry", "leave --nir out for this network")
    if nir_path is None:
        from neuromaml.deploy.netxfile import read_layers
        from neuromaml.deploy.nir_export import to_nir

        source: Any = to_nir(read_layers(net_path))
    else:
        source = nir_path
    x = random_inputs(net, samples, steps, rate, seed)
    rep = check_nir(source, net, x, model=model, window=(min(int(burn_in), steps - 1), steps))
    rep["nir_file"] = str(nir_path) if nir_path is not None else f"exported in memory from {net_path}"
    return rep
