"""One-shot learning episodes on the deployed network: the fast engine and Lava.

An episode (see ``emulator.deployed`` for the time alignment): weights reset to
theta0*, the support samples are presented with their labels (learning on),
then the query samples without labels (learning off: no error, no update), in
one continuous stream. The class of a query is the argmax of the plastic
layer's spike counts over its readout window (first index on ties).

* ``run_fast``: frozen layers once per distinct sample (``DeployedNet.frozen_features``),
  streams assembled per episode, the rule's fixed-point face
  (``onchip.fixed_rule.run_support``) over all episodes at once.
* ``run_lava``: one Lava graph per episode: a ``RingBuffer`` source, the netx
  layers below the plastic one (``netx.hdf5.Network`` with ``LIFReset``
  neurons), the rule's Lava face (``onchip.lava_rule.build_learning_layer``),
  a label source and a spike sink. A fresh graph per episode because the
  learning engine's random streams (stochastic rounding) start at their seed
  when a graph starts: rebuilding keeps each episode reproducible on its own and
  lets the fast engine reproduce it bit for bit. Always stopped, on errors too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from neuromaml.emulator.deployed import DeployedNet
from neuromaml.io import NeuromamlError, fail
from neuromaml.onchip.fixed_rule import label_onehot, run_support
from neuromaml.onchip.rule import RuleError, RuleSpec


@dataclass
class EpisodeBatch:
    """B episodes over one pool of samples (indices into a features/frames array)."""

    order: np.ndarray           # (B, S) sample indices: support first, then queries
    labels: np.ndarray          # (B, S) local labels 0..N-1 of every presented sample
    n_support: int              # the first n_support samples of each episode carry labels

    @property
    def n_query(self) -> int:
        return self.order.shape[1] - self.n_support


@dataclass
class EpisodeResult:
    weights: np.ndarray         # (B, O, I) plastic weights after the episode
    initial: np.ndarray         # (B, O, I) weights as the plastic layer started
    spikes: np.ndarray          # (B, P + S T, O) plastic-layer output spikes over the stream
    counts: np.ndarray          # (B, S, O) readout counts of every sample
    predictions: np.ndarray     # (B, n_query) predicted local labels of the queries
    accuracy: np.ndarray        # (B,) query accuracy per episode
    n_updates: np.ndarray       # (B,) synapses whose weight changed
    seconds: float

    def summary(self) -> dict:
        acc = self.accuracy
        return {"episodes": int(acc.size), "accuracy_mean": float(acc.mean()),
                "accuracy_std": float(acc.std()), "seconds": self.seconds,
                "seconds_per_episode": self.seconds / max(1, acc.size),
                "fraction_synapses_updated": float((self.n_updates / self.weights[0].size).mean())}


def step_labels(dep: DeployedNet, batch: EpisodeBatch) -> np.ndarray:
    """(B, P + S T) per-step labels for the rule: a support sample's label during its
    learning window (``dep.label_window``, relative to the sample's start), -1 (no label,
    no learning) elsewhere."""
    B, S = batch.order.shape
    T, P = dep.time_steps, dep.prefix
    start, end = dep.label_window
    out = np.full((B, dep.stream_length(S)), -1, np.int64)
    for s in range(batch.n_support):
        a = P + s * T
        out[:, a + start:a + end] = batch.labels[:, s:s + 1]
    return out


def readout(dep: DeployedNet, spikes: np.ndarray, n_samples: int) -> np.ndarray:
    """(B, L, O) stream spikes -> (B, S, O) counts over each sample's readout window."""
    T, P = dep.time_steps, dep.prefix
    wins = [spikes[:, P + s * T + dep.burn_in:P + (s + 1) * T].sum(axis=1) for s in range(n_samples)]
    return np.stack(wins, axis=1).astype(np.int64)


def episode_result(dep, batch, weights, initial, spikes, n_upd, seconds) -> EpisodeResult:
    counts = readout(dep, spikes, batch.order.shape[1])
    pred = counts[:, batch.n_support:].argmax(axis=2)
    acc = (pred == batch.labels[:, batch.n_support:]).mean(axis=1)
    return EpisodeResult(weights, initial, spikes, counts, pred, acc, n_upd, seconds)


def run_fast(dep: DeployedNet, feats: np.ndarray, batch: EpisodeBatch, spec: RuleSpec | None = None,
             chunk: int = 256) -> EpisodeResult:
    """Episodes on the fast fixed-point engine. ``feats`` from ``dep.frozen_features``."""
    spec = spec or dep.rule
    t0 = time.perf_counter()
    labels = step_labels(dep, batch)
    parts = []
    for a in range(0, batch.order.shape[0], chunk):
        stream = dep.assemble_stream(feats, batch.order[a:a + chunk])
        try:
            kw = dict(weight_exp=dep.weight_exp, num_weight_bits=dep.num_weight_bits,
                      reset_interval=dep.time_steps)
            r = run_support(spec, dep.w0, stream, labels[a:a + chunk], dep.neuron, **kw)
            if spec.eq6_threshold:
                # Eq. 6 gates the weights at the end of the support presentation; present the
                # stream again with the gated weights (no labels: no learning) for the queries.
                q = run_support(spec, r.weights, stream, None, dep.neuron, truncate=False, **kw)
                cut = dep.sample_start(batch.n_support)
                r.spikes = np.concatenate([r.spikes[:, :cut], q.spikes[:, cut:]], axis=1)
            parts.append(r)
        except RuleError as exc:
            raise NeuromamlError(f"{dep.path}: on-chip rule: {exc}") from None
    cat = lambda name: np.concatenate([getattr(r, name) for r in parts])  # noqa: E731
    n_upd = (cat("weights") != cat("initial")).reshape(len(batch.order), -1).sum(axis=1)
    return episode_result(dep, batch, cat("weights"), cat("initial"), cat("spikes"), n_upd,
                   time.perf_counter() - t0)


