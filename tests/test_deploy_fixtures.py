"""Third-party netx files: lava-dl's tinynet ground truth and the authors' meta-trained MLP."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuromaml.deploy.fixed import FixedPointNet
from neuromaml.deploy.netxfile import read_layers, read_tree, write_layers, write_tree

FIX = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
TINY = FIX / "lava-dl-netx" / "tinynet"
MAML = FIX / "snn-maml" / "network_test.net"

pytestmark = pytest.mark.skipif(not TINY.exists(), reason="../shared/fixtures not present")


def _tiny_error(output_xyft: np.ndarray) -> float:
    """lava-dl's test_tinynet: output[..., 2:17] vs gt[0].transpose([2, 1, 0, 3])[..., 1:]."""
    gt = np.load(TINY / "output.npy")[0].transpose([2, 1, 0, 3])[..., 1:]
    assert gt.sum() > 0
    return float(np.abs(output_xyft[..., 2:17] - gt).sum())


def _tiny_fixed(**kw):
    net = FixedPointNet.from_netx(TINY / "tiny.net")
    bias = np.load(TINY / "input_bias.npy")
    return net.run(None, steps=17 + len(net), input_bias=bias[None], return_all=True, reset_interval=17, **kw)


def test_tinynet_fixed_engine_reproduces_ground_truth():
    out = _tiny_fixed()
    assert _tiny_error(np.moveaxis(out[-1][0], 0, -1)) == 0


def test_tinynet_without_reset_protocol_differs():
    """The ground truth depends on lava-dl's reset protocol: the check can fail."""
    net = FixedPointNet.from_netx(TINY / "tiny.net")
    out = net.run(None, steps=20, input_bias=np.load(TINY / "input_bias.npy")[None])
    assert _tiny_error(np.moveaxis(out[0], 0, -1)) > 0


@pytest.mark.lava
def test_tinynet_lava_reproduces_ground_truth_and_equals_fixed():
    from neuromaml.deploy.lava_run import run_lava

    r = run_lava(TINY / "tiny.net", steps=20, input_bias=np.load(TINY / "input_bias.npy"), record="all",
                 reset_interval=17)
    assert _tiny_error(np.moveaxis(r["spikes"][-1], 0, -1)) == 0
    fixed = _tiny_fixed()
    for a, b in zip(r["spikes"], fixed):
        assert np.array_equal(a, b[0])


def test_snn_maml_reexport_identical(tmp_path):
    tree = read_tree(MAML)
    out = tmp_path / "re.net"
    write_tree(tree, out)
    again = read_tree(out)
    assert sorted(tree) == sorted(again)
    for k in tree:
        a, b = np.asarray(tree[k]), np.asarray(again[k])
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert np.array_equal(a, b), k
    # through the layer view too
    write_layers(read_layers(MAML), tmp_path / "re2.net")
    t2 = read_tree(tmp_path / "re2.net")
    assert all(np.array_equal(np.asarray(tree[k]), np.asarray(t2[k])) for k in tree) and sorted(t2) == sorted(tree)


@pytest.mark.lava
def test_snn_maml_runs_on_lava_and_fixed_equal():
    from neuromaml.deploy.verify import verify_netx

    rep = verify_netx(MAML, samples=2, steps=30, all_layers=True, rate=0.3)
    assert rep["lava_vs_fixed"]["equal"], rep["lava_vs_fixed"]
    assert rep["layers"] == ["dense[512]", "dense[512]", "dense[5]"]
    assert all(r["spikes_fixed"] > 0 for r in rep["lava_vs_fixed"]["layers"][:2])


def test_snn_maml_bundle_keeps_the_network_unchanged(tmp_path):
    import nir

    from neuromaml.deploy.bundle import load_bundle, write_bundle

    man = write_bundle(read_layers(MAML), tmp_path / "b", input_shape=(2, 32, 16), time_steps=100)
    man2, net = load_bundle(tmp_path / "b")
    assert man2["files"] == man["files"] and man["adapt"]["engine_layer"] == 2
    src, got = read_tree(MAML), read_tree(net)
    assert sorted(src) == sorted(got) and all(np.array_equal(np.asarray(src[k]), np.asarray(got[k])) for k in src)
    g = nir.read(tmp_path / "b" / "network.nir")
    assert list(g.nodes["input"].input_type["input"]) == [1024]


@pytest.mark.lava
def test_cli_verify_of_bias_driven_tinynet(tmp_path, capsys):
    """`neuromaml verify tiny.net --input-bias` runs lava-dl's tinynet on Lava and the fixed engine."""
    import json
    import shutil

    from neuromaml.cli import main

    net = tmp_path / "tiny.net"
    shutil.copy(TINY / "tiny.net", net)
    assert main(["verify", str(net), "--steps", "5"]) == 2
    assert "pass --input-bias" in capsys.readouterr().err
    assert main(["verify", str(net), "--input-bias", str(TINY / "input_bias.npy"), "--steps", "20",
                 "--all-layers"]) == 0
    rep = json.loads((tmp_path / "tiny.net.verify.json").read_text())
    assert rep["ok"] and rep["lava_vs_fixed"]["equal"] and rep["output_spikes"] > 0
    assert len(rep["lava_vs_fixed"]["layers"]) == 3
    bad = tmp_path / "b.npy"
    np.save(bad, np.zeros((2, 2, 2)))
    assert main(["verify", str(net), "--input-bias", str(bad)]) == 2
    assert "--input-bias has shape (2, 2, 2)" in capsys.readouterr().err
