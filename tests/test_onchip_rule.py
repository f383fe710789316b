"""RuleSpec, integer kernels, golden values computed by hand, Face 3 behaviour."""
import json

import numpy as np
import pytest

from neuromaml.onchip.fixed_rule import run_support, truncate_initial
from neuromaml.onchip.neuron import CubaParams, cuba_init_int, cuba_step_int
from neuromaml.onchip.rule import (RuleError, RuleSpec, error_q, lava_randoms,
                                   third_factor_q, weight_update)


# ------------------------------------------------------------------ RuleSpec

def test_spec_roundtrip_through_json():
    spec = RuleSpec(eta_exp=-7, x1_impulse=20, x1_tau=5, error_bits=6, error_threshold=3,
                    factor_threshold=2, surrogate="none", surrogate_beta=2.0,
                    softmax_gain_exp=1, rng_seed=7)
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["lava_form"]["dw"] == "-2^-4 * u0 * x1 * y2"
    assert "Eq. 6" in d["lava_form"]["magnitude_threshold"]
    assert RuleSpec.from_dict(d) == spec
    spec_np = RuleSpec(eta_exp=np.int64(-7), x1_tau=np.int32(5), surrogate_beta=np.float32(2))
    assert type(spec_np.eta_exp) is int and json.dumps(spec_np.to_dict())


@pytest.mark.parametrize("field,value,nearest", [
    ("eta_exp", -12, "-10"), ("eta_exp", 6, "5"), ("eta_exp", -6.5, "-6"),
    ("x1_impulse", 200, "127"), ("x1_tau", 0, "1"), ("error_bits", 9, "8"),
    ("factor_threshold", 130, "126"), ("softmax_gain_exp", 9, "6"),
])
def test_spec_rejects_unrepresentable_with_nearest(field, value, nearest):
    with pytest.raises(RuleError, match=f"nearest representable value: {nearest}"):
        RuleSpec(**{field: value})


def test_spec_rejects_threshold_beyond_error_range_and_bad_dict():
    with pytest.raises(RuleError, match="error_threshold"):
        RuleSpec(error_bits=4, error_threshold=7)          # e_max = 7
    with pytest.raises(RuleError, match="surrogate"):
        RuleSpec(surrogate="sigmoid")
    with pytest.raises(RuleError, match="unknown field"):
        RuleSpec.from_dict({"eta": -3})


def test_bad_weights_and_labels_raise_with_nearest():
    spec, nrn = RuleSpec(), CubaParams(du=0, dv=0, vth=10)
    pre = np.zeros((1, 4, 3), np.int64)
    with pytest.raises(RuleError, match="nearest representable: 255"):
        run_support(spec, np.array([[300, 0, 0]]), pre, np.array([0]), nrn)
    with pytest.raises(RuleError, match="nearest representable: 1"):
        run_support(spec, np.zeros((2, 3), int), pre, np.array([5]), nrn)
    with pytest.raises(RuleError, match="binary"):
        run_support(spec, np.zeros((2, 3), int), pre + 2, np.array([0]), nrn)
    with pytest.raises(RuleError, match="nearest representable: 7"):
        run_support(spec, np.zeros((2, 3), int), pre, np.array([0]), nrn, weight_exp=9)
    with pytest.raises(RuleError, match="vth"):
        CubaParams(du=0, dv=0, vth=-1)


# ------------------------------------------------------------------ golden values

def test_cuba_step_golden_by_hand():
    # du=2047 -> u *= 2048/4096 (truncated toward 0); dv=1024 -> v *= 3072/4096
    # theta = vth << 6 = 128; activation enters as a << 6.
    p = CubaParams(du=2047, dv=1024, vth=2, bias=0)
    st = cuba_init_int((2,))
    a_seq = [[3, -3], [0, 0], [0, 0], [0, 0]]
    want_v = [[192, -192], [96, -240], [120, -228], [114, -195]]
    want_s = [[1, 0], [0, 0], [0, 0], [0, 0]]
    want_u = [[192, -192], [96, -96], [48, -48], [24, -24]]
    for a, v, s, u in zip(a_seq, want_v, want_s, want_u):
        spk, v_pre, st = cuba_step_int(np.array(a), st, p)
        assert spk.tolist() == s and v_pre.tolist() == v and st.u.tolist() == u
    # the spiking neuron was reset after step 0: v = 0*0.75 + 96 = 96 at step 1


