"""Column issue unit: pops the activation queue and issues one sparse-matrix entry per cycle."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import ACT_BITS

__all__ = ["ColumnIssue"]


class ColumnIssue(wiring.Component):
    """The PE front end of docs/cycle-model.md.

    Pop cycle P: the column key `base + j` goes to the pointer banks. Cycle P + 1: the
    pointers arrive and entries p_j ... p_{j+1} - 1 are issued in cycles P + 1 ... P + n,
    one per cycle; an empty column spends cycle P + 1 as a bubble. The next item is popped
    in the column's last issue cycle, so columns issue back to back.
    """

    def __init__(self, item_layout, *, ptr_addr_bits: int, entry_bits: int):
        self.entry_bits = entry_bits
        super().__init__({
            "i": In(stream.Signature(item_layout)),
            "base": In(ptr_addr_bits),              # pointer index of column 0 of this batch
            "ptr_addr": Out(ptr_addr_bits),
            "ptr_en": Out(1),
            "ptr_start": In(entry_bits),            # the cycle after ptr_en
            "ptr_end": In(entry_bits),
            "issue": Out(1),                        # entry `entry` is issued this cycle
            "entry": Out(entry_bits),
            "first": Out(1),                        # ... and it is its column's first
            "act": Out(signed(ACT_BITS)),           # the column's activation
            "active": Out(1),                       # an issue cycle (entry or bubble)
        })

    def elaborate(self, platform):
        m = Module()
        first = Signal()                            # cycle after a pop: pointers on the ports
        cont = Signal()                             # later issue cycles of the column
        cur = Signal(self.entry_bits)
        end = Signal(self.entry_bits)
        act = Signal(signed(ACT_BITS))

        active = first | cont
        e_cur = Mux(first, self.ptr_start, cur)
        e_end = Mux(first, self.ptr_end, end)
        last = Signal()
        m.d.comb += last.eq(active & (e_cur + 1 >= e_end))
        pop = Signal()
        m.d.comb += [
            self.i.ready.eq(~active | last),
            pop.eq(self.i.valid & self.i.ready),
            self.ptr_addr.eq(self.base + self.i.payload.index),
            self.ptr_en.eq(pop),
            self.issue.eq(active & (e_cur < e_end)),
            self.entry.eq(e_cur),
            self.first.eq(first),
            self.act.eq(act),
            self.active.eq(active),
        ]
        m.d.sync += [first.eq(pop), cont.eq(active & ~last), cur.eq(e_cur + 1), end.eq(e_end)]
        with m.If(pop):
            m.d.sync += act.eq(self.i.payload.value)
        return m
