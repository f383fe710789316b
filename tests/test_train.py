"""Meta-training runs: checkpoints, bit-identical resume, errors, config, distributed."""
import os
import socket

import pytest
import torch

from neuromaml.io import NeuromamlError, read_json
from neuromaml.meta import train as train_mod
from neuromaml.meta.config import from_dict, load_config
from neuromaml.meta.train import load_checkpoint, meta_train

from conftest import TINY_PER_CLASS

TINY = {"model": {"name": "small", "hidden": [8], "burn_in": 90, "surrogate_scale": 0.05},
        "inner": {"lr": 0.5, "learn_lr": True},
        "outer": {"steps": 4, "meta_batch": 2, "lr": 0.003, "val_every": 2, "val_tasks": 2,
                  "checkpoint_every": 1},
        "task": {"n_way": 3, "k_shot": 1, "n_query": 1}, "seed": 3}


def _cfg(**outer):
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    d["outer"].update(outer)
    return from_dict(d)


def _state_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


class _Kill(Exception):
    pass


def test_resume_is_bit_identical(tiny_metadataset, tmp_path):
    full = meta_train(tiny_metadataset, _cfg(), tmp_path / "full", progress=False)
    assert full["steps"] == 4

    def kill(tr):
        if tr.step == 2:
            raise _Kill()

    with pytest.raises(_Kill):
        meta_train(tiny_metadataset, _cfg(), tmp_path / "cut", progress=False, on_step=kill)
    assert load_checkpoint(tmp_path / "cut" / "ckpt.pt")["step"] == 2
    meta_train(tiny_metadataset, _cfg(), tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "ckpt.pt")
    b = load_checkpoint(tmp_path / "cut" / "ckpt.pt")
    assert a["step"] == b["step"] == 4
    assert _state_equal(a["model"], b["model"]) and _state_equal(a["lrs"], b["lrs"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(_state_equal(sa[k], sb[k]) for k in sa)
    # the whole checkpoint, the saved random state included, is bit-identical (torch's
    # process-wide generator, randomly seeded per process, is not part of a run)
    assert torch.equal(a["rng"], b["rng"]) and a["scheduler"] == b["scheduler"]
    torch.seed()                               # another process-wide state: the run must not see it
    again = meta_train(tiny_metadataset, _cfg(), tmp_path / "again", progress=False)
    c = load_checkpoint(tmp_path / "again" / "ckpt.pt")
    assert again["steps"] == 4 and torch.equal(a["rng"], c["rng"]) and _state_equal(a["model"], c["model"])
    # the run directory records what was run
    run = tmp_path / "full"
    for name in ("config.yaml", "run.json", "summary.json", "best.pt", "history.jsonl"):
        assert (run / name).exists(), name
    meta = read_json(run / "run.json")
    assert meta["seed"] == 3 and "torch" in meta["versions"]
    assert load_config(run / "config.yaml").model.time_steps == 100
    with pytest.raises(NeuromamlError, match="already exists"):
        meta_train(tiny_metadataset, _cfg(), run, progress=False)


def test_resume_keeps_one_history_line_per_validation(tiny_metadataset, tmp_path):
    import json

    def kill(tr):
        if tr.step == 3:
            raise _Kill()

    run = tmp_path / "run"
    with pytest.raises(_Kill):  # checkpoint at step 2, validations at 1, 2, 3
        meta_train(tiny_metadataset, _cfg(val_every=1, checkpoint_every=2), run, progress=False, on_step=kill)
    with open(run / "history.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut short
    meta_train(tiny_metadataset, _cfg(val_every=1, checkpoint_every=2), run, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_corrupt_checkpoint_is_a_clear_error(tiny_metadataset, tmp_path):
    run = tmp_path / "run"
    meta_train(tiny_metadataset, _cfg(steps=1), run, progress=False)
    (run / "ckpt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(NeuromamlError, match="ckpt.pt.*corrupt"):
        meta_train(tiny_metadataset, _cfg(), run, resume=True, progress=False)


def test_nan_loss_keeps_last_good_checkpoint(tiny_metadataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    from neuromaml.meta import distributed as dist_mod

    real, calls = dist_mod.meta_gradient, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            return float("nan"), 0.0
        return real(*a, **k)

    monkeypatch.setattr(dist_mod, "meta_gradient", flaky)
    with pytest.raises(NeuromamlError, match="not finite at step 2"):
        meta_train(tiny_metadataset, _cfg(), run, progress=False)
    assert load_checkpoint(run / "ckpt.pt")["step"] == 2


def test_wrong_data_shape_on_resume(tiny_metadataset, tmp_path):
    run = tmp_path / "run"
    meta_train(tiny_metadataset, _cfg(steps=1), run, progress=False)
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    state = load_checkpoint(run / "ckpt.pt")
    state["config"]["model"]["time_steps"] = 120      # a run (config.yaml and checkpoint) for 120 steps
    torch.save(state, run / "ckpt.pt")
    assert cfg["model"]["time_steps"] == 100
    cfg["model"]["time_steps"] = 120
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(NeuromamlError, match="frames are"):
        meta_train(tiny_metadataset, _cfg(steps=2), run, resume=True, progress=False)


@pytest.mark.parametrize("patch,match", [
    ({"inner": {"lrr": 1}}, "unknown key 'inner.lrr'"),
    ({"inner": {"lr": -1.0}}, "'inner.lr'"),
    ({"model": {"burn_in": 100}}, "'model.burn_in'"),
    ({"model": {"time_steps": 50, "burn_in": 60}}, "'model.burn_in'"),
    ({"task": {"n_way": "five"}}, "'task.n_way' must be an integer"),
    ({"outer": {"meta_batch": 0}}, "'outer.meta_batch'"),
    ({"model": {"name": "cnn", "conv": [[16, 4]]}}, "'model.conv'"),
    ({"model": {"conv": [16, 5]}}, "'model.conv'"),
    ({"outer": {"clip_grad": -1.0}}, "'outer.clip_grad'"),
    ({"model": {"init_rate": 1.5}}, "'model.init_rate'"),
    ({"model": {"init_rate": True}}, "'model.init_rate'"),
    ({"model": {"name": "ann_cnn", "init_rate": 0.1}, "inner": {"rule": "sgd"}}, "'model.init_rate'.*ann_cnn"),
])
def test_config_errors_name_file_and_key(tmp_path, patch, match):
    import yaml
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(patch))
    with pytest.raises(NeuromamlError, match=match) as err:
        load_config(path)
    assert "bad.yaml" in str(err.value)


def test_n_way_larger_than_split(tiny_metadataset, tmp_path):
    d = dict(TINY, task={"n_way": 17, "k_shot": 1, "n_query": 1})
    with pytest.raises(NeuromamlError, match="n_way"):
        meta_train(tiny_metadataset, from_dict(d), tmp_path / "r", progress=False)


def test_toml_and_named_defaults(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[inner]\nsteps = 3\n[task]\nn_way = 4\n')
    cfg = load_config(p)
    assert cfg.inner.steps == 3 and cfg.model.n_way == 4
    for name in ("small", "cnn", "paper_cnn", "lava_mlp"):
        assert load_config(name).model.name == name


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = r"""
import sys, torch
from types import SimpleNamespace
from neuromaml.meta.maml import InnerConfig
from neuromaml.meta.models import ModelConfig, build_model
from neuromaml.meta.train import distributed_meta_gradient, finish_distributed, maybe_init_distributed
torch.set_num_threads(1)
maybe_init_distributed()
cfg = ModelConfig(name="small", n_way=2, input_shape=(2, 4, 4), hidden=[8], time_steps=16, burn_in=6,
                  weight_scale=4.0, surrogate_scale=0.1, zero_head=False)
model = build_model(cfg, seed=0)
params = model.meta_params()
tasks = []
for s in range(3):
    g = torch.Generator().manual_seed(s)
    x = (torch.rand(6, 2, 4, 4, 16, generator=g) < 0.3).float()
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    tasks.append(SimpleNamespace(support_x=x[:2], support_y=y[:2], query_x=x[2:], query_y=y[2:]))
stats = distributed_meta_gradient(model, params, tasks, InnerConfig(lr=1.0))
import torch.distributed as dist
rank = dist.get_rank() if dist.is_initialized() else 0
if rank == 0:
    torch.save(([p.grad.clone() for p in params.values()], stats), sys.argv[1])
finish_distributed()
"""


def test_two_process_gloo_meta_gradient_equals_one_process(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], check=True, env=env, timeout=240)
    # a rendezvous can hang on a loaded runner (a port taken between _free_port and torchrun's
    # bind): each try runs in its own process group, killed whole on timeout (no orphaned ranks),
    # with the process-group timeout shortened, and a second try takes a fresh port
    env2 = {**env, "NEUROMAML_DIST_TIMEOUT": "90"}
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                 "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script),
                                 str(tmp_path / "two.pt")], env=env2, start_new_session=True)
        try:
            assert proc.wait(timeout=180) == 0
            break
        except subprocess.TimeoutExpired:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if attempt == 1:
                raise
    one, stats1 = torch.load(tmp_path / "one.pt")
    two, stats2 = torch.load(tmp_path / "two.pt")
    for a, b in zip(one, two):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)
    assert stats1 == pytest.approx(stats2)


def test_cli_meta_train_and_evaluate_report(tiny_metadataset, tmp_path):
    import json

    import yaml

    from neuromaml.cli import main
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg_path), "--out", str(run),
                 "--steps", "2", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg_path), "--out", str(run),
                 "--steps", "3", "--resume", "--no-progress"]) == 0
    assert load_checkpoint(run / "ckpt.pt")["step"] == 3
    # baselines: first-order MAML and the non-spiking CNN, runs of their own
    fo = tmp_path / "fo"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg_path), "--out", str(fo),
                 "--steps", "1", "--no-progress"]) == 0
    ann_cfg = tmp_path / "ann.yaml"
    ann_cfg.write_text(yaml.safe_dump({**TINY, "model": {"name": "ann_cnn", "logit_scale": 1.0}}))
    ann = tmp_path / "ann"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(ann_cfg), "--out", str(ann),
                 "--steps", "1", "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--trials", "2", "--tasks", "2", "--baseline", f"fo={fo}",
                 "--baseline", f"ann={ann}", "--transfer-epochs", "1", "--transfer-tasks", "2"]) == 0
    rep = json.loads((run / "eval" / "report.json").read_text())
    assert set(rep["table2"]) == {"train", "test"}
    assert set(rep["baselines"]) == {"fo", "ann"} and rep["baselines"]["ann"]["model"] == "ann_cnn"
    assert 0 <= rep["baselines"]["ann"]["test"]["mean"] <= 1
    f6 = rep["fig6_transfer"]
    shots = TINY_PER_CLASS - TINY["task"]["n_query"]
    assert [r["shots"] for r in f6["transfer"]] == [r["shots"] for r in f6["maml"]] == list(range(1, shots + 1))
    assert len(f6["pretrain_history"]) == 1 and f6["head"]["head_lr"] > 0
    assert "transfer" in (run / "eval" / "report.md").read_text()
    assert (run / "eval" / "fig6_shots.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(run), "--quick", "--baseline", "nolabel"]) == 2
    assert 0 <= rep["table2"]["test"]["mean"] <= 1
    assert [r["steps"] for r in rep["fig3_inner_steps"]] == [0, 1, 2, 3, 4, 5]
    assert [r["frozen"] for r in rep["fig4_frozen_layers"]] == [0, 1]
    t3 = rep["table3_update_magnitude"]
    assert t3["meta_thresholded"]["fraction_nonzero"] <= t3["meta"]["fraction_nonzero"]
    for png in ("fig3_inner_steps.png", "fig4_frozen.png", "fig5_updates.png"):
        assert (run / "eval" / png).read_bytes()[:4] == b"\x89PNG"
    assert "meta-test" in (run / "eval" / "report.md").read_text()
    # a bad config through the CLI is an error line, exit code 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: {lr: -1}\n")
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(bad), "--out",
                 str(tmp_path / "r2")]) == 2


