"""Magnitude pruning on torch.nn.utils.prune: exact sparsity, global vs per layer,
masks through finetuning, and the pitfalls (repeated amounts, deepcopy, export)."""

import copy

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from eie.pruning.train import finetune
from eie.pruning.magnitude import prune_to
from eie.pruning.masks import (apply_masks_from_zeros, clone_model, is_pruned, kept_fraction, masks, overall_sparsity,
                               plain_state_dict, remove_pruning, sparsity_report, weight_of)
from eie.pruning.models import MLP, build_model
from eie.pruning.train import TrainConfig, accuracy, set_seed, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(train_mlp):
    return train_mlp(8)


def n_hooks(module):
    return sum(isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values())


def test_per_layer_sparsity_is_exact_and_smallest_go(trained):
    m = clone_model(trained)
    dense = {n: weight_of(l).clone() for n, l in [("layers.0", m.layers[0]), ("layers.1", m.layers[1])]}
    rep = prune_to(m, 0.7, scope="layer")
    for n, r in rep.items():
        assert r["zeros"] == round(0.7 * r["params"]), n
    # The removed weights are the smallest in magnitude of their layer.
    for n, w0 in dense.items():
        w = weight_of(dict(m.named_modules())[n])
        assert w0.abs()[w == 0].max() <= w0.abs()[w != 0].min()


def test_global_pruning_one_threshold_across_layers(trained):
    m = clone_model(trained)
    w0 = {n: weight_of(l).clone() for n, l in m.named_modules() if isinstance(l, torch.nn.Linear)}
    rep = prune_to(m, 0.8, scope="global")
    total = sum(r["params"] for r in rep.values())
    assert sum(r["zeros"] for r in rep.values()) == round(0.8 * total)
    # Layers end at different sparsities, all cut at one |w| threshold.
    sp = [r["sparsity"] for r in rep.values()]
    assert max(sp) - min(sp) > 0.05
    kept_min = min(float(w0[n].abs()[weight_of(l) != 0].min()) for n, l in m.named_modules() if n in w0)
    pruned_max = max(float(w0[n].abs()[weight_of(l) == 0].max()) for n, l in m.named_modules() if n in w0)
    assert pruned_max <= kept_min


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_repeated_pruning_reaches_exact_targets(trained, scope):
    """Pitfall: `amount` of a second prune call is a share of the weights still left."""
    m = clone_model(trained)
    for s in (0.5, 0.75, 0.9, 0.9, 0.95):
        prune_to(m, s, scope=scope)
        assert overall_sparsity(m) == pytest.approx(s, abs=2e-4)
        if scope == "layer":
            for r in sparsity_report(m).values():
                assert r["zeros"] == round(s * r["params"])
    # One pruning hook per module however many calls: a single prune.remove exports it.
    assert all(n_hooks(l) == 1 for l in m.layers)
    # Never un-prunes: a lower target leaves the model as it is.
    before = masks(m)
    prune_to(m, 0.3, scope=scope)
    after = masks(m)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_naive_float_amount_would_overshoot(trained):
    """What prune_to protects against: a float amount compounds on the remaining weights."""
    m = clone_model(trained)
    prune.l1_unstructured(m.layers[0], "weight", amount=0.5)
    prune.l1_unstructured(m.layers[0], "weight", amount=0.75)
    assert (weight_of(m.layers[0]) == 0).float().mean() == pytest.approx(0.875, abs=1e-3)
    m = clone_model(trained)
    prune_to(m, {"layers.0": 0.5})
    prune_to(m, {"layers.0": 0.75})
    assert (weight_of(m.layers[0]) == 0).float().mean() == pytest.approx(0.75, abs=1e-3)


def test_masks_keep_sparsity_through_finetuning(trained, splits):
    m = clone_model(trained)
    prune_to(m, 0.9, scope="global")
    zeros = {n: (weight_of(l) == 0).clone() for n, l in m.named_modules() if is_pruned(l)}
    orig = m.layers[0].weight_orig.detach().clone()
    finetune(m, splits, TrainConfig(epochs=1), epochs=3, lr_scale=0.1)
    for n, l in m.named_modules():
        if n in zeros:
            assert torch.equal(weight_of(l) == 0, zeros[n]), n
    assert not torch.equal(m.layers[0].weight_orig, orig)  # it did train
    assert overall_sparsity(m) == pytest.approx(0.9, abs=2e-4)
    # Also with weight decay (which moves weight_orig under the mask, never the weight).
    train(m, splits, TrainConfig(epochs=2, weight_decay=0.1))
    assert overall_sparsity(m) == pytest.approx(0.9, abs=2e-4)


def test_clone_model_of_pruned_model(trained):
    m = clone_model(trained)
    prune_to(m, 0.5)
    with pytest.raises(RuntimeError):
        copy.deepcopy(m)  # the pitfall itself (weight is a non-leaf tensor)
    c = clone_model(m)
    x = torch.rand(4, 64)
    torch.testing.assert_close(c(x), m(x))
    with torch.no_grad():
        c.layers[0].weight_orig.add_(1.0)
    assert not torch.allclose(c(x), m(x))  # independent copies
    m(x).sum().backward()  # the original still trains (its weight keeps its graph)
    assert m.layers[0].weight_orig.grad is not None


def test_remove_pruning_and_plain_checkpoint(trained):
    m = clone_model(trained)
    prune_to(m, 0.8, scope="global")
    prune_to(m, 0.9, scope="global")
    x = torch.rand(5, 64)
    y = m(x).detach()
    sd = plain_state_dict(m)
    assert is_pruned(m.layers[0])  # on a copy
    assert not any(k.endswith(("_orig", "_mask")) for k in sd)
    with pytest.raises(RuntimeError):
        MLP().load_state_dict(m.state_dict())  # a pruned state dict does not load into a fresh model
    fresh = MLP()
    fresh.load_state_dict(sd)
    torch.testing.assert_close(fresh(x), y)
    assert kept_fraction(fresh) == pytest.approx(0.1, abs=2e-4)
    remove_pruning(m)
    assert all(n_hooks(l) == 0 and not is_pruned(l) for l in m.layers)
    assert isinstance(m.layers[0].weight, torch.nn.Parameter)
    torch.testing.assert_close(m(x), y)
    # Masks come back from the zeros, so finetuning a loaded checkpoint stays sparse.
    apply_masks_from_zeros(fresh)
    assert all(is_pruned(l) for l in fresh.layers)
    assert kept_fraction(fresh) == pytest.approx(0.1, abs=2e-4)


def test_bad_arguments(trained):
    m = clone_model(trained)
    with pytest.raises(ValueError, match="scope"):
        prune_to(m, 0.5, scope="row")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_to(m, 1.0)
    with pytest.raises(ValueError, match="unknown layer"):
        prune_to(m, {"fc9": 0.5})
    with pytest.raises(ValueError, match="global"):
        prune_to(m, {"layers.0": 0.5}, scope="global")


def test_conv_layers_all(splits):
    set_seed(0)
    m = build_model("conv", 64, 10, (8, 8))
    rep = prune_to(m, 0.5, layers="all")
    assert set(rep) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(r["zeros"] == round(0.5 * r["params"]) for r in rep.values())
    assert accuracy(m, splits, "val") >= 0  # still runs
    assert np.isfinite(overall_sparsity(m, "all"))