def test_error_and_third_factor_golden():
    spec = RuleSpec(surrogate="none")
    e = error_q(np.array([[0, 0]]), np.array([[1, 0]]), spec)   # softmax .5/.5
    assert e.tolist() == [[-64, 64]]                              # rint(-+63.5), half-even
    assert third_factor_q(e, np.zeros((1, 2)), 128, spec).tolist() == [[-64, 64]]
    spec = RuleSpec(surrogate_beta=1.0, error_threshold=40, factor_threshold=10)
    e = error_q(np.array([[2, 0, 0]]), np.array([[0, 0, 1]]), spec)
    # softmax(2,0,0) = (.7870, .1065, .1065); *127 -> (99.95, 13.53, -113.47)
    assert e.tolist() == [[100, 0, -113]]                        # 14 <= 40 gated
    # f = 1/(1+|z|)^2: z = 0 -> 128; z = -1 (v=0) -> 32;  y2 = floor((e f + 64)/128)
    y2 = third_factor_q(e, np.array([[128, 0, 0]]), 128, spec)
    assert y2.tolist() == [[100, 0, -28]]
    assert error_q(np.array([[3, 1]]), np.array([[0, 0]]), spec).tolist() == [[0, 0]]


def test_lava_randoms_match_lava_generators():
    from lava.magma.core.learning.random import ConnVarRandom, TraceRandom
    spec = RuleSpec(rng_seed=13)
    r_x, r_y, r_w = lava_randoms(spec, 5)
    x, y, c = TraceRandom(13, 14), TraceRandom(15, 16), ConnVarRandom()
    for t in range(5):                       # per step: 2 trace advances, 1 conn advance
        for g in (x, y):
            g.advance(), g.advance()
        c.advance()
        assert (r_x[t], r_y[t], r_w[t]) == (x.random_trace_decay, y.random_trace_decay,
                                            c.random_stochastic_round)


def test_lava_randoms_offsets_continue_the_streams():
    """A graph that ran `offset` steps before: the same draws, shifted (int or per episode)."""
    spec = RuleSpec(rng_seed=3)
    full = lava_randoms(spec, 12)
    for a, b in zip(lava_randoms(spec, 4, offset=7), full):
        np.testing.assert_array_equal(a, b[7:11])
    per = lava_randoms(spec, 4, offset=np.array([0, 5, 8]))
    for a, b in zip(per, full):
        assert a.shape == (3, 4)
        np.testing.assert_array_equal(a, np.stack([b[0:4], b[5:9], b[8:12]]))
    with pytest.raises(RuleError, match="offset"):
        lava_randoms(spec, 4, offset=-1)


def test_weight_update_per_episode_randoms_equal_one_at_a_time():
    spec = RuleSpec(eta_exp=-10)
    rng = np.random.default_rng(0)
    w = rng.integers(-50, 50, (3, 2, 4))
    x1, y2 = rng.integers(0, 127, (3, 4)), rng.integers(-127, 127, (3, 2))
    r = np.array([0.1, 0.5, 0.93])
    batch = weight_update(w, x1, y2, spec, r)
    for b in range(3):
        np.testing.assert_array_equal(batch[b], weight_update(w[b], x1[b], y2[b], spec, float(r[b])))
    assert len({weight_update(w[:1], x1[:1], y2[:1], spec, v).tobytes() for v in r}) > 1   # r matters


