"""Finetuning after pruning, schedules, iterative vs one-shot (tiny runs)."""

import pytest
import torch

from eie.pruning import train as train_mod
from eie.pruning.iterative import FinetuneConfig, iterative_prune, schedule
from eie.pruning.magnitude import one_shot_prune
from eie.pruning.masks import clone_model, is_pruned, overall_sparsity, weight_of
from eie.pruning.train import TrainConfig, accuracy, finetune

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(train_mlp):
    return train_mlp(10)


def test_geometric_schedule():
    s = schedule(0.92, 4)
    assert len(s) == 4 and s[-1] == pytest.approx(0.92)
    kept = [1 - x for x in s]
    ratios = [kept[0]] + [kept[i + 1] / kept[i] for i in range(3)]
    assert ratios == pytest.approx([0.08 ** 0.25] * 4)  # the same share of what is left each round
    assert schedule(0.9, 3, "linear") == pytest.approx([0.3, 0.6, 0.9])
    per = schedule({"a": 0.5, "b": 0.0}, 2)
    assert per[-1] == pytest.approx({"a": 0.5, "b": 0.0}) and per[0]["b"] == 0
    with pytest.raises(ValueError):
        schedule(1.0, 3)
    with pytest.raises(ValueError):
        schedule(0.5, 0)
    with pytest.raises(ValueError):
        schedule(0.5, 2, "cubic")


def test_finetune_uses_scaled_lr(monkeypatch, trained, splits):
    seen = []
    real = train_mod.train

    def spy(model, splits, cfg, **kw):
        seen.append(cfg)
        return real(model, splits, cfg, **kw)

    monkeypatch.setattr("eie.pruning.train.train", spy)
    m = clone_model(trained)
    finetune(m, splits, TrainConfig(lr=1e-3, epochs=60), epochs=1, lr_scale=0.01)
    assert seen[0].lr == pytest.approx(1e-5) and seen[0].epochs == 1
    assert finetune(m, splits, TrainConfig(), epochs=0) == []
    with pytest.raises(ValueError):
        FinetuneConfig(lr_scale=0)
    with pytest.raises(ValueError):
        FinetuneConfig(epochs=-1)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_iterative_reaches_target_and_keeps_masks(trained, splits, scope):
    m = clone_model(trained)
    hist = iterative_prune(m, splits, 0.9, TrainConfig(epochs=1), steps=3, ft=FinetuneConfig(2, 0.1, 1), scope=scope)
    assert [h["step"] for h in hist] == [0, 1, 2, 3, 4]
    kept = [h["kept"] for h in hist]
    assert kept[0] == 1.0 and all(a >= b for a, b in zip(kept, kept[1:]))
    assert kept[-1] == pytest.approx(0.1, abs=2e-4) and overall_sparsity(m) == pytest.approx(0.9, abs=2e-4)
    assert hist[-1].get("final") is True
    assert all(is_pruned(l) for l in m.layers)
    if scope == "layer":
        assert all(v == pytest.approx(0.9, abs=1e-3) for v in hist[-1]["layers"].values())


def test_finetuning_recovers_accuracy(trained, splits):
    m = clone_model(trained)
    hist = one_shot_prune(m, splits, 0.95, TrainConfig(epochs=1), epochs=15, lr_scale=0.3)
    before, after = hist[1]["val_acc"], hist[2]["val_acc"]
    assert hist[1]["finetuned"] is False and hist[2]["finetuned"] is True
    assert after > before + 0.05, (before, after)
    assert overall_sparsity(m) == pytest.approx(0.95, abs=2e-4)
    assert (weight_of(m.layers[0]) != 0).sum() > 0
    assert accuracy(m, splits, "val") == pytest.approx(after)