def test_rule_trained_run_starts_from_init_and_exports_its_rule(tiny_metadataset, tmp_path):
    """meta-train --init continues another run's theta0* through the on-chip rule
    (inner.rule_spec); export deploys the rule the run was trained through."""
    import json

    import yaml

    from neuromaml.cli import main
    from neuromaml.meta.train import load_run

    base = tmp_path / "sgd"
    meta_train(tiny_metadataset, _cfg(steps=1), base, progress=False)
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    d["model"] = {**d["model"], "zero_head": False}
    d["inner"] = {"rule": "three_factor", "learn_lr": False, "rule_spec": {"eta_exp": -8, "softmax_gain_exp": -6}}
    cfg_path = tmp_path / "rule.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    # start: the init run's weights, not a fresh initialization
    init0 = tmp_path / "rule0"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg_path), "--out", str(init0),
                 "--steps", "0", "--init", str(base), "--no-progress"]) == 0
    _, p_base, _, _ = load_run(base)
    _, p_init, _, _ = load_run(init0, which="ckpt")
    assert all(torch.equal(p_base[k], p_init[k]) for k in p_base)
    assert read_json(init0 / "run.json")["init"] == str(base.resolve())
    run = tmp_path / "rule"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(cfg_path), "--out", str(run),
                 "--steps", "1", "--init", str(base), "--no-progress"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "bundle")]) == 0
    man = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert man["adapt"]["rule"]["eta_exp"] == -8 and man["adapt"]["rule"]["softmax_gain_exp"] == -6
    assert man["adapt"]["rule_source"] == "trained"          # deployed as trained, not "uncalibrated"
    # a rule field that does not exist, or a window outside the sample: one-line errors naming the key
    for bad, key in (({"rule_spec": {"eta": 1}}, "inner.rule_spec"), ({"label_window": [5, 500]}, "inner.label_window")):
        with pytest.raises(NeuromamlError, match=key.replace(".", r"\.")):
            from_dict({**d, "inner": {**d["inner"], **bad}})


