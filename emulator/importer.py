"""`neuromaml import`: wrap any lava-dl netx file into a bundle so it can be emulated.

The file is read as netx builds it (``deploy.netxfile.read_layers``), checked
against what the emulator needs (netx-loadable layers, a final dense layer with
``--classes`` outputs that becomes the plastic layer, an input of
``--input-shape``, a readout window after the pipeline depth), and written as a
bundle with the same manifest as ``neuromaml export`` (``deploy.bundle.write_bundle``),
with the default on-chip rule. The network file itself is copied unchanged, except that
a conv-first file without an input layer (as lava-dl writes one; netx takes the shape from
``Network(input_shape=...)``) gets the input layer ``neuromaml export`` writes, of
``--input-shape``: every reader of the bundle then knows the conv's input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from neuromaml.io import fail, write_json


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise fail(None, f"--input-shape {text!r} is not C,H,W", "e.g. --input-shape 2,16,32")
    return shape  # type: ignore[return-value]


def import_netx(netfile, out, *, input_shape, classes: int, time_steps: int = 100, burn_in: int | None = None,
                overwrite: bool = False) -> dict:
    """Write a bundle for ``netfile``; returns the manifest."""
    from neuromaml.deploy.bundle import write_bundle
    from neuromaml.deploy.fixed import FixedPointNet
    from neuromaml.deploy.netxfile import read_layers

    netfile = Path(netfile)
    layers = _with_input_layer(read_layers(netfile), input_shape)   # checked by the file's layer indices
    net = FixedPointNet.from_layers(layers, netfile)       # refuses what netx cannot load
    if any(L.kind == "input" for L in net.layers):
        raise fail(netfile, "starts with an input neuron layer driven by its bias (it ignores event input), "
                   "which the one-shot episodes cannot feed", "import a network whose first layer is conv or "
                   "dense; check it with `neuromaml verify FILE.net --input-bias BIAS.npy`")
    if int(classes) < 2:
        raise fail(None, f"--classes {classes}: a one-shot task needs at least 2 classes",
                   "pass the number of output neurons (>= 2)")
    C, H, W = (int(v) for v in input_shape)
    last = net.layers[-1]
    if last.kind != "dense":
        raise fail(netfile, f"the last layer is {last.kind}, not dense", "only a final dense layer adapts on chip")
    if int(last.shape[0]) != int(classes):
        raise fail(netfile, f"the last layer has {last.shape[0]} neurons, --classes is {classes}",
                   f"pass --classes {last.shape[0]}")
    from neuromaml.emulator.deployed import PLASTIC_FIX, plastic_layer_problem

    problem = plastic_layer_problem(netfile, last)     # what DeployedNet.load would refuse later
    if problem:
        raise fail(netfile, f"{problem[0]}: the final layer cannot adapt on chip as it is",
                   PLASTIC_FIX[problem[1]] + " in the network file, then import it again")
    n_in = int(np.prod(net.input_shape))
    if n_in != C * H * W or (len(net.input_shape) == 3 and tuple(net.input_shape) != (W, H, C)):
        raise fail(netfile, f"the first layer takes {tuple(net.input_shape)} (x, y, f) inputs, --input-shape "
                   f"{C},{H},{W} (C,H,W) gives {(W, H, C)}", "pass the C,H,W the network was trained on")
    if len(net.input_shape) != 3:
        import sys

        print(f"note: {netfile}: its first layer is dense over {n_in} flat inputs, so only the product of "
              f"--input-shape {C},{H},{W} could be checked, not C, H and W themselves: if emulate's accuracy is "
              "at chance, check the order the network was trained on", file=sys.stderr)
    depth = len(net.layers)
    if burn_in is None:
        burn_in = depth
    if time_steps <= depth:
        raise fail(None, f"--time-steps {time_steps} leaves no readout window after this {depth}-layer network's "
                   f"pipeline depth", f"pass --time-steps {depth + 1} or more (the data's T, e.g. 100)")
    if not depth <= burn_in < time_steps:
        raise fail(None, f"--burn-in {burn_in} must be in [{depth}, {time_steps}) for this {depth}-layer network",
                   f"pass --burn-in between {depth} and {time_steps - 1}")
    import dataclasses

    layers = [dataclasses.replace(L, index=i) for i, L in enumerate(layers)]   # as the bundle's file numbers them
    return write_bundle(layers, out, input_shape=(C, H, W), time_steps=time_steps, burn_in=burn_in,
                        classes=[str(i) for i in range(int(classes))], source_run=None,
                        overwrite=overwrite, extra={"imported_from": str(netfile.resolve())})


def _with_input_layer(layers: list, input_shape) -> list:
    """``layers``, with an input layer of ``input_shape`` (C, H, W) first when the file has none
    and starts with a conv layer (whose input shape the file does not hold)."""
    from neuromaml.deploy.netxfile import NetxLayer, type_array

    first = next((L for L in layers if L.type != "flatten"), None)
    if first is None or first.type != "conv" or any(L.type == "input" for L in layers):
        return layers
    # index -1 until the bundle's file is written: messages name the layers as the user's file does
    return [NetxLayer(-1, "input", {"type": type_array("input"),
                                    "shape": np.asarray([int(v) for v in input_shape], dtype=np.int64)})] + layers


def import_cli(args) -> int:
    man = import_netx(args.netfile, args.out, input_shape=parse_shape(args.input_shape), classes=args.classes,
                      time_steps=args.time_steps, burn_in=args.burn_in, overwrite=args.overwrite)
    print(f"wrote bundle {args.out}: {[r['type'] for r in man['layers']]}, adapting layer "
          f"{man['adapt']['layer']} with the default rule")
    write_json(args.json or Path(args.out) / "import.json", {"bundle": str(args.out), "manifest": man})
    return 0
