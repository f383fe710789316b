"""Quantizer, fixed-point neuron, lowering, bad input, bundle and CLI of deploy/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuromaml.deploy import fixed
from neuromaml.deploy.fixed import CubaParams, FixedPointNet, cuba_run
from neuromaml.deploy.lower import LAVA_CONV_GROUPS_MAX, lower, pool_matrix
from neuromaml.deploy.netxfile import NetxLayer, read_layers, type_array, write_layers
from neuromaml.io import NeuromamlError
from neuromaml.meta import quant

MAML = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "snn-maml" / "network_test.net"
P = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03}


def cuba():
    from lava.lib.dl import slayer

    return slayer.block.cuba


# -- quantizer ----------------------------------------------------------------
def test_quantize_weight_matches_slayer_and_is_straight_through():
    c = cuba()
    blk = c.Dense(P, 7, 3, weight_scale=6)
    w = blk.synapse.weight.detach().clone().requires_grad_(True)
    q = quant.quantize_weight(w)
    assert torch.equal(q, blk.neuron.quantize_8bit(w))
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    W = quant.weight_to_int(w)
    assert np.array_equal(W, (blk.neuron.quantize_8bit(w, descale=True)).detach().numpy().astype(np.int32))
    assert np.all(W % 2 == 0) and W.max() <= 254 and W.min() >= -256


def test_mantissa_exponent_round_trip():
    W = np.array([-256, -2, 0, 2, 254])
    m, e = quant.mantissa_exponent(W)
    assert m.dtype == np.int8 and e == 0 and np.array_equal(quant.from_mantissa_exponent(m, e), W)
    m, e = quant.mantissa_exponent(np.array([-1024, 512]))
    assert e == 2 and np.array_equal(quant.from_mantissa_exponent(m, e), [-1024, 512])
    assert quant.check_weight_range(np.array([5.0]), 64) > 1 >= quant.check_weight_range(np.array([3.9]), 64)
    assert quant.decay_to_int(0.03) == 123 and quant.quantize_threshold(1.3) == 83 / 64


# -- fixed-point CUBA neuron: golden trace worked out by hand ---------------------
def test_cuba_golden_trace():
    # iDecay 1024 (u keeps 3/4, truncated toward zero), vDecay 0, vThMant 2 (v > 128 spikes)
    # a = 3 at step 0: u = 192, 144, 108, 81, 60, 45, 33; v = 192|0, 144|0, 108, 189|0, 60, 105, 138|0
    a = np.zeros((1, 7, 1), np.int64)
    a[0, 0, 0] = 3
    s = cuba_run(a, CubaParams.from_netx(1024, 0, 2))
    assert s[0, :, 0].tolist() == [1, 1, 0, 1, 0, 0, 1]
    # negative input never spikes; the delay helper shifts by exactly one step
    assert cuba_run(-a, CubaParams.from_netx(1024, 0, 2)).sum() == 0
    assert fixed.delay(np.arange(4).reshape(1, 4))[0].tolist() == [0, 0, 1, 2]
    # reset protocol: zero after step index 0 kills the carried current
    assert cuba_run(a, CubaParams.from_netx(1024, 0, 2), fixed.reset_steps(7, 7, 0))[0, :, 0].tolist() == [1] + [0] * 6


# -- the 128-channel pool bug ---------------------------------------------------
def test_lava_conv_groups_is_int8_cause_of_128_channel_zeros():
    from lava.proc.conv.models import PyConvModelFixed

    assert PyConvModelFixed.groups.d_type == np.int8
    v = np.zeros(1, np.int8)
    v[:] = np.array([128]).astype(np.int64).astype(np.int8)
    assert v[0] == -128 and list(range(v[0])) == []          # conv_scipy loops over range(groups)
    assert LAVA_CONV_GROUPS_MAX == 127


def _conv_layer(groups, ch=128):
    raw = {"type": type_array("conv"), "shape": np.array([ch, 2, 2]), "weight": np.ones((ch, ch // groups, 1, 1)),
           "stride": np.array([1, 1]), "padding": np.array([0, 0]), "dilation": np.array([1, 1]),
           "groups": np.array(groups), "neuron/type": np.array(b"CUBA", dtype=object),
           "neuron/iDecay": np.array(0), "neuron/vDecay": np.array(0), "neuron/vThMant": np.array(1)}
    return [NetxLayer(0, "input", {"type": type_array("input"), "shape": np.array([ch, 2, 2])}),
            NetxLayer(1, "conv", raw)]


def test_fixed_engine_refuses_128_groups_but_takes_127(tmp_path):
    write_layers(_conv_layer(128), tmp_path / "g128.net")
    with pytest.raises(NeuromamlError, match="int8"):
        FixedPointNet.from_netx(tmp_path / "g128.net")
    write_layers(_conv_layer(127, 127), tmp_path / "g127.net")
    assert len(FixedPointNet.from_netx(tmp_path / "g127.net")) == 1


def test_pool_matrix_sums_windows():
    k = np.array([[1.0, 2.0], [3.0, 4.0]])
    M = pool_matrix(k, (1, 2, 4), (1, 1, 2), (2, 2), (0, 0), (1, 1))
    assert M.tolist() == [[1, 2, 0, 0, 3, 4, 0, 0], [0, 0, 1, 2, 0, 0, 3, 4]]


# -- bad input ------------------------------------------------------------------
def test_truncated_and_non_hdf5_files(tmp_path):
    bad = tmp_path / "trunc.net"
    bad.write_bytes(MAML.read_bytes()[:5000])
    with pytest.raises(NeuromamlError, match="trunc.net"):
        read_layers(bad)
    txt = tmp_path / "x.net"
    txt.write_text("not hdf5")
    with pytest.raises(NeuromamlError, match="not a readable HDF5"):
        FixedPointNet.from_netx(txt)
    with pytest.raises(NeuromamlError, match="not found"):
        read_layers(tmp_path / "missing.net")


def test_unlowerable_layer_is_a_clear_error():
    layers = [NetxLayer(0, "input", {"type": type_array("input"), "shape": np.array([2, 4, 4])}),
              NetxLayer(1, "average", {"type": type_array("average"), "shape": np.array([2, 2, 2])})]
    with pytest.raises(NeuromamlError, match="average.*nothing lowers"):
        lower(layers, (2, 4, 4), "net")


def test_weight_overflow_is_an_error_unless_clipping(tmp_path):
    from neuromaml.deploy.quantize import export_network

    c = cuba()
    blocks = torch.nn.ModuleList([c.Flatten(), c.Dense(P, 8, 3)])
    with torch.no_grad():
        blocks[1].synapse.weight.fill_(0.5)
        blocks[1].synapse.weight[0, 0] = 9.0      # 9 * 64 = 576 > 254
    with pytest.raises(NeuromamlError, match="overflow the 8-bit mantissa"):
        export_network(blocks, tmp_path / "n.net", (2, 2, 2))
    assert not (tmp_path / "n.net").exists()
    s = export_network(blocks, tmp_path / "n.net", (2, 2, 2), allow_clip=True)
    assert s["quantization"][1]["clipped"] == 1


def test_export_refuses_an_input_shape_the_network_cannot_take(tmp_path):
    from neuromaml.deploy.quantize import export_network

    c = cuba()
    dense = torch.nn.ModuleList([c.Flatten(), c.Dense(P, 8, 3)])
    export_network(dense, tmp_path / "ok.net", (2, 2, 2))          # 8 inputs: fits, and shapes it
    with pytest.raises(NeuromamlError, match=r"\(C, H, W\) = \(2, 4, 2\) does not fit.*block 1 \(Dense\)"):
        export_network(dense, tmp_path / "a.net", (2, 4, 2))       # 16 inputs into a layer of 8
    conv = torch.nn.ModuleList([c.Conv(P, 2, 4, 3, padding=1), c.Flatten(), c.Dense(P, 4 * 4 * 4, 3)])
    with pytest.raises(NeuromamlError, match=r"does not fit the network.*--input-shape"):
        export_network(conv, tmp_path / "b.net", (3, 4, 4))        # 3 channels into a conv of 2
    assert not (tmp_path / "a.net").exists() and not (tmp_path / "b.net").exists()


def test_inspect_flags_what_netx_cannot_build(tmp_path):
    from neuromaml.deploy.netxfile import describe

    layers = read_layers(MAML)
    rows = describe(layers)
    assert all(r["deployable"] for r in rows)
    assert all(set(r["netx_weights"]) == {"num_weight_bits", "weight_exp"} for r in rows if r["type"] == "dense")
    zero = layers[-1]
    zero.raw["weight"] = np.zeros_like(zero.raw["weight"])
    assert "all weights are zero" in " ".join(describe(layers)[-1]["notes"]) and describe(layers)[-1]["deployable"]
    big = _conv_layer(2, 2)
    big[-1].raw["weight"] = np.ones((2, 1, 129, 3))
    assert any("kernel [129, 3] overflows" in p for p in describe(big)[-1]["problems"])


def test_input_shape_mismatch(tmp_path):
    write_layers(_conv_layer(127, 127), tmp_path / "g.net")
    net = FixedPointNet.from_netx(tmp_path / "g.net")
    with pytest.raises(NeuromamlError, match="input shape"):
        net.run(np.zeros((1, 3, 2, 2, 5)))


# -- bundle + CLI ---------------------------------------------------------------
def test_cli_export_inspect_verify_and_checksums(tmp_path, capsys):
    import nir

    from neuromaml.cli import main

    out = tmp_path / "bundle"
    assert main(["export", "--model", "small", "--out", str(out), "--steps", "12"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["input"]["shape_xyf"] == [32, 16, 2] and man["input"]["order"] == "xyf"
    assert set(man["files"]) == {"network.net", "network.nir"} and man["adapt"]["engine_layer"] == 1
    assert len(nir.read(out / "network.nir").nodes) == 7       # input, flatten, 2 x (syn, lif), output
    assert main(["inspect", str(out)]) == 0
    assert main(["verify", str(out), "--samples", "2", "--no-lava", "--all-layers"]) == 0
    vj = json.loads((out / "verify.json").read_text())
    assert vj["ok"] is True and vj["slayer_vs_fixed"]["equal"]       # re-built from the manifest's seed
    assert main(["export", "--model", "small", "--out", str(out)]) == 2          # exists
    data = bytearray((out / "network.net").read_bytes())
    data[-10] ^= 0xFF
    (out / "network.net").write_bytes(bytes(data))
    assert main(["verify", str(out), "--no-lava"]) == 2
    assert "sha256" in capsys.readouterr().err


def test_failed_export_leaves_no_bundle(tmp_path, monkeypatch):
    from neuromaml.deploy import bundle, nir_export
    from neuromaml.meta.models import ModelConfig, build_model

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(nir_export, "write_nir", boom)
    with pytest.raises(RuntimeError):
        bundle.export_bundle(build_model(ModelConfig(name="small", zero_head=False)), tmp_path / "b", input_shape=(2, 16, 32),
                             time_steps=10)
    assert list(tmp_path.iterdir()) == []


def _foreign_run(tmp_path, n_way: int, **extra):
    """Another tool's run folder: config.json (a model section, ``extra`` keys) and theta.pt."""
    from neuromaml.meta.models import ModelConfig, build_model

    run = tmp_path / "run"
    run.mkdir()
    m = build_model(ModelConfig(name="small", n_way=n_way, hidden=[16], zero_head=False), seed=3)
    (run / "config.json").write_text(json.dumps({"model": {"name": "small", "n_way": n_way, "hidden": [16]},
                                                 **extra}))
    torch.save({"theta": m.state_dict()}, run / "theta.pt")
    return run, m


