"""The on-chip one-shot rule: one specification, shared integer kernels.

Rule (per final-layer synapse w_ij, applied ONLINE, once per time step, as
Lava's learning engine does with t_epoch = 1)::

    dw_ij(t) = -eta * x1_j(t) * y2_i(t)                       [weight LSB]
    w_ij    <- stochastic_round(w_ij + dw_ij(t)), clipped to [-256, 255]

    x1_j(t) = sround(x1_j(t-1) * exp(-1/x1_tau)) + x1_impulse * s_j(t)  (7 bit, 0..127)
    e_i(t)  = softmax_i(2^g * c(t-1)) - label_i         (c: output spike counts so far)
    e_q     = rint(e * (2^(error_bits-1) - 1));   e_q = 0 where |e_q| <= error_threshold
    f_q     = rint(128 / (1 + beta |z_i(t)|)^2),  z = (v_i(t) - theta) / theta  (or 128: 'none')
    y2_i(t) = floor((e_q * f_q + 64) / 128);      y2 = 0 where |y2| <= factor_threshold

x1 is the engine's pre-synaptic trace, y2 the engine's third post-synaptic
trace written by the post neuron each step, v_i(t) the output neuron's voltage
before reset, theta = vth << 6. In the engine's fixed point the product is
formed as ((-x1 * y2) >> 3) << (eta_exp + 10) in a 16-bit accumulator whose
LSB is 2^-7 weight LSB, i.e. dw = 2^eta_exp * floor(-x1*y2/8) * 8 weight LSB
(eta = 2^eta_exp per (x1 * y2) unit, the floor keeping 3 LSBs of the
product off). The accumulator (w*128 + dw_acc) is stochastically rounded to a
whole weight with ONE random number per step shared by all synapses (Lava's
`ConnVarRandom`, seed 2); trace decay is stochastically rounded with Lava's
`TraceRandom` streams (seeds rng_seed, rng_seed+2); the engine also decays
y2 by exp(-1/65535) with stochastic rounding before use (|y2| drops by one
with probability < |y2|/65535). `fixed_rule` reproduces those streams, so
Face 1 and Face 3 agree bit for bit.

Lava form (Face 1): `Loihi3FLearningRule(dw="-2^{eta_exp+3} * u0 * x1 * y2",
x1_impulse, x1_tau, t_epoch=1)`. The paper's Eq. 6 threshold compares each
synapse's |dw| with Theta; the engine cannot compare per synapse, so its
nearest form here gates the post-synaptic factor: |y2_i| > factor_threshold
(|dw_ij| = eta * x1_j * |y2_i|, x1_j <= 127, so this is Eq. 6 with the
pre-synaptic trace at its bound). `RuleSpec.to_dict()['lava_form']` says so.
The exact per-synapse Eq. 6 on the presentation's total update
(`eq6_threshold`) exists in Faces 2 and 3 only, as the reference to measure
the Lava form against (benchmarks/bench_rule.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

import numpy as np
from numpy.core.umath import clip as _clip

W_MIN, W_MAX = -256, 255        # Lava MIXED-sign learning weight range (8 bit + sign)
TRACE_MAX = 127                 # 7-bit traces
ACC_BITS = 15                   # accumulator magnitude bits
ACC_LO, ACC_HI = -(2 ** ACC_BITS) - 1, 2 ** ACC_BITS - 1
ACC_SHIFT = 7                   # weight << 7 in the accumulator
PRODUCT_SHIFT = 3               # (7 + 7 + 4) - 15: x1 * y2 product right shift
F_ONE = 128                     # surrogate factor 1.0 in f_q units
Y_DECAY_TAU = 65535             # Loihi3F rule: y traces decay with tau = uint16 max
CONN_VAR_SEED = 2               # Lava's ConnVarRandom() default seed
SURROGATES = ("fast_sigmoid", "none")
NORM_OFFSET_MAX = 2 ** 20       # error normaliser's offset d, input spikes
NORM_SHIFT_MAX = 24             # error normaliser's numerator exponent s
NORM_STEPS_MAX = 1024           # the rate form's prior steps c
GAIN_RANGE = (-12, 6)           # the error softmax's gain exponents g (2^g x spike counts)


class RuleError(ValueError):
    """A rule, its weights or its labels cannot run on the chip."""


def _check_int(name, val, lo, hi):
    if isinstance(val, bool) or not isinstance(val, (int, np.integer, float)) \
            or (isinstance(val, float) and not val.is_integer()) or not lo <= val <= hi:
        try:
            near = int(min(max(round(float(val)), lo), hi))
        except (TypeError, ValueError):
            near = lo
        raise RuleError(f"RuleSpec.{name}={val!r} is not representable: it must be an "
                        f"integer in [{lo}, {hi}]; nearest representable value: {near}")


@dataclass(frozen=True)
class RuleSpec:
    """Three-factor, error-triggered final-layer rule (see module docstring)."""

    eta_exp: int = -9                 # eta = 2^eta_exp weight LSB per (x1*y2) unit, [-10, 5]
    x1_impulse: int = 16              # trace jump per pre spike, trace units, 1..127
    x1_tau: int = 10                  # trace decay time constant, steps, 1..255
    error_bits: int = 8               # graded error width incl. sign, 2..8
    error_threshold: int = 0          # error trigger: |e_q| > this (e_q units)
    factor_threshold: int = 0         # Eq. 6 (Lava form): |y2| > this (y2 units, 0..126)
    surrogate: str = "fast_sigmoid"   # "fast_sigmoid" | "none" (f = 1)
    surrogate_beta: float = 4.0       # fast-sigmoid slope, per threshold unit of v
    softmax_gain_exp: int = 0         # softmax over 2^g * spike counts, g in [-12, 6]
    rng_seed: int = 0                 # Lava trace random seed (x: seed, y: seed + 2)
    eq6_threshold: int = 0            # exact Eq. 6: keep |W_T - W_0| > this (weight LSB) per
    #                                   synapse after the presentation; NOT expressible in the
    #                                   engine (Faces 2, 3 only; 0 = off)
    input_norm_offset: int = 0        # error normaliser: e_n = e_q 2^s / (d + n_in), d = this
    #                                   (input spikes); 0 = off (see `normalise_error`)
    input_norm_shift: int = 0         # s: the normaliser's numerator scale 2^s, 0..24
    input_norm_steps: int = 0         # c: 0 = the cumulative form (divide by d + the sample's
    #                                   input so far); c >= 1 = the rate form (multiply by m + c,
    #                                   m = labelled steps so far, n_in counted while labelled)

    def __post_init__(self):
        _check_int("eta_exp", self.eta_exp, -10, 5)
        _check_int("x1_impulse", self.x1_impulse, 1, TRACE_MAX)
        _check_int("x1_tau", self.x1_tau, 1, 255)
        _check_int("error_bits", self.error_bits, 2, 8)
        _check_int("error_threshold", self.error_threshold, 0, self.e_max - 1)
        _check_int("factor_threshold", self.factor_threshold, 0, 126)
        _check_int("softmax_gain_exp", self.softmax_gain_exp, *GAIN_RANGE)
        _check_int("rng_seed", self.rng_seed, 0, 2 ** 31 - 5)
        _check_int("eq6_threshold", self.eq6_threshold, 0, W_MAX - W_MIN)
        _check_int("input_norm_offset", self.input_norm_offset, 0, NORM_OFFSET_MAX)
        _check_int("input_norm_shift", self.input_norm_shift, 0, NORM_SHIFT_MAX)
        _check_int("input_norm_steps", self.input_norm_steps, 0, NORM_STEPS_MAX)
        if self.surrogate not in SURROGATES:
            raise RuleError(f"RuleSpec.surrogate={self.surrogate!r} unknown; use one of "
                            f"{SURROGATES}")
        b = self.surrogate_beta
        if isinstance(b, bool) or not isinstance(b, (int, float, np.number)) \
                or not math.isfinite(b) or b <= 0:
            raise RuleError(f"RuleSpec.surrogate_beta={b!r} must be a positive finite "
                            f"number; nearest representable value: 1.0")
        for f in fields(self):                # plain Python types (JSON, hashing)
            val = getattr(self, f.name)
            conv = {"surrogate": str, "surrogate_beta": float}.get(f.name, int)
            object.__setattr__(self, f.name, conv(val))

    # ---- derived quantities
    @property
    def e_max(self) -> int:
        """Largest error magnitude in e_q units (2^(error_bits-1) - 1)."""
        return 2 ** (self.error_bits - 1) - 1

    @property
    def lava_scale_exp(self) -> int:
        """Exponent k of the engine's dw string '-2^k * u0 * x1 * y2' (k = eta_exp + 3)."""
        return self.eta_exp + PRODUCT_SHIFT

    @property
    def dw_string(self) -> str:
        return f"-2^{self.lava_scale_exp} * u0 * x1 * y2"

    @property
    def x1_decay(self) -> float:
        """Per-step trace decay factor exp(-1/x1_tau) (the engine's float64 value)."""
        return float(np.exp(-1 / np.array([self.x1_tau]))[0])

    # ---- serialisation
    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["lava_form"] = {
            "learning_rule": "Loihi3FLearningRule",
            "dw": self.dw_string,
            "x1_impulse": self.x1_impulse, "x1_tau": self.x1_tau, "t_epoch": 1,
            "update": "online, once per time step during the support presentation",
            "magnitude_threshold": "Eq. 6 applied per post neuron on |y2| (engine cannot "
                                   "compare per synapse): |dw_ij| <= eta*127*|y2_i| gated",
            "eq6_threshold": "not expressible in the engine: Faces 2/3 only"
                             if self.eq6_threshold else "off",
            "error": "softmax over output spike counts minus one-hot label, computed by the "
                     "error process, sent as graded spike to a_third_factor_in",
            "error_normalisation": self._normalisation_form(),
        }
        return d

    def _normalisation_form(self) -> str:
        if not self.input_norm_offset:
            return "off"
        where = ("counted by the error process (its x_in port); a division: on Loihi 2 microcode of a "
                 "programmable error neuron or the host, not the learning engine")
        if not self.input_norm_steps:
            return (f"e_n = clip(round(e_q * 2^{self.input_norm_shift} / ({self.input_norm_offset} + n_in)), "
                    f"+-{self.e_max}), n_in = spikes the plastic layer received in this sample before "
                    f"this step, {where}")
        return (f"e_n = clip(round(e_q * 2^{self.input_norm_shift} * (m + {self.input_norm_steps}) / "
                f"({self.input_norm_offset} + n_in)), +-{self.e_max}): the error divided by the running "
                f"input rate, m = this sample's labelled steps before this step, n_in = spikes the "
                f"plastic layer received in them, {where}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RuleSpec":
        if not isinstance(d, dict):
            raise RuleError(f"RuleSpec.from_dict expects a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"lava_form"}
        if unknown:
            raise RuleError(f"RuleSpec.from_dict: unknown field(s) {sorted(unknown)}; "
                            f"known: {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- kernels
# The rule's kernels, written once. ``ops`` supplies the arithmetic: ``IntRuleOps`` (integer
# numpy, below) for Face 3 (fixed_rule) and Face 1's process models (lavaprocs), the
# straight-through torch arithmetic of ``torch_rule.SteRuleOps`` for Face 2; so the three
# faces compute the same values by construction. Hyperparameters the torch twin can learn
# (thresholds, beta, eta_exp) may be passed as tensors there; by default they come from spec.

class IntRuleOps:
    """Integer numpy arithmetic of the rule (Lava's fixed-point engine and process models)."""

    @staticmethod
    def real(x):
        return np.asarray(x, np.float64)

    @staticmethod
    def round(x):
        return np.rint(x).astype(np.int64)

    @staticmethod
    def softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=-1, keepdims=True)

    @staticmethod
    def has_label(onehot):
        return (np.asarray(onehot) != 0).any(axis=-1, keepdims=True)

    @staticmethod
    def gate(y, threshold):
        return np.where(np.abs(y) > threshold, y, 0)

    @staticmethod
    def full_like(x, value):
        return np.full(np.shape(x), value, np.int64)

    @staticmethod
    def shr(x, k: int):
        """floor(x / 2^k) (an int32 product stays int32)."""
        x = np.asarray(x)
        return x >> k if x.dtype in (np.int32, np.int64) else x.astype(np.int64) >> k

    @staticmethod
    def stochastic(val, r):
        """floor(val) + (r < frac(val)): Lava's stochastic rounding."""
        fl = np.floor(val)
        fl += r < (val - fl)                     # val - floor(val) == val % 1 (exact)
        return fl.astype(np.int64)

    @staticmethod
    def clip(x, lo, hi):
        return _clip(x, lo, hi)     # np.clip's ufunc without its Python wrapper (same values, dtype)

    @staticmethod
    def div_round(num, den):
        """round(num / den), halves up, in integers: floor((num + floor(den / 2)) / den)."""
        num, den = np.asarray(num, np.int64), np.asarray(den, np.int64)
        return (num + den // 2) // den

    @staticmethod
    def neg_outer(y2, x1):
        """-(y2 x1^T) per episode (..., O, I), int32 as the engine's product."""
        prod = np.asarray(y2, np.int32)[..., :, None] * np.asarray(x1, np.int32)[..., None, :]
        return np.negative(prod, out=prod)

    @staticmethod
    def shl(x, k: int):
        return np.left_shift(x, k, dtype=np.int32) if np.ndim(x) else x << k

    @staticmethod
    def stochastic_shr(acc, shift: int, r):
        """floor(acc / 2^shift) + (r < frac(acc / 2^shift)), in integers: the bump is
        (acc & (2^shift - 1)) > floor(r 2^shift); r: a float or (B,) per episode."""
        if np.ndim(r):
            thr = np.floor(np.asarray(r) * (1 << shift)).astype(np.int32).reshape(-1, 1, 1)
        else:
            thr = int(np.floor(r * (1 << shift)))
        bump = (acc & ((1 << shift) - 1)) > thr
        out = acc >> shift
        out += bump
        return out


INT_RULE_OPS = IntRuleOps()


def error_q(counts, onehot, spec: RuleSpec, ops=INT_RULE_OPS, threshold=None):
    """Quantized, gated error e_q (..., O) from spike counts and one-hot labels.

    e = softmax(2^g * counts) - onehot; e_q = rint(e * e_max); zero where
    |e_q| <= error_threshold or where no label is present (onehot all zero).
    """
    th = spec.error_threshold if threshold is None else threshold
    p = ops.softmax(ops.real(counts) * (2.0 ** spec.softmax_gain_exp))
    e = ops.gate(ops.round((p - onehot) * spec.e_max), th)
    return e * ops.has_label(onehot)


def normalise_error(e_q, n_in, spec: RuleSpec, ops=INT_RULE_OPS, m=None):
    """The error divided by the sample's input so far. n_in (..., 1): spikes the plastic layer
    received in this sample before this step; ``e_q`` unchanged when d = input_norm_offset = 0.

    Two forms, s = input_norm_shift, c = input_norm_steps:

    * cumulative (c = 0): e_n = clip(round(e_q 2^s / (d + n_in)), -e_max, e_max), n_in counted
      from the sample's first step, labelled or not (a sample's input before its label window
      makes the divisor grow with the sample's own rate);
    * rate (c >= 1): e_n = clip(round(e_q 2^s (m + c) / (d + n_in)), -e_max, e_max), m (..., 1)
      the sample's labelled steps before this one and n_in counted over those steps only: the
      error divided by a running estimate of the input rate, (d + n_in) / (m + c), which starts
      at the prior d / c (calibrate sets d = c x the mean input per step).

    Why: after one shot an imprinted row is proportional to its support's input counts, and a
    spike-count readout then computes a dot product in which a loud support wins for every
    query; dividing each step's update by the input seen so far makes the row approach the
    support's input *rates* (an L1-normalised prototype, BENCHMARKS.md "A second embedded
    dataset"). The cumulative form weighs a step by 1 / (d + n_in), so how a sample's spikes
    fall in time changes its row; the rate form weighs the steps of the window alike and so
    approaches the window's L1-normalised counts (BENCHMARKS.md "The error normaliser")."""
    if not spec.input_norm_offset:
        return e_q
    num = e_q * (1 << spec.input_norm_shift)
    if spec.input_norm_steps:
        num = num * (m + spec.input_norm_steps)
    den = n_in + spec.input_norm_offset
    return ops.clip(ops.div_round(num, den), -spec.e_max, spec.e_max)


def surrogate_q(v_pre, theta: int, spec: RuleSpec, ops=INT_RULE_OPS, beta=None):
    """Surrogate factor f_q in [0, 128] (128 = 1.0): rint(128 / (1 + beta|z|)^2)."""
    if spec.surrogate == "none":
        return ops.full_like(v_pre, F_ONE)
    beta = spec.surrogate_beta if beta is None else beta
    z = (ops.real(v_pre) - theta) / max(theta, 1)
    return ops.round(F_ONE * (1.0 / (1.0 + beta * abs(z)) ** 2))


def third_factor_q(e_q, v_pre, theta: int, spec: RuleSpec, ops=INT_RULE_OPS, threshold=None, beta=None):
    """y2 = floor((e_q * f_q + 64) / 128), zero where |y2| <= factor_threshold."""
    th = spec.factor_threshold if threshold is None else threshold
    y2 = ops.shr(e_q * surrogate_q(v_pre, theta, spec, ops, beta) + F_ONE // 2, 7)
    return ops.gate(y2, th)


def stochastic_decay(trace, decay, r, ops=INT_RULE_OPS):
    """Lava's trace decay: floor(decay * x) + (r < frac(decay * x))."""
    return ops.stochastic(decay * ops.real(trace), r)


def lava_randoms(spec: RuleSpec, steps: int, offset=0):
    """The random numbers Lava's fixed-point learning engine uses, per step.

    Returns (r_x, r_y, r_w), each (steps,) float64: the trace-decay randoms
    of the x and y TraceRandom generators (draw 2t of default_rng(seed) and
    default_rng(seed+2): each step advances them twice before learning) and
    the weight rounding random of ConnVarRandom (draw t of default_rng(2)).
    The streams start when a Lava graph starts and run on across pauses:
    ``offset`` (an int, or (B,) ints for B episodes, then each array is
    (B, steps)) is the number of steps the graph ran before this presentation
    (episodes run one after another in one graph, see
    ``neuromaml.emulator.episodes.LavaEpisodes``).
    """
    off = np.asarray(offset, np.int64)
    if off.ndim > 1 or (off.size and off.min() < 0):
        raise RuleError(f"offset must be a step count >= 0 or a 1-D array of them, got {offset!r}")
    t = off[..., None] + np.arange(1, steps + 1) if off.ndim else off + np.arange(1, steps + 1)
    n = int(t.max()) + 1 if t.size else 1
    r_x = np.random.default_rng(spec.rng_seed).random(2 * n - 1)[2 * t]
    r_y = np.random.default_rng(spec.rng_seed + 2).random(2 * n - 1)[2 * t]
    r_w = np.random.default_rng(CONN_VAR_SEED).random(n)[t]
    return r_x, r_y, r_w


def grid_step(bits: int) -> int:
    """q_b = 2^(8 - b) weight LSB for b-bit synapses (b magnitude bits + sign)."""
    return 1 << (8 - int(bits))


def grid_round(w: np.ndarray, bits: int) -> np.ndarray:
    """Round integer weights to the nearest point of the b-bit grid G_b (ties up), clipped to G_b."""
    q = grid_step(bits)
    w = np.asarray(w, np.int64)
    out = ((w + q // 2) // q) * q if q > 1 else w.copy()
    return np.clip(out, W_MIN, (W_MAX + 1) - q)


def weight_update(w, x1, y2, spec: RuleSpec, r_w, bits: int = 8, ops=INT_RULE_OPS, eta_exp=None):
    """One learning epoch of the engine: w (..., O, I), x1 (..., I), y2 (..., O).

    acc = clip(w*128 + clip(((-x1*y2) >> 3) << (eta_exp+10))), then
    stochastic rounding to a whole weight with the shared random r_w, then
    clipping to [-256, 255] (r_w: a float, or (B,) floats for a (B, O, I) batch of
    episodes at different steps of Lava's stream). Lava computes floor(acc/128) + (r_w < frac(acc/128));
    in integers: (acc >> 7) + ((acc & 127) > floor(128 r_w)).
    bits < 8 models b-bit synapses (what `neuromaml rule-check` sweeps): the
    accumulator is stochastically rounded to the grid of step q = 2^(8 - bits)
    weight LSB instead of to 1 LSB, and clipped to [-256, 256 - q]. Lava 0.10's
    engine always keeps 8 bits (bits = 8, the default). Returns int32 (integer ops).
    """
    q = 1 << (8 - int(bits))
    k = spec.eta_exp if eta_exp is None else eta_exp      # dw string's exponent is k + 3
    prod = ops.neg_outer(ops.clip(y2, -128, 127), ops.clip(x1, -128, 127))
    prod = ops.clip(ops.shl(ops.shr(prod, PRODUCT_SHIFT), k + PRODUCT_SHIFT + 7), ACC_LO, ACC_HI)
    acc = ops.clip(prod + ops.shl(w, ACC_SHIFT), ACC_LO, ACC_HI)    # |prod| <= 2016 << 15 < 2^31
    w_new = ops.stochastic_shr(acc, ACC_SHIFT + (8 - int(bits)), r_w)
    return ops.clip(w_new * q if q > 1 else w_new, W_MIN, (W_MAX + 1) - q)


def eq6_gate(w_end: np.ndarray, w_start: np.ndarray, threshold: int) -> np.ndarray:
    """Paper Eq. 6 per synapse on the presentation's total update (reference form)."""
    if threshold <= 0:
        return w_end
    return np.where(np.abs(w_end - w_start) > threshold, w_end, w_start)


def check_weights(w: np.ndarray, name: str = "weights") -> np.ndarray:
    """Integer weights in Lava's learning range [-256, 255] or RuleError."""
    w = np.asarray(w)
    if w.size and not np.all(np.isfinite(w)):
        raise RuleError(f"{name}: non-finite values")
    wi = np.rint(w).astype(np.int64) if w.size else w.astype(np.int64)
    if w.size and not np.array_equal(wi, w):
        raise RuleError(f"{name}: weights must be integers (Lava weight units); "
                        f"nearest representable: np.rint(weights)")
    if w.size and (wi.min() < W_MIN or wi.max() > W_MAX):
        bad = wi[(wi < W_MIN) | (wi > W_MAX)].flat[0]
        raise RuleError(f"{name}: weight {bad} overflows the 8-bit+sign synapse range "
                        f"[{W_MIN}, {W_MAX}]; nearest representable: "
                        f"{int(np.clip(bad, W_MIN, W_MAX))} (or raise weight_exp)")
    return wi


def check_weight_exp(weight_exp) -> int:
    """Loihi's per-layer weight exponent: an integer in [-8, 7]."""
    if isinstance(weight_exp, bool) or int(weight_exp) != weight_exp \
            or not -8 <= weight_exp <= 7:
        near = int(np.clip(np.round(float(weight_exp)), -8, 7))
        raise RuleError(f"weight_exp={weight_exp!r} must be an integer in [-8, 7]; nearest "
                        f"representable: {near}")
    return int(weight_exp)


def check_labels(labels, n_out: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise RuleError(f"labels must be a 1-D integer array, got dtype {lab.dtype} "
                        f"shape {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= n_out):
        bad = int(lab[(lab < 0) | (lab >= n_out)][0])
        raise RuleError(f"label {bad} is outside the task's classes 0..{n_out - 1}; "
                        f"nearest representable: {int(np.clip(bad, 0, n_out - 1))}")
    return lab.astype(np.int64)
