"""Face 1: the rule in Lava 0.10's learning engine (fixed_pt, CPU backend).

Graph of the plastic final layer (built by `build_learning_layer`)::

    pre spikes --> LearningDense(W, Loihi3FLearningRule(dw=spec.dw_string)) --a--> ErrorModulatedLIF
                        ^                                                    |  s_out
                        +----------------- s_out_y2 (third factor y2) -------+--------> SoftmaxError
    pre spikes --> SoftmaxError.x_in (input count of the error normaliser)
    label (one-hot, graded) ------------------------------------------------------------^   |
                        ErrorModulatedLIF.a_third_factor_in <------------- e_out -----------+

`run_support_lava` runs one presentation and returns the learned weights and
the output spikes; `neuromaml.onchip.fixed_rule.run_support` gives the same
bits (pinned by tests/test_onchip_lava.py). Every run is stopped in `finally:`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from neuromaml.onchip.neuron import CubaParams
from neuromaml.onchip.rule import RuleError, RuleSpec, check_weight_exp, check_weights


@dataclass
class LearningLayer:
    """The Lava processes of the plastic final layer (connected internally)."""

    dense: object     # lava.proc.dense.process.LearningDense; in: dense.s_in
    neuron: object    # ErrorModulatedLIF; out: neuron.s_out
    error: object     # SoftmaxError; label in: error.label_in; the dense's input also to error.x_in


def learning_rule(spec: RuleSpec):
    """The engine's Loihi3FLearningRule for `spec` (online: t_epoch = 1)."""
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
    return Loihi3FLearningRule(dw=spec.dw_string, x1_impulse=spec.x1_impulse,
                               x1_tau=spec.x1_tau, t_epoch=1, rng_seed=spec.rng_seed)


def build_learning_layer(spec: RuleSpec, weights: np.ndarray, neuron: CubaParams,
                         weight_exp: int = 0, num_weight_bits: int = 8,
                         reset_interval: Optional[int] = None) -> LearningLayer:
    """Create and wire LearningDense -> ErrorModulatedLIF <-> SoftmaxError."""
    from lava.proc.dense.process import LearningDense
    from lava.utils.weightutils import SignMode

    from neuromaml.onchip.lavaprocs.rule_procs import ErrorModulatedLIF, SoftmaxError

    if spec.eq6_threshold:
        raise RuleError(f"RuleSpec.eq6_threshold={spec.eq6_threshold}: the per-synapse Eq. 6 "
                        f"threshold cannot run in Lava's learning engine; nearest "
                        f"representable: eq6_threshold=0 with factor_threshold > 0")
    w = check_weights(weights)
    if w.ndim != 2:
        raise RuleError(f"weights must be (O, I) for one Lava layer, got {w.shape}")
    O = w.shape[0]
    rule = learning_rule(spec)
    d = spec.to_dict()
    dense = LearningDense(weights=w.astype(np.int32), learning_rule=rule,
                          weight_exp=check_weight_exp(weight_exp),
                          num_weight_bits=int(num_weight_bits), sign_mode=SignMode.MIXED)
    lif = ErrorModulatedLIF(shape=(O,), rule=d, du=neuron.du, dv=neuron.dv,
                            vth=neuron.vth, bias_mant=neuron.bias,
                            bias_exp=neuron.bias_exp, learning_rule=rule,
                            reset_interval=int(reset_interval or 0))
    err = SoftmaxError(shape=(O,), rule=d, reset_interval=int(reset_interval or 0), n_inputs=w.shape[1])
    dense.a_out.connect(lif.a_in)
    lif.s_out_y2.connect(dense.s_in_y2)
    lif.s_out.connect(err.s_in)
    err.e_out.connect(lif.a_third_factor_in)
    return LearningLayer(dense=dense, neuron=lif, error=err)


def run_support_lava(spec: RuleSpec, weights: np.ndarray, pre_spikes: np.ndarray,
                     label, neuron: CubaParams, weight_exp: int = 0,
                     num_weight_bits: int = 8, reset_interval: Optional[int] = None
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Run one presentation in Lava (fixed_pt). pre_spikes: (T, I) 0/1.

    label: int, or (T,) per-step labels with -1 = none, or None (no label, no
    learning). Returns (weights (O, I) int64 after the presentation, output
    spikes (T, O)). Same arguments as `fixed_rule.run_support` for one episode.
    """
    from neuromaml.onchip.fixed_rule import label_onehot
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    pre = np.asarray(pre_spikes)
    if pre.ndim != 2:
        raise RuleError(f"pre_spikes must be (T, I) for one Lava episode, got {pre.shape}")
    T, I = pre.shape
    O = np.shape(weights)[0]
    lab = np.zeros((O, T), np.int32)
    if label is not None:
        lab = label_onehot(np.asarray(label).reshape(1, -1) if np.ndim(label) else
                           np.array([label]), 1, T, O)[0].T.astype(np.int32)
    if pre.size and not np.isin(pre, (0, 1)).all():
        raise RuleError("pre_spikes must be binary (0/1)")
    layer = build_learning_layer(spec, weights, neuron, weight_exp, num_weight_bits,
                                 reset_interval)
    src = Source(data=pre.T.astype(np.int32))
    lab_src = Source(data=lab)
    sink = Sink(shape=(O,), buffer=T)
    src.s_out.connect([layer.dense.s_in, layer.error.x_in])
    lab_src.s_out.connect(layer.error.label_in)
    layer.neuron.s_out.connect(sink.a_in)
    try:
        layer.dense.run(condition=RunSteps(num_steps=T),
                        run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        w = np.asarray(layer.dense.weights.get()).astype(np.int64)
        spikes = np.asarray(sink.data.get()).T.astype(np.int64)
    finally:
        layer.dense.stop()
    return w, spikes