def test_export_from_run_dir(tmp_path):
    from neuromaml.cli import main

    run, m = _foreign_run(tmp_path, 3)
    assert main(["export", str(run), "--out", str(tmp_path / "b")]) == 0
    net = FixedPointNet.from_netx(tmp_path / "b" / "network.net")
    L = net.layers[-1]
    effective = L.weight * 2.0 ** L.weight_exp             # what Lava adds per input spike
    want = quant.weight_to_int(m.blocks[-1].synapse.weight).reshape(3, 16)
    assert np.array_equal(effective, want)


@pytest.mark.parametrize("classes, ok", [([0, 1, 2], True), (["a", "b"], False), ("abc", False), ([1.5, 2, 3], False),
                                         (["a", "a", "b"], False), ([1, "1", 2], False), (["a", " ", "b"], False)])
def test_export_from_run_dir_checks_its_classes(tmp_path, capsys, classes, ok):
    """A foreign run's 'classes' become one name per output neuron, or the export names the field
    (a bundle written with them was refused by every reader, and re-exporting wrote it again)."""
    from neuromaml.cli import main
    from neuromaml.deploy.bundle import load_bundle

    run, _ = _foreign_run(tmp_path, 3, classes=classes)
    rc = main(["export", str(run), "--out", str(tmp_path / "b")])
    if ok:
        assert rc == 0 and load_bundle(tmp_path / "b")[0]["output"]["classes"] == ["0", "1", "2"]
    else:
        err = capsys.readouterr().err
        assert rc == 2 and "config.json" in err and "'classes'" in err and not (tmp_path / "b").exists()


