"""`neuromaml demo --quick`: the whole path end to end on tiny settings, and a second run reuses it."""
import json

import pytest

from neuromaml import cli


@pytest.mark.lava
@pytest.mark.slow
def test_quick_demo_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr()
    report = (out / "report.md").read_text()
    assert "| on-chip three-factor rule, fixed point |" in report
    # the meta-dataset's summary, as `neuromaml data info` prints it, on screen and in the report
    for text in (printed.out + printed.err, report):
        assert "classes      100: train 64, val 16, test 20" in text
        assert "frames       (N, C, H, W, T) = (N, 2, 16, 32, 100)" in text
    s = json.loads((out / "demo.json").read_text())
    assert list(s["stages"]) == ["data", "train", "baselines", "evaluate", "export", "verify", "emulate", "report"]
    ev = json.loads((out / "run" / "eval" / "report.json").read_text())
    assert set(ev["baselines"]) == {"fomaml", "ann_cnn"} and ev["baselines"]["fomaml"]["first_order"] is True
    assert "ann_cnn" not in json.dumps(man_of(out)) and "| non-spiking CNN" in report
    assert s["stages"]["verify"]["ok"] is True
    agree = s["stages"]["emulate"]["lava"]["agreement"]
    assert agree["output_spikes_identical"] and agree["final_weights_identical"]
    for f in ("data.h5", "run/summary.json", "bundle/manifest.json", "bundle/network.net",
              "bundle/network.nir", "emulate/emulate.json", "deployment_gap.png"):
        assert (out / f).exists(), f
    man = json.loads((out / "bundle" / "manifest.json").read_text())
    cal = man["adapt"]["calibration"]
    # the demo's bundle is what `neuromaml calibrate` writes: meta-val tasks of the demo's data
    assert cal["split"] == "val" and cal["data"] == str((out / "data.h5").resolve())
    assert man["adapt"]["rule_source"] == "calibrated" and man["adapt"]["weight_exp"] == cal["weight_exp"]
    assert (out / "bundle" / "calibration" / "calibration.json").exists()
    assert "| no learning: nearest class mean" in (out / "emulate" / "emulate.md").read_text()

    # second run: every stage reuses what the first built
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
    s2 = json.loads((out / "demo.json").read_text())
    for name in ("data", "train", "evaluate", "export", "verify", "emulate"):
        assert s2["stages"][name].get("reused") is True, name
    assert all(r["reused"] for r in s2["stages"]["baselines"].values())
    assert s2["stages"]["emulate"]["onchip"] == s["stages"]["emulate"]["onchip"]

    # a copied (or moved) demo folder: its bundle names the old run, so it is exported again from
    # this folder's run (emulate's slayer columns read the bundle's source run)
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    capsys.readouterr()
    assert cli.main(["demo", "--out", str(moved), "--quick"]) == 0
    assert f"exported from {(out / 'run').resolve()}" in capsys.readouterr().err
    sm = json.loads((moved / "demo.json").read_text())
    assert sm["stages"]["train"].get("reused") is True and sm["stages"]["export"].get("reused") is False
    assert man_of(moved)["source_run"] == str((moved / "run").resolve())

    # a failed verify is not carried on by a re-run: it runs again
    rep = json.loads((out / "bundle" / "verify.json").read_text())
    (out / "bundle" / "verify.json").write_text(json.dumps({**rep, "ok": False}))
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
    s3 = json.loads((out / "demo.json").read_text())
    assert s3["stages"]["verify"].get("reused") is None and s3["stages"]["verify"]["ok"] is True
    # nor is an emulate.json of another state of the bundle (a calibrate since rewrote its manifest)
    em = json.loads((out / "emulate" / "emulate.json").read_text())
    assert em["bundle_manifest_sha256"] == man_of(out)["manifest_sha256"]
    (out / "emulate" / "emulate.json").write_text(json.dumps({**em, "bundle_manifest_sha256": "0" * 64}))
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
    assert json.loads((out / "demo.json").read_text())["stages"]["emulate"].get("reused") is None
    # nor is an edited or damaged emulate.json: a column whose accuracy is text, a Lava column
    # that is a list: emulate runs again and the report comes from its fresh summary
    em_path = out / "emulate" / "emulate.json"
    for damage in (lambda e: e["onchip"].__setitem__("mean", "95%"), lambda e: e.__setitem__("lava", [])):
        em = json.loads(em_path.read_text())
        damage(em)
        em_path.write_text(json.dumps(em))
        assert cli.main(["demo", "--out", str(out), "--quick"]) == 0
        s4 = json.loads((out / "demo.json").read_text())
        assert s4["stages"]["emulate"].get("reused") is None
        assert s4["stages"]["emulate"]["onchip"]["mean"] == s["stages"]["emulate"]["onchip"]["mean"]
    # a full run must not reuse a --quick run's tiny data and 2-step network
    capsys.readouterr()
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert "other settings: quick=True (asked False)" in capsys.readouterr().err
    # nor may a folder of an older version, whose data had other recordings per class or split
    old = {k: v for k, v in s3.items() if k != "data"}
    (out / "demo.json").write_text(json.dumps(old))
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 2
    assert "other settings: data=None (asked {'per_class': 8, 'split': 'authors'})" in capsys.readouterr().err
    # a reused stage file with text where the report needs a number: one line naming the file, the
    # fix to delete it (its stage runs again)
    (out / "demo.json").write_text(json.dumps(s3))
    summ = json.loads((out / "run" / "summary.json").read_text())
    (out / "run" / "summary.json").write_text(json.dumps({**summ, "best_val_acc": "abc"}))
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "run/summary.json: reused from an earlier run" in err and "edited or damaged" in err
    assert "fix: delete" in err and "Traceback" not in err
    (out / "demo.json").write_text("[]")
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 2
    assert "demo.json: is not a demo summary" in capsys.readouterr().err


