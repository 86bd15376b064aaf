"""Lottery tickets (pruning/lottery.py): masks, reset / rewind / random re-init, the
schedule of `eie prune compare` (the CLI is tested in test_pruning_cli.py)."""

import json

import numpy as np
import pytest
import torch

from eie.pruning.lottery import (LotteryConfig, compare_schedule, expected_remaining, next_masks, run_lottery,
                                 train_with_snapshots)
from eie.pruning.models import MLP, prunable_layers
from eie.pruning.masks import get_mask, weight_of
from eie.pruning.train import TrainConfig, dense_model, train

torch.set_num_threads(1)


def tiny(**kw):
    base = dict(rounds=2, rate=0.3, rewind=1, rewind_unit="epoch", train=TrainConfig(epochs=2, seed=3))
    base.update(kw)
    return LotteryConfig(**base)


def _layer_rate(cfg, i, n_layers):
    return cfg.rate * (cfg.output_rate_factor if i == n_layers - 1 else 1.0)


def test_w_k_is_the_state_after_k_iterations(splits):
    cfg = tiny()
    dense, w0, wk, k = train_with_snapshots(cfg, splits)
    assert k == -(-len(splits.y_train) // 64)          # one epoch of steps
    # Independently: the same initialisation trained for exactly one epoch.
    m = cfg.build(splits)
    m.load_state_dict(w0)
    train(m, splits, TrainConfig(epochs=1, seed=3))
    for name, v in m.state_dict().items():
        assert torch.equal(v, wk[name]), name
    assert not torch.equal(w0["layers.0.weight"], wk["layers.0.weight"])
    # W(0) is the seeded init, reproducible.
    _, w0b, wkb, _ = train_with_snapshots(cfg, splits)
    assert all(torch.equal(w0[n], w0b[n]) and torch.equal(wk[n], wkb[n]) for n in w0)


@pytest.mark.parametrize("bias", [False, True])
def test_dense_run_is_the_cached_dense_model(splits, bias):
    """W(0) is the dense model's initialisation: the lottery's dense run reproduces the
    (cached) dense network of the same seed exactly, with and without biases."""
    cfg = tiny(bias=bias)
    dense, w0, _, _ = train_with_snapshots(cfg, splits)
    ref, _ = dense_model("mlp", "digits", cfg.train, bias=bias, cache_dir=None)
    assert set(dense.state_dict()) == set(ref.state_dict())
    assert any(k.endswith("bias") for k in w0) == bias
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in dense.state_dict().items())


def test_reset_rewind_random_tickets(splits):
    cfg = tiny(rounds=2, bias=True)
    _, w0, wk, _ = train_with_snapshots(cfg, splits)
    seen = []

    def check(mode, r, model, masks, state):
        for name, m in prunable_layers(model):
            w = weight_of(m)
            mask = masks[name]
            assert torch.equal(get_mask(m), mask)
            if mode == "reset":
                assert torch.equal(w, w0[name + ".weight"] * mask)
                assert torch.equal(m.bias.detach(), w0[name + ".bias"])
            elif mode == "rewind":
                assert torch.equal(w, wk[name + ".weight"] * mask)
                assert torch.equal(m.bias.detach(), wk[name + ".bias"])
            else:
                surv = mask.bool()
                assert torch.all(w[~surv] == 0)
                # fresh random values on the survivors: not W(0), not W(k)
                assert not torch.allclose(w[surv], w0[name + ".weight"][surv])
                assert not torch.allclose(w[surv], wk[name + ".weight"][surv])
                assert torch.equal(w, state[name + ".weight"] * mask)
        seen.append((mode, r, {n: s.clone() for n, s in state.items()}))

    res = run_lottery(splits, cfg, on_ticket=check)
    assert [(m, r) for m, r, _ in seen] == [(m, r) for r in (1, 2) for m in ("reset", "rewind", "random")]
    # the random init is different in every round
    rand = [s for m, _, s in seen if m == "random"]
    assert not torch.equal(rand[0]["layers.0.weight"], rand[1]["layers.0.weight"])
    assert res["random_masks_from"] == "reset"


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_reach_requested_sparsity_each_round(splits, scope):
    cfg = tiny(rounds=3, rate=0.4, scope=scope, modes=("reset", "rewind"))
    masks = {}

    def grab(mode, r, model, mk, state):
        masks[(mode, r)] = {n: m.clone() for n, m in mk.items()}

    res = run_lottery(splits, cfg, on_ticket=grab)
    names = res["layers"]
    sizes = {n: masks[("reset", 1)][n].numel() for n in names}
    total = sum(sizes.values())
    for mode in ("reset", "rewind"):
        prev = None
        for r in (1, 2, 3):
            mk = masks[(mode, r)]
            if scope == "layer":
                for i, n in enumerate(names):
                    want = expected_remaining(sizes[n], _layer_rate(cfg, i, len(names)), r)
                    assert int(mk[n].sum()) == want, (mode, r, n)
            else:
                assert sum(int(m.sum()) for m in mk.values()) == expected_remaining(total, cfg.rate, r)
            if prev is not None:      # nested: a pruned weight never comes back
                assert all(torch.all(mk[n] <= prev[n]) for n in names)
            prev = mk
            row = res["rounds"][r][mode]
            assert row["remaining_weights"] == sum(int(m.sum()) for m in mk.values())
    # the two trajectories prune their own trained networks: masks diverge
    assert any(not torch.equal(masks[("reset", 3)][n], masks[("rewind", 3)][n]) for n in names)
    # in round 1 both prune the same dense network
    assert all(torch.equal(masks[("reset", 1)][n], masks[("rewind", 1)][n]) for n in names)
    assert res["rounds"][3]["remaining"] == pytest.approx(
        sum(int(m.sum()) for m in masks[("reset", 3)].values()) / total)


