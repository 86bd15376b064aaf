"""Column issue unit: pops the activation queue and issues one sparse-matrix entry per cycle."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .host_map import PTR_COUNT_BITS
from .params import ACT_BITS

__all__ = ["ColumnIssue", "issued_entry"]


def issued_entry(entry_bits: int) -> wiring.Signature:
    """An entry leaving the issue stage in cycle i, to the sparse-matrix read unit (which
    fetches its row) and the arithmetic unit (which carries `first` and `act` along)."""
    return wiring.Signature({
        "valid": Out(1),                     # an entry is issued (not a bubble)
        "entry": Out(entry_bits),            # its index in the PE's sparse-matrix SRAM
        "first": Out(1),                     # ... and it is its column's first
        "act": Out(signed(ACT_BITS)),        # the column's activation
    })


class ColumnIssue(wiring.Component):
    """The PE front end of docs/cycle-model.md: pointer fetch, column register, issue.

    Pop cycle P: the column key `base + j` goes to the pointer banks. The pointers are on
    the banks' ports in cycle P + 1 and land in the *column register* at its end
    (`pointer_latency` = 2), with the column's entry count (0, 1, 2, 3 or more) that the
    loader stores beside each end pointer (host_map.pointer_word): "is there an entry",
    "a second", "a third" are register bits, no subtraction or compare of pointers. The
    issue stage takes the column register in a cycle where it has nothing else to issue
    and issues entries p_j ... p_{j+1} - 1 then, one per cycle (an empty column spends
    that cycle as a bubble). A PE pops as soon as the column
    register will be free, or taken, by the time the pointers land, so consecutive columns
    issue back to back. Every decision is made from registers: no memory output is on
    the path to the queue's read enable.
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
            "ptr_count": In(PTR_COUNT_BITS),    # min(ptr_end - ptr_start, 3), stored with ptr_end
            "issued": Out(issued_entry(entry_bits)),
            "active": Out(1),                       # an issue cycle (entry or bubble)
            "idle": Out(1),                         # nothing queued, fetched or issuing
        })

    def elaborate(self, platform):
        m = Module()
        eb = self.entry_bits
        # pointer fetch: the pointers of the item popped last cycle are on the ports
        fetch_pending = Signal()
        fetch_act = Signal(signed(ACT_BITS))
        # column register
        col_valid = Signal()
        col_start = Signal(eb)
        col_end = Signal(eb)
        col_act = Signal(signed(ACT_BITS))
        col_count = Signal(PTR_COUNT_BITS)  # entries of the column register's column, 3 = 3+
        # issue stage: the second and later entries of the column it took
        iss_active = Signal()
        iss_cur = Signal(eb)
        iss_end = Signal(eb)
        iss_act = Signal(signed(ACT_BITS))

        iss_more = Signal()                 # iss_cur + 1 < iss_end, kept as a register
        take = Signal()
        m.d.comb += take.eq(col_valid & ~iss_active)
        col_multi = Signal()                # the column register's column has 2+ entries
        m.d.comb += col_multi.eq(col_count[1])
        iss_active_next = Signal()
        with m.If(take):
            m.d.comb += iss_active_next.eq(col_multi)
        with m.Else():
            m.d.comb += iss_active_next.eq(iss_active & iss_more)
        col_held_next = fetch_pending | (col_valid & ~take)
        pop = Signal()
        m.d.comb += [
            self.i.ready.eq(~col_held_next | ~iss_active_next),
            pop.eq(self.i.valid & self.i.ready),
            self.ptr_addr.eq(self.base + self.i.payload.index),
            self.ptr_en.eq(pop),
        ]

        e_cur = Mux(take, col_start, iss_cur)
        # The issue stage is active only while its column has an entry left (iss_more), so
        # an issue cycle is a bubble only when it takes an empty column.
        m.d.comb += [
            self.issued.valid.eq(iss_active | (take & (col_count != 0))),
            self.issued.entry.eq(e_cur),
            self.issued.first.eq(take),
            self.issued.act.eq(Mux(take, col_act, iss_act)),
            self.active.eq(take | iss_active),
            self.idle.eq(~self.i.valid & ~fetch_pending & ~col_valid & ~iss_active),
        ]

        m.d.sync += [fetch_pending.eq(pop), iss_active.eq(iss_active_next), iss_cur.eq(e_cur + 1)]
        with m.If(pop):
            m.d.sync += fetch_act.eq(self.i.payload.value)
        with m.If(take):
            m.d.sync += [iss_end.eq(col_end), iss_act.eq(col_act), iss_more.eq(col_count == 3)]
        with m.Else():
            m.d.sync += iss_more.eq(iss_cur + 2 < iss_end)
        with m.If(fetch_pending):
            m.d.sync += [col_valid.eq(1), col_start.eq(self.ptr_start), col_end.eq(self.ptr_end),
                         col_count.eq(self.ptr_count), col_act.eq(fetch_act)]
        with m.Elif(take):
            m.d.sync += col_valid.eq(0)
        return m
