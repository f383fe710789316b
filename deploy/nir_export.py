"""The exported network as a NIR graph (``nir`` package) that other simulators run.

Built from the netx layers after lowering (what Lava runs): per computing layer a synapse
node (``Linear``, or ``Conv2d``) and a ``CubaLIF`` node, plus ``Flatten`` where netx
flattens. ``deploy/nir_check.py`` loads the file into snntorch (``neuromaml verify BUNDLE
--nir``) and measures its agreement with the fixed-point engine (= Lava).

**Neuron.** Loihi's CUBA neuron (``d_u = iDecay / 4096``, ``d_v = vDecay / 4096``, states in
units of the integer weights ``W``)::

    u[t] = (1 - d_u) u[t-1] + W s[t-1];   v[t] = (1 - d_v) v[t-1] + u[t] + bias;
    spike if v[t] > vThMant, then v[t] = 0

is NIR's ``tau_syn dI/dt = -I + w_in x``, ``tau_mem dv/dt = v_leak - v + r I`` discretised
by forward Euler with the step ``dt = DT = 1e-4 s`` (one Loihi step), the discretisation and
step that NIR's consumers assume (snntorch 0.9's ``import_nir`` hard-codes ``dt = 1e-4`` and
``alpha = 1 - dt / tau_syn``, and asserts ``r == tau_mem / dt``; NIR's reference Lava
importer does the same; norse's ``from_nir`` takes ``dt``, default ``1e-3``: give it ``1e-4``;
only snntorch is run here, by ``deploy.nir_check``)::

    tau_syn = dt / d_u,  w_in = tau_syn / dt = 1 / d_u,  tau_mem = dt / d_v,  r = tau_mem / dt,
    v_leak = bias * r,  v_threshold = vThMant,  v_reset = 0

so that a consumer's ``I += dt/tau_syn (w_in x - I)`` adds exactly ``W x``. A decay of 0
(no leak) is ``tau = dt * 2**32`` (not ``inf``: ``r = tau / dt`` must stay finite); a decay
of 4096 is ``tau = dt``. What differs from Lava in a float simulator is only Loihi's integer
arithmetic: decays truncated toward zero on a grid of ``1/64`` of a weight unit, and 24-bit
state registers. The integers are kept in each node's ``metadata``
(``iDecay``, ``vDecay``, ``vThMant``, ``netx_layer``), but nothing needs them.

**Synapses.** ``Linear`` weights are the integers Lava's dense synapse applies
(netx's ``optimize_weight_bits`` and Lava's truncation, times ``2**weight_exp``: the file's
integers unless Lava drops bits). ``Conv2d`` keeps the file's kernel (torch order
``(out, in, kh, kw)``, correlation as torch computes it). A grouped convolution (a lowered
pool: ``groups = C``, one kernel per channel) is written with ``groups = 1`` and a
block-diagonal kernel (``metadata.netx_groups`` says so): NIR 1.0's ``Conv2d`` types its
input as ``weight.shape[1]`` channels, so a grouped kernel makes ``nir.read`` refuse the
file, and snntorch 0.9 / norse build ``torch.nn.Conv2d(weight.shape[1], ...)``, which fails
for ``groups > 1``.

**Shapes.** Neuron shapes are ``(C, H, W)`` (NIR's and torch's order; netx stores the same
in its ``shape`` datasets). netx flattens a ``(x, y, f)`` layer as ``(f, y, x)`` in C order,
i.e. ``(C, H, W)`` in C order, which is what ``Flatten`` does; its ``start_dim = -3``
(counting from the end) means the same to NIR's own type inference (no batch dimension)
and to torch-based consumers that hand it to ``torch.nn.Flatten`` with a batch dimension
in front (``start_dim = 0`` would flatten the batch).

**Time.** Lava's synapses each delay by one step (``deploy.fixed.SYNAPSE_DELAY``); NIR's
edges have no delay, and NIR's ``Delay`` node is not supported by snntorch 0.9. The graph is
delay-free: layer ``k`` (0-based) of a consumer's run, shifted ``k + 1`` steps later, is
Lava's layer ``k`` (the graph's ``metadata.lava_delay_steps``). Spike counts over a whole
response are unchanged; a readout window ``[burn_in, T)`` on Lava's axis is
``[burn_in - L, T - L)`` on the graph's (``L`` = number of layers).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from neuromaml.deploy.netxfile import NetxLayer
from neuromaml.io import atomic_write_bytes

DT = 1e-4                  # seconds per Loihi step in the graph (snntorch's and NIR's reference importers' dt)
NO_DECAY_STEPS = 2 ** 32   # tau / dt standing in for a decay of 0 (no leak)


def decay_to_tau(d: int, dt: float = DT) -> float:
    """Loihi 12-bit decay -> forward-Euler time constant ``dt / (d / 4096)`` (seconds)."""
    frac = int(d) / 4096.0
    if frac <= 0:
        return float(dt * NO_DECAY_STEPS)
    return float(dt / min(frac, 1.0))


def _pair(v, default: int) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(default if v is None else v)).astype(int)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def dense_weight(L: NetxLayer) -> np.ndarray:
    """The integer weights Lava's dense synapse applies (``W * 2**weight_exp``), (out, in)."""
    from neuromaml.deploy.fixed import _dense_weight

    w = np.asarray(L.weight)
    out = int(np.prod(L.shape)) if L.shape else w.shape[0]
    wq, wexp = _dense_weight(w, out)
    return wq.astype(np.float64) * 2.0 ** wexp


