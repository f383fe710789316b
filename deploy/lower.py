"""Lower netx layers that ``netx.hdf5.Network`` cannot load into ones it can.

``pool`` (slayer's ``block.cuba.Pool``: per channel, sum of the ``kh x kw``
window times one integer weight, then a CUBA neuron) becomes

* a **grouped conv** (``groups = C``, the pool kernel once per channel) when
  ``C <= 127``;
* a **dense** layer with a block-sparse matrix (preceded by a ``flatten``)
  when ``C >= 128`` and a ``flatten`` (or the end of the network) follows;
* a plain conv (``groups = 1``) whose kernel is zero off the channel diagonal
  otherwise (exact, but ``C * C`` scipy convolutions per step in Lava).

Why not a grouped conv for 128 channels and more: Lava's conv ProcessModel
(``lava.proc.conv.models.AbstractPyConvModel``) declares
``groups: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)``, and
the builder stores Var values with that dtype (``var[:] = value``). So 128
groups become ``-128``: ``conv_scipy`` loops ``for g in range(-128)`` - never
- and the layer's synaptic input is all zeros (the FIELD-NOTES probe: "all
zeros for 128"). 129 becomes ``-127`` and ``129 % -127 != 0`` raises
"Expected number of in_channels to be divisible by group" inside the worker,
which Lava reports only as "1 Exception(s) occurred". ``kernel_size``,
``stride``, ``padding`` and ``dilation`` are int8 too (values <= 127).

``average``, ``convT``, ``unpool``, ``concat`` (and anything unknown) have no
lowering: ``lower`` raises a ``NeuromamlError`` naming the layer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from neuromaml.deploy.netxfile import LOADABLE, NetxLayer, type_array
from neuromaml.io import fail

LAVA_CONV_GROUPS_MAX = 127   # Lava's conv model keeps `groups` in an int8


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None:
        return (default, default)
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _pool_kernel(layer: NetxLayer, path: Any) -> np.ndarray:
    w = layer.weight
    if w is None:
        raise fail(path, f"layer/{layer.index} (pool): weight missing", "re-export the network")
    k = np.asarray(w, dtype=np.float64)
    k = k.reshape(k.shape[-2:]) if k.ndim > 2 else k
    if k.ndim != 2:
        raise fail(path, f"layer/{layer.index} (pool): weight shape {np.shape(w)} is not a 2-d kernel",
                   "re-export the network")
    return k


def _neuron_and_bias(layer: NetxLayer) -> dict[str, np.ndarray]:
    return {k: v for k, v in layer.raw.items() if k.startswith("neuron/") or k == "bias"}


def pool_as_grouped_conv(layer: NetxLayer, in_chw: tuple[int, int, int], path: Any = None) -> NetxLayer:
    C = in_chw[0]
    k = _pool_kernel(layer, path)
    weight = np.broadcast_to(k, (C, 1) + k.shape).astype(np.float32).copy()
    raw = {
        "type": type_array("conv"), "shape": np.asarray(layer.shape),
        "weight": weight, "inChannels": np.asarray(C), "outChannels": np.asarray(C),
        "kernelSize": np.asarray(k.shape), "groups": np.asarray(C),
        "stride": np.asarray(_pair(layer.get("stride"), k.shape[0])),
        "padding": np.asarray(_pair(layer.get("padding"), 0)),
        "dilation": np.asarray(_pair(layer.get("dilation"), 1)),
        **_neuron_and_bias(layer),
    }
    return NetxLayer(layer.index, "conv", raw)


def pool_as_diagonal_conv(layer: NetxLayer, in_chw: tuple[int, int, int], path: Any = None) -> NetxLayer:
    out = pool_as_grouped_conv(layer, in_chw, path)
    C = in_chw[0]
    k = _pool_kernel(layer, path)
    w = np.zeros((C, C) + k.shape, np.float32)
    w[np.arange(C), np.arange(C)] = k
    out.raw["weight"] = w
    out.raw["groups"] = np.asarray(1)
    return out


def pool_matrix(k: np.ndarray, in_chw: tuple[int, int, int], out_chw: tuple[int, int, int],
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """Dense matrix (C*OH*OW, C*H*W), both sides flattened in (C, H, W) order (netx's flatten)."""
    C, H, W = in_chw
    _, OH, OW = out_chw
    M = np.zeros((C * OH * OW, C * H * W), np.float32)
    c, oy, ox = np.meshgrid(np.arange(C), np.arange(OH), np.arange(OW), indexing="ij")
    rows = (c * OH * OW + oy * OW + ox).ravel()
    for ky in range(k.shape[0]):
        for kx in range(k.shape[1]):
            y = (oy * stride[0] - padding[0] + ky * dilation[0]).ravel()
            x = (ox * stride[1] - padding[1] + kx * dilation[1]).ravel()
            ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
            cols = c.ravel() * H * W + y * W + x
            M[rows[ok], cols[ok]] += k[ky, kx]
    return M


def pool_as_dense(layer: NetxLayer, in_chw: tuple[int, int, int], path: Any = None) -> list[NetxLayer]:
    k = _pool_kernel(layer, path)
    out_chw = tuple(layer.shape)
    M = pool_matrix(k, in_chw, out_chw, _pair(layer.get("stride"), k.shape[0]),
                    _pair(layer.get("padding"), 0), _pair(layer.get("dilation"), 1))
    flat = NetxLayer(layer.index, "flatten", {"type": type_array("flatten"),
                                               "shape": np.asarray([int(np.prod(in_chw)), 1, 1])})
    raw = {"type": type_array("dense"), "shape": np.asarray([M.shape[0]]), "weight": M,
           "inFeatures": np.asarray(M.shape[1]), "outFeatures": np.asarray(M.shape[0]),
           **_neuron_and_bias(layer)}
    if "bias" in raw:     # channel-wise bias -> per flattened neuron
        raw["bias"] = np.repeat(np.asarray(raw["bias"]), out_chw[1] * out_chw[2])
    return [flat, NetxLayer(layer.index, "dense", raw)]


def _symmetric_fits(layer: NetxLayer, in_chw: tuple[int, ...], path: Any) -> bool:
    """Does a conv with the pool's stored stride/padding/dilation give the stored output shape?"""
    k = _pool_kernel(layer, path)
    (sy, sx), (py, px), (dy, dx) = (_pair(layer.get("stride"), k.shape[0]), _pair(layer.get("padding"), 0),
                                    _pair(layer.get("dilation"), 1))
    oh = (in_chw[1] + 2 * py - dy * (k.shape[0] - 1) - 1) // sy + 1
    ow = (in_chw[2] + 2 * px - dx * (k.shape[1] - 1) - 1) // sx + 1
    return (in_chw[0], oh, ow) == tuple(layer.shape)


def lower(layers: list[NetxLayer], input_chw: tuple[int, ...] | None = None,
          path: Any = None) -> tuple[list[NetxLayer], list[dict[str, Any]]]:
    """Rewrite every layer netx cannot load. Returns (new layers renumbered, report rows)."""
    out: list[NetxLayer] = []
    report: list[dict[str, Any]] = []
    shape: tuple[int, ...] | None = tuple(input_chw) if input_chw else None
    skip_flatten = False
    for i, L in enumerate(layers):
        if L.type == "flatten" and skip_flatten:
            skip_flatten = False
            report.append({"index": L.index, "from": "flatten", "to": "(dropped: pool already flattened)"})
            continue
        skip_flatten = False
        if L.type in LOADABLE:
            out.append(L)
            shape = L.shape if L.type != "flatten" else shape and (int(np.prod(shape)),)
            continue
        if L.type != "pool":
            raise fail(path, f"layer/{L.index} has type {L.type!r}, which netx cannot load and nothing lowers",
                       "build the network from conv, pool, flatten and dense blocks only")
        if shape is None or len(shape) != 3:
            raise fail(path, f"layer/{L.index} (pool): its input shape is unknown or not (C, H, W) ({shape})",
                       "give the input shape (C, H, W) when lowering")
        C = shape[0]
        nxt = layers[i + 1].type if i + 1 < len(layers) else None
        if not _symmetric_fits(L, shape, path):
            # slayer pads odd sizes with zeros at the END (bottom/right); a netx conv pads both
            # sides equally, so only the dense form can express it
            if nxt not in ("flatten", None):
                raise fail(path, f"layer/{L.index} (pool): input {shape[1]}x{shape[2]} is not a multiple of the "
                           "pool kernel; slayer pads it at one side, which a netx conv cannot express",
                           "use input/feature sizes divisible by the pool kernel")
            new, how = pool_as_dense(L, shape, path), "flatten + block-sparse dense (end-padded)"
            skip_flatten = nxt == "flatten"
        elif C <= LAVA_CONV_GROUPS_MAX:
            new, how = [pool_as_grouped_conv(L, shape, path)], f"conv groups={C}"
        elif nxt in ("flatten", None):
            new, how = pool_as_dense(L, shape, path), "flatten + block-sparse dense"
            skip_flatten = nxt == "flatten"
        else:
            new, how = [pool_as_diagonal_conv(L, shape, path)], "conv groups=1, channel-diagonal kernel"
        report.append({"index": L.index, "from": "pool", "to": how, "channels": C})
        out.extend(new)
        shape = new[-1].shape
    renum = [NetxLayer(j, L.type, L.raw) for j, L in enumerate(out)]
    return renum, report