def test_clip_grad_bounds_the_meta_gradient_norm(tiny_metadataset):
    from neuromaml.meta.train import Trainer

    norms = {}
    for clip in (0.0, 1e-4):
        tr = Trainer(_cfg(clip_grad=clip), tiny_metadataset, seed=3)
        tr.train_step()
        norms[clip] = torch.sqrt(sum((p.grad ** 2).sum() for p in tr.trained if p.grad is not None)).item()
    assert norms[0.0] > 1e-3            # unclipped, the meta-gradient is larger than the bound
    assert norms[1e-4] <= 1e-4 * 1.001  # clipped to it


def test_device_option_errors_are_clear(tiny_metadataset, tmp_path, monkeypatch):
    from neuromaml.meta.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(NeuromamlError, match="unknown device.*auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NeuromamlError, match="sees no CUDA GPU.*--device cpu"):
        meta_train(tiny_metadataset, _cfg(steps=1), tmp_path / "r", progress=False, device="cuda")
    assert not (tmp_path / "r").exists()        # nothing written for a run that cannot start


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where one is at hand)")
def test_meta_train_on_gpu_matches_cpu_and_resumes_on_cpu(tiny_metadataset, tmp_path, monkeypatch):
    """The same run on the GPU (full float32: no TF32) and on the CPU; a GPU checkpoint
    resumes on the CPU."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = meta_train(tiny_metadataset, _cfg(steps=2), tmp_path / "cpu", progress=False, device="cpu")
    gpu = meta_train(tiny_metadataset, _cfg(steps=2), tmp_path / "gpu", progress=False, device="cuda")
    assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
    a = load_checkpoint(tmp_path / "cpu" / "ckpt.pt")["model"]
    b = load_checkpoint(tmp_path / "gpu" / "ckpt.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k].cpu(), a[k], rtol=1e-4, atol=1e-5, msg=k)
    meta_train(tiny_metadataset, _cfg(steps=3), tmp_path / "gpu", resume=True, steps=3, progress=False,
               device="cpu")
    assert load_checkpoint(tmp_path / "gpu" / "ckpt.pt")["step"] == 3


def test_pretrain_epochs_start_meta_training_from_a_classifier(tiny_metadataset, tmp_path):
    """outer.pretrain_epochs: every layer but the final one comes from a classifier of the
    meta-train classes; the final layer starts as the config says (zero head here)."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    d["model"] = {**d["model"], "zero_head": True}
    plain = meta_train(tiny_metadataset, from_dict(d), tmp_path / "plain", steps=0, progress=False)
    d["outer"] = {**d["outer"], "pretrain_epochs": 2}
    pre = meta_train(tiny_metadataset, from_dict(d), tmp_path / "pre", steps=0, progress=False)
    a = load_checkpoint(tmp_path / "plain" / "ckpt.pt")["model"]
    b = load_checkpoint(tmp_path / "pre" / "ckpt.pt")["model"]
    names = list(a)
    head = [k for k in names if k.startswith(names[-1].rsplit(".", 2)[0])]
    assert head and any(not torch.equal(a[k], b[k]) for k in names if k not in head)   # features pre-trained
    assert all(torch.count_nonzero(b[k]) == 0 for k in head if k.endswith("weight"))   # head still zero
    hist = read_json(tmp_path / "pre" / "pretrain.json")["history"]
    assert len(hist) == 2 and pre["pretrain_final"]["epoch"] == 2 and plain["pretrain_final"] is None
    d["outer"]["pretrain_epochs"] = -1
    with pytest.raises(NeuromamlError, match="outer.pretrain_epochs"):
        meta_train(tiny_metadataset, from_dict(d), tmp_path / "bad", progress=False)


