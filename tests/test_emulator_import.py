"""`neuromaml import` wraps a third-party netx file (the authors' meta-trained MLP) into a bundle
that the emulator runs, on Lava and on the fast engine, bit for bit alike."""
from pathlib import Path

import numpy as np
import pytest

from neuromaml import cli
from neuromaml.deploy.bundle import load_bundle
from neuromaml.emulator.deployed import DeployedNet
from neuromaml.emulator.episodes import EpisodeBatch, run_fast, run_lava
from neuromaml.emulator.importer import import_netx
from neuromaml.io import NeuromamlError

AUTHORS_MLP = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "snn-maml" / "network_test.net"


@pytest.fixture(scope="module")
def authors_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp") / "bundle"
    man = import_netx(AUTHORS_MLP, out, input_shape=(2, 16, 32), classes=5, time_steps=100)
    assert man["adapt"]["engine_layer"] == 2 and man["output"]["burn_in"] == 3
    return out


def test_import_copies_the_network_unchanged(authors_bundle):
    import h5py

    _, net = load_bundle(authors_bundle)

    def flat(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda k, v: out.__setitem__(k, np.asarray(v)) if isinstance(v, h5py.Dataset) else None)
        return out

    a, b = flat(AUTHORS_MLP), flat(net)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.lava
def test_authors_network_learns_identically_on_lava_and_fast_engine(authors_bundle):
    dep = DeployedNet.load(authors_bundle)
    rng = np.random.default_rng(3)
    # dense input so that the authors' network (trained on Double N-MNIST) spikes at the output
    x = (rng.random((7, 100, 32, 16, 2)) < 0.3).astype(np.int8)
    batch = EpisodeBatch(np.array([[0, 1, 2, 3, 4, 5, 6]]), np.array([[0, 1, 2, 3, 4, 2, 4]]), 5)
    lava = run_lava(dep, x, batch)
    fast = run_fast(dep, dep.frozen_features(x), batch, step_offsets=lava.step_offsets)
    np.testing.assert_array_equal(fast.spikes, lava.spikes)
    np.testing.assert_array_equal(fast.weights, lava.weights)
    assert dep.frozen_features(x).sum() > 0


def test_import_bad_inputs(tmp_path):
    with pytest.raises(NeuromamlError, match="last layer has 5 neurons, --classes is 10.*fix: pass --classes 5"):
        import_netx(AUTHORS_MLP, tmp_path / "a", input_shape=(2, 16, 32), classes=10)
    with pytest.raises(NeuromamlError, match=r"first layer takes \(1024,\).*--input-shape 2,30,80"):
        import_netx(AUTHORS_MLP, tmp_path / "b", input_shape=(2, 30, 80), classes=5)
    with pytest.raises(NeuromamlError, match=r"--burn-in 1 must be in \[3, 100\)"):
        import_netx(AUTHORS_MLP, tmp_path / "c", input_shape=(2, 16, 32), classes=5, burn_in=1)
    assert not any(tmp_path.iterdir())          # nothing half-written
    bad = tmp_path / "x.net"
    bad.write_bytes(b"not hdf5")
    assert cli.main(["import", str(bad), "--input-shape", "2,16,32", "--classes", "5",
                     "--out", str(tmp_path / "d")]) == 2
