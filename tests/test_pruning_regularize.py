"""L1 / L2 regularisation and network slimming (structured: neurons and channels)."""

import pytest
import torch

from eie.pruning.masks import clone_model
from eie.pruning.models import MLP, ConvNet, build_model
from eie.pruning.regularize import weight_penalty, weight_stats
from eie.pruning.slimming import SlimMLP, compact, kept_units, scale_penalty, scaling_factors, slim, slim_to_budget
from eie.pruning.train import TrainConfig, accuracy, set_seed, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mlp(train_mlp):
    return train_mlp(6)


@pytest.fixture(scope="module")
def conv(splits):
    set_seed(0)
    m = build_model("conv", 64, 10, (8, 8))
    train(m, splits, TrainConfig(epochs=3))
    return m


def test_penalty_values():
    m = MLP((3, 2, 2))
    with torch.no_grad():
        m.layers[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 0.0]]))
        m.layers[1].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
    assert weight_penalty("l1", 0.1)(m).item() == pytest.approx(0.1 * 6.5)
    assert weight_penalty("l2", 0.1)(m).item() == pytest.approx(0.1 * (1 + 4 + 0.25 + 3))
    with pytest.raises(ValueError):
        weight_penalty("l0", 0.1)
    with pytest.raises(ValueError):
        weight_penalty("l1", -1)


@pytest.mark.parametrize("kind,lam", [("l1", 3e-4), ("l2", 3e-3)])
def test_regularisation_shrinks_weights(mlp, splits, kind, lam):
    cfg = TrainConfig(epochs=4, seed=5)
    control, reg = clone_model(mlp), clone_model(mlp)
    train(control, splits, cfg)
    train(reg, splits, cfg, extra_loss=weight_penalty(kind, lam))
    c, r = weight_stats(control), weight_stats(reg)
    assert r["mean_abs"] < 0.8 * c["mean_abs"], (c, r)
    assert r["l2"] < c["l2"]
    if kind == "l1":
        assert r["frac_below"] > 2 * c["frac_below"]  # L1 pushes many weights to ~0
    assert accuracy(reg, splits, "val") > 0.8


def test_mlp_slimming_removes_neurons_and_compacts(mlp, splits):
    net = SlimMLP(clone_model(mlp))
    x = torch.as_tensor(splits.x_val)
    torch.testing.assert_close(net(x), mlp(x))  # scales start at 1
    # Adam moves each factor by about lr per step, whatever lam: a larger lr for a short test.
    control = SlimMLP(clone_model(mlp))
    train(control, splits, TrainConfig(epochs=3, lr=1e-2))
    train(net, splits, TrainConfig(epochs=3, lr=1e-2), extra_loss=scale_penalty(1e-2))
    f0 = scaling_factors(net)
    fc = scaling_factors(control)
    for n in f0:  # L1 shrank the factors
        assert float(f0[n].abs().median()) < float(fc[n].abs().median()) - 0.1, n
    kept = slim(net, 0.5)
    assert sum(kept.values()) == 200 and all(k >= 1 for k in kept.values())
    # The dropped neurons are those with the smallest |factor| across both layers.
    allf = torch.cat([v.abs() for v in f0.values()])
    thresh = allf.sort().values[199]
    f1 = scaling_factors(net)
    for n in f0:
        assert bool((f0[n].abs()[f1[n] == 0] <= thresh).all())
    small = compact(net)
    assert isinstance(small, MLP) and small.sizes == (64, kept["hidden0"], kept["hidden1"], 10)
    torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)
    # Masked factors stay zero through more training of the slimmed net.
    train(net, splits, TrainConfig(epochs=1))
    assert kept_units(net) == kept


def test_mlp_slim_to_budget(mlp):
    net = SlimMLP(clone_model(mlp))
    with torch.no_grad():
        net.scales[0].weight.copy_(torch.linspace(0.01, 1, 300))
        net.scales[1].weight.copy_(torch.linspace(0.5, 2, 100))
    slim_to_budget(net, 0.08)
    small = compact(net)
    s = small.sizes
    n = s[0] * s[1] + s[1] * s[2] + s[2] * s[3]
    assert n <= 0.08 * (64 * 300 + 300 * 100 + 100 * 10)
    assert n > 0.06 * (64 * 300 + 300 * 100 + 100 * 10)  # stops as soon as it fits
    assert s[1] < 300 and s[2] <= 100


def test_conv_slimming_removes_channels(conv, splits):
    net = clone_model(conv)
    g0 = torch.cat([net.bn1.weight.detach().abs(), net.bn2.weight.detach().abs()])
    train(net, splits, TrainConfig(epochs=2, lr=1e-2), extra_loss=scale_penalty(1e-2))
    g1 = torch.cat([net.bn1.weight.detach().abs(), net.bn2.weight.detach().abs()])
    assert float(g1.sum()) < float(g0.sum())
    net.eval()
    kept = slim(net, 0.25)
    assert kept["bn1"] + kept["bn2"] == 18 and kept["bn1"] >= 1 and kept["bn2"] >= 1
    # A removed channel outputs exactly zero after BN + ReLU (gamma and beta masked).
    x = torch.as_tensor(splits.x_val[:16])
    h = torch.relu(net.bn1(net.conv1(x.view(-1, 1, 8, 8))))
    dead = scaling_factors(net)["bn1"] == 0
    assert bool((h[:, dead] == 0).all())
    small = compact(net)
    assert isinstance(small, ConvNet)
    assert (small.conv1.out_channels, small.conv2.out_channels) == (kept["bn1"], kept["bn2"])
    assert small.fc1.in_features == kept["bn2"] * 16
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < sum(p.numel() for p in conv.parameters())
    torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)


def test_slimming_keeps_one_unit_per_layer(conv):
    net = clone_model(conv)
    with torch.no_grad():
        net.bn1.weight.fill_(1e-3)  # every channel of bn1 is smaller than any of bn2
    kept = slim(net, 0.5)
    assert kept == {"bn1": 1, "bn2": 12}


def test_slimming_needs_factors(mlp):
    with pytest.raises(ValueError, match="SlimMLP or ConvNet"):
        slim(mlp, 0.5)
    with pytest.raises(ValueError):
        slim(SlimMLP(clone_model(mlp)), 1.0)