def test_emulate_of_a_foreign_runs_bundle_skips_the_slayer_columns(tmp_path, capsys, tiny_metadataset):
    """A bundle exported from another tool's run (config.json + theta.pt) emulates: the slayer columns,
    which replay meta-train's inner loop, are skipped with a note (it failed after every episode,
    advising meta-train's --resume)."""
    from neuromaml.cli import main

    run, _ = _foreign_run(tmp_path, 5)
    assert main(["export", str(run), "--out", str(tmp_path / "b")]) == 0
    assert main(["emulate", str(tmp_path / "b"), "--data", str(tiny_metadataset), "--tasks", "1", "--queries", "1",
                 "--out", str(tmp_path / "e")]) == 0
    assert "is not a neuromaml meta-train run" in capsys.readouterr().out
    em = json.loads((tmp_path / "e" / "emulate.json").read_text())
    assert em["slayer"]["float"] is None and "not a neuromaml meta-train run" in em["slayer"]["note"]


def test_inspect_flags_pool(tmp_path, capsys):
    from neuromaml.cli import main
    from neuromaml.meta.models import ModelConfig, build_model

    build_model(ModelConfig(name="paper_cnn")).export_hdf5(tmp_path / "raw.net")
    assert main(["inspect", str(tmp_path / "raw.net")]) == 1
    assert "lowers it" in capsys.readouterr().out


