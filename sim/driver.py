"""cocotb driver for the EIE host bus (docs/host-interface.md): writes, pipelined reads."""

from __future__ import annotations

from cocotb.triggers import RisingEdge

from eie.hdl import host_map as hm
from eie.hdl.loader import image_writes, input_writes, output_reads, start_writes

__all__ = ["HostBusDriver"]


class HostBusDriver:
    """Drives `bus__*` of the `eie_array` top: one access per clock cycle.

    Signals are set after a rising edge and take effect at the next one. Reads are
    pipelined: a request every cycle, the answer sampled READ_LATENCY edges later (the
    array gives `r_valid` and the data READ_LATENCY cycles after `r_en`).
    """

    def __init__(self, dut):
        self.dut = dut
        self.clk = dut.clk
        self.idle()

    def idle(self):
        d = self.dut
        d.bus__w_en.value = 0
        d.bus__r_en.value = 0
        d.bus__addr.value = 0
        d.bus__w_data.value = 0

    async def write(self, writes):
        """[(address, data), ...], one per cycle."""
        d = self.dut
        for addr, data in writes:
            d.bus__addr.value = addr
            d.bus__w_data.value = data & ((1 << 64) - 1)
            d.bus__w_en.value = 1
            await RisingEdge(self.clk)
        d.bus__w_en.value = 0

    async def read(self, addrs) -> list[int]:
        """Read `addrs` back to back; returns the 64-bit words."""
        d = self.dut
        out = []
        addrs = list(addrs)
        lat = hm.READ_LATENCY
        for i, addr in enumerate(addrs + [None] * lat):
            if addr is None:
                d.bus__r_en.value = 0
            else:
                d.bus__addr.value = addr
                d.bus__r_en.value = 1
            await RisingEdge(self.clk)
            if i >= lat:   # sampled at the edge: the answer to the request `lat` cycles back
                if not d.bus__r_valid.value:
                    raise AssertionError(f"bus: no r_valid for the read of {addrs[i - lat]:#x}")
                out.append(int(d.bus__r_data.value))
        return out

    async def read1(self, addr) -> int:
        return (await self.read([addr]))[0]

    # -- the load / run / read sequence ------------------------------------------------
    async def load_image(self, image, params):
        await self.write(image_writes(image, params))

    async def load_input(self, a_int, n_pe):
        await self.write(input_writes(a_int, n_pe))

    async def start(self):
        await self.write(start_writes())

    async def status(self) -> int:
        return await self.read1(hm.address(hm.Region.CTRL, hm.Ctrl.STATUS))

    async def cycles(self) -> int:
        return await self.read1(hm.address(hm.Region.CTRL, hm.Ctrl.CYCLES))

    async def outputs(self, n_out, n_pe) -> list[int]:
        """Signed 16-bit outputs (the bus sign-extends them to 64 bits)."""
        words = await self.read(output_reads(n_out, n_pe))
        return [w - (1 << 64) if w >> 63 else w for w in words]
