"""Face 1 (Lava 0.10 learning engine, fixed_pt) == Face 3 (fixed_rule), bit for bit.

Lava's fixed-point learning model rounds stochastically (trace decay, weight
accumulator); fixed_rule reproduces its random streams, so the comparison is
exact, for weights and output spikes. Lava runs are short (T <= 80).
"""
import numpy as np
import pytest

from neuromaml.onchip.fixed_rule import run_support
from neuromaml.onchip.lava_rule import learning_rule, run_support_lava
from neuromaml.onchip.neuron import CubaParams
from neuromaml.onchip.rule import RuleError, RuleSpec

CASES = [
    # (spec, neuron, weight_exp, labels kind, reset_interval, num_weight_bits)
    (RuleSpec(eta_exp=-6, x1_impulse=16, x1_tau=10, rng_seed=5),
     CubaParams(du=1024, dv=512, vth=80), 0, "one", None, 8),
    (RuleSpec(eta_exp=-8, x1_impulse=20, x1_tau=7, rng_seed=11, error_threshold=3,
              factor_threshold=2, surrogate_beta=2.0, softmax_gain_exp=-1),
     CubaParams(du=800, dv=300, vth=60, bias=2), -1, "steps", 8, 8),
    (RuleSpec(eta_exp=-4, x1_impulse=100, x1_tau=3, surrogate="none", error_bits=6,
              rng_seed=123), CubaParams(du=4000, dv=100, vth=200), 1, "one", None, 6),
    # the demo's calibrated form: the smallest trace impulse, the smallest eta Lava
    # represents, a small softmax gain
    (RuleSpec(eta_exp=-10, x1_impulse=1, x1_tau=10, surrogate="none", softmax_gain_exp=-8,
              rng_seed=7), CubaParams(du=1024, dv=512, vth=80), 0, "one", None, 8),
    # the error normaliser (the error process counts the layer's input on x_in) with samples
    # reset every 8 steps and labels on part of each sample (calibrate's label window)
    (RuleSpec(eta_exp=-6, x1_impulse=16, x1_tau=4, surrogate="none", softmax_gain_exp=-4,
              input_norm_offset=5, input_norm_shift=3, rng_seed=3),
     CubaParams(du=1024, dv=512, vth=80), -1, "steps", 8, 8),
    # its rate form: the error process also counts the labelled steps, and counts the input
    # only while a label is on
    (RuleSpec(eta_exp=-6, x1_impulse=16, x1_tau=4, surrogate="none", softmax_gain_exp=-4,
              input_norm_offset=12, input_norm_shift=2, input_norm_steps=3, rng_seed=4),
     CubaParams(du=1024, dv=512, vth=80), -1, "window", 8, 8),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lava_and_fixed_agree_bit_exact(case):
    spec, nrn, wexp, kind, reset, nwb = CASES[case]
    rng = np.random.default_rng(case)
    T, I, O = (80 if case == 0 else 24), 10, 3           # 80 > 63: epoch-time width
    pre = (rng.random((T, I)) < 0.4).astype(np.int64)
    w = rng.integers(-100, 100, (O, I))
    label = {"one": 1, "steps": np.array([0] * 8 + [2] * 8 + [-1] * 8),
             "window": np.array([-1] * 3 + [0] * 5 + [-1] * 3 + [2] * 5 + [-1] * 8)}[kind]
    w_lava, s_lava = run_support_lava(spec, w, pre, label, nrn, weight_exp=wexp,
                                      reset_interval=reset, num_weight_bits=nwb)
    lab = np.array([label]) if kind == "one" else label[None]
    r = run_support(spec, w, pre[None], lab, nrn, weight_exp=wexp, reset_interval=reset,
                    num_weight_bits=nwb)
    assert (r.weights[0] != r.initial[0]).sum() >= 3      # the rule did act
    assert s_lava.sum() > 0                               # and the neurons spiked
    assert np.array_equal(w_lava, r.weights[0])
    assert np.array_equal(s_lava, r.spikes[0])


def test_lava_without_label_does_not_learn():
    spec, nrn = RuleSpec(rng_seed=2), CubaParams(du=1024, dv=512, vth=80)
    rng = np.random.default_rng(9)
    pre = (rng.random((12, 6)) < 0.5).astype(np.int64)
    w = rng.integers(-50, 50, (2, 6)) * 2
    w_lava, s_lava = run_support_lava(spec, w, pre, None, nrn)
    assert np.array_equal(w_lava, w)
    assert np.array_equal(s_lava, run_support(spec, w, pre[None], None, nrn).spikes[0])


def test_engine_rule_string_and_bad_input():
    rule = learning_rule(RuleSpec(eta_exp=-6))
    prod = rule.active_product_series["dw"].products[0]
    assert (prod.dependency, prod.s_mantissa, prod.s_exp) == ("u", -1, -3 + 7)
    with pytest.raises(RuleError, match="eq6_threshold=0"):
        run_support_lava(RuleSpec(eq6_threshold=2), np.zeros((3, 4), int), np.zeros((5, 4)),
                         0, CubaParams(du=0, dv=0, vth=10))
    with pytest.raises(RuleError, match="nearest representable: 2"):
        run_support_lava(RuleSpec(), np.zeros((3, 4), int), np.zeros((5, 4)), 7,
                         CubaParams(du=0, dv=0, vth=10))
