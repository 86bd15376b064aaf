"""cocotb on Icarus: the generated Verilog against the golden and cycle models.

Each test runs a list of cases in one simulator process (sim/runner.py); the cocotb
scoreboard compares every output word and every sample's cycle count (the CYCLES
register and an independent monitor of the busy signal) with the models.
"""

import shutil

import numpy as np
import pytest

from eie.golden_model.model import run_image
from eie.sim.cases import CORNER_CASES, Case, corner_cases, random_case, reset_case, sim_params
from eie.sim.runner import run_cases

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(shutil.which("iverilog") is None,
                                 reason="Icarus Verilog not installed (apt-get install -y iverilog)")]

# (N, queue depth) builds; N = 3 checks a PE count that is not a power of two
BUILDS = [(1, 1), (2, 2), (3, 8), (4, 8), (8, 1)]
RANDOM_PER_BUILD = 60           # 300 random cases in CI; `make regress` runs thousands


def assert_all_ok(run, n_samples):
    assert run.tests == 1 and run.failed_tests == 0, f"cocotb test failed, log: {run.log}"
    assert len(run.results) == n_samples
    bad = run.failures
    assert not bad, f"{len(bad)} mismatching samples, first: {bad[0]}"


@pytest.mark.parametrize("n_pe,fifo_depth", BUILDS)
def test_corner_cases_on_icarus(n_pe, fifo_depth):
    """Every corner case of the brief by name, plus a reset part-way through a run."""
    cases = corner_cases(n_pe) + [reset_case(n_pe)]
    run = run_cases(cases, sim_params(n_pe, fifo_depth))
    assert_all_ok(run, sum(len(c.inputs) for c in cases))
    assert {r["case"] for r in run.results} == set(CORNER_CASES) | {"reset_mid_run"}


@pytest.mark.parametrize("n_pe,fifo_depth", BUILDS)
def test_random_cases_on_icarus(n_pe, fifo_depth):
    """Seeded random networks: densities 1-100 % / 0-100 %, 1-3 layers, multi-batch layers."""
    params = sim_params(n_pe, fifo_depth)
    cases = [random_case(1000 * n_pe + fifo_depth * 100 + s, params) for s in range(RANDOM_PER_BUILD)]
    run = run_cases(cases, params)
    assert_all_ok(run, sum(len(c.inputs) for c in cases))
    multi = [c for c in cases if len(c.image.layers) > 1]
    batched = [c for c in cases if any(L.ptr.shape[1] > L.n_in + 1 for L in c.image.layers)]
    assert multi and batched                      # the set really covers stacks and batching


def test_narrow_accumulator_saturates_like_the_golden_model():
    """An acc_bits = 20 build: accumulators saturate, in the golden model's order."""
    params = sim_params(2, 8, acc_bits=20)
    [case] = corner_cases(2, names=["accumulator_saturation"])
    wide = run_image(case.image, case.inputs, sim_params(2, 8).to_config(), int_input=True).outputs_int
    narrow = run_image(case.image, case.inputs, params.to_config(), int_input=True).outputs_int
    assert (wide != narrow).any()                 # saturation really changes the result here
    assert_all_ok(run_cases([case], params), len(case.inputs))


def test_back_to_back_runs_without_reset():
    """Different images one after another, then the first again, with no reset between."""
    params = sim_params(4, 2)
    a, b = random_case(7, params), random_case(8, params)
    again = Case("again", a.image, a.inputs)
    run = run_cases([a, b, again], params)
    assert_all_ok(run, len(a.inputs) * 2 + len(b.inputs))
    first = [r for r in run.results if r["case"] == a.name]
    last = [r for r in run.results if r["case"] == "again"]
    assert [r["cycles_rtl"] for r in first] == [r["cycles_rtl"] for r in last]


def test_scoreboard_catches_a_wrong_model():
    """The checker can fail: a model with another queue depth or accumulator width disagrees."""
    params = sim_params(4, 1)
    [stall] = corner_cases(4, names=["full_queues_stall"])
    run = run_cases([stall], params, model_overrides={"fifo_depth": 8})
    assert run.failed_tests == 1 and run.failures
    assert all(r["outputs_match"] and r["cycles_rtl"] != r["cycles_model"] for r in run.failures)

    [sat] = corner_cases(4, names=["accumulator_saturation"])
    run = run_cases([sat], params, model_overrides={"acc_bits": 20})
    assert run.failed_tests == 1 and any(not r["outputs_match"] for r in run.failures)


@pytest.mark.parametrize("suffix", [".vcd", ".fst"])
def test_waves_are_written(tmp_path, suffix):
    params = sim_params(2, 2)
    [case] = corner_cases(2, names=["all_zero_matrix"])
    path = tmp_path / f"eie{suffix}"
    run = run_cases([case], params, waves=str(path))
    assert_all_ok(run, 1)
    data = path.read_bytes()
    assert len(data) > 1000
    if suffix == ".vcd":
        text = data.decode(errors="replace")
        assert "$scope module eie_array" in text and "probe_broadcast" in text


def test_speed_figures_are_reported():
    params = sim_params(2, 8)
    run = run_cases([random_case(3, params)], params)
    assert run.clock_cycles > sum(r["cycles_rtl"] for r in run.results) > 0
    assert run.cycles_per_second > 0
    assert np.isfinite(run.sim_seconds)