def ungroup(w: np.ndarray, groups: int) -> np.ndarray:
    """Grouped kernel (out, in/g, kh, kw) -> the equivalent dense kernel (out, in, kh, kw)."""
    out, cin_g = w.shape[:2]
    full = np.zeros((out, cin_g * groups) + w.shape[2:], w.dtype)
    per = out // groups
    for g in range(groups):
        full[g * per:(g + 1) * per, g * cin_g:(g + 1) * cin_g] = w[g * per:(g + 1) * per]
    return full


def cuba_node(shape: tuple[int, ...], neuron: dict | None, bias: np.ndarray | None, netx_index: int):
    """``nir.CubaLIF`` of shape (C, H, W) or (n,) for a netx neuron (see the module docstring)."""
    import nir

    nrn = neuron or {}
    if neuron is None:      # netx's default for a dense layer without a neuron (see deploy.fixed._neuron)
        iD, vD, th = 0, 4096, 1 << 17
    else:
        iD, vD, th = int(nrn.get("iDecay", 0)), int(nrn.get("vDecay", 0)), int(nrn.get("vThMant", 0))
    ts, tm = decay_to_tau(iD), decay_to_tau(vD)
    n = np.ones(shape)
    v_leak = np.zeros(shape)
    if bias is not None:
        v_leak = np.broadcast_to(np.asarray(bias, np.float64), shape) * (tm / DT)
    return nir.CubaLIF(tau_syn=ts * n, tau_mem=tm * n, r=(tm / DT) * n, v_leak=v_leak * n,
                       v_threshold=float(th) * n, v_reset=0 * n, w_in=(ts / DT) * n,
                       metadata={"iDecay": iD, "vDecay": vD, "vThMant": th, "dt": DT, "netx_layer": int(netx_index)})


def _bias_chw(L: NetxLayer, shape: tuple[int, ...]) -> np.ndarray | None:
    b = L.bias
    if b is None or not np.any(b):
        return None
    b = np.asarray(b).astype(int).astype(np.float64)        # netx truncates (astype(int))
    if len(shape) == 1:
        return np.broadcast_to(b.reshape(-1), shape)
    if b.size == shape[0]:                                    # one per channel
        return np.broadcast_to(b.reshape(-1, 1, 1), shape)
    return np.asarray(b).reshape(tuple(shape[::-1])).transpose(2, 1, 0)   # stored (x, y, f)


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
    square = True
    for L in layers:
        if L.type == "input":
            continue
        if L.type == "flatten":
            if shape is None:
                continue
            name = f"flatten{k}"
            nodes[name] = nir.Flatten(input_type={"input": np.asarray(shape)}, start_dim=-len(shape), end_dim=-1)
            edges.append((prev, name))
            prev, shape = name, (int(np.prod(shape)),)
            continue
        k += 1
        if L.type == "conv":
            w = np.asarray(L.weight, dtype=np.float64)
            w = w.reshape(w.shape[:4])
            groups = int(np.asarray(L.get("groups", 1)))
            meta = {"netx_layer": int(L.index)}
            if groups > 1:
                w = ungroup(w, groups)
                meta["netx_groups"] = groups
            square &= w.shape[2] == w.shape[3]
            hw = None if shape is None else tuple(int(v) for v in shape[1:3])
            syn = nir.Conv2d(input_shape=hw, weight=w, stride=_pair(L.get("stride"), 1),
                             padding=_pair(L.get("padding"), 0), dilation=_pair(L.get("dilation"), 1),
                             groups=1, bias=np.zeros(w.shape[0]), metadata=meta)
        else:
            syn = nir.Linear(weight=dense_weight(L), metadata={"netx_layer": int(L.index)})
        shape = tuple(L.shape)
        nodes[f"syn{k}"] = syn
        nodes[f"lif{k}"] = cuba_node(shape, L.neuron, _bias_chw(L, shape), L.index)
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
    meta = {"dt": DT, "discretisation": "forward Euler, one step = one Loihi time step",
            "lava_delay_steps": 1, "source": "neuromaml.deploy.nir_export", "layers": k}
    # type-check when every shape is known, so that the file reads back (nir.read checks types);
    # NIR 1.0 infers a conv's output from the kernel's first spatial size only (square kernels)
    check = first.type == "input" and square
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=check)


def write_nir(layers: list[NetxLayer], path: str | os.PathLike) -> Path:
    import nir

    graph = to_nir(layers)
    # Serialised in memory, then written as bytes: HDF5 writing straight to a full disk fails in
    # its object destructors (tracebacks, then a segmentation fault, the temporary file left);
    # a Python write of the bytes fails with ENOSPC, which the CLI reports in one line.
    buf = io.BytesIO()
    nir.write(buf, graph)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
