"""One-shot learning episodes on the deployed network: the fast engine and Lava.

An episode (see ``emulator.deployed`` for the time alignment): weights reset to
theta0*, the support samples are presented with their labels (learning on),
then the query samples without labels (learning off: no error, no update), in
one continuous stream. The class of a query is the argmax of the plastic
layer's spike counts over its readout window (first index on ties).

* ``run_fast``: frozen layers once per distinct sample (``DeployedNet.frozen_features``),
  streams assembled per episode, the rule's fixed-point face
  (``onchip.fixed_rule.run_support``) over all episodes at once.
* ``run_lava``: the episodes one after another in one Lava graph (``LavaEpisodes``,
  built and compiled once; between episodes the plastic layer's Vars are set back to
  theta0* and zero state). Always stopped, on errors too.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from neuromaml.emulator.deployed import DeployedNet
from neuromaml.io import NeuromamlError, fail
from neuromaml.onchip.fixed_rule import label_onehot, run_support, truncate_initial
from neuromaml.onchip.rule import RuleError, RuleSpec, grid_round, weight_update


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
    step_offsets: np.ndarray | None = None   # (B,) where each episode's random streams started
    episode_seconds: np.ndarray | None = None  # (B,) Lava: wall time per episode (the first builds the graph)
    graphs_built: int | None = None           # Lava: process graphs built for these episodes

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
             chunk: int = 256, step_offsets: np.ndarray | None = None, bits: int | None = None,
             progress: bool = False) -> EpisodeResult:
    """Episodes on the fast fixed-point engine. ``feats`` from ``dep.frozen_features``.

    Every episode starts as on a fresh graph (Lava's random streams at step 0), unless
    ``step_offsets`` (B,) says where each one's streams start: ``run_lava``'s
    ``result.step_offsets``, to reproduce episodes that ran one after another in one graph.
    ``bits``: the precision model. None: the chip's (Lava 0.10 keeps 8-bit learned weights);
    b: b-bit synapses (what ``rule-check`` sweeps): the initial weights rounded to the grid
    G_b (``onchip.rule.grid_round``) and every update stochastically rounded to it; ``result.initial``
    then holds the b-bit initial weights. bits = 8 equals None bit for bit.
    """
    spec = spec or dep.rule
    w_init, update = dep.w0, None
    if bits is not None:
        w_init = grid_round(truncate_initial(dep.w0, dep.num_weight_bits), bits)
        update = functools.partial(weight_update, bits=int(bits))
    t0 = time.perf_counter()
    labels = step_labels(dep, batch)
    B = batch.order.shape[0]
    offsets = np.zeros(B, np.int64) if step_offsets is None else np.asarray(step_offsets, np.int64)
    if offsets.shape != (B,):
        raise NeuromamlError(f"step_offsets has shape {offsets.shape}; expected ({B},), one per episode")
    parts = []
    from tqdm import tqdm

    bar = tqdm(total=B, desc="episodes", unit="episode", disable=not progress or B <= chunk)
    for a in range(0, B, chunk):           # (the bar is closed below, or with the process on an error)
        bar.update(min(chunk, B - a))
        stream = dep.assemble_stream(feats, batch.order[a:a + chunk])
        off = offsets[a:a + chunk]
        try:
            kw = dict(weight_exp=dep.weight_exp, num_weight_bits=dep.num_weight_bits,
                      reset_interval=dep.time_steps, step_offset=off if off.any() else 0)
            r = run_support(spec, w_init, stream, labels[a:a + chunk], dep.neuron, update=update, **kw)
            if spec.eq6_threshold:
                # Eq. 6 gates the weights at the end of the support presentation; present the
                # stream again with the gated weights (no labels: no learning) for the queries.
                q = run_support(spec, r.weights, stream, None, dep.neuron, truncate=False, **kw)
                cut = dep.sample_start(batch.n_support)
                r.spikes = np.concatenate([r.spikes[:, :cut], q.spikes[:, cut:]], axis=1)
            parts.append(r)
        except RuleError as exc:
            raise NeuromamlError(f"{dep.path}: on-chip rule: {exc}") from None
    bar.close()
    cat = lambda name: np.concatenate([getattr(r, name) for r in parts])  # noqa: E731
    n_upd = (cat("weights") != cat("initial")).reshape(len(batch.order), -1).sum(axis=1)
    res = episode_result(dep, batch, cat("weights"), cat("initial"), cat("spikes"), n_upd,
                         time.perf_counter() - t0)
    res.step_offsets = offsets
    return res


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


class LavaEpisodes:
    """The episodes of a batch one after another in ONE Lava graph (CPU backend, fixed_pt).

    The graph: a spike source (``emulator.lavaprocs.sources.PackedSpikeSource``,
    holding every episode's input), the netx layers below the plastic one
    (``netx.hdf5.Network`` with ``LIFReset`` neurons), the rule's Lava face
    (``onchip.lava_rule.build_learning_layer``), a label source (``RingBuffer``,
    every episode's labels) and a spike sink. It is built and compiled once, at
    the first episode. Each episode runs ``length`` steps: the episode's stream
    (``dep.stream_length(S)``) padded with blank steps to a multiple of T, so that
    the netx reset schedule (period T) has the same phase in every episode and
    the frozen layers are silent and reset when the next episode starts. Between
    episodes, with the runtime paused, the plastic layer is set back through its
    Vars: weights to theta0* (as Lava truncated them on the first step), the
    learning engine's traces and tags to 0, the neuron's u, v and the error
    process's counts to 0.

    What Vars cannot reset: the learning engine's random streams (trace decay,
    stochastic rounding) live inside its ProcessModel and run on. Episode ``b``
    sees them ``b * length`` steps in, which the fast engine reproduces with
    ``step_offsets`` (``run_fast``): the two faces agree bit for bit, episode by
    episode (tests/test_emulator_episodes.py).

    Use as a context manager (or call ``stop``): the runtime is stopped on every
    path, errors included.
    """

    def __init__(self, dep: DeployedNet, x_xyf: np.ndarray, batch: EpisodeBatch,
                 spec: RuleSpec | None = None):
        self.dep, self.batch = dep, batch
        self.spec = spec or dep.rule
        self.x_xyf = x_xyf
        T = dep.time_steps
        self.stream_len = dep.stream_length(batch.order.shape[1])
        self.length = -(-self.stream_len // T) * T
        self.episodes_run = 0
        self.graphs_built = 0
        self._runner = None
        self._stopped = False
        self._net = None
        self._netpath = dep.path / "network.net"
        # theta0* as Lava holds it after the first step (truncated to the weight bits): what
        # each episode starts from, and what its updates are counted against
        self.w_initial = truncate_initial(dep.w0[None], dep.num_weight_bits)[0]

    def __len__(self) -> int:
        return int(self.batch.order.shape[0])

    @property
    def step_offset(self) -> int:
        """Steps the graph has run: where the next episode's random streams start."""
        return self.episodes_run * self.length

    def _make_net(self):
        """The frozen netx layers below the plastic one (none when the plastic layer is first)."""
        from neuromaml.deploy.lava_run import netx_network

        dep = self.dep
        n_entries, self._flatten = _frozen_entries(self._netpath, dep.net.layers[dep.plastic].index)
        if dep.plastic > 0:
            self._net = netx_network(self._netpath, num_layers=n_entries, reset_interval=dep.time_steps,
                                     reset_offset=dep.netx_reset_offset)

    def _sources(self):
        """(input spikes packed per step (B length, bytes), labels (O, B length) int32)."""
        from neuromaml.deploy.fixed import to_net_input

        dep, batch, L = self.dep, self.batch, self.length
        shape = tuple(self._net.inp.shape) if self._net is not None else (dep.n_pre,)
        packed = []
        for b in range(len(self)):
            stream = np.zeros((L,) + self.x_xyf.shape[2:], np.int8)
            stream[:self.stream_len] = lava_input_stream(dep, self.x_xyf, batch.order[b])
            data = to_net_input(stream[None], shape, self._netpath)[0]
            packed.append(np.packbits(data.reshape(L, -1).astype(bool), axis=1))
        step_lab = np.full((len(self), L), -1, np.int64)
        step_lab[:, :self.stream_len] = step_labels(dep, batch)
        lab = label_onehot(step_lab, len(self), L, dep.n_out).reshape(-1, dep.n_out).T
        return shape, np.concatenate(packed), np.ascontiguousarray(lab, np.int32)

    def _build(self):
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source

        from neuromaml.emulator.lavaprocs.sources import PackedSpikeSource
        from neuromaml.onchip.lava_rule import build_learning_layer

        dep = self.dep
        self.graphs_built += 1
        self._make_net()
        try:
            layer = build_learning_layer(self.spec, dep.w0, dep.neuron, dep.weight_exp,
                                         dep.num_weight_bits, reset_interval=dep.time_steps)
        except RuleError as exc:
            raise NeuromamlError(f"{dep.path}: on-chip rule: {exc}") from None
        shape, packed, lab = self._sources()
        self.layer = layer
        src = PackedSpikeSource(shape=shape, packed=packed)
        if self._net is not None:
            src.s_out.connect(self._net.inp)
            last = self._net.layers[-1].out
            (last.transpose([2, 1, 0]).flatten() if self._flatten else last).connect(
                [layer.dense.s_in, layer.error.x_in])
            self._runner = self._net
        else:
            src.s_out.connect([layer.dense.s_in, layer.error.x_in])
            self._runner = src
        Source(data=lab).s_out.connect(layer.error.label_in)
        self.sink = Sink(shape=(dep.n_out,), buffer=self.length)
        layer.neuron.s_out.connect(self.sink.a_in)

    def _reset(self):
        """Between episodes (runtime paused): the plastic layer back to theta0* and zero state."""
        dense, lif, err = self.layer.dense, self.layer.neuron, self.layer.error
        dense.weights.set(self.w_initial.astype(np.int32))
        for name in ("x0", "tx", "x1", "x2", "y0", "ty", "y1", "y2", "y3", "tag_1", "tag_2"):
            var = getattr(dense, name)
            var.set(np.zeros(var.shape, np.int32))
        for var in (lif.u, lif.v, lif.v_pre, lif.y2, err.counts, err.n_in, err.m, err.error):
            var.set(np.zeros(var.shape, np.int32))

    def run_next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next episode. Returns (weights (O, I), output spikes (stream_len, O))."""
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        if self._stopped:
            raise NeuromamlError("this LavaEpisodes graph was stopped: its random streams cannot "
                                 "continue; build a new one")
        if self.episodes_run >= len(self):
            raise NeuromamlError(f"all {len(self)} episodes of this graph have run")
        try:
            if self._runner is None:
                self._build()
            else:
                self._reset()
            self._runner.run(condition=RunSteps(num_steps=self.length),
                             run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            spikes = self.sink.data.get().T.astype(np.int8)[:self.stream_len]
            weights = np.asarray(self.layer.dense.weights.get()).astype(np.int64)
        except Exception as exc:  # Lava hides worker errors; say where to look
            try:
                self.stop()
            except Exception:       # the original error is the one to report
                pass
            if isinstance(exc, NeuromamlError):
                raise
            raise fail(self._netpath, f"the Lava episode failed ({exc.__class__.__name__}: {exc})",
                       "run the same episodes with --engine fast to see the cause in-process") from exc
        self.episodes_run += 1
        return weights, spikes

    def stop(self) -> None:
        self._stopped = True
        if self._runner is not None:
            try:
                self._runner.stop()
            finally:
                self._runner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def run_lava(dep: DeployedNet, x_xyf: np.ndarray, batch: EpisodeBatch,
             spec: RuleSpec | None = None, progress: bool = False) -> EpisodeResult:
    """Episodes on Lava, one after the other in one graph (``LavaEpisodes``).
    ``x_xyf``: (n, T, x, y, f) spikes of the pool. ``result.step_offsets`` says where
    each episode's random streams started (pass it to ``run_fast`` to reproduce)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    ws, sp, offsets, secs = [], [], [], []
    with LavaEpisodes(dep, x_xyf, batch, spec) as graph:
        for _ in tqdm(range(len(graph)), desc="Lava episodes", unit="episode", disable=not progress, leave=False):
            offsets.append(graph.step_offset)
            t1 = time.perf_counter()
            w, s = graph.run_next()
            secs.append(time.perf_counter() - t1)
            ws.append(w)
            sp.append(s)
        built, w_initial = graph.graphs_built, graph.w_initial
    weights = np.stack(ws)
    initial = np.broadcast_to(w_initial, weights.shape)
    n_upd = (weights != initial).reshape(len(weights), -1).sum(axis=1)
    res = episode_result(dep, batch, weights, np.array(initial), np.stack(sp), n_upd, time.perf_counter() - t0)
    res.step_offsets = np.array(offsets, np.int64)
    res.episode_seconds = np.array(secs)
    res.graphs_built = built
    return res