def man_of(out):
    return json.loads((out / "bundle" / "manifest.json").read_text())


def test_interrupted_training_resumes(tmp_path, monkeypatch):
    """A demo killed during meta-training continues from the checkpoint on the next run."""
    from neuromaml.emulator import demo as demo_mod

    out = tmp_path / "demo"
    out.mkdir()
    cfg = demo_mod.demo_config(None, quick=True)
    cfg.outer.steps = 3
    demo_mod._stage_data(out, quick=True, seed=0)

    calls = {"n": 0}

    def stop_after_two(tr):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    from neuromaml.meta import train as train_mod

    real = train_mod.meta_train
    monkeypatch.setattr(train_mod, "meta_train",
                        lambda *a, **k: real(*a, **{**k, "on_step": stop_after_two}))
    with pytest.raises(KeyboardInterrupt):
        demo_mod._stage_train(out, out / "data.h5", cfg, seed=0)
    monkeypatch.setattr(train_mod, "meta_train", real)
    r = demo_mod._stage_train(out, out / "data.h5", cfg, seed=0)
    assert r["resumed"] is True and r["steps"] == 3


@pytest.mark.lava
@pytest.mark.slow
def test_quick_demo_on_the_users_data(tmp_path):
    """`demo --data FILE.h5`: the path runs on a meta-dataset the user built, read in place, and
    the bundle is calibrated on that file's meta-validation split."""
    from neuromaml.deploy.bundle import sha256
    from neuromaml.meta.metadataset import build_metadataset

    data = tmp_path / "mine.h5"
    build_metadataset("synthetic", data, per_class=8, seed=3)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick", "--data", str(data)]) == 0
    s = json.loads((out / "demo.json").read_text())
    assert s["data"] == {"file": str(data.resolve()), "sha256": sha256(data)}
    assert not (out / "data.h5").exists()
    cal = man_of(out)["adapt"]["calibration"]
    assert cal["data"] == str(data.resolve()) and cal["split"] == "val"
    assert f"Meta-dataset `{data.resolve()}`" in (out / "report.md").read_text()


