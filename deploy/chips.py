"""What the chips are: Loihi 1 and Loihi 2's published limits and per-operation figures, each
constant with its source (the cost model, ``deploy.cost``, prices a network against them)."""
from __future__ import annotations

import dataclasses

# ----------------------------------------------------------------------------- sources
DAVIES2018 = ('M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", '
              "IEEE Micro 38(1):82-99, 2018")
DAVIES2021 = ('M. Davies et al., "Advancing Neuromorphic Computing With Loihi: A Survey of Results and '
              'Outlook", Proc. IEEE 109(5):911-934, 2021')
INTEL_L2_BRIEF = ('Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2", '
                  "Technology Brief, 2021, Table 1 (Loihi vs Loihi 2)")
ORCHARD2021 = ('G. Orchard et al., "Efficient Neuromorphic Signal Processing with Loihi 2", '
               "IEEE SiPS 2021")
HOROWITZ2014 = ('M. Horowitz, "Computing\'s energy problem (and what we can do about it)", '
                "ISSCC 2014 (45 nm, 0.9 V)")
NEUROBENCH = ("NeuroBench (Yik et al., Nature Communications 2025), neurobench/metrics/workload/"
              "synaptic_operations.py: Effective_MACs / Effective_ACs / Dense")


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published per-core and per-chip limits of a neuromorphic chip."""

    name: str
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bits_per_core: int
    axons_in_per_core: int | None          # None: no published limit (not checked)
    max_weight_bits: int | None            # None: not checked
    neurons_per_chip: int
    synapses_per_chip: int
    sources: dict = dataclasses.field(default_factory=dict, compare=False)


LOIHI1 = Chip(
    name="Loihi 1",
    # Davies et al. 2018, "Chip Overview" (p. 86): "a manycore mesh comprising 128 neuromorphic cores"
    cores_per_chip=128,
    # Davies et al. 2018, p. 89, mapping constraint 1: "The total number of neurons assigned to any
    # core may not exceed 1,024 (Ncx)" (1,024 compartments; a CUBA neuron is one compartment)
    neurons_per_core=1024,
    # Davies et al. 2018, p. 89, mapping constraint 2: "The total synaptic fan-in state mapped to any
    # core must not exceed 128 KB (Nsyn x 64b, subject to compression and list alignment
    # considerations)". (The core's 2 Mb is its total SRAM incl. ECC, p. 92, not the synaptic budget.)
    synaptic_memory_bits_per_core=128 * 1024 * 8,
    # Davies et al. 2018, p. 89, mapping constraint 4: "The total number of distribution lists,
    # associated by axon_id, in any core must not exceed 4,096 (Naxin)"
    axons_in_per_core=4096,
    # Davies et al. 2018, p. 87: "Loihi supports any weight precision between one and nine bits,
    # signed or unsigned"
    max_weight_bits=9,
    # 128 cores x 1,024 = 131,072; Davies et al. 2021, Sec. II-A: "Loihi implements 131 072
    # leaky-integrate-and-fire neurons" (commonly cited as "130,000 neurons")
    neurons_per_chip=131_072,
    # as commonly cited: "130 million synapses" (Intel's Loihi announcement, 2017; WikiChip
    # "intel/loihi": synapse count 130,000,000); the Loihi 2 brief's Table 1 lists 128 million for
    # Loihi 1. (16 MB of synaptic memory at the densest 1-bit format, Davies et al. 2018, p. 95.)
    synapses_per_chip=130_000_000,
    sources={"cores_per_chip": f"{DAVIES2018}, p. 86",
             "neurons_per_core": f"{DAVIES2018}, p. 89 (constraint 1)",
             "synaptic_memory_per_core": f"{DAVIES2018}, p. 89 (constraint 2: 128 KB)",
             "axons_in_per_core": f"{DAVIES2018}, p. 89 (constraint 4: 4,096 distribution lists)",
             "weight_bits": f"{DAVIES2018}, p. 87 (1 to 9 bits)",
             "neurons_per_chip": f"{DAVIES2021}, Sec. II-A (131,072)",
             "synapses_per_chip": "as commonly cited (Intel's 2017 Loihi announcement; WikiChip intel/loihi: "
                                  "130,000,000)"},
)

LOIHI2 = Chip(
    name="Loihi 2",
    # Intel Loihi 2 brief (2021), Table 1: "Max # neuron cores/chip: 128"
    cores_per_chip=128,
    # as commonly cited ("up to 8,192 neurons per core", third-party summaries of the brief and of
    # Orchard et al. 2021; = 1,048,576 / 128): not found verbatim in a primary source here
    neurons_per_core=8192,
    # Intel Loihi 2 brief (2021), Table 1: "Memory/neuron core: 192 KB, flexible allocation" (shared by
    # synapses, neuron state and routing: all of it counted as synaptic memory here, a best case)
    synaptic_memory_bits_per_core=192 * 1024 * 8,
    axons_in_per_core=None,        # no per-core fan-in limit published: not checked
    max_weight_bits=None,          # not checked
    # Intel Loihi 2 brief (2021), Table 1: "Max # neurons/chip: 1 million"
    neurons_per_chip=1_000_000,
    # Intel Loihi 2 brief (2021), Table 1: "Max # synapses/chip: 120 million"
    synapses_per_chip=120_000_000,
    sources={"cores_per_chip": f"{INTEL_L2_BRIEF} (128)",
             "neurons_per_core": "as commonly cited (8,192; third-party summaries of the Intel brief and of "
                                 f"{ORCHARD2021}; = 1M / 128)",
             "synaptic_memory_per_core": f"{INTEL_L2_BRIEF} (192 KB flexible memory per core, all counted as "
                                         "synaptic memory: a best case)",
             "axons_in_per_core": "no published limit found: not checked",
             "neurons_per_chip": f"{INTEL_L2_BRIEF} (1 million)",
             "synapses_per_chip": f"{INTEL_L2_BRIEF} (120 million)"},
)

CHIPS = {"loihi1": LOIHI1, "loihi2": LOIHI2}

# Loihi 1 per-operation energy and time: Davies et al. 2018, Table 2 ("Loihi pre-silicon performance
# and energy measurements", values at 0.75 V, from "pre-silicon SDF and SPICE simulations, consistent
# with early post-silicon characterization", p. 95).
L1_E_SYNOP_PJ = 23.6             # "Energy per synaptic spike op (min) | 23.6 pJ"
L1_E_SYN_UPDATE_PJ = 120.0       # "Energy per synaptic update (pairwise STDP) | 120 pJ"
L1_E_NEURON_ACTIVE_PJ = 81.0     # "Energy per neuron update (active / inactive) | 81 pJ / 52 pJ"
L1_E_NEURON_INACTIVE_PJ = 52.0   # (same row)
L1_E_SPIKE_TILE_PJ = 1.7         # "Within-tile spike energy | 1.7 pJ"
L1_E_TILE_HOP_PJ = (3.0, 4.0)    # "Energy per tile hop (E-W / N-S) | 3.0 pJ / 4.0 pJ" (not modelled: listed)
L1_T_SYNOP_NS = 3.5              # "Time per synaptic spike op (max) | 3.5 ns"
L1_T_SYN_UPDATE_NS = 6.1         # "Time per synaptic update (pairwise STDP) | 6.1 ns"
L1_T_NEURON_ACTIVE_NS = 8.4      # "Time per neuron update (active / inactive) | 8.4 ns / 5.3 ns"
L1_T_NEURON_INACTIVE_NS = 5.3    # (same row)
L1_T_BARRIER_NS = (113.0, 465.0)  # "Mesh-wide barrier sync time (1-32 tiles) | 113-465 ns"
# CPU/GPU reference: Horowitz, ISSCC 2014, 45 nm: 32-bit float multiply 3.7 pJ, add 0.9 pJ
# (arithmetic only; memory access, which dominates on real CPUs/GPUs, is not included).
FP32_MAC_PJ = 3.7 + 0.9

ENERGY_CONSTANTS = [
    ("Loihi 1 energy per synaptic spike op (min)", L1_E_SYNOP_PJ, "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 energy per synaptic update (pairwise STDP)", L1_E_SYN_UPDATE_PJ, "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 energy per neuron update, active", L1_E_NEURON_ACTIVE_PJ, "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 energy per neuron update, inactive", L1_E_NEURON_INACTIVE_PJ, "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 within-tile spike energy", L1_E_SPIKE_TILE_PJ, "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 energy per tile hop (E-W / N-S), not modelled", "3.0 / 4.0", "pJ", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 time per synaptic spike op (max)", L1_T_SYNOP_NS, "ns", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 time per synaptic update (pairwise STDP)", L1_T_SYN_UPDATE_NS, "ns", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 time per neuron update, active / inactive", "8.4 / 5.3", "ns", f"{DAVIES2018}, Table 2"),
    ("Loihi 1 mesh-wide barrier sync (1-32 tiles)", "113-465", "ns", f"{DAVIES2018}, Table 2"),
    ("float32 multiply + add (45 nm), arithmetic only", round(FP32_MAC_PJ, 3), "pJ", f"{HOROWITZ2014}: 3.7 + 0.9 pJ"),
    ("Loihi 2 per-operation energy", "not published", "", f"{INTEL_L2_BRIEF}; {ORCHARD2021}: chip-level results "
     "only, no per-operation table; Loihi 2 gets cores and fit, no energy"),
]
