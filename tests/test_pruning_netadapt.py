"""NetAdapt on the EIE cycle model (pruning/netadapt.py); the CLI is tested in test_pruning_cli.py."""

import json

import numpy as np
import pytest
import torch

from eie.golden_model import encode_network
from eie.golden_model.config import EIEConfig
from eie.golden_model.model import run_image
from eie.pruning.models import fc_layers
from eie.pruning.latency import EIELatency, WeightCount
from eie.pruning.masks import clone_model, get_mask, weight_of
from eie.pruning.netadapt import NetAdaptConfig, _prune_layer_to_target, run_netadapt

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small(train_mlp):
    return train_mlp(6, sizes=(64, 32, 16, 10))


CFG = NetAdaptConfig(delta=0.15, budget=0.2, max_iterations=2, short_epochs=1, long_epochs=1, n_pe=2,
                     n_calibration=8, seed=0)


def test_estimator_is_the_golden_cycle_model(small, splits):
    x = splits.x_train[:8]
    W = [m.weight.detach().numpy().astype(np.float64) for _, m in fc_layers(small)]
    img = encode_network(W, 2, calibration=x)
    ref = run_image(img, x, EIEConfig(n_pe=2)).report.cycles / len(x)
    est = EIELatency(x, n_pe=2, sharing="kmeans")
    assert est(small) == ref
    lin = EIELatency(x, n_pe=2, sharing="linear")(small)
    assert abs(lin - ref) / ref < 0.05
    # fewer weights, fewer cycles; cached results are reused
    pruned = clone_model(small)
    with torch.no_grad():
        for _, m in fc_layers(pruned):
            m.weight.mul_((m.weight.abs() > m.weight.abs().median()).float())
    assert est(pruned) < 0.8 * ref
    calls = est.calls
    est(pruned)
    assert est.calls == calls


def test_prune_layer_to_target_is_minimal_and_meets_it(small, splits):
    est = EIELatency(splits.x_train[:8], n_pe=2)
    base = est(small)
    m = clone_model(small)
    target = 0.9 * base
    res = _prune_layer_to_target(m, 1, target, est, 0.01)
    assert res is not None and res["latency"] <= target
    assert est(m) == res["latency"]
    masks = [get_mask(l) for _, l in fc_layers(m)]
    n_pruned = int((masks[1] == 0).sum())
    assert n_pruned == res["pruned"] > 0
    assert torch.all(masks[0] == 1) and torch.all(masks[2] == 1)      # only layer 1 touched
    # the removed weights are the smallest of the layer
    w = weight_of(fc_layers(small)[1][1]).abs()
    assert w[masks[1] == 0].max() <= w[masks[1] == 1].min()
    # one weight fewer misses the target (bisection stops between measured neighbours)
    order = np.argsort(w.numpy().ravel(), kind="stable")
    W = est.weights(small)
    W1 = W[1].ravel().copy()
    W1[order[:n_pruned - 1]] = 0
    assert est.of_weights([W[0], W1.reshape(W[1].shape), W[2]], est.fc_input(small)) > target
    # an unreachable target leaves the model alone
    m2 = clone_model(small)
    assert _prune_layer_to_target(m2, 2, 0.1 * base, est, 0.01) is None
    assert all(torch.all(get_mask(l) == 1) for _, l in fc_layers(m2))