# ---------------------------------------------------------------- what a reused stage file was made with
def _emulate_json(data, digest, **over) -> dict:
    """An emulate.json the demo would reuse as it is: the demo's --quick settings on ``data``."""
    from neuromaml.deploy.bundle import sha256
    from neuromaml.onchip.rule import RuleSpec

    col = {"mean": 0.5, "std": 0.1, "tasks": 6}
    agree = {"episodes": 1, "output_spikes_identical": True, "final_weights_identical": True,
             "lava_seconds_per_episode": 1.0, "fast_seconds_per_episode": 0.01, "speedup": 100.0}
    return {"bundle": "b", "bundle_manifest_sha256": digest, "data": str(data), "data_sha256": sha256(data),
            "split": "test", "tasks": 6, "n_way": 5, "k_shot": 1, "n_query": 2, "seed": 0,
            "rule": RuleSpec().to_dict(), "onchip": col, "lava": {**col, "tasks": 1, "agreement": agree},
            **over}


@pytest.mark.parametrize("edit, reused", [
    ({}, True),
    ({"split": "val"}, False),               # a user's emulate of the val split is not the meta-test number
    ({"seed": 7}, False),
    ({"n_query": 5}, False),
    ({"data_sha256": "0" * 64}, False),      # another file at the same path
    ({"data": "/elsewhere/data.h5"}, True),  # the same bytes under another path: a moved or copied demo folder
    ({"data": "/elsewhere/data.h5", "data_sha256": None}, False),   # no digest recorded: the path decides
    ({"n_way": 0}, False),                   # the report divides by it
    ({"n_way": 1}, False),
    ({"k_shot": -3}, False),
    ({"rule": None}, False),                 # the report reads its fields
    ({"rule": {"eta_exp": "fast"}}, False),
])
def test_demo_reuses_emulate_json_only_as_it_would_run_it(tmp_path, tiny_metadataset, monkeypatch, capsys,
                                                         edit, reused):
    from neuromaml.emulator import demo as demo_mod
    from neuromaml.emulator import emulate as emulate_mod
    from neuromaml.emulator.results import EmulateSummary

    out = tmp_path / "demo"
    (out / "bundle").mkdir(parents=True)
    (out / "emulate").mkdir()
    (out / "bundle" / "manifest.json").write_text(json.dumps({"manifest_sha256": "d" * 64}))
    fresh = _emulate_json(tiny_metadataset, "d" * 64)
    (out / "emulate" / "emulate.json").write_text(json.dumps({**fresh, **edit}))
    ran = []
    monkeypatch.setattr(emulate_mod, "emulate", lambda *a, **k: ran.append(k) or EmulateSummary.from_dict(fresh))
    r = demo_mod._stage_emulate(out, tiny_metadataset, tasks=6, lava_tasks=1, quick=True, seed=0)
    assert bool(r.get("reused")) is reused and bool(ran) is not reused
    if ran:
        assert ran[0]["split"] == "test" and ran[0]["queries"] == 2 and ran[0]["seed"] == 0
        if "n_way" not in edit and "k_shot" not in edit and "rule" not in edit:
            assert "runs again" in capsys.readouterr().err


def test_emulate_summary_usable_refuses_what_the_report_cannot_show():
    from neuromaml.emulator.results import EmulateSummary

    good = _emulate_json(__file__, "d" * 64)
    assert EmulateSummary.from_dict(good).usable()
    for bad in ({"n_way": 1}, {"k_shot": 0}, {"n_query": 0}, {"tasks": 0}, {"rule": []}, {"rule": None},
                {"rule": {"no_such_field": 1}}, {"split": 3}):
        assert not EmulateSummary.from_dict({**good, **bad}).usable(), bad


