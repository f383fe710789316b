"""Baselines of the paper's Table 2 and Fig. 6: the non-spiking CNN and transfer learning."""
import dataclasses

import pytest
import torch

from neuromaml.io import NeuromamlError
from neuromaml.meta.config import from_dict
from neuromaml.meta.maml import InnerConfig, evaluate_task, meta_gradient
from neuromaml.meta.models import ModelConfig, build_model
from neuromaml.meta.tasks import TaskSampler
from neuromaml.meta.transfer import TransferConfig, pretrain, shots_curve, transfer_model

ANN = ModelConfig(name="ann_cnn", n_way=3, logit_scale=1.0, zero_head=False)


def test_ann_sums_events_and_meta_gradient_reaches_every_layer(tiny_metadataset):
    model = build_model(ANN, seed=0)
    x = (torch.rand(2, 2, 16, 32, 100) < 0.1).float()
    # the frames enter as one image: events summed over time (any order of the bins gives the same output)
    perm = torch.randperm(100)
    assert torch.equal(model(x), model(x[..., perm]))
    assert model(x).shape == (2, 3, 1)
    params = model.meta_params()
    task = TaskSampler(tiny_metadataset, "train", 3, 1, 2, seed=0).sample(0)
    meta_gradient(model, params, [task], InnerConfig(lr=1.0))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    assert 0 <= evaluate_task(model, params, task, InnerConfig(lr=1.0)) <= 1


def test_ann_cannot_take_the_rule_or_be_exported(tmp_path):
    with pytest.raises(NeuromamlError, match="inner.rule"):
        from_dict({"model": {"name": "ann_cnn"}, "inner": {"rule": "three_factor"}})
    from neuromaml.deploy.runs import _check_spiking

    with pytest.raises(NeuromamlError, match="non-spiking"):
        _check_spiking(tmp_path, "ann_cnn")


def test_transfer_model_keeps_features_and_zeroes_the_head(tiny_metadataset):
    from neuromaml.meta.metadataset import MetaDataset

    ds = MetaDataset(tiny_metadataset)
    cfg = ModelConfig(name="small", n_way=3, hidden=[8], burn_in=90)
    pre, hist = pretrain(cfg, ds, TransferConfig(epochs=1, batch=64), seed=0)
    assert pre.cfg.n_way == len(ds.splits["train"]) and len(hist) == 1
    tl = transfer_model(pre, 3)
    hidden, head = tl.param_names()
    assert torch.equal(tl.state_dict()[hidden], pre.state_dict()[hidden])
    assert tl.state_dict()[head].shape[0] == 3 and not tl.state_dict()[head].any()


def test_shots_curve_at_k_equals_k_shot_adaptation(tiny_metadataset):
    """The k-shot point of the curve is the inner loop on the first k shots of every
    class: with all K shots it must equal evaluate_task on the same K-shot task."""
    model = build_model(ModelConfig(name="small", n_way=3, hidden=[8], burn_in=90, zero_head=False), seed=1)
    params = {k: v.detach() for k, v in model.meta_params().items()}
    inner = InnerConfig(lr=2.0, steps=2, first_order=True)
    sampler = TaskSampler(tiny_metadataset, "test", 3, 3, 2, seed=5)
    curve = shots_curve(model, params, sampler, 3, inner)
    assert [r["shots"] for r in curve] == [1, 2, 3]
    direct = [evaluate_task(model, params, sampler.sample(i), inner) for i in range(3)]
    assert curve[-1]["acc"] == pytest.approx(sum(direct) / 3)
    # the 1-shot point sees only shot 0 of each class: a task built from those shots agrees
    one = []
    for i in range(3):
        t = sampler.sample(i)
        rows = torch.arange(3) * 3
        t1 = dataclasses.replace(t, support_x=t.support_x[rows], support_y=t.support_y[rows])
        one.append(evaluate_task(model, params, t1, inner))
    assert curve[0]["acc"] == pytest.approx(sum(one) / 3)
