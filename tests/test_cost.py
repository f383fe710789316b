"""`neuromaml cost`: the static cost model (deploy.cost) and the measured activity
(emulator.cost_measure) against counts worked out by hand and by plain loops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuromaml.deploy.bundle import write_bundle
from neuromaml.deploy.chips import LOIHI1, LOIHI2
from neuromaml.deploy.cost import CostSummary, LayerCost, chip_mapping, conv_axons, core_mapping, static_cost
from neuromaml.deploy.netxfile import NetxLayer, neuron_raw, type_array, write_layers
from neuromaml.io import NeuromamlError

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
TINYNET = FIXTURES / "lava-dl-netx" / "tinynet" / "tiny.net"
PILOTNET = FIXTURES / "lava-dl-netx" / "pilotnet_lif" / "network.net"

# memoryless neurons: u = a << 6 each step (iDecay 4096), v keeps < 1/4096 of itself (vDecay 4095),
# so a neuron spikes at t + 1 exactly when its synaptic input a at t exceeds vThMant
NRN = neuron_raw({"type": "CUBA", "iDecay": 4096, "vDecay": 4095, "vThMant": 50})


def _input(chw):
    return NetxLayer(0, "input", {"type": type_array("input"), "shape": np.asarray(chw)})


def _flatten(i, n):
    return NetxLayer(i, "flatten", {"type": type_array("flatten"), "shape": np.asarray([n, 1, 1])})


def _dense(i, w, nrn=NRN):
    return NetxLayer(i, "dense", {"type": type_array("dense"), "shape": np.asarray([w.shape[0]]),
                                  "weight": np.asarray(w, np.float32), **nrn})


# ---------------------------------------------------------------- measured counts, by hand
T_HAND = 6
W_FROZEN = np.array([[100.0 if i % 4 == o else 0.0 for i in range(12)] for o in range(4)])   # (4, 12)
W_PLASTIC = np.array([[100.0, 0, 0, 0], [0, 100.0, 0, 0]])                                    # (2, 4)


@pytest.fixture()
def hand_bundle(tmp_path):
    """12 inputs -> 4 frozen neurons (neuron o listens to inputs o, o+4, o+8 with weight 100)
    -> 2 plastic neurons (weights on frozen neurons 0 and 1 only)."""
    layers = [_input([1, 1, 12]), _flatten(1, 12), _dense(2, W_FROZEN), _dense(3, W_PLASTIC)]
    write_bundle(layers, tmp_path / "hand", input_shape=(1, 1, 12), time_steps=T_HAND, burn_in=2)
    return tmp_path / "hand"


def _hand_inputs():
    x = np.zeros((2, T_HAND, 12, 1, 1), np.int8)            # (n, T, x, y, f)
    x[0, [0, 1], 0] = 1       # sample 0: input 0 at t = 0, 1; input 4 at t = 1; input 5 at t = 3
    x[0, 1, 4] = 1
    x[0, 3, 5] = 1
    x[1, [2, 5], 11] = 1      # sample 1: input 11 at t = 2 and 5
    return x


def test_spikes_and_synops_equal_hand_counts(hand_bundle):
    from neuromaml.emulator.cost_measure import _as_input, layer_counts, plastic_window_counts, synops_per_sample
    from neuromaml.emulator.deployed import DeployedNet
    from neuromaml.emulator.episodes import EpisodeBatch, run_fast

    dep = DeployedNet.load(hand_bundle)
    static, rows = static_cost(hand_bundle, net=dep.net)
    x = _hand_inputs()
    cin, counts, feats = layer_counts(dep, x)
    np.testing.assert_array_equal(feats, dep.frozen_features(x))     # the same runs as the emulator's

    # frozen layer, worked out by hand: sample 0 -> neuron 0 at t = 1 (input 0 at 0) and t = 2 (inputs 0
    # and 4 at 1), neuron 1 at t = 4 (input 5 at 3); sample 1 -> neuron 3 at t = 3 and 6 (input 11 at 2, 5)
    assert counts[0].tolist() == [[2, 1, 0, 0], [0, 0, 0, 2]]
    assert cin.reshape(2, -1).sum(axis=1).tolist() == [4, 2]
    # static: every connection held (48, 8) and the nonzero ones (12, 2)
    assert [(r.connections, r.nonzero, r.fan_in_max, r.fan_out_max) for r in rows] == [(48, 12, 12, 4), (8, 2, 4, 2)]
    assert [r.weight_bits for r in rows][1] == 9                         # plastic: the rule's -256..255
    # effective SynOps = input spikes x fan-out: frozen 4 x 4 = 16 and 2 x 4 = 8 (nonzero: 1 per spike);
    # plastic: 3 x 2 = 6 and 2 x 2 = 4 (nonzero: frozen neurons 0, 1 have one synapse each, 3 has none)
    frozen_in = _as_input(cin, "dense")
    assert synops_per_sample(frozen_in, rows[0].fanout).tolist() == [16, 8]
    assert synops_per_sample(frozen_in, rows[0].fanout_nonzero).tolist() == [4, 2]
    assert synops_per_sample(counts[0], rows[1].fanout).tolist() == [6, 4]
    assert synops_per_sample(counts[0], rows[1].fanout_nonzero).tolist() == [3, 0]

    # plastic layer spikes: sample 0 (support) -> neuron 0 one step after frozen neuron 0 (2 spikes), neuron 1
    # after frozen neuron 1 (1 spike); sample 1 (query): frozen neuron 3 has no plastic synapse -> none
    batch = EpisodeBatch(np.array([[0, 1]]), np.array([[0, 1]]), 1)
    res = run_fast(dep, feats, batch)
    win = plastic_window_counts(dep, res.spikes, 2)
    assert win[0].tolist() == [[2, 1], [0, 0]]
    # the same windows by a plain loop over the stream: sample s's window starts at P + s T + D
    P, D = dep.prefix, dep.depth
    for s in range(2):
        for o in range(2):
            n = sum(int(res.spikes[0, k, o]) for k in range(P + s * T_HAND + D, P + (s + 1) * T_HAND + D)
                    if k < res.spikes.shape[1])
            assert win[0, s, o] == n


def _loop_synops_dense(spikes_in: np.ndarray, w: np.ndarray, nonzero: bool) -> int:
    """Plain loops: every input spike at every step drives its fan-out synapses."""
    total = 0
    for t in range(spikes_in.shape[0]):
        for i in range(spikes_in.shape[1]):
            if spikes_in[t, i]:
                for o in range(w.shape[0]):
                    if not nonzero or w[o, i] != 0:
                        total += 1
    return total


def _loop_synops_conv(spikes_in: np.ndarray, w: np.ndarray, pad: int, nonzero: bool) -> int:
    """Plain loops over a stride-1 conv: spikes_in (T, x, y, c), w (out, in, kh, kw)."""
    T, X, Y, C = spikes_in.shape
    F, _, KH, KW = w.shape
    total = 0
    for t in range(T):
        for xi in range(X):
            for yi in range(Y):
                for c in range(C):
                    if not spikes_in[t, xi, yi, c]:
                        continue
                    for f in range(F):
                        for ky in range(KH):
                            for kx in range(KW):
                                ox, oy = xi + pad - kx, yi + pad - ky     # output that reads it through (ky, kx)
                                if 0 <= ox < X and 0 <= oy < Y and (not nonzero or w[f, c, ky, kx] != 0):
                                    total += 1
    return total


def test_conv_synops_equal_plain_loops(tmp_path):
    """A conv (padding 1: border inputs have fewer synapses) -> flatten -> plastic dense network on
    random spikes: the module's SynOps and spikes equal plain loops over the fast engine's spike trains."""
    from neuromaml.emulator.cost_measure import _as_input, layer_counts, synops_per_sample
    from neuromaml.emulator.deployed import DeployedNet

    rng = np.random.default_rng(0)
    T = 8
    w = rng.integers(-2, 3, (3, 2, 3, 3)).astype(np.float32) * 40       # some zero taps
    conv = NetxLayer(1, "conv", {"type": type_array("conv"), "shape": np.asarray([3, 4, 5]),
                                 "weight": w, "stride": np.asarray([1, 1]), "padding": np.asarray([1, 1]),
                                 "dilation": np.asarray([1, 1]), "groups": np.asarray(1), **NRN})
    wp = rng.integers(-60, 61, (3, 60)).astype(np.float32)
    layers = [_input([2, 4, 5]), conv, _flatten(2, 60), _dense(3, wp)]
    write_bundle(layers, tmp_path / "cnn", input_shape=(2, 4, 5), time_steps=T, burn_in=3)
    dep = DeployedNet.load(tmp_path / "cnn")
    static, rows = static_cost(tmp_path / "cnn", net=dep.net)
    x = (rng.random((3, T, 5, 4, 2)) < 0.3).astype(np.int8)             # (n, T, x, y, f)
    cin, counts, feats = layer_counts(dep, x)
    np.testing.assert_array_equal(feats, dep.frozen_features(x))
    trains = dep.net.run(np.concatenate([x, np.zeros((3, 2, 5, 4, 2), np.int8)], axis=1), stop=1)   # (n, T+2, ...)
    wconv, wplast = dep.net.layers[0].weight, dep.net.layers[1].weight
    assert rows[0].connections == _loop_synops_conv(np.ones((1, 5, 4, 2), bool), wconv, 1, False)
    for n in range(3):
        window = trains[n, 1:1 + T]                                       # layer 0's window [D_0, D_0 + T)
        assert counts[0][n].sum() == window.sum()
        want = [_loop_synops_conv(x[n], wconv, 1, False), _loop_synops_conv(x[n], wconv, 1, True)]
        got = [synops_per_sample(cin[n:n + 1], fo)[0] for fo in (rows[0].fanout, rows[0].fanout_nonzero)]
        assert got == want
        flat = window.transpose(0, 3, 2, 1).reshape(T, -1)               # netx's flatten: (f, y, x)
        inp = _as_input(counts[0][n:n + 1], "dense")
        assert synops_per_sample(inp, rows[1].fanout)[0] == _loop_synops_dense(flat, wplast, False)
        assert synops_per_sample(inp, rows[1].fanout_nonzero)[0] == _loop_synops_dense(flat, wplast, True)


# ---------------------------------------------------------------- core mapping (pure)
def test_layer_over_the_neuron_limit_splits_by_neurons():
    m = core_mapping(LOIHI1, neurons=3000, fan_in=100, weight_bits=9)     # 100 x 9 x 1024 < 128 KB
    assert (m["neurons_per_core"], m["cores"], m["limited_by"]) == (1024, 3, "neurons per core")
    # Loihi 2 holds 8,192 neurons but 192 KB: 1,572,864 // 900 bits = 1,747 neurons per core
    m2 = core_mapping(LOIHI2, neurons=3000, fan_in=100, weight_bits=9)
    assert (m2["neurons_per_core"], m2["cores"], m2["limited_by"]) == (1747, 2, "synaptic memory")
    m = core_mapping(LOIHI2, neurons=20000, fan_in=10, weight_bits=8)
    assert (m["neurons_per_core"], m["cores"], m["limited_by"]) == (8192, 3, "neurons per core")


def test_layer_over_the_synaptic_memory_splits_by_memory():
    # 1,024 inputs x 9 bits = 9,216 bits per neuron; 128 KB = 1,048,576 bits -> 113 neurons per core
    m = core_mapping(LOIHI1, neurons=512, fan_in=1024, weight_bits=9)
    assert (m["neurons_per_core"], m["cores"], m["limited_by"]) == (113, 5, "synaptic memory")
    # Loihi 2: 192 KB = 1,572,864 bits -> 170 neurons per core
    m = core_mapping(LOIHI2, neurons=512, fan_in=1024, weight_bits=9)
    assert (m["neurons_per_core"], m["cores"], m["limited_by"]) == (170, 4, "synaptic memory")


def test_a_neuron_no_core_can_hold_is_named():
    m = core_mapping(LOIHI1, neurons=10, fan_in=5000, weight_bits=1)     # 5,000 input axons > 4,096
    assert m["cores"] is None and "4,096" in m["problem"]
    assert core_mapping(LOIHI2, neurons=10, fan_in=5000, weight_bits=1)["cores"] == 1   # no axon limit published
    m = core_mapping(LOIHI1, neurons=1, fan_in=200_000, weight_bits=9)   # 1.8 Mb > 128 KB
    assert m["cores"] is None and "synaptic memory" in m["problem"]
    # a layer that needs more cores than a chip has spans chips, and says so
    big = LayerCost(5, "dense", "dense", (200_000,), (10,), 200_000, 10, 2_000_000, 2_000_000, 2_000_000,
                    10, 10, 200_000, 8)
    c = chip_mapping(LOIHI1, [big])
    assert c["cores"] == 196 and c["chips"] == 2 and "spans 2 chips" in c["problems"][0]
    c = chip_mapping(LOIHI1, [LayerCost(1, "dense", "dense", (4,), (5000,), 4, 5000, 20000, 20000, 20000,
                                        5000, 5000, 4, 8)])
    assert c["cores"] is None and c["chips"] is None and "input axons" in c["problems"][0]


def test_conv_axons_tile_model():
    ax = conv_axons((32, 32, 8), (32, 32, 16), (3, 3), (1, 1), (1, 1), 1)
    assert ax(16) == 3 * 3 * 8          # one output position, all channels: its 3x3x8 window
    assert ax(64) == 4 * 4 * 8          # 2x2 positions -> a 4x4 input window
    assert ax(8) == 3 * 3 * 8           # part of one position's channels still needs all inputs (groups 1)


# ---------------------------------------------------------------- CNN fixtures (static)
@pytest.mark.skipif(not TINYNET.exists(), reason="shared fixtures not present")
def test_cnn_fixtures_static_cost():
    s, rows = static_cost(TINYNET)
    # tinynet: input 16x16x3 -> conv 24 5x5 s2 -> 6x6x24 -> conv 36 5x5 s2 -> 1x1x36, no padding:
    # 6*6*24 neurons x 5*5*3 taps and 36 x 5*5*24
    assert [(r.kind, r.neurons, r.connections, r.fan_in_max) for r in rows] == [
        ("input", 768, 0, 0), ("conv", 864, 6 * 6 * 24 * 75, 75), ("conv", 36, 36 * 600, 600)]
    assert s["mapping"]["loihi1"]["cores"] == 3 and s["mapping"]["loihi1"]["chips"] == 1
    s, rows = static_cost(PILOTNET)
    l1, l2 = s["mapping"]["loihi1"], s["mapping"]["loihi2"]
    first_conv = l1["layers"][1]
    assert (first_conv["cores"], first_conv["limited_by"]) == (-(-99 * 32 * 24 // 1024), "neurons per core")
    assert l1["cores"] > LOIHI1.cores_per_chip and l1["chips"] == 2       # PilotNet needs two Loihi 1 chips
    assert l2["chips"] == 1


@pytest.mark.skipif(not TINYNET.exists(), reason="shared fixtures not present")
def test_cli_static_part_of_a_netx_file(tmp_path):
    from neuromaml.cli import main

    assert main(["cost", str(TINYNET), "--out", str(tmp_path / "o")]) == 0
    s = json.loads((tmp_path / "o" / "cost.json").read_text())
    assert s["measured"] is None and s["estimates"] is None and s["static"]["mapping"]["loihi2"]["cores"] == 3
    assert (tmp_path / "o" / "cost.png").exists()
    assert main(["cost", str(TINYNET)]) == 2                     # a netx file has no bundle folder: --out


def test_pool_is_costed_as_its_grouped_conv(tmp_path):
    pool = NetxLayer(1, "pool", {"type": type_array("pool"), "shape": np.asarray([2, 2, 2]),
                                 "weight": np.full((1, 1, 2, 2), 64.0, np.float32), "stride": np.asarray([2, 2]),
                                 **NRN})
    write_layers([_input([2, 4, 4]), pool], tmp_path / "pool.net")
    s, rows = static_cost(tmp_path / "pool.net")
    r = rows[-1]
    assert (r.kind, r.neurons, r.connections, r.fan_in_max, r.fan_out_max) == ("conv", 8, 8 * 4, 4, 1)
    assert s["lowered"] == [{"index": 1, "from": "pool", "to": "conv groups=2", "channels": 2}]


# ---------------------------------------------------------------- errors and the CLI
@pytest.mark.parametrize("kind,msg", [("weird", "unknown layer type"), ("average", "prices only")])
def test_unsupported_layer_is_a_clear_error(tmp_path, kind, msg):
    from neuromaml.cli import main

    bad = NetxLayer(1, kind, {"type": type_array(kind), "shape": np.asarray([2, 2, 2])})
    path = write_layers([_input([2, 4, 4]), bad], tmp_path / "bad.net")
    with pytest.raises(NeuromamlError, match=msg) as exc:
        static_cost(path)
    assert "layer/1/type" in str(exc.value) and "fix:" in str(exc.value)
    assert main(["cost", str(path), "--out", str(tmp_path / "o")]) == 2


def test_cli_writes_cost_json_on_emulates_tasks(tmp_path, tiny_metadataset, capsys):
    """`neuromaml cost BUNDLE --data` returns 0, writes cost.json/.md/.png, and measures on the same
    tasks as `neuromaml emulate` (same accuracy and fraction of synapses updated)."""
    from neuromaml.cli import main
    from neuromaml.emulator.emulate import emulate

    rng = np.random.default_rng(1)
    w1 = rng.integers(-40, 41, (24, 1024)) * (rng.random((24, 1024)) < 0.3)
    w2 = rng.integers(-80, 81, (5, 24))
    nrn = neuron_raw({"type": "CUBA", "iDecay": 1024, "vDecay": 128, "vThMant": 80})
    layers = [_input([2, 16, 32]), _flatten(1, 1024), _dense(2, w1, nrn), _dense(3, w2, nrn)]
    bundle = tmp_path / "b"
    write_bundle(layers, bundle, input_shape=(2, 16, 32), time_steps=100, burn_in=4)
    out = tmp_path / "cost"
    rc = main(["cost", str(bundle), "--data", str(tiny_metadataset), "--tasks", "3", "--out", str(out),
               "--json", str(tmp_path / "c.json")])
    assert rc == 0
    s = json.loads((out / "cost.json").read_text())
    # the typed summary: every field written (None included), read back unchanged
    assert CostSummary.from_dict(s).to_dict() == s and set(s) >= {"measured", "estimates", "plot", "outputs"}
    assert (out / "cost.md").exists() and (out / "cost.png").stat().st_size > 0
    assert json.loads((tmp_path / "c.json").read_text())["static"] == s["static"]
    assert "ESTIMATE" in (out / "cost.md").read_text() and "ESTIMATE" in capsys.readouterr().out
    m = s["measured"]
    inf = m["inference"]
    for L, r in zip(inf["layers"], s["static"]["layers"]):
        assert L["dense_synops"] == r["synapses_dense"] * 100
        assert L["sparsity"] == pytest.approx(1 - L["spikes"] / (r["neurons"] * 100))
    plastic = inf["layers"][-1]
    assert plastic["synops_effective"] == pytest.approx(plastic["spikes_in"] * 5)     # O synapses per input spike
    assert inf["layers"][-1]["spikes_in"] == pytest.approx(inf["layers"][0]["spikes"])
    learn = m["learning_episode"]["learning"]
    assert learn["rule_evaluations"] == 5 * 24 * 5 * 100 and learn["check_weights_equal_run_fast"]
    e = emulate(bundle, tiny_metadataset, tasks=3, slayer_tasks=0, out=tmp_path / "emu")
    assert m["accuracy_mean"] == e.onchip.mean
    assert learn["fraction_synapses_updated"] == e.onchip.fraction_synapses_updated
    est = s["estimates"]["loihi1"]["inference"]
    assert 0 < est["energy_uj"][0] <= est["energy_uj"][1]


def test_cost_has_help(capsys):
    from neuromaml.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["cost", "--help"])
    assert exc.value.code == 0
    assert "usage: neuromaml cost" in capsys.readouterr().out
