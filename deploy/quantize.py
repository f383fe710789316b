"""Quantize a slayer CUBA network to Loihi fixed point and write its netx file.

``export_network(model, path, input_shape)``:

1. checks the network (one forward pass shapes the neurons; weights must fit
   the 8-bit mantissa at the neuron's ``w_scale``: an overflow is an error
   unless ``allow_clip``);
2. reports the per-layer quantization error (``quantization_report``,
   JSON-able): weights vs ``neuromaml.meta.quant.quantize_weight``, threshold
   vs ``vThMant / 64``, decays vs their 12-bit integers;
3. lets every block write its netx group (slayer's ``export_hdf5``: weights
   as the stored integers ``W``, neuron ``iDecay/vDecay/vThMant``), prepends
   an ``input`` layer holding the input shape (netx needs it for a first conv
   layer), lowers what netx cannot load (``deploy.lower``) and writes the
   file atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.deploy.lower import lower
from neuromaml.deploy.netxfile import NetxLayer, layers_from_tree, type_array, write_layers
from neuromaml.io import fail
from neuromaml.meta.quant import W_SCALE, check_weight_range, weight_to_int


def blocks_of(model: Any) -> list:
    """The slayer blocks of an ``SNN`` (``model.blocks``), a ModuleList or a list."""
    blocks = getattr(model, "blocks", model)
    try:
        return list(blocks)
    except TypeError:
        raise fail(None, f"{type(model).__name__} has no blocks to export",
                   "pass a neuromaml SNN or a list of slayer.block.cuba blocks") from None


def ensure_shaped(blocks: list, input_shape: tuple[int, ...], source: Any = None) -> None:
    """One forward pass of zeros of ``input_shape`` (C, H, W): gives every neuron its shape
    (export needs it) and proves the input shape fits the first layer and every layer the next."""
    import torch

    x = torch.zeros(1, *input_shape, 2)
    with torch.no_grad():
        for i, b in enumerate(blocks):
            try:
                x = b(x)
            except (RuntimeError, ValueError, AssertionError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise fail(source, f"input shape (C, H, W) = {tuple(input_shape)} does not fit the network: "
                           f"block {i} ({type(b).__name__}) fails on it ({msg[:160]})",
                           "pass the (C, H, W) the network was trained on (--input-shape), or the data "
                           "file it was trained on") from None


def _w_scale(block: Any) -> int:
    return int(getattr(getattr(block, "neuron", None), "w_scale", W_SCALE))


def quantization_report(model: Any) -> list[dict[str, Any]]:
    """Per-layer quantization error. Units: weights in slayer units (threshold = ``theta``)."""
    rows = []
    for i, b in enumerate(blocks_of(model)):
        syn = getattr(b, "synapse", None)
        nrn = getattr(b, "neuron", None)
        row: dict[str, Any] = {"block": i, "type": type(b).__name__}
        if syn is not None and hasattr(syn, "weight"):
            scale = _w_scale(b)
            w = syn.weight.detach().cpu().numpy().astype(np.float64)
            wq = weight_to_int(w, scale) / scale
            err = wq - w
            over = check_weight_range(w, scale)
            row.update(
                n_weights=int(w.size), w_scale=scale,
                weight_abs_max=float(np.abs(w).max()) if w.size else 0.0,
                err_max_abs=float(np.abs(err).max()) if w.size else 0.0,
                err_rms=float(np.sqrt(np.mean(err ** 2))) if w.size else 0.0,
                err_rel_rms=float(np.sqrt(np.mean(err ** 2)) / max(np.sqrt(np.mean(w ** 2)), 1e-30)) if w.size else 0.0,
                overflow_factor=over,
                clipped=int(np.sum((w * scale > 254) | (w * scale < -256))),
            )
        if nrn is not None:
            scale = _w_scale(b)
            theta = float(nrn.threshold)
            row.update(vThMant=int(theta * scale), threshold=theta,
                       threshold_err=float(int(theta * scale) / scale - theta),
                       iDecay=int(np.asarray(nrn.cx_current_decay).reshape(-1)[0]),
                       vDecay=int(np.asarray(nrn.cx_voltage_decay).reshape(-1)[0]),
                       current_decay_err=float(np.asarray(nrn.cx_current_decay).reshape(-1)[0]
                                               - float(nrn.current_decay.reshape(-1)[0])) / 4096,
                       voltage_decay_err=float(np.asarray(nrn.cx_voltage_decay).reshape(-1)[0]
                                               - float(nrn.voltage_decay.reshape(-1)[0])) / 4096)
        rows.append(row)
    return rows


def netx_layers(model: Any, input_shape: tuple[int, int, int], *, allow_clip: bool = False,
                source: Any = None) -> tuple[list[NetxLayer], list[dict], list[dict]]:
    """slayer network -> (netx layers after lowering, lowering report, quantization report)."""
    import h5py

    blocks = blocks_of(model)
    if len(input_shape) != 3:
        raise fail(source, f"input_shape {tuple(input_shape)} is not (C, H, W)", "give (C, H, W), e.g. (2, 16, 32)")
    ensure_shaped(blocks, input_shape, source)
    report = quantization_report(blocks)
    for row in report:
        if row.get("overflow_factor", 0) > 1 and not allow_clip:
            raise fail(source, f"block {row['block']} ({row['type']}): weights overflow the 8-bit mantissa after "
                       f"scaling by {row['w_scale']} (largest is {row['overflow_factor']:.2f}x the range "
                       f"[-256, 254]/{row['w_scale']}; {row['clipped']} weights would be clipped)",
                       "train with quantization (meta.quant.quantize_weight) and weight decay, "
                       "or pass allow_clip=True / --allow-clip")
    f = h5py.File(f"neuromaml-export-{id(model)}", "w", driver="core", backing_store=False)
    tree: dict[str, np.ndarray] = {}
    try:
        grp = f.create_group("layer")
        for i, b in enumerate(blocks):
            if not hasattr(b, "export_hdf5"):
                raise fail(source, f"block {i} ({type(b).__name__}) cannot export itself",
                           "use slayer.block.cuba blocks")
            try:
                b.export_hdf5(grp.create_group(f"{i}"))
            except NotImplementedError:
                raise fail(source, f"block {i} ({type(b).__name__}) has no netx export",
                           "use conv, pool, flatten and dense cuba blocks") from None

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                tree[name] = obj[()] if obj.shape == () else obj[...]
        f.visititems(visit)
    finally:
        f.close()
    layers = layers_from_tree(tree, source)
    inp = NetxLayer(-1, "input", {"type": type_array("input"), "shape": np.asarray(input_shape, dtype=np.int64)})
    layers, lowered = lower([inp] + layers, tuple(input_shape), source)
    for L in layers:
        if L.type in ("dense", "conv") and L.weight is not None and L.weight.size:
            w = L.weight
            if (w.max() > 254 or w.min() < -256) and not allow_clip:
                raise fail(source, f"layer {L.index} ({L.type}): stored weights [{w.min():g}, {w.max():g}] "
                           "overflow the 8-bit mantissa range [-256, 254]",
                           "scale the weights down or pass allow_clip=True")
    return layers, lowered, report


def export_network(model: Any, path: str | os.PathLike, input_shape: tuple[int, int, int], *,
                   allow_clip: bool = False) -> dict[str, Any]:
    """Quantize, lower and write ``path`` (netx HDF5). Returns a JSON-able summary."""
    layers, lowered, report = netx_layers(model, input_shape, allow_clip=allow_clip, source=path)
    write_layers(layers, path)
    return {"path": str(Path(path)), "layers": [L.type for L in layers], "lowered": lowered,
            "quantization": report}