def test_verify_reports_first_mismatch(tmp_path, monkeypatch):
    from neuromaml.cli import main
    from neuromaml.deploy import lava_run
    from neuromaml.deploy.quantize import export_network
    from neuromaml.deploy.verify import verify_netx
    from neuromaml.meta.models import ModelConfig, build_model

    m = build_model(ModelConfig(name="small", hidden=[32], weight_scale=3.0, zero_head=False), seed=0)
    export_network(m, tmp_path / "n.net", (2, 16, 32))
    ok = verify_netx(tmp_path / "n.net", samples=2, steps=15, all_layers=True, model=m, lava=False, rate=0.3)
    assert ok["ok"] and ok["slayer_vs_fixed"]["layers"][0]["spikes_fixed"] > 0
    with torch.no_grad():                      # the network drifts from its export
        m.blocks[1].synapse.weight.mul_(-1)
    bad = verify_netx(tmp_path / "n.net", samples=2, steps=15, all_layers=True, model=m, lava=False, rate=0.3)
    first = bad["slayer_vs_fixed"]["first_mismatch"]
    assert not bad["ok"] and first["layer"] == 0 and first["step"] >= 1 and len(first["neuron"]) == 1

    def fake(path, xs, record="output", biased=False):       # a Lava that flips one spike
        net = FixedPointNet.from_netx(path)
        outs = net.run(xs, return_all=True)
        outs = outs if record == "all" else outs[-1:]
        outs[-1][1, 3, 2] ^= 1
        return {"spikes": outs, "layers": [], "seconds": 0.0}
    monkeypatch.setattr(lava_run, "run_lava_samples", fake)
    assert main(["verify", str(tmp_path / "n.net"), "--samples", "2", "--steps", "6",
                 "--json", str(tmp_path / "v.json")]) == 1
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["lava_vs_fixed"]["first_mismatch"]["sample"] == 1
    assert rep["lava_vs_fixed"]["first_mismatch"]["step"] == 3
    assert rep["lava_vs_fixed"]["first_mismatch"]["neuron"] == [2]


