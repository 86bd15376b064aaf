"""NetAdapt on the EIE cycle model (pruning/netadapt.py)."""

import argparse
import json

import numpy as np
import pytest
import torch

from eie.golden_model import encode_network
from eie.golden_model.config import EIEConfig
from eie.golden_model.model import run_image
from eie.pruning.data import load_dataset
from eie.pruning.models import MLP, fc_layers
from eie.pruning.netadapt import (EIELatency, NetAdaptConfig, _prune_layer_to_target, add_parser, clone_model,
                                  effective_weight, get_mask, run_netadapt)
from eie.pruning.train import TrainConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small(splits):
    torch.manual_seed(0)
    m = MLP((64, 32, 16, 10))
    train(m, splits, TrainConfig(epochs=6, seed=0))
    return m


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
    w = effective_weight(fc_layers(small)[1][1]).abs()
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
        assert it["target"] == pytest.approx(max(its[i - 1]["latency"] - delta, res["budget_cycles"]))
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
    assert a["iterations"][1]["target"] == pytest.approx(a["budget_cycles"])   # clamped to the budget
    assert a["final"]["latency"] == a["iterations"][1]["latency"]               # no long-term finetune


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub, None)
    args = parser.parse_args(["netadapt", "--epochs", "2", "--no-cache", "--iterations", "1", "--short-epochs", "1",
                              "--long-epochs", "1", "--latency-samples", "4", "--n-pe", "8", "--out", str(tmp_path),
                              "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "netadapt" and out["config"]["n_pe"] == 8
    assert out["iterations"][1]["latency"] <= out["iterations"][1]["target"]