def test_every_iteration_meets_its_target(small, splits, tmp_path):
    res = run_netadapt(small, splits, CFG, out_dir=tmp_path, keep_models=True)
    its = res["iterations"]
    models = res["iteration_models"]
    assert len(its) == 3 and len(models) == 3
    delta = CFG.delta * res["dense"]["latency"]
    fresh = EIELatency(splits.x_train[:8], n_pe=2)     # independent, uncached re-measurement
    for i in (1, 2):
        it = its[i]
        assert it["target"] == pytest.approx(max(its[i - 1]["latency"] - delta, res["budget"]))
        assert it["latency"] <= it["target"]
        assert fresh(models[i]) == it["latency"] <= it["target"]
        assert it["latency"] < its[i - 1]["latency"]
        # only the chosen layer lost weights, and masks only shrink
        prev = {n: get_mask(l) for n, l in fc_layers(models[i - 1])}
        for n, l in fc_layers(models[i]):
            mk = get_mask(l)
            assert torch.all(mk <= prev[n])
            assert torch.equal(mk, prev[n]) == (n != it["chosen"])
        feas = [c for c in it["candidates"] if c["feasible"]]
        assert all(c["latency"] <= it["target"] for c in feas)
        assert it["val_acc"] == max(c["val_acc"] for c in feas)
    assert res["final"]["sparsity"]["overall"] > 0.2
    # after the long-term finetune the network is back at (or below) the last target
    assert res["final"]["target"] == its[2]["target"]
    assert fresh(res["model"]) == res["final"]["latency"] <= its[2]["target"]
    if res["final"]["after_long_finetune"]["latency"] > its[2]["target"]:
        assert res["final"]["repruned_after_long_finetune"]["latency"] == res["final"]["latency"]
    data = json.loads((tmp_path / "netadapt.json").read_text())
    assert data["iterations"][2]["latency"] == its[2]["latency"]
    assert (tmp_path / "netadapt.png").stat().st_size > 1000
    # the input model is untouched
    assert all(not hasattr(l, "weight_mask") for _, l in fc_layers(small))


def test_deterministic_and_budget_stop(small, splits):
    cfg = NetAdaptConfig(delta=0.3, budget=0.75, max_iterations=5, short_epochs=1, long_epochs=0, n_pe=2,
                         n_calibration=8)
    a = run_netadapt(small, splits, cfg)
    b = run_netadapt(small, splits, cfg)
    strip = lambda r: json.dumps([{k: v for k, v in it.items()} for it in r["iterations"]], sort_keys=True)
    assert strip(a) == strip(b)
    assert a["stop_reason"] == "budget reached"
    assert len(a["iterations"]) == 2                     # one 30 % step is already below 75 %
    assert a["iterations"][1]["target"] == pytest.approx(a["budget"])   # clamped to the budget
    assert a["final"]["latency"] == a["iterations"][1]["latency"]               # no long-term finetune


def test_weights_resource_lands_exactly_on_the_budget(small, splits):
    """With the non-zero weights as the resource (how `compare` matches the sparsity), each
    step removes delta of the dense count and the last one lands on the budget exactly."""
    cfg = NetAdaptConfig(resource="weights", delta=0.2, budget=0.3, max_iterations=10, short_epochs=1,
                         long_epochs=1, lr=1e-3, long_lr=1e-4, seed=0)
    res = run_netadapt(small, splits, cfg, keep_models=True)
    total = sum(l.weight.numel() for _, l in fc_layers(small))
    assert res["dense"]["latency"] == total and res["budget"] == pytest.approx(0.3 * total)
    assert res["stop_reason"] == "budget reached"
    for it, m in zip(res["iterations"][1:], res["iteration_models"][1:]):
        assert WeightCount()(m) == it["latency"] == np.floor(it["target"])
    assert res["final"]["latency"] == np.floor(0.3 * total) == WeightCount()(res["model"])
    assert set(res["final"]["layers_weights"]) == {n for n, _ in fc_layers(small)}
    with pytest.raises(ValueError):
        NetAdaptConfig(resource="energy")


def test_adapt_delta_shortens_a_step_no_layer_can_make(small, splits):
    """A cut larger than any single layer can deliver stops NetAdapt, unless adapt_delta
    lowers that iteration's target to the deepest single-layer cut (measured)."""
    total = sum(l.weight.numel() for _, l in fc_layers(small))            # 2048 + 512 + 160
    base = dict(resource="weights", delta=0.8, budget=0.1, max_iterations=4, short_epochs=0, long_epochs=0)
    stuck = run_netadapt(small, splits, NetAdaptConfig(**base))
    assert stuck["stop_reason"] == "no layer can meet the target" and len(stuck["iterations"]) == 2
    res = run_netadapt(small, splits, NetAdaptConfig(**base, adapt_delta=True))
    it1 = res["iterations"][1]
    assert it1["target_reduced_from"] == pytest.approx(0.2 * total)
    assert it1["target"] == it1["latency"] == total - (2048 - 21) and it1["chosen"] == "layers.0"
    assert res["stop_reason"] == "budget reached" and res["final"]["latency"] == np.floor(0.1 * total)
