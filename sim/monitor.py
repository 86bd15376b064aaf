"""cocotb monitor: how long each run keeps the array busy (independent of the bus)."""

from __future__ import annotations

from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["RunMonitor"]


class RunMonitor:
    """Measures every run's length from the array's internal busy signal.

    The CYCLES register is the array's own count; this monitor measures the same thing
    from the outside (time between the rising and falling edge of busy / clock period),
    so a wrong counter cannot hide a wrong schedule. It watches `probe_running`, the busy
    flag registered once: Icarus shows zero-width glitches of `always @*` outputs to
    value-change callbacks, a register has none, and the delay does not change the length.
    """

    def __init__(self, dut, period_ns: float):
        self.running = dut.probe_running
        self.clk = dut.clk
        self.period = period_ns
        self.runs: list[int] = []

    async def wait_run(self) -> int:
        """Wait for the run started at the last clock edge to end; returns its cycles."""
        if str(self.running.value) != "1":
            await RisingEdge(self.running)
        t0 = get_sim_time(unit="ns")
        await FallingEdge(self.running)
        t1 = get_sim_time(unit="ns")
        await RisingEdge(self.clk)
        cycles = round((t1 - t0) / self.period)
        self.runs.append(cycles)
        return cycles