def test_run_until_and_resume_equal_full_run(tmp_path):
    from neuromaml.deploy.quantize import export_network
    from neuromaml.meta.models import ModelConfig, build_model

    m = build_model(ModelConfig(name="small", hidden=[32, 16], weight_scale=3.0, zero_head=False), seed=0)
    export_network(m, tmp_path / "n.net", (2, 16, 32))
    net = FixedPointNet.from_netx(tmp_path / "n.net")
    x = (np.random.default_rng(1).random((3, 20, 32, 16, 2)) < 0.3).astype(np.int8)
    full = net.run(x, return_all=True)
    pre = net.run_until(x, 2)
    assert np.array_equal(pre, full[1])
    assert np.array_equal(net.run(pre, start=2), full[2])
    assert np.array_equal(net.layers[2].effective_weight, quant.weight_to_int(m.blocks[3].synapse.weight).reshape(5, 16))


@pytest.mark.lava
def test_cli_verify_on_lava(tmp_path):
    from neuromaml.cli import main

    out = tmp_path / "b"
    assert main(["export", "--model", "small", "--out", str(out), "--steps", "10"]) == 0
    assert main(["verify", str(out), "--samples", "2", "--all-layers", "--rate", "0.4"]) == 0
    rep = json.loads((out / "verify.json").read_text())
    assert rep["ok"] and rep["lava_vs_fixed"]["equal"] and rep["lava_seconds"] > 0
    assert rep["slayer_vs_fixed"]["equal"]


@pytest.mark.lava
def test_lava_grouped_conv_with_128_groups_is_silent(tmp_path):
    """The FIELD-NOTES symptom, reproduced: same layer, 127 groups spike, 128 groups give zeros."""
    from neuromaml.deploy.lava_run import run_lava

    spikes = {}
    for g in (127, 128):
        write_layers(_conv_layer(g, g), tmp_path / f"g{g}.net")
        spikes[g] = int(run_lava(tmp_path / f"g{g}.net", np.ones((4, 2, 2, g), np.int8))["spikes"][0].sum())
    assert spikes[127] > 0 and spikes[128] == 0


@pytest.mark.lava
def test_zero_final_layer_loads_in_lava_and_verifies(tmp_path):
    """A meta-trained theta0* may keep its final layer at zero; plain netx (lava-dl 0.6) cannot
    build an all-zero dense layer, neuromaml's Lava runs can, and Lava still equals the engine."""
    from neuromaml.deploy.bundle import export_bundle
    from neuromaml.deploy.verify import verify_netx
    from neuromaml.meta.models import ModelConfig, build_model

    m = build_model(ModelConfig(name="small", hidden=[16], weight_scale=3.0, zero_head=True, time_steps=12,
                                burn_in=4), seed=0)
    m(torch.zeros(1, 2, 16, 32, 12))
    export_bundle(m, tmp_path / "b", input_shape=(2, 16, 32), time_steps=12)
    rep = verify_netx(tmp_path / "b" / "network.net", samples=2, steps=12, all_layers=True, model=m)
    assert rep["ok"] and any(r["spikes_lava"] > 0 for r in rep["lava_vs_fixed"]["layers"][:-1])   # hidden spikes
    assert rep["output_spikes"] == 0                                               # zero head: silent