def test_one_writer_per_run_folder(tiny_metadataset, tmp_path):
    """A second meta-train of a run that another live process is writing is refused; a lock
    left by a killed process is taken over; the lock is gone when the run ends."""
    run = tmp_path / "run"
    run.mkdir()
    (run / train_mod.LOCK_NAME).write_text(str(os.getppid()))        # a live process holds it
    with pytest.raises(NeuromamlError, match=r"another meta-train \(pid \d+\) is writing this run"):
        meta_train(tiny_metadataset, _cfg(steps=1), run, progress=False)
    (run / train_mod.LOCK_NAME).write_text("999999999")              # no such process: stale
    meta_train(tiny_metadataset, _cfg(steps=1), run, progress=False)
    assert not (run / train_mod.LOCK_NAME).exists() and (run / "ckpt.pt").exists()


def test_config_numbers_read_as_written_and_named_configs_not_shadowed(tmp_path, monkeypatch):
    """YAML 1.1 (PyYAML) reads 1e-3 as text and 010 as octal 8; configs read them as a user
    means them. A folder named like a packaged config does not hide the config."""
    from neuromaml.meta.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text("outer:\n  lr: 1e-3\n  steps: 010\n")
    cfg = load_config(p)
    assert cfg.outer.lr == 0.001 and cfg.outer.steps == 10
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").mkdir()
    assert load_config("small").model.name == "small"