def lava_input_stream(dep: DeployedNet, x_xyf: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(S,) sample indices -> (P + S T, x, y, f) input spikes of one episode."""
    T, P = dep.time_steps, dep.prefix
    out = np.zeros((dep.stream_length(len(order)),) + x_xyf.shape[2:], np.int8)
    for s, i in enumerate(order):
        out[P + s * T:P + (s + 1) * T] = x_xyf[i]
    return out


def _frozen_entries(netpath, plastic_index: int) -> tuple[int, bool]:
    """How many netx layer entries stay frozen, and whether a flatten sits before the plastic layer."""
    from neuromaml.deploy.netxfile import read_layers

    layers = read_layers(netpath)
    n = plastic_index
    flatten = n > 0 and layers[n - 1].type == "flatten"
    if flatten:
        n -= 1
    return n, flatten


def run_lava_episode(dep: DeployedNet, x_xyf: np.ndarray, order: np.ndarray, labels: np.ndarray,
                     n_support: int, spec: RuleSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One episode on Lava's CPU backend (fixed_pt). Returns (weights (O, I), spikes (L, O))."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from neuromaml.deploy.fixed import to_net_input
    from neuromaml.onchip.lava_rule import build_learning_layer

    spec = spec or dep.rule
    netpath = dep.path / "network.net"
    batch = EpisodeBatch(order[None], labels[None], n_support)
    step_lab = step_labels(dep, batch)[0]
    L = dep.stream_length(len(order))
    O = dep.n_out
    stream = lava_input_stream(dep, x_xyf, order)
    plastic_entry = dep.net.layers[dep.plastic].index
    n_entries, flatten = _frozen_entries(netpath, plastic_entry)
    try:
        layer = build_learning_layer(spec, dep.w0, dep.neuron, dep.weight_exp, dep.num_weight_bits,
                                     reset_interval=dep.time_steps)
    except RuleError as exc:
        raise NeuromamlError(f"{dep.path}: on-chip rule: {exc}") from None
    if dep.plastic > 0:
        net = netx.hdf5.Network(net_config=str(netpath), num_layers=n_entries,
                                reset_interval=dep.time_steps, reset_offset=dep.netx_reset_offset)
        data = to_net_input(stream[None], tuple(net.inp.shape), netpath)[0]
        src = Source(data=np.moveaxis(data, 0, -1).astype(np.int32))
        src.s_out.connect(net.inp)
        last = net.layers[-1].out
        (last.transpose([2, 1, 0]).flatten() if flatten else last).connect(layer.dense.s_in)
        runner = net
    else:
        data = to_net_input(stream[None], (dep.n_pre,), netpath)[0]
        src = Source(data=np.moveaxis(data, 0, -1).astype(np.int32))
        src.s_out.connect(layer.dense.s_in)
        runner = src
    lab = label_onehot(step_lab[None], 1, L, O)[0].T.astype(np.int32)     # (O, L)
    lab_src = Source(data=lab)
    lab_src.s_out.connect(layer.error.label_in)
    sink = Sink(shape=(O,), buffer=L)
    layer.neuron.s_out.connect(sink.a_in)
    try:
        runner.run(condition=RunSteps(num_steps=L), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        spikes = sink.data.get().T.astype(np.int8)
        weights = np.asarray(layer.dense.weights.get()).astype(np.int64)
    except Exception as exc:  # Lava hides worker errors; say where to look
        if isinstance(exc, NeuromamlError):
            raise
        raise fail(netpath, f"the Lava episode failed ({exc.__class__.__name__}: {exc})",
                   "run the same episode with --engine fast to see the cause in-process") from exc
    finally:
        runner.stop()
    return weights, spikes


def run_lava(dep: DeployedNet, x_xyf: np.ndarray, batch: EpisodeBatch,
             spec: RuleSpec | None = None) -> EpisodeResult:
    """Episodes on Lava, one after the other. ``x_xyf``: (n, T, x, y, f) spikes of the pool."""
    t0 = time.perf_counter()
    ws, sp = [], []
    for b in range(batch.order.shape[0]):
        w, s = run_lava_episode(dep, x_xyf, batch.order[b], batch.labels[b], batch.n_support, spec)
        ws.append(w)
        sp.append(s)
    weights = np.stack(ws)
    from neuromaml.onchip.fixed_rule import truncate_initial

    initial = np.broadcast_to(truncate_initial(dep.w0[None], dep.num_weight_bits), weights.shape)
    n_upd = (weights != initial).reshape(len(weights), -1).sum(axis=1)
    return episode_result(dep, batch, weights, np.array(initial), np.stack(sp), n_upd, time.perf_counter() - t0)
