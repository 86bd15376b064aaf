import numpy as np
import pytest
from hypothesis import settings

from eie.golden_model.fc8 import find_fc8_dir

# Property tests are seeded (derandomised) so that every run checks the same cases.
settings.register_profile("eie", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("eie")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fc8_dir():
    d = find_fc8_dir()
    if d is None:
        pytest.skip("FC8 reference data not present (../shared/data/eie-alexnet-fc8 or $EIE_FC8_DIR)")
    return d


# -- pruning: the digits splits and small trained MLPs, shared by tests/test_pruning_*.py --
@pytest.fixture(scope="session")
def splits():
    """The default data of the pruning pipeline: digits, split seed 0."""
    from eie.pruning.data import load_digits_splits

    return load_digits_splits(0)


@pytest.fixture(scope="session")
def train_mlp(splits):
    """`train_mlp(epochs, sizes=(64, 300, 100, 10), seed=0, bias=True)`: a trained MLP
    (seeded initialisation and batch order), trained once per argument set and returned
    as a fresh copy each call, so that tests may prune it."""
    import torch

    from eie.pruning.masks import clone_model
    from eie.pruning.models import MLP, strip_bias
    from eie.pruning.train import TrainConfig, set_seed, train

    torch.set_num_threads(1)
    made = {}

    def make(epochs, sizes=(64, 300, 100, 10), seed=0, bias=True):
        key = (epochs, tuple(sizes), seed, bias)
        if key not in made:
            set_seed(seed)
            m = MLP(sizes)
            if not bias:
                strip_bias(m)
            train(m, splits, TrainConfig(epochs=epochs, seed=seed))
            made[key] = m
        return clone_model(made[key])

    return make
