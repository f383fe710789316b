"""Will it fit, and what does it cost? The static cost model of a deployed network.

``static_cost(BUNDLE or FILE.net)`` reads the network as netx builds it (a bundle's
``network.net``; a raw netx file's ``pool`` layers are costed as what ``deploy.lower``
makes of them) and gives, per layer: neurons, synapses (every connection the layer holds,
and those with a nonzero weight as Lava holds them), fan-in, fan-out, weight bits and
synaptic memory, and a core mapping onto Loihi 1 and Loihi 2 from their published limits
(``LOIHI1``, ``LOIHI2``; every constant cites its source below).

The mapping model (``core_mapping``), one layer per core as Lava's compilers place one
process per set of cores: a core holds ``n`` neurons of one layer when

* ``n`` <= the core's neuron limit;
* ``n * fan_in * weight_bits`` <= the core's synaptic memory (dense synaptic format: one
  weight per connection at the layer's bits, no index overhead; conv synapses expanded,
  one weight per connection, without the weight sharing a compiler may use);
* the distinct input axons the ``n`` neurons need <= the core's input-axon limit (Loihi 1
  only: a dense layer needs all its inputs on every core; a conv layer the input window of a
  square tile of output positions).

A layer then needs ``ceil(neurons / n)`` cores; ``n = 0`` (a single neuron exceeds a core)
means the chip cannot hold the layer at all. Chips = the most of cores, neurons and synapses
over their per-chip limits.

Energy and latency: ``estimate(static, measured)`` turns the measured activity (the
fast engine's spikes, ``emulator.cost_measure``) into ESTIMATES from published per-operation
figures (Loihi 1 only: Intel publishes no per-operation energy for Loihi 2). They are never
measurements, and every output says so.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuromaml.deploy.manifest import _Section, _Written
from neuromaml.io import fail

from neuromaml.deploy.chips import (CHIPS, FP32_MAC_PJ, L1_E_NEURON_ACTIVE_PJ, L1_E_NEURON_INACTIVE_PJ,
                                    L1_E_SPIKE_TILE_PJ, L1_E_SYN_UPDATE_PJ, L1_E_SYNOP_PJ, L1_T_BARRIER_NS,
                                    L1_T_NEURON_ACTIVE_NS, L1_T_NEURON_INACTIVE_NS, L1_T_SYN_UPDATE_NS, L1_T_SYNOP_NS,
                                    Chip)

# layer types the cost model prices (pool via deploy.lower); others in netxfile.KNOWN have no formula
SUPPORTED = ("input", "dense", "conv", "flatten", "pool")


# ----------------------------------------------------------------------------- per layer
@dataclasses.dataclass
class LayerCost:
    """One computing layer as the chip holds it (numbers per layer; arrays for the measured part)."""

    index: int                  # netx layer index (after lowering, for a raw file with pools)
    kind: str                   # input | dense | conv
    source_type: str            # the type in the (lowered) file
    shape: tuple                # neuron shape (x, y, f) or (n,)
    in_shape: tuple             # what its synapses take, as the engine sees it (after flatten)
    neurons: int
    inputs: int                 # presynaptic neurons
    connections: int            # synapses held: every connection, zero weights included (NeuroBench "Dense" per step)
    nonzero: int                # synapses with a nonzero weight as Lava holds them
    parameters: int             # weights stored in the file (conv: the kernel)
    fan_in_max: int             # connections into one neuron (most)
    fan_in_nonzero_max: int
    fan_out_max: int            # connections out of one input neuron (most)
    weight_bits: int            # stored weight bits incl. sign (netx's num_weight_bits; plastic: the rule's)
    plastic: bool = False
    axons: Callable[[int], int] | None = dataclasses.field(default=None, repr=False)
    fanout: np.ndarray | None = dataclasses.field(default=None, repr=False)          # (inputs,) connections
    fanout_nonzero: np.ndarray | None = dataclasses.field(default=None, repr=False)  # (inputs,) nonzero

    @property
    def memory_bits(self) -> int:
        return int(self.connections) * int(self.weight_bits)

    def row(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "source_type": self.source_type,
                "shape": list(self.shape), "neurons": self.neurons, "inputs": self.inputs,
                "synapses_dense": self.connections, "synapses_nonzero": self.nonzero,
                "parameters": self.parameters, "fan_in": self.fan_in_max,
                "fan_in_nonzero": self.fan_in_nonzero_max, "fan_out": self.fan_out_max,
                "weight_bits": self.weight_bits, "synaptic_memory_bits": self.memory_bits,
                "plastic": self.plastic}


def _conv_maps(fl) -> dict[str, np.ndarray]:
    """Per-output fan-in and per-input fan-out of a conv layer, all connections and nonzero ones.

    Counted the NeuroBench way: the conv of an all-ones input with an all-ones (or 0/1 nonzero)
    kernel gives each output's fan-in; the gradient of its sum w.r.t. the input each input's fan-out.
    Zero padding holds no synapses. Arrays in (x, y, f) order.
    """
    import torch

    x, y, c = fl.in_shape
    kw = dict(stride=fl.stride, padding=fl.padding, dilation=fl.dilation, groups=fl.groups)
    out = {}
    for name, k in (("all", np.ones(fl.weight.shape)), ("nonzero", (fl.weight != 0).astype(np.float64))):
        inp = torch.ones((1, c, y, x), dtype=torch.float64, requires_grad=True)
        res = torch.nn.functional.conv2d(inp, torch.from_numpy(k), **kw)
        res.sum().backward()
        out[f"fan_in_{name}"] = res.detach().numpy()[0].transpose(2, 1, 0)
        out[f"fan_out_{name}"] = inp.grad.numpy()[0].transpose(2, 1, 0)
    return out


def conv_axons(in_shape: tuple, out_shape: tuple, kernel: tuple, stride: tuple, dilation: tuple,
               groups: int) -> Callable[[int], int]:
    """Distinct input axons of a core holding ``n`` output neurons of a conv layer: a square tile of
    output positions with all their channels (or, below one position's channels, the groups they
    span), whose input window is clipped to the input. Shapes (x, y, f); kernel/stride/dilation (y, x)."""
    xi, yi, ci = in_shape
    xo, yo, fo = out_shape
    (kh, kw), (sy, sx), (dy, dx) = kernel, stride, dilation

    def axons(n: int) -> int:
        if n >= fo:
            p = -(-n // fo)
            w = min(xo, math.ceil(math.sqrt(p)))
            h = min(yo, -(-p // w))
            chans = ci
        else:
            w = h = 1
            per_group = max(1, fo // groups)
            chans = min(ci, -(-n // per_group) * (ci // groups))
        wx = min(xi, (w - 1) * sx + dx * (kw - 1) + 1)
        wy = min(yi, (h - 1) * sy + dy * (kh - 1) + 1)
        return int(wx * wy * chans)

    return axons


def _check_types(layers, path) -> None:
    from neuromaml.deploy.netxfile import KNOWN

    for L in layers:
        if L.type not in KNOWN:
            raise fail(path, f"layer/{L.index}/type = {L.type!r}: unknown layer type, the cost model has no "
                       "formula for it", "export the network with neuromaml export (input, conv, pool, flatten "
                       "and dense layers)")
        if L.type not in SUPPORTED:
            raise fail(path, f"layer/{L.index}/type = {L.type!r}: the cost model prices only "
                       f"{', '.join(SUPPORTED)} layers (netx cannot load {L.type!r} either)",
                       "export the network with neuromaml export")


def analyse(netx_layers, *, path: Any = None, plastic_index: int | None = None,
            input_chw: tuple | None = None, net=None) -> tuple[list[LayerCost], tuple, list]:
    """LayerCost rows of a netx network (``NetxLayer`` list). Returns (rows, input shape as the first
    synapse takes it, lowering report). ``net``: the ``FixedPointNet`` of the same layers, if built."""
    from neuromaml.deploy.fixed import FixedPointNet, netx_weight_bits
    from neuromaml.deploy.lower import lower
    from neuromaml.onchip.rule import W_MAX, W_MIN

    _check_types(netx_layers, path)
    report: list = []
    if any(L.type == "pool" for L in netx_layers):
        chw = tuple(input_chw) if input_chw else (tuple(netx_layers[0].shape) if netx_layers[0].type == "input"
                                                  else None)
        netx_layers, report = lower(netx_layers, chw, path)
    if net is None:
        net = FixedPointNet.from_layers(netx_layers, path)
    by_index = {L.index: L for L in netx_layers}
    rows: list[LayerCost] = []
    for fl in net.layers:
        L = by_index[fl.index]
        src = L.type
        n = int(np.prod(fl.shape))
        if fl.kind == "input":      # bias-driven neurons: no synapses
            rows.append(LayerCost(fl.index, "input", src, tuple(fl.shape), (), n, 0, 0, 0, 0, 0, 0, 0, 0,
                                  axons=lambda k: 0, fanout=np.zeros(0), fanout_nonzero=np.zeros(0)))
            continue
        plastic = plastic_index is not None and fl.index == int(plastic_index)
        w = fl.weight
        if fl.kind == "dense":
            n_in = int(w.shape[1])
            nz = w != 0
            fan_out = np.full(n_in, n, np.int64)
            fan_out_nz = nz.sum(axis=0).astype(np.int64)
            conn, fi, fi_nz = n * n_in, n_in, int(nz.sum(axis=1).max(initial=0))
            bits = netx_weight_bits(np.asarray(L.weight).reshape(w.shape[0], -1))[1]
            axons = (lambda k, n_in=n_in: n_in)
            params = int(w.size)
        else:
            maps = _conv_maps(fl)
            n_in = int(np.prod(fl.in_shape))
            fan_out = maps["fan_out_all"].astype(np.int64)            # (x, y, f), as the conv takes it
            fan_out_nz = maps["fan_out_nonzero"].astype(np.int64)
            conn = int(maps["fan_in_all"].sum())
            fi, fi_nz = int(maps["fan_in_all"].max()), int(maps["fan_in_nonzero"].max())
            # netx loads conv weights as stored (Lava's Conv default num_weight_bits 8); the bits they
            # need, as netx's optimize_weight_bits counts them for a dense layer:
            bits = netx_weight_bits(np.asarray(w).reshape(w.shape[0], -1))[1]
            axons = conv_axons(fl.in_shape, fl.shape, tuple(w.shape[2:4]), fl.stride, fl.dilation, fl.groups)
            params = int(w.size)
        if plastic:   # the rule writes weights over its whole range, W_MIN..W_MAX (9-bit signed)
            bits = int(W_MAX - W_MIN).bit_length()
        nonzero = int(fan_out_nz.sum())
        rows.append(LayerCost(fl.index, fl.kind, src, tuple(fl.shape), tuple(fl.in_shape), n, n_in, conn,
                              nonzero, params, fi, fi_nz, int(fan_out.max(initial=0)), int(bits), plastic,
                              axons, fan_out, fan_out_nz))
    return rows, tuple(net.input_shape), report


# ----------------------------------------------------------------------------- core mapping
def core_mapping(chip: Chip, neurons: int, fan_in: int, weight_bits: int,
                 axons: Callable[[int], int] | None = None) -> dict[str, Any]:
    """How many cores of ``chip`` a layer of ``neurons`` needs (see the module docstring).

    ``fan_in``: connections into one neuron (the most); ``weight_bits``: stored bits per synapse;
    ``axons(n)``: distinct input axons a core holding ``n`` of the layer's neurons needs
    (default: ``fan_in``, a dense layer). Returns neurons_per_core, cores, the limit that binds
    and, when not even one neuron fits a core, ``problem`` (cores = None).
    """
    axons = axons or (lambda n: fan_in)
    mem_per_neuron = int(fan_in) * int(weight_bits)
    if chip.max_weight_bits is not None and weight_bits > chip.max_weight_bits:
        return {"neurons_per_core": 0, "cores": None, "limited_by": "weight bits",
                "problem": f"{weight_bits}-bit weights exceed the {chip.max_weight_bits} bits a {chip.name} "
                           f"synapse holds"}

    def fits(n: int) -> bool:
        if n * mem_per_neuron > chip.synaptic_memory_bits_per_core:
            return False
        return chip.axons_in_per_core is None or axons(n) <= chip.axons_in_per_core

    if neurons <= 0:
        return {"neurons_per_core": 0, "cores": 0, "limited_by": None, "problem": None}
    if not fits(1):
        if mem_per_neuron > chip.synaptic_memory_bits_per_core:
            why = (f"one neuron's fan-in of {fan_in} synapses x {weight_bits} bits = {mem_per_neuron:,} bits "
                   f"exceeds a {chip.name} core's synaptic memory ({chip.synaptic_memory_bits_per_core:,} bits)")
        else:
            why = (f"one neuron's fan-in needs {axons(1):,} input axons, more than a {chip.name} core's "
                   f"{chip.axons_in_per_core:,}")
        return {"neurons_per_core": 0, "cores": None, "limited_by": "fan-in", "problem": why}
    hi = min(chip.neurons_per_core, neurons)
    lo = 1
    while lo < hi:                       # largest n in [1, hi] that fits (fits is monotone in n)
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    n = lo
    if n == min(chip.neurons_per_core, neurons):
        limited = "neurons per core" if neurons > chip.neurons_per_core else None
    elif (n + 1) * mem_per_neuron > chip.synaptic_memory_bits_per_core:
        limited = "synaptic memory"
    else:
        limited = "input axons"
    return {"neurons_per_core": int(n), "cores": int(-(-neurons // n)), "limited_by": limited, "problem": None}


def chip_mapping(chip: Chip, rows: list[LayerCost]) -> dict[str, Any]:
    """Every layer's mapping on ``chip`` and the totals: cores, chips, layers a chip cannot hold."""
    layers, problems, total = [], [], 0
    neurons = sum(r.neurons for r in rows)
    synapses = sum(r.connections for r in rows)
    unmappable = False
    for r in rows:
        m = core_mapping(chip, r.neurons, r.fan_in_max, max(r.weight_bits, 1) if r.connections else 0, r.axons)
        m = {"index": r.index, "kind": r.kind, **m}
        if m["cores"] is None:
            unmappable = True
            problems.append(f"layer {r.index} ({r.kind}): {m['problem']}")
        else:
            total += m["cores"]
            if m["cores"] > chip.cores_per_chip:
                problems.append(f"layer {r.index} ({r.kind}) needs {m['cores']} cores; a {chip.name} chip has "
                                f"{chip.cores_per_chip}: it spans {-(-m['cores'] // chip.cores_per_chip)} chips")
            if r.connections > chip.synapses_per_chip:
                problems.append(f"layer {r.index} ({r.kind}) has {r.connections:,} synapses; a {chip.name} chip "
                                f"holds {chip.synapses_per_chip:,}")
            if r.neurons > chip.neurons_per_chip:
                problems.append(f"layer {r.index} ({r.kind}) has {r.neurons:,} neurons; a {chip.name} chip "
                                f"holds {chip.neurons_per_chip:,}")
        layers.append(m)
    chips = None if unmappable else max(1, -(-total // chip.cores_per_chip), -(-neurons // chip.neurons_per_chip),
                                        -(-synapses // chip.synapses_per_chip))
    return {"chip": chip.name, "layers": layers, "cores": None if unmappable else total, "chips": chips,
            "fits_one_chip": chips == 1, "problems": problems,
            "limits": {"cores_per_chip": chip.cores_per_chip, "neurons_per_core": chip.neurons_per_core,
                       "synaptic_memory_bits_per_core": chip.synaptic_memory_bits_per_core,
                       "axons_in_per_core": chip.axons_in_per_core, "max_weight_bits": chip.max_weight_bits,
                       "neurons_per_chip": chip.neurons_per_chip, "synapses_per_chip": chip.synapses_per_chip},
            "sources": dict(chip.sources)}


# ----------------------------------------------------------------------------- static entry
def read_network(path: str | Path) -> tuple[dict | None, Path]:
    """(manifest or None, path of the netx file) of a bundle directory or a netx file."""
    from neuromaml.deploy.bundle import load_bundle

    path = Path(path)
    if path.is_dir():
        return load_bundle(path)
    if not path.exists():
        raise fail(path, "not found", "give a bundle directory (neuromaml export/import) or a netx .net file")
    return None, path


def static_cost(path: str | Path, net=None) -> tuple[dict[str, Any], list[LayerCost]]:
    """The static cost of a bundle (or a netx file): JSON-able summary and the LayerCost rows."""
    from neuromaml.deploy.netxfile import read_layers

    manifest, netpath = read_network(path)
    plastic = chw = None
    if manifest is not None:
        from neuromaml.deploy.manifest import Manifest

        man = Manifest.from_dict(manifest)
        plastic, chw = man.adapt.layer, man.input.shape_chw
    rows, in_shape, report = analyse(read_layers(netpath), path=netpath, plastic_index=plastic,
                                     input_chw=chw, net=net)
    mapping = {key: chip_mapping(chip, rows) for key, chip in CHIPS.items()}
    totals = {"neurons": sum(r.neurons for r in rows),
              "synapses_dense": sum(r.connections for r in rows),
              "synapses_nonzero": sum(r.nonzero for r in rows),
              "parameters": sum(r.parameters for r in rows),
              "synaptic_memory_bits": sum(r.memory_bits for r in rows)}
    summary = {"network": str(netpath), "bundle": str(path) if manifest is not None else None,
               "input_shape": list(in_shape), "external_inputs": int(np.prod(in_shape)),
               "time_steps": (manifest or {}).get("input", {}).get("time_steps"),
               "plastic_layer": plastic, "lowered": report,
               "layers": [r.row() for r in rows], "totals": totals, "mapping": mapping,
               "assumptions": [
                   "one layer per core; a core holds n neurons of a layer when n <= neurons per core, "
                   "n x fan-in x weight bits <= synaptic memory (dense synaptic format, no index overhead) and "
                   "the input axons those neurons need <= the core's limit (Loihi 1: 4,096)",
                   "synapses_dense counts every connection a layer holds (zero weights included: a dense Lava "
                   "process, and the plastic layer, hold them all); conv connections are expanded (no weight "
                   "sharing), zero padding holds none",
                   "weight bits: netx's num_weight_bits incl. sign (optimize_weight_bits; for conv the bits its "
                   "weights need, netx itself loads conv weights at Lava's default 8); the plastic layer: 9 (the "
                   "rule writes -256..255)",
                   "the external input arrives as spikes from the host and takes no cores; an input layer with "
                   "neurons (bias-driven) is mapped as neurons without synapses"]}
    return summary, rows


# ----------------------------------------------------------------------------- estimates
def estimate(static: dict, measured: dict) -> dict[str, Any]:
    """ESTIMATES (never measurements) of Loihi 1 energy and time per inference and per one-shot
    learning episode from the measured activity, and the dense arithmetic of a CPU/GPU.

    Energy [pJ], a low and a high figure:
      synaptic ops (nonzero weights .. every synapse held; the plastic layer: all) x 23.6 pJ
      + neuron updates x (52 pJ inactive .. 81 pJ active)
      + spike messages x 1.7 pJ (a spike to each core of the layer it drives; tile hops, 3-4 pJ each,
      not modelled) [+ learning: weight changes .. rule evaluations x 120 pJ].
    Time per step: the slowest core (its share of the step's synaptic ops x 3.5 ns + its neurons x
    5.3 .. 8.4 ns [+ rule evaluations x 6.1 ns]) + a barrier of 113 .. 465 ns; x steps.
    """
    m1 = static["mapping"]["loihi1"]
    cores = {L["index"]: L["cores"] for L in m1["layers"]}
    if m1["cores"] is None:
        loihi1 = {"note": "the network does not map onto Loihi 1 (see mapping problems): no estimate"}
    else:
        loihi1 = {}
        for scope in ("inference", "learning_episode", "episode"):
            loihi1[scope] = _loihi1(static, measured, scope, cores)
    dense = {scope: measured[scope]["dense_synops"] for scope in ("inference", "learning_episode", "episode")}
    return {"label": "ESTIMATE from published per-operation figures, not a measurement",
            "loihi1": loihi1,
            "loihi2": {"energy": None, "time": None,
                       "note": "Intel publishes no per-operation energy or time for Loihi 2 (Loihi 2 brief, "
                               "Orchard et al. 2021: chip-level results only): cores and fit only"},
            "cpu_gpu": {scope: {"dense_macs": dense[scope], "arithmetic_energy_uj": dense[scope] * FP32_MAC_PJ / 1e6}
                        for scope in dense},
            "cpu_gpu_note": "dense MACs: every synapse every step (what a CPU/GPU computes for the same "
                            "time-stepped network); energy = MACs x 4.6 pJ (float32 multiply 3.7 + add 0.9 pJ, "
                            "45 nm, Horowitz ISSCC 2014): arithmetic only, memory access not included"}


def _loihi1(static: dict, measured: dict, scope: str, cores: dict) -> dict[str, Any]:
    m = measured[scope]
    layers = {L["index"]: L for L in m["layers"]}
    steps = m["steps"]
    plastic = {r["index"] for r in static["layers"] if r["plastic"]}
    # synaptic ops: high = every synapse a layer holds; low = nonzero weights only (a compiler that
    # drops zero synapses), except the plastic layer, which must hold all its synapses
    ops_hi = {i: L["synops_effective"] for i, L in layers.items()}
    ops_lo = {i: L["synops_effective" if i in plastic else "synops_effective_nonzero"] for i, L in layers.items()}
    synops, synops_lo = sum(ops_hi.values()), sum(ops_lo.values())
    neuron_steps = sum(L["neurons"] for L in static["layers"]) * steps
    msgs = sum(layers[i]["spikes_in"] * cores[i] for i in layers if cores.get(i))
    lo = synops_lo * L1_E_SYNOP_PJ + neuron_steps * L1_E_NEURON_INACTIVE_PJ + msgs * L1_E_SPIKE_TILE_PJ
    hi = synops * L1_E_SYNOP_PJ + neuron_steps * L1_E_NEURON_ACTIVE_PJ + msgs * L1_E_SPIKE_TILE_PJ
    learn = m.get("learning") or {}
    lo += learn.get("weight_changes", 0) * L1_E_SYN_UPDATE_PJ
    hi += learn.get("rule_evaluations", 0) * L1_E_SYN_UPDATE_PJ
    # time: per step, the slowest core; activity spread evenly over a layer's cores and steps
    t_lo = t_hi = 0.0
    for row in static["layers"]:
        i, c = row["index"], cores.get(row["index"]) or 1
        o_lo = ops_lo.get(i, 0.0) / max(steps, 1) / c
        o_hi = ops_hi.get(i, 0.0) / max(steps, 1) / c
        upd_lo = upd_hi = 0.0
        if row["plastic"] and learn:
            upd_lo = learn.get("weight_changes", 0) / max(steps, 1) / c
            upd_hi = learn.get("rule_evaluations", 0) / max(steps, 1) / c
        nrn = row["neurons"] / c
        t_lo = max(t_lo, o_lo * L1_T_SYNOP_NS + nrn * L1_T_NEURON_INACTIVE_NS + upd_lo * L1_T_SYN_UPDATE_NS)
        t_hi = max(t_hi, o_hi * L1_T_SYNOP_NS + nrn * L1_T_NEURON_ACTIVE_NS + upd_hi * L1_T_SYN_UPDATE_NS)
    step_lo, step_hi = t_lo + L1_T_BARRIER_NS[0], t_hi + L1_T_BARRIER_NS[1]
    return {"energy_uj": [lo / 1e6, hi / 1e6],
            "components_pj": {"synaptic_ops": [synops_lo * L1_E_SYNOP_PJ, synops * L1_E_SYNOP_PJ],
                              "neuron_updates": [neuron_steps * L1_E_NEURON_INACTIVE_PJ,
                                                 neuron_steps * L1_E_NEURON_ACTIVE_PJ],
                              "spike_messages": msgs * L1_E_SPIKE_TILE_PJ,
                              "learning": [learn.get("weight_changes", 0) * L1_E_SYN_UPDATE_PJ,
                                           learn.get("rule_evaluations", 0) * L1_E_SYN_UPDATE_PJ]},
            "counts": {"synaptic_ops": [synops_lo, synops], "neuron_updates": neuron_steps, "spike_messages": msgs,
                       "steps": steps},
            "time_per_step_us": [step_lo / 1e3, step_hi / 1e3],
            "time_us": [steps * step_lo / 1e3, steps * step_hi / 1e3],
            "time_note": "unthrottled; timesteps are commonly throttled to 1 ms of real time (Davies et al. "
                         f"2021, Sec. II-A), i.e. {steps} ms"}


@dataclasses.dataclass
class CostSummary(_Written, _Section):
    """``cost.json``: ``static`` (``static_cost``: layers, core mapping, totals, assumptions),
    ``measured`` (``emulator.cost_measure.measure``: spikes and SynOps per inference and per
    learning episode; None without data), ``estimates`` (``estimate``: energy and time ranges from
    published per-operation figures; None without data)."""

    target: str = ""
    label: str = ""
    static: dict = dataclasses.field(default_factory=dict)
    measured: dict | None = None
    estimates: dict | None = None
    package_versions: dict = dataclasses.field(default_factory=dict)
    plot: str | None = None
    seconds: float = 0.0
    outputs: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    present: frozenset = dataclasses.field(default_factory=frozenset, repr=False, compare=False)

    def __post_init__(self):
        self.written_in_full(but=())   # None included: readers test measured / estimates
