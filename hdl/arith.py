"""Arithmetic unit: codebook lookup, row address accumulation, multiply-accumulate."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .params import ACT_BITS, CODEBOOK_SIZE, PRODUCT_BITS

__all__ = ["ArithmeticUnit"]


class ArithmeticUnit(wiring.Component):
    """The PE's datapath from a fetched (v, z) entry to its accumulator (docs/numerics.md).

    Stages, for an entry issued in cycle i (docs/cycle-model.md):

    * i + 1: `v`, `z` arrive from the SRAM. Codebook lookup w = codebook[layer][v];
      row = z for the first entry of a column, previous row + z + 1 otherwise.
    * i + 2: product w * a (exact, 32 bits) is registered; the accumulator is read.
    * i + 3: acc[row] = saturate(acc[row] + product) is written. If the previous cycle
      wrote the same row, the memory read is stale and the bypass forwards that sum, so
      back-to-back hits on one accumulator never stall.

    Write-back reads one accumulator per cycle through the same read port (`wb_en`,
    `wb_row` in cycle w, `wb_acc` in w + 1) and clears it. A valid bit per accumulator,
    cleared by reset, makes a never-written accumulator read as 0 even after a reset in
    the middle of a batch.
    """

    def __init__(self, *, acc_depth: int, acc_bits: int, max_layers: int, row_bits: int, layer_bits: int):
        self.acc_depth = acc_depth
        self.acc_bits = acc_bits
        self.max_layers = max_layers
        self.row_bits = row_bits
        super().__init__({
            "issue": In(1),                   # cycle i: an entry is issued
            "first": In(1),                   # cycle i: it is its column's first entry
            "act": In(signed(ACT_BITS)),      # cycle i: the column's activation
            "v": In(4),                       # cycle i + 1
            "z": In(4),                       # cycle i + 1
            "layer": In(layer_bits),          # codebook of the running layer
            "wb_en": In(1),
            "wb_row": In(row_bits),
            "wb_acc": Out(signed(acc_bits)),  # cycle w + 1
            "busy": Out(1),                   # an entry is in flight
            "cb_w_addr": In(layer_bits + 4),  # layer * 16 + v
            "cb_w_data": In(signed(ACT_BITS)),
            "cb_w_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        acc_bits = self.acc_bits
        lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1

        m.submodules.codebook = cb = Memory(shape=signed(ACT_BITS), depth=self.max_layers * CODEBOOK_SIZE, init=[])
        cb_r = cb.read_port(domain="comb")     # 16 words per layer: asynchronous (register file)
        cb_w = cb.write_port()
        m.d.comb += [cb_w.addr.eq(self.cb_w_addr), cb_w.data.eq(self.cb_w_data), cb_w.en.eq(self.cb_w_en)]

        m.submodules.accumulators = accm = Memory(shape=signed(acc_bits), depth=self.acc_depth, init=[])
        acc_r = accm.read_port()               # synchronous, not transparent: the bypass covers it
        acc_w = accm.write_port()
        acc_valid = Signal(self.acc_depth)

        # -- stage 1 (i + 1): decode ------------------------------------------------
        v1, first1 = Signal(), Signal()
        act1 = Signal(signed(ACT_BITS))
        m.d.sync += [v1.eq(self.issue), first1.eq(self.first)]
        with m.If(self.issue):
            m.d.sync += act1.eq(self.act)
        prev_row = Signal(self.row_bits)
        row1 = Signal(self.row_bits)
        m.d.comb += [
            row1.eq(Mux(first1, self.z, prev_row + self.z + 1)),
            cb_r.addr.eq((self.layer << 4) | self.v),
        ]
        v2 = Signal()
        row2 = Signal(self.row_bits)
        w2 = Signal(signed(ACT_BITS))
        act2 = Signal(signed(ACT_BITS))
        m.d.sync += v2.eq(v1)
        with m.If(v1):
            m.d.sync += [prev_row.eq(row1), row2.eq(row1), w2.eq(cb_r.data), act2.eq(act1)]

        # -- stage 2 (i + 2): multiply, read the accumulator ---------------------------
        v3 = Signal()
        row3 = Signal(self.row_bits)
        p3 = Signal(signed(PRODUCT_BITS))
        hit3 = Signal()                        # acc[row3] was written since its last clear
        m.d.sync += v3.eq(v2)
        with m.If(v2):
            m.d.sync += [row3.eq(row2), p3.eq(w2 * act2), hit3.eq(acc_valid.bit_select(row2, 1))]

        # -- stage 3 (i + 3): accumulate with bypass --------------------------------------
        last_v = Signal()
        last_row = Signal(self.row_bits)
        last_sum = Signal(signed(acc_bits))
        bypass = last_v & (last_row == row3)
        old = Signal(signed(acc_bits))
        with m.If(bypass):
            m.d.comb += old.eq(last_sum)
        with m.Elif(hit3):
            m.d.comb += old.eq(acc_r.data)
        raw = Signal(signed(max(acc_bits, PRODUCT_BITS) + 1))   # old + product, never wraps
        total = Signal(signed(acc_bits))
        m.d.comb += raw.eq(old + p3)
        with m.If(raw > hi):
            m.d.comb += total.eq(hi)
        with m.Elif(raw < lo):
            m.d.comb += total.eq(lo)
        with m.Else():
            m.d.comb += total.eq(raw)
        m.d.sync += last_v.eq(v3)
        with m.If(v3):
            m.d.sync += [last_row.eq(row3), last_sum.eq(total), acc_valid.bit_select(row3, 1).eq(1)]
        m.d.comb += [acc_w.addr.eq(row3), acc_w.data.eq(total), acc_w.en.eq(v3)]

        # -- accumulator read port: stage 2 during compute, write-back afterwards ------
        wb_hit = Signal()
        m.d.comb += acc_r.addr.eq(Mux(self.wb_en, self.wb_row, row2))
        with m.If(self.wb_en):
            m.d.sync += [wb_hit.eq(acc_valid.bit_select(self.wb_row, 1)),
                         acc_valid.bit_select(self.wb_row, 1).eq(0)]
        m.d.comb += [
            self.wb_acc.eq(Mux(wb_hit, acc_r.data, 0)),
            self.busy.eq(v1 | v2 | v3),
        ]
        return m
