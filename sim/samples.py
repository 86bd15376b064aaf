"""Sample inputs of exported images through the RTL under cocotb, checked against the
golden model: the demo's and `eie prune --rtl-samples`' hardware step.

One build serves every case (each memory sized for the largest image), one simulator
process runs them all; the scoreboard (sim/scoreboard.py) checks every output word and
every input's cycle count, and this module summarises that per case.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import fields, replace
from typing import Callable

from eie.hdl.loader import params_for_image

from .cases import Case
from .runner import build, run_cases
from .simulator import choose

__all__ = ["check_samples"]


def check_samples(cases: list[Case], *, simulator: str | None = None, fifo_depth: int = 8, waves: str | None = None,
                  building: Callable[[], AbstractContextManager] | None = None,
                  on_result: Callable[[dict], None] | None = None) -> dict:
    """Run each case's inputs (int16 values, `Case.inputs`) through the RTL.

    Returns {simulator, params, build_seconds, sim_seconds, clock_cycles_simulated,
    sim_cycles_per_s, waves, ok, cases: {name: {samples, bit_exact, cycle_exact,
    cycles_rtl, cycles_model}}}. The (cached) build runs inside `building()` (a progress
    status, say); `on_result(result)` is called as each input finishes.
    """
    sim = choose(simulator)
    each = [params_for_image(c.image, fifo_depth=fifo_depth) for c in cases]
    params = replace(each[0], **{f.name: max(getattr(p, f.name) for p in each) for f in fields(each[0])
                                 if isinstance(getattr(each[0], f.name), int)})
    t0 = time.perf_counter()
    with building() if building is not None else nullcontext():
        build(params, simulator=sim, waves=waves)
    build_s = time.perf_counter() - t0
    run = run_cases(cases, params, waves=waves, on_result=on_result, simulator=sim)
    total = sum(len(c.inputs) for c in cases)
    out = {"simulator": f"{sim} (cocotb)", "params": params.as_dict(), "build_seconds": build_s,
           "sim_seconds": run.sim_seconds, "clock_cycles_simulated": run.clock_cycles,
           "sim_cycles_per_s": run.cycles_per_second, "waves": waves, "ok": run.ok and len(run.results) == total,
           "cases": {}}
    for c in cases:
        res = [r for r in run.results if r["case"] == c.name]
        complete = len(res) == len(c.inputs)
        out["cases"][c.name] = {"samples": len(res),
                                "bit_exact": complete and all(r["outputs_match"] for r in res),
                                "cycle_exact": complete and all(r["cycles_rtl"] == r["cycles_model"] for r in res),
                                "cycles_rtl": [int(r["cycles_rtl"]) for r in res],
                                "cycles_model": [int(r["cycles_model"]) for r in res]}
    return out

