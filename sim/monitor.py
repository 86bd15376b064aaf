"""cocotb monitor: how long each run keeps the array busy (independent of the bus)."""

from __future__ import annotations

from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["RunMonitor"]


class RunMonitor:
    """Measures every run's length from the array's internal busy signal.

    The CYCLES register is the array's own count; this monitor measures the same thing
    from the outside (time between busy rising and falling / clock period), so a wrong
    counter cannot hide a wrong schedule. Icarus shows zero-width glitches of `always @*`
    outputs to value-change callbacks, so an edge only counts if the value still holds
    once the time step has settled (ReadOnly).
    """

    def __init__(self, dut, period_ns: float):
        self.busy = dut.probe_busy
        self.clk = dut.clk
        self.period = period_ns
        self.runs: list[int] = []

    async def _settled_edge(self, rising: bool) -> float:
        want = "1" if rising else "0"
        while True:
            if str(self.busy.value) == want:
                t = get_sim_time(unit="ns")
            else:
                await (RisingEdge(self.busy) if rising else FallingEdge(self.busy))
                t = get_sim_time(unit="ns")
            await ReadOnly()
            if str(self.busy.value) == want:
                return t
            await RisingEdge(self.clk)

    async def wait_run(self) -> int:
        """Wait for the run started at the last clock edge to end; returns its cycles."""
        t0 = await self._settled_edge(rising=True)
        await RisingEdge(self.clk)
        t1 = await self._settled_edge(rising=False)
        await RisingEdge(self.clk)          # leave the read-only phase: the host drives next
        cycles = round((t1 - t0) / self.period)
        self.runs.append(cycles)
        return cycles
