"""A load-balanced image (last layer's outputs permuted across PEs) on the RTL, on both
simulators: the scoreboard compares in hardware order, `SimRun.logical_outputs` gives the
outputs back in the original order."""

import numpy as np
import pytest

from eie.golden_model import encode_network
from eie.golden_model.balance import balance_image
from eie.golden_model.model import run_image
from eie.sim.cases import Case, sim_params
from eie.sim.runner import run_cases

from .cocotb_sims import SIMS
from .test_balance import int_inputs, uneven_matrix

pytestmark = [pytest.mark.sim]


def _balanced(seed, n_pe=3):
    rng = np.random.default_rng(seed)
    Ws = [uneven_matrix(rng, 23, 15, 0.4), uneven_matrix(rng, 18, 23, 0.5)]
    a = int_inputs(rng, 2, 15, 0.7)
    plain = encode_network(Ws, n_pe, acc_depth=4, seed=1)
    image = balance_image(plain, a, int_input=True)
    assert image.layers[-1].row_perm is not None
    return plain, image, a


@pytest.mark.parametrize("sim", SIMS)
def test_scoreboard_on_balanced_image(sim):
    _, image, a = _balanced(79)
    run = run_cases([Case("balanced", image, a)], sim_params(3, 8), simulator=sim)
    assert run.tests == 1 and run.failed_tests == 0, run.log
    assert len(run.results) == 2 and not run.failures


@pytest.mark.parametrize("n_pe", [3, 4])
def test_outputs_come_back_in_the_original_order(n_pe):
    plain, image, a = _balanced(80, n_pe)
    run = run_cases([Case("balanced", image, a)], sim_params(n_pe, 8), simulator="verilator")
    assert run.ok and run.cycle_exact, run.log
    outputs = run.logical_outputs(image)
    np.testing.assert_array_equal(outputs, run_image(plain, a, int_input=True).outputs_int)
    assert not (outputs == run_image(image, a, int_input=True).hw_outputs_int).all()   # order matters here
