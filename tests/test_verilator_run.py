"""The Verilator C++ harness (the fast path for long runs) agrees with the models."""

import shutil

import pytest

from eie.sim.cases import corner_cases, random_case, sim_params
from eie.sim.verilator_run import run_verilator

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(shutil.which("verilator") is None, reason="Verilator not installed")]


@pytest.mark.parametrize("n_pe,fifo_depth", [(2, 1), (4, 8)])
def test_verilator_harness_is_bit_and_cycle_exact(n_pe, fifo_depth):
    params = sim_params(n_pe, fifo_depth)
    cases = [random_case(500 + s, params) for s in range(6)]
    cases += corner_cases(n_pe, names=["full_queues_stall", "register_file_swap_across_layers",
                                       "outputs_longer_than_one_batch"])
    for c in cases:
        r = run_verilator(c.image, c.inputs, params)
        assert r.bit_exact, c.name
        assert r.cycles_per_sample == r.expected_cycles, c.name
        assert r.clock_cycles > sum(r.cycles_per_sample)