def test_a_bundle_written_meanwhile_is_kept(tmp_path):
    """Two exports to one --out: without --overwrite the later one fails and the first one's
    bundle is kept (no silent replacement), with no temporary folder left."""
    from neuromaml.deploy.bundle import atomic_dir
    from neuromaml.io import NeuromamlError

    out = tmp_path / "b"
    with pytest.raises(NeuromamlError, match="appeared while this command was writing"):
        with atomic_dir(out) as tmp:
            (tmp / "mine").write_text("mine")
            out.mkdir()
            (out / "theirs").write_text("theirs")       # the other export finishes first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"] and (out / "theirs").exists()


def test_manifest_typed_roundtrip(tmp_path):
    """deploy.manifest.Manifest: typed sections, and to_dict(from_dict(d)) == d for exported,
    calibrated-looking and foreign manifests (unknown keys kept), so the digest is unchanged."""
    from neuromaml.cli import main
    from neuromaml.deploy.bundle import load_bundle, manifest_digest
    from neuromaml.deploy.manifest import Manifest

    assert main(["export", "--model", "small", "--out", str(tmp_path / "b"), "--steps", "12"]) == 0
    d, _ = load_bundle(tmp_path / "b")
    m = Manifest.from_dict(d)
    assert m.to_dict() == d and manifest_digest(m.to_dict()) == manifest_digest(d)
    assert m.time_steps == 12 and m.input.shape_chw == [2, 16, 32] and m.adapt.weight_exp == 0
    assert "weight_exp" not in m.to_dict()["adapt"]              # absent stays absent
    m.adapt.weight_exp, m.adapt.calibration = -3, {"split": "val", "val_accuracy": 0.5}
    out = m.to_dict()
    assert out["adapt"]["weight_exp"] == -3 and out["adapt"]["calibration"]["val_accuracy"] == 0.5
    odd = {**d, "from_the_future": [1, 2], "adapt": {**d["adapt"], "new_field": True}}
    assert Manifest.from_dict(odd).to_dict() == odd



def test_a_version_1_manifest_without_digest_still_loads_and_is_upgraded_when_rewritten(tmp_path):
    """Format version 2 requires manifest_sha256 (deleting it with an edit no longer turns the
    check off); a version-1 bundle, which could lack it, still loads, and write_manifest
    (calibrate's rewrite) makes it a version-2 manifest with the digest."""
    import json

    from neuromaml.deploy import bundle
    from neuromaml.deploy.bundle import FORMAT_VERSION, MANIFEST_DIGEST, load_bundle, write_manifest
    from neuromaml.io import NeuromamlError
    from neuromaml.meta.models import ModelConfig, build_model

    b = tmp_path / "b"
    bundle.export_bundle(build_model(ModelConfig(name="small", hidden=[8]), seed=0), b, input_shape=(2, 16, 32),
                         time_steps=100)
    man = json.loads((b / "manifest.json").read_text())
    assert FORMAT_VERSION == 2 and man["format_version"] == 2 and MANIFEST_DIGEST in man
    old = {k: v for k, v in man.items() if k != MANIFEST_DIGEST}
    (b / "manifest.json").write_text(json.dumps({**old, "format_version": 2}))
    with pytest.raises(NeuromamlError, match="manifest_sha256' is missing"):
        load_bundle(b)
    (b / "manifest.json").write_text(json.dumps({**old, "format_version": 1}))
    assert load_bundle(b)[0]["format_version"] == 1                      # an older bundle: accepted
    write_manifest(b, {**old, "format_version": 1})
    again = json.loads((b / "manifest.json").read_text())
    assert again["format_version"] == 2 and MANIFEST_DIGEST in again and load_bundle(b)[0] == again
