"""Run a netx file on Lava's CPU backend (``Loihi2SimCfg(select_tag='fixed_pt')``).

One sample stream at a time (Lava has no batch dimension): ``x`` is
``(T, *input_shape)`` spikes in (x, y, f) order, fed by a ``RingBuffer``
source (step ``t`` sends ``x[t - 1]``); each recorded layer's ``out`` port
goes to a ``RingBuffer`` sink. The network is always stopped (``finally``).
Errors inside Lava's worker processes are not shown by Lava; when a run
fails, ``neuromaml.deploy.fixed`` (same layers, same integer arithmetic)
runs in-process and shows the cause.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from neuromaml.io import NeuromamlError, fail


def _diagnose(path: Any) -> str:
    """Lava shows only "1 Exception(s) occurred": build the same layers in-process for the cause."""
    try:
        from neuromaml.deploy.fixed import FixedPointNet

        FixedPointNet.from_netx(path)
    except NeuromamlError as exc:
        return f"; in-process check: {exc}"
    except Exception as exc:  # noqa: BLE001
        return f"; in-process check: {exc.__class__.__name__}: {exc}"
    return ""


def netx_network(path: str | os.PathLike, **kw):
    """``netx.hdf5.Network(net_config=path, **kw)``, with an all-zero dense layer allowed
    (``neuromaml.lavacompat.patch_netx_zero_dense``) and netx's failures as clear errors."""
    from neuromaml.lavacompat import patch_netx_zero_dense, quiet_lava_dl

    quiet_lava_dl()
    from lava.lib.dl import netx

    patch_netx_zero_dense()     # a zero final layer (meta-trained theta0*) loads
    try:
        return netx.hdf5.Network(net_config=str(path), **kw)
    except NotImplementedError as exc:
        raise fail(path, f"netx cannot build this network ({exc})",
                   "export it with neuromaml export (lowers pool layers)") from None
    except (OSError, KeyError, ValueError, RuntimeError, OverflowError, ZeroDivisionError) as exc:
        raise fail(path, f"netx cannot build this network ({exc.__class__.__name__}: {exc})",
                   "run `neuromaml inspect` on the file") from None


def run_lava(path: str | os.PathLike, x: np.ndarray | None = None, *, steps: int | None = None,
             input_bias: np.ndarray | None = None, record: str = "output",
             reset_interval: int | None = None,
             netx_reset: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run the netx network in ``path`` on Lava for ``T`` steps.

    Returns ``{"spikes": [per recorded layer (T, *shape_xyf) int8], "layers": [indices],
    "seconds": wall time of compile+run}``. ``record`` is ``"output"`` or ``"all"``.
    ``input_bias`` (shape of the input layer, x y f) sets an ``input`` neuron layer's bias.
    ``reset_interval``: lava-dl's test protocol (``io.reset.Reset`` on each layer's ``u, v``,
    offset ``k - 1``). ``netx_reset=(interval, offset)``: netx's ``LIFReset`` neurons (layer ``k``
    zeroes ``u, v`` at the start of 1-based steps ``t % interval == (offset + 1 + k) % interval``).
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    t0 = time.perf_counter()
    kw = {} if netx_reset is None else {"reset_interval": int(netx_reset[0]),
                                        "reset_offset": int(netx_reset[1])}
    net = netx_network(path, **kw)
    if x is not None:
        from neuromaml.deploy.fixed import to_net_input

        data = to_net_input(np.asarray(x)[None], tuple(net.inp.shape), path)[0]
        T = data.shape[0]
        src = Source(data=np.moveaxis(data, 0, -1).astype(np.int32))
        src.s_out.connect(net.inp)
    else:
        if steps is None:
            raise ValueError("steps is needed when no input is given")
        T = int(steps)
    if input_bias is not None:
        net.in_layer.neuron.bias_mant.init = np.asarray(input_bias).astype(np.int32)
    if reset_interval:
        from lava.proc.io.reset import Reset
        for i, layer in enumerate(net.layers):     # lava-dl's test_tinynet protocol
            for var in (layer.neuron.u, layer.neuron.v):
                Reset(interval=reset_interval, offset=i - 1).connect_var(var)
    idx = list(range(len(net.layers))) if record == "all" else [len(net.layers) - 1]
    sinks = []
    for i in idx:
        sink = Sink(shape=net.layers[i].out.shape, buffer=T)
        net.layers[i].out.connect(sink.a_in)
        sinks.append(sink)
    run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
    ok = False
    try:
        net.run(condition=RunSteps(num_steps=T), run_cfg=run_cfg)
        spikes = [np.moveaxis(s.data.get(), -1, 0).astype(np.int8) for s in sinks]
        ok = True
    except Exception as exc:  # noqa: BLE001 - Lava hides worker errors; say what we know
        raise fail(path, f"Lava run failed ({exc.__class__.__name__}: {str(exc)[:200]}){_diagnose(path)}",
                   "run `neuromaml inspect` on the file") from exc
    finally:
        # always stop; if the run itself failed, do not let a failing stop() hide why
        with contextlib.nullcontext() if ok else contextlib.suppress(Exception):
            net.stop()
    return {"spikes": spikes, "layers": idx, "seconds": time.perf_counter() - t0}


def run_lava_samples(path: str | os.PathLike, xs: np.ndarray, *, record: str = "output",
                     biased: bool = False) -> dict[str, Any]:
    """Run ``N`` independent samples ``xs`` (N, T, *input_shape) in ONE Lava run.

    The samples go back to back in windows of ``W = T + P`` steps (``P = layers + 1`` zero
    steps after each) and netx's ``LIFReset`` neurons zero layer ``k`` at the start of
    0-based step ``n W - P + k + 1`` (``reset_offset = T + 1``): each layer is silent and at
    rest when the next sample's first spikes arrive, so window ``n`` equals a fresh run on
    sample ``n`` (proof: a reset layer with zero input stays silent, and the resets cascade
    one step per layer, as the synapse delays do). Neurons with a bias are not silent at
    rest; ``biased=True`` runs one fresh network per sample instead.
    Returns ``{"spikes": [per layer (N, T, *shape)], "layers", "seconds"}``.
    """
    xs = np.asarray(xs)
    N, T = xs.shape[:2]
    t0 = time.perf_counter()
    if biased:
        runs = [run_lava(path, xs[n], record=record) for n in range(N)]
        spikes = [np.stack([r["spikes"][i] for r in runs]) for i in range(len(runs[0]["spikes"]))]
        return {"spikes": spikes, "layers": runs[0]["layers"], "seconds": time.perf_counter() - t0}
    from neuromaml.deploy.netxfile import read_layers

    n_layers = sum(L.type in ("dense", "conv") or (L.type == "input" and L.neuron is not None)
                   for L in read_layers(path))
    P = n_layers + 1
    W = T + P
    stream = np.zeros(((N - 1) * W + T,) + xs.shape[2:], xs.dtype)   # no padding after the last
    for n in range(N):
        stream[n * W: n * W + T] = xs[n]
    r = run_lava(path, stream, record=record, netx_reset=(W, T + 1))
    spikes = [np.stack([s[n * W: n * W + T] for n in range(N)]) for s in r["spikes"]]
    return {"spikes": spikes, "layers": r["layers"], "seconds": time.perf_counter() - t0}
