"""Layers exported by the pruning pipeline run on the RTL (Verilator, Icarus), bit- and cycle-exact."""

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from eie.golden_model.functional import quantize_input
from eie.hdl.loader import params_for_image
from eie.pruning.data import load_digits_splits
from eie.pruning.export import export_image
from eie.pruning.models import build_model, fc_layers
from eie.pruning.train import TrainConfig, accuracy, set_seed, train
from eie.sim.cases import Case
from eie.sim.runner import run_cases

from .cocotb_sims import SIMS

pytestmark = [pytest.mark.sim]


@pytest.fixture(scope="module")
def pruned_case():
    """A 64-300-100-10 MLP trained briefly on digits, 85 % pruned, exported for 4 PEs."""
    torch.set_num_threads(1)
    splits = load_digits_splits()
    set_seed(3)                                          # the initial weights too
    model = build_model("mlp", splits.n_features, splits.n_classes)
    train(model, splits, TrainConfig(epochs=8, seed=3))
    params = [(m, "weight") for _, m in fc_layers(model)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.85)
    for m, name in params:
        prune.remove(m, name)
    assert accuracy(model, splits, "val") > 0.3          # still a working classifier
    image, check = export_image(model, splits.x_val[:64], 4, acc_depth=64)
    assert check["decode_matches"] and len(image.layers) == 3
    return image, quantize_input(image, splits.x_test[:3])


@pytest.mark.parametrize("sim", SIMS)
def test_pruned_digits_mlp(pruned_case, sim):
    image, a = pruned_case
    run = run_cases([Case("pruned_digits_mlp", image, a)], params_for_image(image, fifo_depth=8), simulator=sim)
    assert run.tests == 1 and run.failed_tests == 0, run.log
    assert len(run.results) == 3 and not run.failures
    assert all(r["cycles_rtl"] == r["cycles_model"] > 0 for r in run.results)
