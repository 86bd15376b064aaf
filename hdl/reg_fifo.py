"""A small first-word fall-through FIFO built from registers, head in a fixed register."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterFIFO"]


class RegisterFIFO(wiring.Component):
    """`depth` entries of `width` bits, the same ports and timing as Amaranth's `SyncFIFO`
    (a write is readable the next cycle; `w_rdy` = level < depth, so a read does not make
    room in the same cycle), but the oldest entry always sits in register 0 and the
    entries shift on a read. Its output therefore comes straight from a flip-flop, not
    through a memory's read multiplexer: meant for the two- and three-entry buffers of the
    LNZD tree, where the output feeds a comparison in the same cycle.
    """

    def __init__(self, *, width: int, depth: int):
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        regs = [Signal(self.width, name=f"entry{i}") for i in range(d)]
        level = self.level
        push = Signal()
        pop = Signal()
        m.d.comb += [
            self.w_rdy.eq(level != d), self.r_rdy.eq(level != 0), self.r_data.eq(regs[0]),
            push.eq(self.w_en & self.w_rdy), pop.eq(self.r_en & self.r_rdy),
        ]
        for i in range(d):
            shifted = regs[i + 1] if i + 1 < d else regs[i]
            with m.If(pop):
                with m.If(push & (level == i + 1)):
                    m.d.sync += regs[i].eq(self.w_data)
                with m.Else():
                    m.d.sync += regs[i].eq(shifted)
            with m.Elif(push & (level == i)):
                m.d.sync += regs[i].eq(self.w_data)
        m.d.sync += level.eq(level + push - pop)
        return m
