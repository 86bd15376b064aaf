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