def test_collapsed_activity_is_reported(tiny_metadataset, tmp_path, capsys):
    """Silent outputs after adaptation make every logit equal (loss ln n_way): meta-training
    then learns nothing, and says so once, in the summary too."""
    import json

    import yaml

    from neuromaml.cli import main

    cfg = {**TINY, "model": {**TINY["model"], "zero_head": True},
           "inner": {"lr": 0.0, "learn_lr": False},
           "outer": {**TINY["outer"], "steps": 12, "meta_batch": 1, "lr": 1e-9, "val_every": 12,
                     "pretrain_epochs": 0}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(p), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("activity collapsed") == 1 and "since step 1" in err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["collapsed_at_step"] == 1


def test_rule_hyperparameters_meta_learned_and_exported_rounded(tiny_metadataset, tmp_path):
    """inner.learn_rule: the rule's eta and thresholds are meta-parameters (gradient through the
    torch twin), saved with the run, and export deploys them rounded to what the chip holds."""
    import yaml

    from neuromaml.cli import main
    from neuromaml.deploy.bundle import load_bundle
    from neuromaml.meta.train import load_checkpoint

    cfg = {**TINY, "model": {**TINY["model"], "zero_head": False},
           "inner": {"rule": "three_factor", "lr": 1.0, "learn_lr": False,
                     "rule_spec": {"eta_exp": -6, "error_threshold": 1, "surrogate_beta": 2.0},
                     "learn_rule": ["eta_exp", "error_threshold", "surrogate_beta"]},
           "outer": {**TINY["outer"], "steps": 3, "meta_batch": 1, "lr": 0.2, "pretrain_epochs": 0}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "r"
    assert main(["meta-train", "--data", str(tiny_metadataset), "--config", str(p), "--out", str(run),
                 "--no-progress"]) == 0
    learned = {k.split(".", 1)[1]: float(v) for k, v in load_checkpoint(run / "ckpt.pt")["lrs"].items()
               if k.startswith("rule.")}
    assert set(learned) == {"eta_exp", "error_threshold", "surrogate_beta"}
    assert learned != {"eta_exp": -6.0, "error_threshold": 1.0, "surrogate_beta": 2.0}, "no gradient reached them"
    assert main(["export", str(run), "--out", str(tmp_path / "b")]) == 0
    rule = load_bundle(tmp_path / "b")[0]["adapt"]["rule"]
    best = {k.split(".", 1)[1]: float(v) for k, v in torch.load(run / "best.pt", weights_only=False)["lrs"].items()
            if k.startswith("rule.")}
    assert rule["eta_exp"] == int(round(min(max(best["eta_exp"], -10), 5)))
    assert rule["error_threshold"] == int(round(max(best["error_threshold"], 0)))
    assert rule["surrogate_beta"] == pytest.approx(best["surrogate_beta"])


def test_resume_on_rewritten_data_notes_it_and_records_its_classes(tiny_metadataset, tmp_path, capsys):
    import json
    import shutil

    from neuromaml.meta.metadataset import build_metadataset

    data = tmp_path / "d.h5"
    shutil.copy(tiny_metadataset, data)
    run = tmp_path / "run"
    meta_train(data, _cfg(steps=1), run, progress=False)
    before = set(json.loads((run / "run.json").read_text())["trained_classes"])
    build_metadataset("synthetic", tmp_path / "o.h5", per_class=6, seed=0, digit_split="ordered")
    shutil.copy(tmp_path / "o.h5", data)                      # the same path, other classes
    capsys.readouterr()
    meta_train(data, None, run, resume=True, steps=2, progress=False)
    assert "changed since the run started" in capsys.readouterr().err
    meta = json.loads((run / "run.json").read_text())
    assert set(meta["trained_classes"]) > before and meta["resumed_on"][0]["from_step"] == 1


def test_yaml_merge_keys_are_read(tmp_path):
    from neuromaml.meta.config import load_config

    p = tmp_path / "c.yaml"
    # an unknown top-level key is an error, so the anchor lives inside the section it is merged into
    p.write_text("outer:\n  <<: &b {steps: 3, lr: 0.01}\n  lr: 0.002\n")
    cfg = load_config(p)
    assert cfg.outer.steps == 3 and cfg.outer.lr == 0.002


def test_activity_init_runs_before_training_and_is_recorded(tiny_metadataset, tmp_path):
    """model.init_rate: meta-train scales the hidden layer to the target rate before its first
    step (meta.init) and records what it did in run.json; the run starts from those weights."""
    from neuromaml.meta.train import load_run

    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    d["model"] = {**d["model"], "init_rate": 0.2}
    run = tmp_path / "act"
    meta_train(tiny_metadataset, from_dict(d), run, steps=0, progress=False)
    rec = read_json(run / "run.json")["activity_init"]
    assert len(rec) == 1 and rec[0]["kind"] == "Dense" and abs(rec[0]["rate_after"] - 0.2) < 0.03
    _, p, _, _ = load_run(run, which="ckpt")
    plain = tmp_path / "plain"
    meta_train(tiny_metadataset, _cfg(), plain, steps=0, progress=False)
    assert read_json(plain / "run.json")["activity_init"] is None
    _, q, _, _ = load_run(plain, which="ckpt")
    w = f"blocks.{rec[0]['block']}.synapse.weight"
    torch.testing.assert_close(p[w], q[w] * rec[0]["scale"])


def test_a_run_older_than_a_model_field_still_loads(tiny_metadataset, tmp_path):
    """A run written before a ModelConfig field existed (model.init_rate) has neither the field in
    config.yaml nor in its checkpoint's config: it loads (the field's default), it is not "from
    another run"; a run whose config.yaml disagrees with its checkpoint is still refused."""
    import yaml

    from neuromaml.meta.train import load_run

    run = tmp_path / "old"
    meta_train(tiny_metadataset, _cfg(), run, steps=0, progress=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    del cfg["model"]["init_rate"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    state = torch.load(run / "ckpt.pt", weights_only=False)
    del state["config"]["model"]["init_rate"]
    torch.save(state, run / "ckpt.pt")
    assert load_run(run, which="ckpt")[3].model.init_rate == 0.0
    cfg["model"]["init_rate"] = 0.3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(NeuromamlError, match="differs .* in model.init_rate"):
        load_run(run, which="ckpt")


def test_resume_keeps_config_yaml_the_runs_record_of_its_steps(tiny_metadataset, tmp_path, capsys):
    """--steps extends a resumed run; config.yaml then says so. An edit of its outer.steps is not
    how a run is extended: resume says the checkpoint's count runs, and writes it back (the file
    said 4 while the resume reported 'asked for 3' and trained nothing)."""
    import yaml

    run = tmp_path / "r"
    meta_train(tiny_metadataset, _cfg(steps=2), run, progress=False)
    meta_train(tiny_metadataset, None, run, resume=True, steps=3, progress=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["outer"]["steps"] == 3
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["outer"]["steps"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    meta_train(tiny_metadataset, None, run, resume=True, progress=False)
    assert "says outer.steps 4; --resume runs the checkpoint's 3" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["outer"]["steps"] == 3