@pytest.mark.parametrize("edit, why", [
    ({}, None),
    ({"lava_vs_fixed": None, "compared": ["slayer_vs_fixed"]}, "lava_vs_fixed"),   # verify --no-lava
    ({"ok": False}, "ok"),
    ({"samples": 1}, "samples"),
    ({"bundle_manifest_sha256": "0" * 64}, "bundle_manifest_sha256"),           # the bundle changed since
    ({"slayer_vs_fixed": {"equal": False}}, "slayer_vs_fixed"),
])
def test_demo_reuses_verify_json_only_for_a_lava_check_of_the_bundle_now(edit, why):
    from neuromaml.emulator.demo import verify_differs

    rep = {"ok": True, "samples": 2, "steps": 100, "lava_vs_fixed": {"equal": True},
           "slayer_vs_fixed": {"equal": True}, "bundle_manifest_sha256": "d" * 64, **edit}
    diff = verify_differs(rep, 2, 100, "d" * 64)
    assert (diff == []) if why is None else any(d.startswith(why + "=") for d in diff), diff


def test_demo_report_names_only_the_comparisons_verify_made(tmp_path):
    from neuromaml.emulator.demo import write_report

    summary = {"stages": {"verify": {"ok": True, "samples": 1, "steps": 20, "lava_vs_fixed": None,
                                     "slayer_vs_fixed": {"equal": True}}},
               "data": {}, "config": None, "seed": 0, "quick": True, "seconds": {}}
    write_report(tmp_path, summary)
    text = (tmp_path / "report.md").read_text()
    assert "slayer vs fixed engine" in text and "Lava vs fixed" not in text
    # the typed summary (what demo() returns and writes) gives the same report
    from neuromaml.emulator.results import DemoSummary

    typed = DemoSummary.from_dict(summary)
    assert typed.to_dict() == summary and typed.reused() == []
    write_report(tmp_path, typed)
    assert (tmp_path / "report.md").read_text() == text


def test_demo_retrains_a_run_of_an_edited_config(tmp_path, tiny_metadataset, monkeypatch, capsys):
    """A --config file edited in place between two demo runs: the run folder records the config it
    was trained with (config.yaml) and the data (run.json); when they differ, the run is trained anew."""
    import yaml

    from neuromaml.deploy.bundle import sha256
    from neuromaml.emulator import demo as demo_mod
    from neuromaml.meta import train as train_mod

    cfg = demo_mod.demo_config(None, quick=True)
    run = tmp_path / "demo" / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "seed": 0}, sort_keys=False))
    (run / "run.json").write_text(json.dumps({"seed": 0, "data_sha256": sha256(tiny_metadataset)}))
    (run / "summary.json").write_text(json.dumps({"steps": cfg.outer.steps, "best_val_acc": 0.5}))
    ran = []
    monkeypatch.setattr(train_mod, "meta_train", lambda *a, **k: ran.append(a) or {"steps": cfg.outer.steps})
    assert demo_mod._stage_train(tmp_path / "demo", tiny_metadataset, cfg, seed=0)["reused"] is True
    assert not ran
    cfg.model.hidden = [16, 16]                                  # the --config file as edited
    r = demo_mod._stage_train(tmp_path / "demo", tiny_metadataset, cfg, seed=0)
    assert r["reused"] is False and ran and not (run / "summary.json").exists()
    assert "config model.hidden" in capsys.readouterr().err


def test_demo_rebuilds_a_data_file_made_with_other_settings(tmp_path, tiny_metadataset, capsys):
    """The embedded data in a demo folder is reused only when it was made as this run asks
    (source, recordings per class, seed): a data.h5 of another size is rebuilt, with a note (it was
    reused silently while demo.json claimed the asked size)."""
    import shutil

    from neuromaml.emulator import demo as demo_mod
    from neuromaml.meta.metadataset import MetaDataset

    out = tmp_path / "d"
    out.mkdir()
    shutil.copy(tiny_metadataset, out / "data.h5")
    have = int(MetaDataset(out / "data.h5").attrs["per_class"])
    assert have != demo_mod.demo_per_class(True)
    r = demo_mod._stage_data(out, True, 0)
    assert not r["reused"] and "per_class=" in capsys.readouterr().err
    assert int(MetaDataset(out / "data.h5").attrs["per_class"]) == demo_mod.demo_per_class(True)
    assert demo_mod._stage_data(out, True, 0)["reused"]                  # now it is the asked one