def test_next_masks_removes_the_smallest_magnitudes(splits):
    cfg = tiny(rate=0.25, output_rate_factor=1.0)
    model = MLP((4, 4, 2))
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.arange(16, dtype=torch.float32).view(4, 4) - 7.5)   # |w| = 7.5 ... 0.5
        model.layers[1].weight.copy_(torch.tensor([[1.0, -8.0, 3.0, 0.1], [5.0, 6.0, -0.2, 9.0]]))
    full = {n: get_mask(m) for n, m in prunable_layers(model)}
    new = next_masks(model, full, cfg)
    # layer 0: 4 of 16 go, the |w| = 0.5, 0.5, 1.5, 1.5 ones (values -0.5, 0.5, -1.5, 1.5: indices 7, 8, 6, 9)
    gone0 = set(np.flatnonzero(new["layers.0"].numpy().ravel() == 0).tolist())
    assert gone0 == {6, 7, 8, 9}
    gone1 = set(np.flatnonzero(new["layers.1"].numpy().ravel() == 0).tolist())
    assert gone1 == {3, 6}                                   # 0.1 and -0.2
    # a second round only looks at the survivors
    newer = next_masks(model, new, cfg)
    assert int(newer["layers.0"].sum()) == 12 - 3
    assert torch.all(newer["layers.0"] <= new["layers.0"])


def test_pruned_weights_stay_zero_and_outputs_written(splits, tmp_path):
    cfg = tiny(rounds=1)
    trained = {}

    res = run_lottery(splits, cfg, out_dir=tmp_path,
                      on_ticket=lambda mode, r, m, mk, s: trained.update({mode: (m, mk)}))
    for mode, (m, mk) in trained.items():    # the ticket objects after retraining
        for n, layer in prunable_layers(m):
            w = weight_of(layer)
            assert torch.all(w[mk[n] == 0] == 0)
            assert torch.count_nonzero(w[mk[n] == 1]) > 0.99 * int(mk[n].sum())
    data = json.loads((tmp_path / "lottery.json").read_text())
    assert data["rounds"][1]["reset"]["test_acc"] == res["rounds"][1]["reset"]["test_acc"]
    assert (tmp_path / "lottery.png").stat().st_size > 1000
    # seeded: the same run gives the same numbers
    again = run_lottery(splits, cfg)
    assert again["rounds"] == res["rounds"]


def test_conv_fc_only_without_bias(splits):
    cfg = tiny(rounds=1, model="conv", layers="fc", bias=False, modes=("rewind",), rewind=3, rewind_unit="iter",
               train=TrainConfig(epochs=1, seed=0))
    got = {}
    res = run_lottery(splits, cfg, on_ticket=lambda mode, r, m, mk, s: got.update(model=m, masks=mk))
    assert res["layers"] == ["fc1", "fc2"] and res["rewind_iteration"] == 3
    m = got["model"]
    assert set(got["masks"]) == {"fc1", "fc2"}
    assert not hasattr(m.conv1, "weight_mask") and hasattr(m.fc1, "weight_mask")
    assert all(getattr(l, "bias", None) is None for l in (m.conv1, m.conv2, m.fc1, m.fc2))
    assert int(got["masks"]["fc1"].sum()) == expected_remaining(m.fc1.weight.numel(), 0.3, 1)
    assert int(got["masks"]["fc2"].sum()) == expected_remaining(m.fc2.weight.numel(), 0.15, 1)


def test_config_validation():
    with pytest.raises(ValueError):
        LotteryConfig(rate=1.0)
    with pytest.raises(ValueError):
        LotteryConfig(modes=("random",))       # random needs a trajectory for its masks
    with pytest.raises(ValueError):
        LotteryConfig(scope="block")


def test_compare_schedule_lands_on_the_kept_fraction():
    rounds, rate = compare_schedule(0.08, 0.2)
    assert rounds == 12 and rate <= 0.2 and (1 - rate) ** 12 == pytest.approx(0.08)
    assert compare_schedule(0.08, 0.5) == (4, pytest.approx(1 - 0.08 ** 0.25))
    assert compare_schedule(1.0, 0.2)[0] == 0
    # global IMP at that rate: within a few weights of 8 % of the MLP's 50,200
    assert abs(expected_remaining(50200, rate, rounds) - 0.08 * 50200) <= rounds
    with pytest.raises(ValueError):
        compare_schedule(0.5, 1.0)


def test_tickets_are_the_last_trained_networks(splits):
    cfg = tiny(rounds=1, modes=("reset", "rewind"))
    seen = {}
    res = run_lottery(splits, cfg, on_ticket=lambda mode, r, m, mk, s: seen.update({mode: m}))
    assert set(res["tickets"]) == {"reset", "rewind"}
    assert all(res["tickets"][m] is seen[m] for m in seen)
    assert all(m.layers[0].bias is None for m in seen.values())          # bias-free by default
