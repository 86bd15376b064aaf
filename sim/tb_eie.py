"""cocotb testbench: runs every case of a manifest on the `eie_array` Verilog.

Environment: EIE_SIM_MANIFEST (cases, see sim/cases.py), EIE_SIM_PARAMS (the build's
ArrayParams as JSON), EIE_SIM_RESULTS (JSON lines written here, one per sample),
EIE_SIM_SUMMARY (optional: clock cycles simulated and wall time, for speed figures),
EIE_SIM_MODEL (optional JSON overrides of the model's config, to prove the checker fails).
Cases run back to back without reset, as a host would use the array, except for cases
that ask for a reset part-way through a run.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from eie.hdl.params import ArrayParams
from eie.sim.cases import load_cases
from eie.sim.driver import HostBusDriver
from eie.sim.monitor import RunMonitor
from eie.sim.scoreboard import Scoreboard

PERIOD_NS = 10
RUN_TIME = [0.0, 0]     # wall seconds and clock cycles spent in runs (no host traffic)


async def reset(dut, cycles=2):
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def run_case(dut, bus, monitor, board, case, params, log):
    expected = board.expect(case)
    n_out = case.image.layers[-1].n_out
    if case.reset_after is not None:     # start a run, reset part-way, then redo everything
        await bus.load_image(case.image, params)
        await bus.load_input(case.inputs[0], params.n_pe)
        await bus.start()
        await ClockCycles(dut.clk, case.reset_after)
        assert dut.probe_busy.value, f"{case.name}: the run ended before the reset"
        await reset(dut)
        assert await bus.status() == 0, f"{case.name}: STATUS not cleared by reset"
    await bus.load_image(case.image, params)
    for s, a in enumerate(case.inputs):
        await bus.load_input(a, params.n_pe)
        await bus.start()
        t_run = time.perf_counter()
        seen = await monitor.wait_run()
        RUN_TIME[0] += time.perf_counter() - t_run
        RUN_TIME[1] += seen
        status = await bus.status()
        assert status == 2, f"{case.name}: STATUS = {status} after a run (expected DONE)"
        res = board.check(case, expected, s, await bus.outputs(n_out, params.n_pe), await bus.cycles(), seen)
        log.write(json.dumps(res.as_dict()) + "\n")
        log.flush()


@cocotb.test()
async def run_manifest(dut):
    """Every case of $EIE_SIM_MANIFEST, checked by the scoreboard."""
    params = ArrayParams(**json.loads(os.environ["EIE_SIM_PARAMS"]))
    cases = load_cases(os.environ["EIE_SIM_MANIFEST"])
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    bus = HostBusDriver(dut)
    monitor = RunMonitor(dut, PERIOD_NS)
    config = params.to_config()
    if os.environ.get("EIE_SIM_MODEL"):
        config = config.with_(**json.loads(os.environ["EIE_SIM_MODEL"]))
    board = Scoreboard(config)
    await reset(dut)
    t0 = time.perf_counter()
    with open(os.environ["EIE_SIM_RESULTS"], "a") as log:
        for case in cases:
            await run_case(dut, bus, monitor, board, case, params, log)
    wall = time.perf_counter() - t0
    summary = os.environ.get("EIE_SIM_SUMMARY")
    if summary:
        with open(summary, "w") as f:
            json.dump({"clock_cycles": int(get_sim_time(unit="ns") // PERIOD_NS), "wall_seconds": wall,
                       "cases": len(cases), "samples": len(board.results),
                       "run_wall_seconds": RUN_TIME[0], "run_clock_cycles": RUN_TIME[1]}, f)
    dut._log.info(f"{len(cases)} cases, {len(board.results)} samples, {len(board.failures)} failures, {wall:.1f} s")
    assert not board.failures, "mismatches: " + "; ".join(
        f"{r.case} sample {r.sample}: outputs {'ok' if r.outputs_match else r.first_mismatch}, cycles "
        f"rtl {r.cycles_rtl} / monitor {r.cycles_monitor} / model {r.cycles_model}" for r in board.failures[:5])
