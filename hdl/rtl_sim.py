"""Runs an EIE image on the RTL in Amaranth's simulator through the host bus."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from . import host_map as hm
from .eie import EIEArray
from .loader import image_writes, input_writes, output_reads, params_for_image, start_writes
from .params import ArrayParams

__all__ = ["BatchTrace", "RTLRun", "run_rtl", "bus_write", "bus_read"]


@dataclass
class BatchTrace:
    """Cycles (relative to the batch's cycle 0) of every broadcast and every PE's pops."""

    broadcasts: list
    pops: list            # pops[k] = cycles PE k popped an item


@dataclass
class RTLRun:
    outputs: np.ndarray                     # (batch, n_out) int64, 16-bit values, original (un-permuted) order
    cycles_per_sample: list = field(default_factory=list)
    params: ArrayParams | None = None
    batches: list = field(default_factory=list)   # with trace=True: BatchTrace per batch, in order

    @property
    def cycles(self) -> int:
        return int(sum(self.cycles_per_sample))


async def bus_write(ctx, bus, writes):
    """One write per cycle."""
    for addr, data in writes:
        ctx.set(bus.addr, addr)
        ctx.set(bus.w_data, data)
        ctx.set(bus.w_en, 1)
        await ctx.tick()
    ctx.set(bus.w_en, 0)


async def bus_read(ctx, bus, addr) -> int:
    """One read: the answer comes READ_LATENCY cycles after the request."""
    ctx.set(bus.addr, addr)
    ctx.set(bus.r_en, 1)
    await ctx.tick()
    ctx.set(bus.r_en, 0)
    for _ in range(hm.READ_LATENCY - 1):
        await ctx.tick()
    assert ctx.get(bus.r_valid)
    return ctx.get(bus.r_data)


def run_rtl(image, a_int, params: ArrayParams | None = None, *, vcd: str | None = None,
            max_cycles: int = 1_000_000, trace: bool = False) -> RTLRun:
    """Load `image`, run every row of `a_int` (batch, n_in) and read the last layer's outputs.

    With `trace`, also record when every broadcast and queue pop happened, per batch,
    to compare with the cycle model's B and P (golden_model.cycle_report(trace=True)).
    """
    a_int = np.atleast_2d(np.asarray(a_int, dtype=np.int64))
    params = params or params_for_image(image)
    dut = EIEArray(params)
    bus = dut.bus
    n_out = image.layers[-1].n_out
    result = RTLRun(outputs=np.zeros((a_int.shape[0], n_out), np.int64), params=params)
    status = hm.address(hm.Region.CTRL, hm.Ctrl.STATUS)

    async def host(ctx):
        await bus_write(ctx, bus, image_writes(image, params))
        for s, a in enumerate(a_int):
            await bus_write(ctx, bus, input_writes(a, params.n_pe) + start_writes())
            for _ in range(max_cycles):
                if not await bus_read(ctx, bus, status) & hm.Status.BUSY:
                    break
            else:
                raise TimeoutError(f"sample {s}: the array did not finish within {max_cycles} cycles")
            result.cycles_per_sample.append(await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.CYCLES)))
            for i, addr in enumerate(output_reads(n_out, params.n_pe, image.layers[-1].row_perm)):
                word = await bus_read(ctx, bus, addr) & 0xFFFF
                result.outputs[s, i] = word - 0x10000 if word & 0x8000 else word

    async def observer(ctx):
        t = 0
        cur = None
        async for _clk, _rst, start, bcast, pops in ctx.tick().sample(
                dut.probe_batch_start, dut.probe_broadcast, dut.probe_pops):
            if start:
                cur = BatchTrace([], [[] for _ in range(params.n_pe)])
                result.batches.append(cur)
                t = 0
            if cur is not None:
                if bcast:
                    cur.broadcasts.append(t)
                for k in range(params.n_pe):
                    if pops >> k & 1:
                        cur.pops[k].append(t)
            t += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    if trace:
        sim.add_testbench(observer, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result