def test_weight_update_golden():
    spec = RuleSpec(eta_exp=-10)            # accumulator term floor(-x1*y2/8), LSB 1/128
    w = np.array([[10, -20]])
    # -x1*y2/8 = (-16*-64/8, -14*-64/8) = (128, 112) -> +1, +0.875 -> 11, -19.125
    new = weight_update(w, np.array([16, 14]), np.array([-64]), spec, r_w=0.5)
    assert new.tolist() == [[11, -20 + 1]]  # -19.125 -> floor -20, frac .875 > .5 -> -19
    new = weight_update(w, np.array([16, 14]), np.array([-64]), spec, r_w=0.9)
    assert new.tolist() == [[11, -20]]
    big = weight_update(np.array([[250]]), np.array([127]), np.array([-127]),
                        RuleSpec(eta_exp=5), r_w=0.0)
    assert big.tolist() == [[255]]           # saturates at the 8-bit + sign bound


def test_episode_golden_by_hand():
    """3 steps, 2 inputs, 2 outputs, no output spikes, label 0; see comments."""
    spec = RuleSpec(eta_exp=-10, x1_impulse=16, x1_tau=10, surrogate="none", rng_seed=0)
    r_x, r_y, r_w = lava_randoms(spec, 3)
    np.testing.assert_allclose(r_x, [0.04097352, 0.81327024, 0.60663578], atol=1e-8)
    np.testing.assert_allclose(r_w, [0.29849114, 0.81422574, 0.09191594], atol=1e-8)
    assert r_y.min() > 0.001                 # y2 = +-64 survives the tau=65535 decay
    pre = np.array([[[1, 0], [0, 1], [0, 0]]])
    w0 = np.array([[10, -20], [30, 0]])
    nrn = CubaParams(du=0, dv=0, vth=131071)  # never spikes: counts 0, softmax = (.5, .5)
    r = run_support(spec, w0, pre, np.array([0]), nrn)
    # y2 = (-64, +64) each step; x1: (16,0) -> (14,16) [14.48, r .81] -> (13,14)
    # k0: +-128/128 -> [[11,-20],[29,0]]
    # k1: w00 11+.875 r=.814 -> 12; w01 -20+1 -> -19; w10 29-.875 -> 28; w11 -1
    # k2: w00 12+.8125 r=.092 -> 13; w01 -19+.875 -> -18; w10 28-.8125 -> 28; w11 -1.875 -> -1
    assert r.weights[0].tolist() == [[13, -18], [28, -1]]
    assert r.spikes.sum() == 0
    assert r.n_updates[0].tolist() == [[3, 2], [2, 1]]   # w11: -1 -> -1 at k2


# ------------------------------------------------------------------ Face 3 behaviour

def _episode(seed, B=6, T=30, I=20, O=4):
    rng = np.random.default_rng(seed)
    pre = (rng.random((B, T, I)) < 0.3).astype(np.int64)
    w = rng.integers(-60, 60, (O, I))
    return pre, w, rng.integers(0, O, B)


def test_batch_equals_one_by_one_and_query_keeps_weights():
    spec, nrn = RuleSpec(eta_exp=-7, rng_seed=4), CubaParams(du=800, dv=300, vth=40)
    pre, w, lab = _episode(0)
    r = run_support(spec, w, pre, lab, nrn)
    for b in range(pre.shape[0]):
        rb = run_support(spec, w, pre[b:b + 1], lab[b:b + 1], nrn)
        assert np.array_equal(rb.weights[0], r.weights[b])
        assert np.array_equal(rb.spikes[0], r.spikes[b])
    q = run_support(spec, r.weights, pre, None, nrn, truncate=False)
    assert np.array_equal(q.weights, r.weights) and q.n_updates.sum() == 0
    assert (r.weights != r.initial).any()


def test_rule_moves_label_row_up_and_others_down():
    spec, nrn = RuleSpec(eta_exp=-7, rng_seed=1), CubaParams(du=800, dv=300, vth=40)
    pre, w, _ = _episode(1)
    lab = np.arange(pre.shape[0]) % w.shape[0]
    r = run_support(spec, w, pre, lab, nrn)
    dw = (r.weights - r.initial).sum(axis=2)            # (B, O)
    onehot = np.eye(w.shape[0], dtype=bool)[lab]
    assert (dw[onehot] > 0).all() and (dw[~onehot] <= 0).all()


