"""Read, write and inspect netx HDF5 network files (``network.net``).

A netx file (lava-dl's exchange format) holds ``/layer/<i>/`` groups with
``type`` (``input | dense | conv | pool | flatten | ...``), ``shape`` (neuron
shape, slayer order ``(C, H, W)`` or ``(N,)``), ``weight`` (integers stored
as floats: conv ``(out, in, kh, kw[, 1])``, dense ``(out, in)``), conv
``stride/padding/dilation/groups``, optional ``bias`` and ``neuron/``
(``type``, ``iDecay``, ``vDecay``, ``vThMant``, ...).

Two views of one file:

* the lossless *tree*: ``{"layer/0/weight": np.ndarray, ...}`` with each
  dataset's dtype and shape kept (``read_tree`` / ``write_tree``) - reading
  and re-writing a file gives identical datasets;
* ``NetxLayer`` objects for computation (``read_layers`` / ``layers_to_tree``).
"""
from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuromaml.io import atomic_write_bytes, fail

LOADABLE = ("input", "dense", "conv", "flatten")          # what netx.hdf5.Network builds
LOWERABLE = ("pool",)                                      # what deploy.lower rewrites
KNOWN = LOADABLE + LOWERABLE + ("average", "convT", "unpool", "concat", "dense_rec", "dense_comp")
NEURON_TYPES = ("CUBA", "LOIHI")


@dataclasses.dataclass
class NetxLayer:
    """One ``/layer/<i>`` group. ``raw`` maps dataset paths (relative) to arrays."""

    index: int
    type: str
    raw: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """Neuron shape as stored: ``(C, H, W)`` or ``(N,)``."""
        return tuple(int(v) for v in np.atleast_1d(self.raw["shape"])) if "shape" in self.raw else ()

    @property
    def shape_xyf(self) -> tuple[int, ...]:
        """Neuron shape in netx/Lava order ``(x, y, f) = (W, H, C)``."""
        return self.shape[::-1]

    @property
    def weight(self) -> np.ndarray | None:
        return None if "weight" not in self.raw else np.asarray(self.raw["weight"])

    @property
    def bias(self) -> np.ndarray | None:
        return None if "bias" not in self.raw else np.asarray(self.raw["bias"])

    @property
    def neuron(self) -> dict[str, Any] | None:
        out = {k.split("/", 1)[1]: _scalar(v) for k, v in self.raw.items() if k.startswith("neuron/")}
        return out or None

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


def _scalar(v: np.ndarray) -> Any:
    a = np.asarray(v)
    if a.dtype.kind in "SO":
        x = a.reshape(-1)[0] if a.ndim else a[()]
        return x.decode("ascii") if isinstance(x, bytes) else str(x)
    return a[()] if a.ndim == 0 else a


def _decode_type(v: np.ndarray) -> str:
    return str(_scalar(v))


