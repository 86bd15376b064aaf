"""Scoreboard: RTL outputs and cycles against the golden model and the cycle model.

Outputs are compared in hardware row order: the driver reads them with
hdl.loader.output_reads(n_out, n_pe), hardware row r at PE r % N, and the golden side is
RunResult.hw_outputs_int. For a load-balanced image (last layer's row_perm) hardware row
r holds the original output row_perm[r]; a mismatch names both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eie.golden_model.model import run_image

__all__ = ["SampleResult", "Scoreboard"]


@dataclass
class SampleResult:
    case: str
    seed: int | None
    sample: int
    outputs_match: bool
    cycles_rtl: int
    cycles_monitor: int
    cycles_model: int
    first_mismatch: dict | None = None
    outputs: list | None = None          # what the RTL returned, hardware row order

    @property
    def ok(self) -> bool:
        return self.outputs_match and self.cycles_rtl == self.cycles_model == self.cycles_monitor

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


@dataclass
class Scoreboard:
    """Holds the expected results of each case and checks every sample in order."""

    config: object                       # EIEConfig of the RTL build
    results: list = field(default_factory=list)

    def expect(self, case):
        """(outputs in hardware row order (batch, n_out), cycles per sample)."""
        gold = run_image(case.image, case.inputs, self.config, int_input=True)
        return gold.hw_outputs_int, gold.report.cycles_per_sample

    def check(self, case, expected, sample: int, outputs, cycles_rtl: int, cycles_monitor: int) -> SampleResult:
        want, want_cycles = expected
        got = np.asarray(outputs, dtype=np.int64)
        bad = np.flatnonzero(got != want[sample])
        first = None
        if len(bad):
            i = int(bad[0])
            first = {"index": i, "rtl": int(got[i]), "golden": int(want[sample][i]), "count": int(len(bad))}
            perm = case.image.layers[-1].row_perm
            if perm is not None:
                first["logical_index"] = int(perm[i])   # index i is a hardware row
        res = SampleResult(case.name, case.seed, sample, not len(bad), int(cycles_rtl), int(cycles_monitor),
                           int(want_cycles[sample]), first, got.tolist())
        self.results.append(res)
        return res

    @property
    def failures(self) -> list:
        return [r for r in self.results if not r.ok]