def test_thresholds_reduce_updates_and_truncation():
    nrn = CubaParams(du=800, dv=300, vth=40)
    pre, w, lab = _episode(2)
    base = run_support(RuleSpec(eta_exp=-7), w, pre, lab, nrn).n_updates.sum()
    gated = run_support(RuleSpec(eta_exp=-7, error_threshold=40, factor_threshold=30),
                        w, pre, lab, nrn).n_updates.sum()
    assert gated < base
    ref = run_support(RuleSpec(eta_exp=-7), w, pre, lab, nrn)
    eq6 = run_support(RuleSpec(eta_exp=-7, eq6_threshold=3), w, pre, lab, nrn)
    big = np.abs(ref.weights - ref.initial) > 3
    assert np.array_equal(eq6.weights[big], ref.weights[big])
    assert np.array_equal(eq6.weights[~big], ref.initial[~big]) and (~big).any()
    assert truncate_initial(np.array([5, -5, 7]), 8).tolist() == [4, -6, 6]
    assert truncate_initial(np.array([5, -5, 7]), 7).tolist() == [4, -8, 4]


def test_reset_interval_equals_separate_presentations_for_neuron_and_counts():
    """With no learning, reset_interval=T makes a 2T run equal two T runs."""
    spec, nrn = RuleSpec(), CubaParams(du=800, dv=300, vth=40)
    pre, w, _ = _episode(3, B=2, T=10)
    # the dense output of the last step of sample 0 leaks into sample 1 (Lava's one-step
    # delay); a silent final input step removes it
    pre[:, -1] = 0
    joined = run_support(spec, w, pre.reshape(1, 20, -1), None, nrn, reset_interval=10)
    sep = run_support(spec, w, pre, None, nrn)
    assert np.array_equal(joined.spikes[0], sep.spikes.reshape(20, -1))


def test_normalise_error_divides_by_the_input_seen_so_far():
    from neuromaml.onchip.rule import normalise_error
    e = np.array([[-102, 25, 25]])
    off = RuleSpec()
    assert normalise_error(e, np.array([[500]]), off) is e                 # d = 0: off
    spec = RuleSpec(input_norm_offset=100, input_norm_shift=7)
    # round(e * 128 / (100 + n)), halves up; clipped to +-e_max
    np.testing.assert_array_equal(normalise_error(e, np.array([[0]]), spec), [[-127, 32, 32]])
    np.testing.assert_array_equal(normalise_error(e, np.array([[412]]), spec), [[-25, 6, 6]])
    np.testing.assert_array_equal(normalise_error(e, np.array([[0], [924]]), spec)[1], [-13, 3, 3])
    with pytest.raises(RuleError, match="input_norm_shift"):
        RuleSpec(input_norm_offset=4, input_norm_shift=25)
    assert RuleSpec.from_dict(spec.to_dict()) == spec
    assert "n_in" in spec.to_dict()["lava_form"]["error_normalisation"]
    assert RuleSpec().to_dict()["lava_form"]["error_normalisation"] == "off"
    # the rate form: round(e * 2^s * (m + c) / (d + n)), m the labelled steps so far
    rate = RuleSpec(input_norm_offset=40, input_norm_shift=2, input_norm_steps=4)
    np.testing.assert_array_equal(normalise_error(e, np.array([[0]]), rate, m=np.array([[0]])),
                                  [[-41, 10, 10]])                   # -102*4*4/40 = -40.8
    np.testing.assert_array_equal(normalise_error(e, np.array([[360]]), rate, m=np.array([[36]])),
                                  [[-41, 10, 10]])                   # same rate: same error
    np.testing.assert_array_equal(normalise_error(e, np.array([[40]]), rate, m=np.array([[36]])),
                                  [[-127, 50, 50]])                  # quieter: larger, clipped
    assert RuleSpec.from_dict(rate.to_dict()) == rate
    assert "labelled steps" in rate.to_dict()["lava_form"]["error_normalisation"]
    with pytest.raises(RuleError, match="input_norm_steps"):
        RuleSpec(input_norm_offset=4, input_norm_steps=-1)