def read_tree(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All datasets of an HDF5 file as ``{path: array}`` (dtype and shape kept)."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise fail(path, "file not found", "give the path of a netx .net file or a bundle directory")
    if not path.is_file():
        raise fail(path, "not a file", "give the path of a netx .net file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise fail(path, f"not a readable HDF5 file ({exc.__class__.__name__}: {str(exc).split(';')[0]})",
                   "re-export the network (the file is truncated or not HDF5)") from None
    tree: dict[str, np.ndarray] = {}
    try:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                tree[name] = obj[()] if obj.shape == () else obj[...]
                if obj.dtype.kind == "O":
                    tree[name] = np.asarray(tree[name], dtype=object)
        f.visititems(visit)
    except (OSError, RuntimeError, KeyError) as exc:
        raise fail(path, f"HDF5 file is damaged ({exc})", "re-export the network") from None
    finally:
        f.close()
    return tree


def write_tree(tree: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``{path: array}`` as an HDF5 file, atomically. Inverse of ``read_tree``."""
    import h5py

    path = Path(path)
    buf = io.BytesIO()       # built in memory: HDF5 on a full disk crashes the process (nir_export.write_nir)
    with h5py.File(buf, "w") as f:
        for name in sorted(tree):
            v = tree[name]
            a = np.asarray(v) if not isinstance(v, np.ndarray) else v
            if a.dtype.kind == "O" or a.dtype.kind == "U":
                a = np.asarray(a, dtype=object)
                f.create_dataset(name, data=a, dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=a)
    atomic_write_bytes(path, buf.getvalue())
    return path


def layers_from_tree(tree: dict[str, np.ndarray], path: Any = None) -> list[NetxLayer]:
    groups: dict[int, dict[str, np.ndarray]] = {}
    for name, v in tree.items():
        parts = name.split("/", 2)
        if len(parts) < 3 or parts[0] != "layer":
            continue
        if not parts[1].isdigit():
            raise fail(path, f"dataset {name!r}: layer group name is not an integer", "re-export the network")
        groups.setdefault(int(parts[1]), {})[parts[2]] = v
    if not groups:
        raise fail(path, "no /layer/<i> groups: not a netx network file", "export the network with neuromaml export")
    idx = sorted(groups)
    if idx != list(range(len(idx))):
        raise fail(path, f"layer groups are not numbered 0..{len(idx) - 1} (found {idx})", "re-export the network")
    layers = []
    for i in idx:
        g = groups[i]
        if "type" not in g:
            raise fail(path, f"layer/{i}/type missing", "re-export the network")
        layers.append(NetxLayer(i, _decode_type(g["type"]), g))
    for L in layers:
        _check_layer(L, path)
    return layers


# Loihi's neuron registers (12-bit decays, 17-bit threshold mantissa)
_REGISTERS = {"iDecay": 4096, "vDecay": 4096, "vThMant": 2 ** 17}


def _check_layer(L: NetxLayer, path: Any) -> None:
    """Structural damage is an error here, before any engine meets it: non-numeric or complex
    weights, a dense weight that is not (neurons, inputs), a computing layer without neuron
    registers, registers that are not whole numbers in Loihi's ranges."""
    where = f"layer/{L.index}"
    w = L.weight
    if w is not None:
        if w.dtype.kind not in "iuf":
            raise fail(path, f"{where}/weight has dtype {w.dtype}, not real numbers", "re-export the network")
        if w.dtype.kind == "f" and not np.isfinite(w).all():
            raise fail(path, f"{where}/weight holds NaN or inf", "re-export the network from finite weights")
    if L.type in ("dense", "conv"):
        if w is None:
            raise fail(path, f"{where} ({L.type}) has no weight dataset", "re-export the network")
        n = int(np.prod(L.shape)) if L.shape else None
        single = w.ndim == 1 and n == 1              # netx stores one neuron's weights as a vector
        if L.type == "dense" and not single and (w.ndim != 2 or (n is not None and w.shape[0] != n)):
            raise fail(path, f"{where}/weight has shape {w.shape} for a dense layer of shape {L.shape}: the file is "
                       "inconsistent", "re-export the network")
        if "neuron/vThMant" not in L.raw:
            raise fail(path, f"{where} ({L.type}) has no neuron registers (neuron/vThMant ...)", "re-export the network")
    for key, hi in _REGISTERS.items():
        if f"neuron/{key}" not in L.raw:
            continue
        v = np.asarray(L.raw[f"neuron/{key}"])
        if v.dtype.kind not in "iuf" or not np.isfinite(v).all() or (v != np.round(v)).any() \
                or v.min() < 0 or v.max() > hi:
            raise fail(path, f"{where}/neuron/{key} is {v.tolist() if v.size < 5 else v.dtype}, not a whole number "
                       f"in [0, {hi}]", "re-export the network")


def read_layers(path: str | os.PathLike) -> list[NetxLayer]:
    """Parse a netx file into ``NetxLayer`` objects (clear errors on bad files)."""
    return layers_from_tree(read_tree(path), path)


def layers_to_tree(layers: list[NetxLayer], extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Renumber ``layers`` 0..n-1 and build the tree ``write_tree`` writes."""
    tree = dict(extra or {})
    for i, layer in enumerate(layers):
        for k, v in layer.raw.items():
            tree[f"layer/{i}/{k}"] = v
    return tree


def write_layers(layers: list[NetxLayer], path: str | os.PathLike, extra: dict | None = None) -> Path:
    return write_tree(layers_to_tree(layers, extra), path)


def type_array(name: str) -> np.ndarray:
    """``type`` dataset as slayer writes it: ``S10`` array of shape (1,)."""
    return np.array([name.encode("ascii")], dtype="S10")


def neuron_raw(device_params: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in device_params.items():
        if isinstance(v, str):
            out[f"neuron/{k}"] = np.array(v.encode("ascii"), dtype=object)
        else:
            out[f"neuron/{k}"] = np.asarray(v)
    return out


def describe(layers: list[NetxLayer]) -> list[dict[str, Any]]:
    """One JSON-able row per layer: what netx builds, and what blocks deployment."""
    rows = []
    for layer in layers:
        row: dict[str, Any] = {"index": layer.index, "type": layer.type, "shape_xyf": list(layer.shape_xyf)}
        nrn = layer.neuron
        if layer.type == "conv":
            w = layer.weight
            row.update(kernel=list(w.shape[2:4]) if w is not None else None,
                       stride=np.atleast_1d(layer.get("stride", 1)).tolist(),
                       padding=np.atleast_1d(layer.get("padding", 0)).tolist(),
                       groups=int(np.asarray(layer.get("groups", 1))))
        if layer.weight is not None:
            w = layer.weight
            row["weight_range"] = [float(w.min()), float(w.max())] if w.size else [0.0, 0.0]
        if nrn:
            row["neuron"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in nrn.items()
                             if k in ("type", "iDecay", "vDecay", "vThMant")}
        problems = []
        if layer.type not in KNOWN:
            problems.append(f"unknown layer type {layer.type!r}")
        elif layer.type in LOWERABLE:
            problems.append("netx cannot load it; `neuromaml export` lowers it (deploy.lower)")
        elif layer.type not in LOADABLE:
            problems.append("netx cannot load it and nothing lowers it")
        if nrn and str(nrn.get("type")) not in NEURON_TYPES:
            problems.append(f"neuron type {nrn.get('type')!r} is not CUBA/LOIHI (not supported by deploy.fixed)")
        delay = layer.get("delay")
        if delay is not None and np.any(np.asarray(delay) != 0):
            problems.append("synaptic delays (delay): not modelled by the fixed-point engine or the plastic layer")
        if layer.type == "conv" and int(np.asarray(layer.get("groups", 1))) > 127:
            problems.append("groups > 127 overflow Lava's int8 conv 'groups' variable (all zeros/crash)")
        if layer.type == "conv":
            for key in ("kernel", "stride", "padding"):
                if row[key] is not None and max(np.abs(row[key]), default=0) > 127:
                    problems.append(f"{key} {row[key]} overflows Lava's int8 conv parameters (at most 127)")
        if layer.weight is not None and layer.weight.size and layer.type in ("dense", "conv"):
            w = layer.weight
            if w.max() > 254 or w.min() < -256:
                problems.append(f"weights [{w.min():g}, {w.max():g}] overflow the 8-bit mantissa range [-256, 254]")
            elif layer.type == "dense":
                from neuromaml.deploy.fixed import netx_weight_bits

                _, nbits, wexp = netx_weight_bits(w)
                row["netx_weights"] = {"num_weight_bits": nbits, "weight_exp": wexp}
                if not w.any():
                    row["notes"] = ["all weights are zero: plain lava-dl 0.6 netx cannot build it (its "
                                    "optimize_weight_bits divides by the largest weight); neuromaml's Lava "
                                    "runs patch that (neuromaml.lavacompat.patch_netx_zero_dense)"]
        row["deployable"] = not problems
        row["problems"] = problems
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'#':>3} {'type':8} {'shape (x,y,f)':16} {'details':44} status"]
    for r in rows:
        det = []
        if "kernel" in r:
            det.append(f"k={r['kernel']} s={r['stride']} p={r['padding']} g={r['groups']}")
        if "netx_weights" in r:
            det.append(f"bits={r['netx_weights']['num_weight_bits']} exp={r['netx_weights']['weight_exp']}")
        if "neuron" in r:
            n = r["neuron"]
            det.append(f"iD={n.get('iDecay')} vD={n.get('vDecay')} th={n.get('vThMant')}")
        status = ("ok" if r["deployable"] else "; ".join(r["problems"])) + "".join(
            f" (note: {n})" for n in r.get("notes", []))
        lines.append(f"{r['index']:>3} {r['type']:8} {str(tuple(r['shape_xyf'])):16} {' '.join(det):44} {status}")
    return "\n".join(lines)
