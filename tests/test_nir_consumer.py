"""network.nir runs in another framework (snntorch, the ``nir`` extra) as Lava runs the bundle.

A small conv network (conv 4c3, 2x2 sum pool, conv 8c3, 2x2 sum pool, flatten, dense 5;
both pools lowered to grouped convolutions) is exported as every bundle is; its ``network.nir`` is loaded by
snntorch's ``import_nir`` and compared with the fixed-point engine (bit-exact to Lava) on the
same input spikes. Thresholds are set from measurements (5 input seeds, 32 samples x 40
steps): a correct graph gave decision agreement >= 0.91, per-layer spike-count correlation
>= 0.997, L1 count error <= 0.033 and >= 76 % identical spike trains; a threshold in
register units (x64) gave correlation 0 and decisions <= 0.28; the pre-fix discretisation
(``tau = -dt / ln(1 - d)``) L1 >= 0.18 and <= 17 % identical trains. The last two are run
here too, so the metrics are shown to fail on a wrong graph.

snntorch is installed by the ``dev`` extra (CI); the tests do not skip without it.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

T, BURN, N = 40, 10, 32


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import torch

    from neuromaml.deploy.bundle import export_bundle
    from neuromaml.meta.models import ModelConfig, build_model

    cfg = ModelConfig(time_steps=T, burn_in=BURN, name="cnn", conv=[[4, 3], [8, 3]], input_shape=(2, 16, 16),
                      n_way=5, zero_head=False)
    m = build_model(cfg, seed=1)
    with torch.no_grad():
        m(torch.zeros(1, 2, 16, 16, T))
        w = m.blocks[-1].synapse.weight       # centre the output rows: decisions vary with the input
        w -= w.mean(dim=tuple(range(1, w.ndim)), keepdim=True)
        w *= 2.0
    out = tmp_path_factory.mktemp("nir") / "bundle"
    export_bundle(m, out, input_shape=(2, 16, 16), time_steps=T, burn_in=BURN)
    return out


def _inputs(net, seed=0):
    """Each sample: one 8x8 patch of one polarity at rate 0.3, background 0.02 (N, T, x, y, f)."""
    rng = np.random.default_rng(seed)
    rates = np.full((N, 1) + tuple(net.input_shape), 0.02)
    for i in range(N):
        a, b = rng.integers(0, 9, 2)
        rates[i, 0, a:a + 8, b:b + 8, rng.integers(0, 2)] = 0.3
    return (rng.random((N, T) + tuple(net.input_shape)) < rates).astype(np.int8)


@pytest.fixture(scope="module")
def run(bundle):
    from neuromaml.deploy.fixed import FixedPointNet
    from neuromaml.deploy.netxfile import read_layers

    net = FixedPointNet.from_netx(bundle / "network.net")
    x = _inputs(net)
    return net, x, net.run(x, return_all=True), read_layers(bundle / "network.net")


def _summary(rep):
    c = rep["nir_vs_fixed"]
    return (c["decision_agreement"], min(r["count_corr"] for r in c["layers"]),
            max(r["count_l1"] for r in c["layers"]), min(r["trains_equal"] for r in c["layers"]))


def test_the_nir_file_reads_back_in_consumer_terms(bundle):
    import nir
    import snntorch  # noqa: F401 - the dev extra installs it: no skip

    from neuromaml.deploy.nir_export import DT

    g = nir.read(bundle / "network.nir")                      # type-checked on read
    kinds = [type(g.nodes[k]).__name__ for k in ("syn1", "syn2", "syn3", "syn4", "syn5")]
    assert kinds == ["Conv2d", "Conv2d", "Conv2d", "Conv2d", "Linear"]
    pool = g.nodes["syn2"]                                    # the lowered pool: ungrouped, block-diagonal
    assert pool.groups == 1 and pool.metadata["netx_groups"] == 4 and pool.weight.shape == (4, 4, 2, 2)
    assert np.count_nonzero(pool.weight) == 16
    assert g.nodes["syn4"].metadata["netx_groups"] == 8
    assert [n.start_dim for n in g.nodes.values() if isinstance(n, nir.Flatten)] == [-3]
    lif = g.nodes["lif1"]
    d_u, d_v = lif.metadata["iDecay"] / 4096, lif.metadata["vDecay"] / 4096
    np.testing.assert_allclose(1 - DT / lif.tau_syn, 1 - d_u)             # Euler: alpha = 1 - dt / tau
    np.testing.assert_allclose(1 - DT / lif.tau_mem, 1 - d_v)
    np.testing.assert_allclose(lif.w_in * DT / lif.tau_syn, 1.0)           # input adds W x, unscaled
    np.testing.assert_allclose(lif.r, lif.tau_mem / DT)
    assert np.all(lif.v_threshold == lif.metadata["vThMant"]) and np.all(lif.v_reset == 0)


def test_snntorch_runs_the_graph_as_lava_does(bundle, run):
    from neuromaml.deploy.nir_check import check_nir

    net, x, fixed, _ = run
    rep = check_nir(bundle / "network.nir", net, x, window=(BURN, T), fixed=fixed)
    dec, corr, l1, trains = _summary(rep)
    c = rep["nir_vs_fixed"]
    assert len(set(c["decisions_fixed"])) >= 2 and c["output_silent_fixed"] < 0.5   # decisions are not vacuous
    assert all(r["spikes_fixed"] > 0 for r in c["layers"])
    assert dec >= 0.85 and corr >= 0.99 and l1 <= 0.06 and trains >= 0.6, (dec, corr, l1, trains)
    assert rep["ok"]


@pytest.mark.parametrize("wrong", ["threshold_x64", "exp_discretisation"])
def test_a_wrong_graph_fails_the_same_checks(run, wrong, monkeypatch):
    import nir

    from neuromaml.deploy import nir_export
    from neuromaml.deploy.nir_check import check_nir

    net, x, fixed, layers = run
    if wrong == "exp_discretisation":        # the exporter before the fix: tau = -dt / ln(1 - d)
        monkeypatch.setattr(nir_export, "decay_to_tau", lambda d, dt=nir_export.DT: float(
            -dt / np.log(1 - d / 4096)) if 0 < d < 4096 else dt * (nir_export.NO_DECAY_STEPS if d <= 0 else 1))
    g = nir_export.to_nir(layers)
    if wrong == "threshold_x64":             # vThMant << 6, the register value, in weight units
        for node in g.nodes.values():
            if isinstance(node, nir.CubaLIF):
                node.v_threshold = node.v_threshold * 64
    rep = check_nir(g, net, x, window=(BURN, T), fixed=fixed)
    dec, corr, l1, trains = _summary(rep)
    assert not rep["ok"]
    assert not (dec >= 0.85 and corr >= 0.99 and l1 <= 0.06 and trains >= 0.6), (dec, corr, l1, trains)


def test_cli_verify_nir(bundle, capsys, monkeypatch):
    from neuromaml.cli import main

    assert main(["verify", str(bundle), "--no-lava", "--no-slayer", "--nir", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "nir (snntorch" in out and "nir OK" in out
    rep = json.loads((bundle / "verify.json").read_text())
    assert rep["nir"]["ok"] and rep["nir"]["samples"] == 4 and rep["nir"]["steps"] == T
    for name in ("snntorch", "snntorch.import_nir"):           # as if the extra were not installed
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["verify", str(bundle), "--no-lava", "--nir"]) == 2
    assert "snntorch is not installed (fix: pip install -e '.[nir]')" in capsys.readouterr().err
