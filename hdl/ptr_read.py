"""Pointer read unit: column start and end pointers in one cycle from even/odd banks."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PointerRead"]


class PointerRead(wiring.Component):
    """p[a] and p[a+1] for pointer index a, available the cycle after `en` (EIE Sec. IV).

    A pointer is any shape (`ArrayParams.ptr_item` in a PE: entry index and column count).

    Pointer p[i] lives in the even bank at i // 2 when i is even and in the odd bank at
    i // 2 when i is odd, so p[a] and p[a+1] are always in different banks and one read
    of each gives both. Both banks are single-ported SRAMs with a synchronous read port.

    Ports: `addr`, `en` (read request); `start`, `end` (next cycle);
    `w_addr`, `w_data`, `w_en` (host writes, pointer index and value).
    """

    def __init__(self, depth: int, addr_bits: int, shape):
        if depth < 2 or depth & (depth - 1):
            raise TypeError(f"Depth must be a power of two >= 2, not {depth!r}")
        self.depth = depth
        self.shape = shape
        super().__init__({
            "addr": In(addr_bits),
            "en": In(1),
            "start": Out(shape),
            "end": Out(shape),
            "w_addr": In(addr_bits),
            "w_data": In(shape),
            "w_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        half = self.depth // 2
        m.submodules.even = even = Memory(shape=self.shape, depth=half, init=[])
        m.submodules.odd = odd = Memory(shape=self.shape, depth=half, init=[])
        # Synchronous reads: data one cycle after the address (no write during compute).
        even_r, odd_r = even.read_port(), odd.read_port()
        even_w, odd_w = even.write_port(), odd.write_port()

        a_odd = Signal()
        m.d.comb += [
            even_r.addr.eq((self.addr + 1) >> 1),
            odd_r.addr.eq(self.addr >> 1),
            even_r.en.eq(self.en),
            odd_r.en.eq(self.en),
        ]
        with m.If(self.en):
            m.d.sync += a_odd.eq(self.addr[0])
        with m.If(a_odd):
            m.d.comb += [self.start.eq(odd_r.data), self.end.eq(even_r.data)]
        with m.Else():
            m.d.comb += [self.start.eq(even_r.data), self.end.eq(odd_r.data)]

        m.d.comb += [
            even_w.addr.eq(self.w_addr >> 1),
            odd_w.addr.eq(self.w_addr >> 1),
            even_w.data.eq(self.w_data),
            odd_w.data.eq(self.w_data),
            even_w.en.eq(self.w_en & ~self.w_addr[0]),
            odd_w.en.eq(self.w_en & self.w_addr[0]),
        ]
        return m
