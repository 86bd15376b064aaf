"""Sparse-matrix read unit: 64-bit SRAM rows of eight (v, z) entries, one entry per cycle."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eie.golden_model.layout import ENTRIES_PER_SRAM_ROW, ENTRY_FIELDS, SRAM_ROW_BITS

from .issue import issued_entry

__all__ = ["SparseMatrixRead", "Entry", "SramRow", "fetched_entry"]

#: One encoded entry: 4-bit codebook index v (low nibble), 4-bit zero run z (high nibble),
#: from the golden model's definition (golden_model/layout.py, used by the NumPy packer).
Entry = data.StructLayout(ENTRY_FIELDS)
#: One SRAM row: entry e of a PE sits in row e // 8, slot e % 8 (docs/image-format.md).
SramRow = data.ArrayLayout(Entry, ENTRIES_PER_SRAM_ROW)


def fetched_entry() -> wiring.Signature:
    """The (v, z) of the entry issued three cycles before, to the arithmetic unit."""
    return wiring.Signature({name: Out(bits) for name, bits in ENTRY_FIELDS.items()})


class SparseMatrixRead(wiring.Component):
    """Streams the entries of a column: entry index in cycle i, its (v, z) in cycle i + 3.

    The SRAM row is on the read port in cycle i + 1 and is registered at its end, with the
    entry's slot, so nothing follows the memory's clock-to-output delay but wiring; in
    cycle i + 2 (`select`) the slot multiplexer picks the entry from that register into the
    (v, z) register, so the codebook lookup after it starts from one byte's flip-flops
    rather than from the eight-way choice.

    Eight entries share a row, so a new row is fetched only when the issued entry is in
    a different row than the last fetched one (a column's entries are consecutive);
    otherwise the read port is disabled and keeps its data, which saves SRAM reads.

    Ports: `issued` (valid, entry; cycle i); `fetched` (v, z; cycle i + 3, registered); `w_addr`, `w_data`, `w_en` (host).
    """

    def __init__(self, depth: int, entry_bits: int, addr_bits: int):
        self.depth = depth
        super().__init__({
            "issued": In(issued_entry(entry_bits)),
            "fetched": Out(fetched_entry()),
            "w_addr": In(addr_bits),
            "w_data": In(SRAM_ROW_BITS),
            "w_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sram = sram = Memory(shape=SramRow, depth=self.depth, init=[])
        rd = sram.read_port()          # synchronous: row data one cycle after the address
        wr = sram.write_port()

        row = self.issued.entry >> 3
        fetched_row = Signal.like(row)
        fetched = Signal()               # fetched_row holds a valid row address
        slot = Signal(3)

        need = self.issued.valid & (~fetched | (row != fetched_row))
        m.d.comb += [rd.addr.eq(row), rd.en.eq(need)]
        with m.If(need):
            m.d.sync += [fetched_row.eq(row), fetched.eq(1)]
        with m.If(self.issued.valid):
            m.d.sync += slot.eq(self.issued.entry[:3])
        with m.If(self.w_en):            # host rewrote the SRAM: the held row may be stale
            m.d.sync += fetched.eq(0)

        # cycle i + 1: the row is on the port and goes straight into a register, the slot with it
        row_data = Signal(SramRow)
        row_slot = Signal(3)
        m.d.sync += [row_data.eq(rd.data), row_slot.eq(slot)]
        # cycle i + 2 (`select`): the entry is selected from registers into registers
        entry = row_data[row_slot]
        m.d.sync += [self.fetched.v.eq(entry.v), self.fetched.z.eq(entry.z)]
        m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
        return m
