"""The exported network as a NIR graph (``nir`` package) for other neuromorphic back-ends.

Built from the netx layers after lowering (what Lava runs): per computing layer
a synapse node (``Conv2d`` or ``Linear``, weights as the stored integers ``W``)
and a ``CubaLIF`` node, plus ``Flatten`` where netx flattens. Loihi's discrete
CUBA neuron, with ``dt = 1 ms``, ``d_u = iDecay / 4096``, ``d_v = vDecay / 4096``::

    u[t] = (1 - d_u) u[t-1] + W s[t-1];   v[t] = (1 - d_v) v[t-1] + u[t];   spike if v > vThMant

maps to NIR's ``tau_syn dI/dt = -I + w_in x``, ``tau_mem dv/dt = v_leak - v + r I`` with
``tau = -dt / ln(1 - d)`` (seconds; ``inf`` for ``d = 0``), ``w_in = tau_syn / dt``,
``r = tau_mem / dt``, ``v_leak = 0``, ``v_threshold = vThMant`` (in units of ``W``; reset to 0).
The exact integers are kept in each node's ``metadata`` (``iDecay``, ``vDecay``, ``vThMant``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuromaml.deploy.netxfile import NetxLayer
from neuromaml.io import atomic_path

DT = 1e-3  # seconds per step


def _tau(d: int) -> float:
    frac = int(d) / 4096.0
    if frac <= 0:
        return float("inf")
    if frac >= 1:
        return DT / 50.0          # decays fully within a step
    return float(-DT / np.log(1.0 - frac))


def to_nir(layers: list[NetxLayer]):
    import nir

    nodes: dict[str, object] = {}
    edges: list[tuple[str, str]] = []
    shape = None
    prev = "input"
    first = layers[0]
    if first.type == "input":
        shape = tuple(first.shape)
    k = 0
    for L in layers:
        if L.type == "input":
            continue
        if L.type == "flatten":
            if shape is None:
                continue
            name = f"flatten{k}"
            nodes[name] = nir.Flatten(input_type={"input": np.asarray(shape)}, start_dim=0, end_dim=-1)
            edges.append((prev, name))
            prev, shape = name, (int(np.prod(shape)),)
            continue
        k += 1
        w = np.asarray(L.weight, dtype=np.float64)
        if L.type == "conv":
            w = w.reshape(w.shape[:4])
            hw = None if shape is None else tuple(int(v) for v in shape[1:3])
            syn = nir.Conv2d(input_shape=hw, weight=w,
                             stride=tuple(np.atleast_1d(L.get("stride", 1)).astype(int).tolist() * 2)[:2],
                             padding=tuple(np.atleast_1d(L.get("padding", 0)).astype(int).tolist() * 2)[:2],
                             dilation=tuple(np.atleast_1d(L.get("dilation", 1)).astype(int).tolist() * 2)[:2],
                             groups=int(np.asarray(L.get("groups", 1))), bias=np.zeros(w.shape[0]))
        else:
            syn = nir.Linear(weight=w.reshape(w.shape[0], -1))
        shape = tuple(L.shape)
        nrn = L.neuron or {}
        iD, vD, th = int(nrn.get("iDecay", 0)), int(nrn.get("vDecay", 0)), int(nrn.get("vThMant", 0))
        ts, tm = _tau(iD), _tau(vD)
        n = np.ones(shape)
        lif = nir.CubaLIF(tau_syn=ts * n, tau_mem=tm * n, r=(tm / DT if np.isfinite(tm) else 1.0) * n,
                          v_leak=0 * n, v_threshold=th * n, v_reset=0 * n,
                          w_in=(ts / DT if np.isfinite(ts) else 1.0) * n,
                          metadata={"iDecay": iD, "vDecay": vD, "vThMant": th, "dt": DT,
                                    "netx_layer": int(L.index)})
        nodes[f"syn{k}"], nodes[f"lif{k}"] = syn, lif
        edges += [(prev, f"syn{k}"), (f"syn{k}", f"lif{k}")]
        prev = f"lif{k}"
    if first.type == "input":
        in_shape = np.asarray(first.shape)
    else:                            # no input layer: what the first synapse takes
        w = np.asarray(first.weight)
        in_shape = np.asarray([w.reshape(w.shape[0], -1).shape[1]] if first.type == "dense" else [w.shape[1]])
    nodes["input"] = nir.Input(input_type={"input": in_shape})
    nodes["output"] = nir.Output(output_type={"output": np.asarray(shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def write_nir(layers: list[NetxLayer], path: str | os.PathLike) -> Path:
    import nir

    graph = to_nir(layers)
    with atomic_path(path, suffix=".nirtmp") as tmp:
        nir.write(tmp, graph)
    return Path(path)
