"""Sensitivity analysis: scan, ratios under a threshold T, allocation at a target, plot."""

import pytest
import torch

from eie.pruning.magnitude import prune_to
from eie.pruning.masks import clone_model, weight_of
from eie.pruning.sensitivity import DEFAULT_RATIOS, allocate, overall_of, pick_ratios, plot_scan, scan
from eie.pruning.train import accuracy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def result(splits, train_mlp):
    m = train_mlp(8)
    w0 = [weight_of(l).clone() for l in m.layers]
    res = scan(m, splits)
    assert all(torch.equal(weight_of(l), w) for l, w in zip(m.layers, w0))  # the model is untouched
    return m, res


def synthetic(drops: dict[str, list[float]], sizes=None) -> dict:
    ratios = [0.1 * i for i in range(len(next(iter(drops.values()))))]
    return {"base": 0.9, "part": "val", "ratios": ratios, "sizes": sizes or {k: 100 for k in drops},
            "layers": {k: [{"ratio": r, "acc": 0.9 - d, "drop": d} for r, d in zip(ratios, v)]
                       for k, v in drops.items()}}


def test_scan_shape_and_values(result, splits):
    m, res = result
    assert res["ratios"] == list(DEFAULT_RATIOS)
    assert set(res["layers"]) == {"layers.0", "layers.1", "layers.2"}
    assert res["sizes"] == {"layers.0": 64 * 300, "layers.1": 300 * 100, "layers.2": 100 * 10}
    for curve in res["layers"].values():
        assert [p["ratio"] for p in curve] == list(DEFAULT_RATIOS)
        assert curve[0]["drop"] == 0.0
    # One point re-measured by hand: only that layer pruned.
    c = clone_model(m)
    prune_to(c, {"layers.2": 0.9})
    assert res["layers"]["layers.2"][-1]["acc"] == accuracy(c, splits, "val")
    # The small last layer is the sensitive one at 90 %.
    assert res["layers"]["layers.2"][-1]["drop"] > res["layers"]["layers.1"][-1]["drop"]


def test_pick_ratios_under_threshold(result):
    _, res = result
    for T in (0.0, 0.01, 0.05, 1.0):
        picked = pick_ratios(res, T)
        for n, r in picked.items():
            curve = {round(p["ratio"], 6): p["drop"] for p in res["layers"][n]}
            assert all(d <= T for rr, d in curve.items() if rr <= r + 1e-9), (n, T)
            bigger = [rr for rr in curve if rr > r + 1e-9]
            if bigger:
                assert curve[min(bigger)] > T  # the next grid point crosses T
    assert pick_ratios(res, 1.0) == {n: 0.9 for n in res["layers"]}


def test_pick_ratios_first_crossing():
    res = synthetic({"a": [0, 0, 0.01, 0.05, 0.01, 0.2], "b": [0, 0.03, 0, 0, 0, 0]})
    assert pick_ratios(res, 0.02) == pytest.approx({"a": 0.2, "b": 0.0})
    assert pick_ratios(res, 0.04) == pytest.approx({"a": 0.2, "b": 0.5})


def test_allocate_hits_target():
    res = synthetic({"a": [0, 0, 0.01, 0.02, 0.05, 0.1, 0.3, 0.5, 0.6, 0.7],
                     "b": [0, 0, 0, 0, 0, 0, 0.01, 0.02, 0.03, 0.3]}, sizes={"a": 100, "b": 300})
    ratios, T = allocate(res, 0.6)
    assert overall_of(ratios, res["sizes"]) == pytest.approx(0.6, abs=1e-6)
    assert ratios["b"] > ratios["a"]  # the insensitive layer is pruned more
    with pytest.raises(ValueError, match="cannot reach"):
        allocate(res, 0.95)


def test_plot(result, tmp_path):
    _, res = result
    path = tmp_path / "s.png"
    plot_scan(res, path, 0.02, pick_ratios(res, 0.02))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_ratios(result, splits):
    m, _ = result
    with pytest.raises(ValueError):
        scan(m, splits, [0.5, 1.0])
