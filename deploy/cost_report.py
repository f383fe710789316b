"""Reports of ``neuromaml cost``: Markdown, the stdout table and the plot (``deploy.cost`` holds
the model; this module only formats its results)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuromaml.deploy.chips import ENERGY_CONSTANTS, LOIHI1, LOIHI2, NEUROBENCH

if TYPE_CHECKING:
    from neuromaml.deploy.cost import CostSummary


# ----------------------------------------------------------------------------- reports
def _n(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e15 or abs(v) < 1e-2:
            return f"{v:.3g}"
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)


def _range(a: list, unit: str) -> str:
    return f"{_n(float(a[0]))} - {_n(float(a[1]))} {unit}"


def format_markdown(s: CostSummary) -> str:
    st = s.static
    m1, m2 = st["mapping"]["loihi1"], st["mapping"]["loihi2"]
    c1 = {L["index"]: L for L in m1["layers"]}
    c2 = {L["index"]: L for L in m2["layers"]}
    lines = [f"# Cost of `{s.target}`", "",
             f"Network `{st['network']}`; external input {tuple(st['input_shape'])} "
             f"({st['external_inputs']:,} spike sources, from the host)."
             + (f" Plastic layer: netx layer {st['plastic_layer']}." if st.get("plastic_layer") is not None else ""),
             "", "## Layers and core mapping (static)", "",
             "| netx # | kind | neurons | synapses (dense) | synapses (nonzero) | fan-in | fan-out | weight bits | "
             "synaptic memory | Loihi 1 cores | Loihi 2 cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def cores_cell(m):
        if m["cores"] is None:
            return "does not fit"
        return f"{m['cores']} ({m['neurons_per_core']}/core" + (f", {m['limited_by']}" if m["limited_by"] else "") + ")"

    for r in st["layers"]:
        kind = r["kind"] + (" (plastic)" if r["plastic"] else "")
        lines.append(f"| {r['index']} | {kind} | {_n(r['neurons'])} | {_n(r['synapses_dense'])} | "
                     f"{_n(r['synapses_nonzero'])} | {_n(r['fan_in'])} | {_n(r['fan_out'])} | {r['weight_bits']} | "
                     f"{_n(r['synaptic_memory_bits'] / 8 / 1024)} KB | {cores_cell(c1[r['index']])} | "
                     f"{cores_cell(c2[r['index']])} |")
    t = st["totals"]
    lines.append(f"| total | | {_n(t['neurons'])} | {_n(t['synapses_dense'])} | {_n(t['synapses_nonzero'])} | | | | "
                 f"{_n(t['synaptic_memory_bits'] / 8 / 1024)} KB | {_n(m1['cores'])} | {_n(m2['cores'])} |")
    lines.append("")
    for m in (m1, m2):
        fit = ("does not fit" if m["chips"] is None else
               f"{m['cores']} cores on {m['chips']} chip{'s' if m['chips'] > 1 else ''}")
        lines.append(f"- **{m['chip']}**: {fit}" + ("." if not m["problems"] else
                                                     ": " + "; ".join(m["problems"]) + "."))
    if st.get("lowered"):
        lines += ["", "Costed as deployed: " + "; ".join(f"layer {r['index']} {r['from']} -> {r['to']}"
                                                        for r in st["lowered"]) + " (deploy.lower, as export does)."]
    lines += ["", "Mapping model: " + "; ".join(st["assumptions"]) + ".", ""]
    meas = s.measured
    if meas:
        lines += _measured_md(s, meas)
    est = s.estimates
    if est:
        lines += _estimates_md(est)
    lines += ["## Constants and sources", "", "| quantity | value | source |", "|---|---|---|"]
    for chip in (LOIHI1, LOIHI2):
        for k, src in chip.sources.items():
            v = {"cores_per_chip": chip.cores_per_chip, "neurons_per_core": chip.neurons_per_core,
                 "synaptic_memory_per_core": f"{chip.synaptic_memory_bits_per_core // 8 // 1024} KB",
                 "axons_in_per_core": chip.axons_in_per_core, "weight_bits": chip.max_weight_bits,
                 "neurons_per_chip": chip.neurons_per_chip, "synapses_per_chip": chip.synapses_per_chip}[k]
            lines.append(f"| {chip.name} {k.replace('_', ' ')} | {_n(v)} | {src} |")
    for name, v, unit, src in ENERGY_CONSTANTS:
        lines.append(f"| {name} | {v} {unit} | {src} |")
    lines.append(f"| SynOps definitions | | {NEUROBENCH} |")
    if s.plot:
        lines += ["", f"![per-layer cost]({Path(s.plot).name})"]
    return "\n".join(lines) + "\n"


def _measured_md(s: CostSummary, meas: dict) -> list[str]:
    inf = meas["inference"]
    lines = ["## Measured activity (fast engine, emulated episodes)", "",
             f"{meas['tasks']} tasks of `{meas['data']}` split `{meas['split']}`, {meas['n_way']}-way "
             f"{meas['k_shot']}-shot, {meas['n_query']} queries per class, seed {meas['seed']} (the tasks "
             f"`neuromaml emulate` runs with the same settings); {meas['time_steps']} steps per sample. "
             f"One-shot accuracy on these tasks: {100 * meas['accuracy_mean']:.1f}%.", "",
             "Per inference (one query sample, learning off), mean over the query presentations:", "",
             "| netx # | kind | neurons | spikes | activation sparsity | input spikes | SynOps effective | "
             "SynOps effective (nonzero weights) | SynOps dense |", "|---|---|---|---|---|---|---|---|---|",
             f"| input | host | {_n(inf['input']['neurons'])} | {_n(inf['input']['spikes'])} | "
             f"{inf['input']['sparsity']:.4f} | | | | |"]
    for L in inf["layers"]:
        lines.append(f"| {L['index']} | {L['kind']} | {_n(L['neurons'])} | {_n(L['spikes'])} | {L['sparsity']:.4f} | "
                     f"{_n(L['spikes_in'])} | {_n(L['synops_effective'])} | {_n(L['synops_effective_nonzero'])} | "
                     f"{_n(L['dense_synops'])} |")
    lines.append(f"| total | | | {_n(inf['spikes'])} | {inf['sparsity']:.4f} | | {_n(inf['synops_effective'])} | "
                 f"{_n(inf['synops_effective_nonzero'])} | {_n(inf['dense_synops'])} |")
    le, ep = meas["learning_episode"], meas["episode"]
    learn = le["learning"]
    lines += ["", "| | per inference | per one-shot learning episode (support presentation) | per full episode "
              "(support + queries) |", "|---|---|---|---|",
              f"| samples presented | 1 | {le['samples']} | {ep['samples']} |",
              f"| time steps | {inf['steps']} | {le['steps']} | {ep['steps']} |",
              f"| spikes (on chip) | {_n(inf['spikes'])} | {_n(le['spikes'])} | {_n(ep['spikes'])} |",
              f"| SynOps effective (NeuroBench Effective_ACs: binary spikes) | {_n(inf['synops_effective'])} | "
              f"{_n(le['synops_effective'])} | {_n(ep['synops_effective'])} |",
              f"| SynOps dense (every synapse every step = a CPU/GPU's dense MACs) | {_n(inf['dense_synops'])} | "
              f"{_n(le['dense_synops'])} | {_n(ep['dense_synops'])} |",
              f"| learning-engine rule evaluations (every plastic synapse every step) | 0 | "
              f"{_n(learn['rule_evaluations'])} | {_n(ep['learning']['rule_evaluations'])} |",
              f"| weight changes (synapse-steps whose weight changed) | 0 | {_n(learn['weight_changes'])} | "
              f"{_n(ep['learning']['weight_changes'])} |",
              f"| synapses changed by the episode | 0 | {_n(learn['synapses_changed'])} of "
              f"{_n(learn['plastic_synapses'])} ({100 * learn['fraction_synapses_updated']:.1f}%) | same |", "",
              "SynOps effective: per input spike, its fan-out synapses (all the layer holds; the plastic layer "
              "holds all O x I); the nonzero column counts only nonzero weights as NeuroBench does (the plastic "
              "layer at theta0*). Activation sparsity = 1 - spikes / (neurons x steps). The learning engine "
              "evaluates the rule for every plastic synapse each epoch (t_epoch = 1; the rule's dw has the "
              "unconditional u0 dependency). A full episode also runs "
              f"{ep['prefix_steps']} blank prefix steps.", ""]
    return lines


def _estimates_md(est: dict) -> list[str]:
    lines = ["## ESTIMATES (from published per-operation figures; not measurements)", ""]
    l1 = est["loihi1"]
    if "note" in l1:
        lines += [f"Loihi 1: {l1['note']}.", ""]
    else:
        lines += ["| ESTIMATE, Loihi 1 | per inference | per one-shot learning episode | per full episode |",
                  "|---|---|---|---|"]
        rows = [("energy", "energy_uj", "uJ"), ("time (unthrottled)", "time_us", "us")]
        for name, key, unit in rows:
            lines.append(f"| {name} (ESTIMATE) | " + " | ".join(_range(l1[sc][key], unit) for sc in
                                                               ("inference", "learning_episode", "episode")) + " |")
        inf = l1["inference"]["components_pj"]
        le = l1["learning_episode"]["components_pj"]
        lines += ["", f"Per inference: synaptic ops {_range([v / 1e6 for v in inf['synaptic_ops']], 'uJ')} "
                  "(nonzero weights .. every synapse held), neuron updates "
                  f"{_range([v / 1e6 for v in inf['neuron_updates']], 'uJ')}, spike messages "
                  f"{_n(inf['spike_messages'] / 1e6)} uJ. Learning episode: learning engine "
                  f"{_range([v / 1e6 for v in le['learning']], 'uJ')} (weight changes .. rule evaluations x 120 pJ). "
                  f"{l1['inference']['time_note']}.", ""]
    cpu = ", ".join(f"{_n(est['cpu_gpu'][sc]['dense_macs'])} ({_n(est['cpu_gpu'][sc]['arithmetic_energy_uj'])} uJ "
                    f"arithmetic) per {sc.replace('_', ' ')}" for sc in ("inference", "learning_episode"))
    lines += [f"Loihi 2: {est['loihi2']['note']}.", "",
              f"CPU/GPU, same network time-stepped (ESTIMATE): dense MACs {cpu}; {est['cpu_gpu_note']}.", ""]
    return lines


def plot(s: CostSummary, path: Path) -> str:
    """cost.png: per layer, spikes and SynOps per inference (measured) or synapses and cores (static)."""
    from matplotlib.figure import Figure

    from neuromaml.io import atomic_path

    st = s.static
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    meas = s.measured
    if meas:
        L = meas["inference"]["layers"]
        names = [f"{x['index']}\n{x['kind']}" for x in L]
        pos = np.arange(len(L))
        axes[0].bar(["input"] + names, [meas["inference"]["input"]["spikes"]] + [x["spikes"] for x in L], color="C0")
        axes[0].set_ylabel("spikes per inference (measured)")
        axes[0].set_title("spikes per layer")
        wd = 0.27
        for k, (key, label) in enumerate((("synops_effective", "effective, every synapse held"),
                                          ("synops_effective_nonzero", "effective, nonzero weights"),
                                          ("dense_synops", "dense (CPU/GPU MACs)"))):
            axes[1].bar(pos + (k - 1) * wd, [max(x[key], 1e-1) for x in L], wd, label=label)
        axes[1].set_xticks(pos, names)
        axes[1].set_yscale("log")
        axes[1].set_ylabel("SynOps per inference")
        axes[1].set_title("synaptic operations per layer")
        axes[1].legend(fontsize=7)
    else:
        L = st["layers"]
        names = [f"{x['index']}\n{x['kind']}" for x in L]
        pos = np.arange(len(L))
        wd = 0.38
        axes[0].bar(pos - wd / 2, [max(x["synapses_dense"], 1e-1) for x in L], wd, label="dense")
        axes[0].bar(pos + wd / 2, [max(x["synapses_nonzero"], 1e-1) for x in L], wd, label="nonzero")
        axes[0].set_xticks(pos, names)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("synapses")
        axes[0].legend(fontsize=7)
        for k, (key, chip) in enumerate((("loihi1", "Loihi 1"), ("loihi2", "Loihi 2"))):
            cores = [m["cores"] or 0 for m in st["mapping"][key]["layers"]]
            axes[1].bar(pos + (k - 0.5) * wd, cores, wd, label=chip)
        axes[1].set_xticks(pos, names)
        axes[1].set_ylabel("cores")
        axes[1].legend(fontsize=7)
    fig.suptitle(f"cost of {Path(s.target).name}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return str(path)


def format_table(s: CostSummary) -> str:
    """The short stdout table."""
    st = s.static
    m1, m2 = st["mapping"]["loihi1"], st["mapping"]["loihi2"]
    c1 = {L["index"]: L["cores"] for L in m1["layers"]}
    c2 = {L["index"]: L["cores"] for L in m2["layers"]}
    meas = {L["index"]: L for L in (s.measured or {}).get("inference", {}).get("layers", [])}
    head = f"{'#':>3} {'kind':7} {'neurons':>9} {'synapses':>12} {'L1 cores':>8} {'L2 cores':>8}"
    if meas:
        head += f" {'spikes/inf':>10} {'SynOps eff/inf':>14} {'SynOps dense/inf':>16}"
    out = [head]
    for r in st["layers"]:
        line = (f"{r['index']:>3} {r['kind']:7} {r['neurons']:>9,} {r['synapses_dense']:>12,} "
                f"{_n(c1[r['index']]):>8} {_n(c2[r['index']]):>8}")
        if meas:
            L = meas[r["index"]]
            line += f" {L['spikes']:>10.1f} {L['synops_effective']:>14,.0f} {L['dense_synops']:>16,}"
        out.append(line)
    out.append(f"Loihi 1: {_n(m1['cores'])} cores, {_n(m1['chips'])} chip(s); Loihi 2: {_n(m2['cores'])} cores, "
               f"{_n(m2['chips'])} chip(s)")
    for m in (m1, m2):
        for p in m["problems"]:
            out.append(f"  {m['chip']}: {p}")
    est = s.estimates
    if est and "note" not in est["loihi1"]:
        l1 = est["loihi1"]
        out.append("ESTIMATE (Loihi 1, Davies et al. 2018 Table 2; not a measurement): energy per inference "
                   + _range(l1["inference"]["energy_uj"], "uJ") + ", per one-shot learning episode "
                   + _range(l1["learning_episode"]["energy_uj"], "uJ"))
    return "\n".join(out)
