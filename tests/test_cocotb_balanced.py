"""A load-balanced image (last layer's outputs permuted across PEs) on the RTL, on both
simulators: the scoreboard compares in hardware order, `run_verilator` gives the outputs
back in the original order."""

import numpy as np
import pytest

from eie.golden_model import encode_network
from eie.golden_model.balance import balance_image
from eie.golden_model.model import run_image
from eie.sim.cases import Case, sim_params
from eie.sim.runner import run_cases
from eie.sim.verilator_run import run_verilator

from .cocotb_sims import SIMS
from .test_balance import int_inputs, uneven_matrix

pytestmark = [pytest.mark.sim]


def _balanced(seed):
    rng = np.random.default_rng(seed)
    Ws = [uneven_matrix(rng, 23, 15, 0.4), uneven_matrix(rng, 18, 23, 0.5)]
    a = int_inputs(rng, 2, 15, 0.7)
    plain = encode_network(Ws, 3, acc_depth=4, seed=1)
    image = balance_image(plain, a, int_input=True)
    assert image.layers[-1].row_perm is not None
    return plain, image, a


@pytest.mark.parametrize("sim", SIMS)
def test_scoreboard_on_balanced_image(sim):
    _, image, a = _balanced(79)
    run = run_cases([Case("balanced", image, a)], sim_params(3, 8), simulator=sim)
    assert run.tests == 1 and run.failed_tests == 0, run.log
    assert len(run.results) == 2 and not run.failures


def test_run_verilator_returns_outputs_in_the_original_order():
    plain, image, a = _balanced(80)
    r = run_verilator(image, a, sim_params(3, 8))
    assert r.bit_exact and r.cycle_exact and r.cycles_per_sample == r.expected_cycles
    np.testing.assert_array_equal(r.outputs, run_image(plain, a, int_input=True).outputs_int)
    assert not (r.outputs == run_image(image, a, int_input=True).hw_outputs_int).all()   # order matters here
