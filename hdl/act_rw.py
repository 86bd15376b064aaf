"""Activation read/write unit: source/destination register files, write-back, non-zero lists."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eie.golden_model import numerics as nm

from .params import ACT_BITS

__all__ = ["ActRW"]

class ActRW(wiring.Component):
    """The PE's activations: two banks that swap roles per layer (source / destination).

    Each bank holds the dense activations (host read-back) and, beside them, the list of
    the bank's non-zero activations in increasing index order, which the LNZD walks: zeros
    are detected when a value is written (by the host or by write-back), so broadcasting
    skips them at no cost.

    Write-back (cycle w: `wb_en`, `wb_local`, `wb_keep`; cycle w + 1: `wb_acc`) rounds
    half up by `shift`, saturates to 16 bits, applies ReLU, writes the destination bank
    and appends the value to its non-zero list (docs/numerics.md, step 3). `wb_keep` is
    low for accumulator rows this PE does not own (the last block of a layer).
    """

    def __init__(self, *, act_depth: int, local_bits: int, acc_bits: int, shift_bits: int, nz_item):
        self.act_depth = act_depth
        self.local_bits = local_bits
        self.acc_bits = acc_bits
        self.nz_item = nz_item
        super().__init__({
            "src_bank": In(1),
            "clear_src": In(1),               # forget the source bank's non-zeros (new input)
            "clear_dst": In(1),               # start of a layer: empty the destination list
            # write-back
            "wb_en": In(1),
            "wb_local": In(local_bits),
            "wb_keep": In(1),
            "wb_acc": In(signed(acc_bits)),
            "shift": In(shift_bits),
            "relu": In(1),
            # host access to the source bank
            "in_en": In(1),
            "in_local": In(local_bits),
            "in_data": In(signed(ACT_BITS)),
            "rd_local": In(local_bits),
            "rd_data": Out(signed(ACT_BITS)),  # the cycle after rd_local
            # non-zero list head of the source bank, for the LNZD
            "nz_valid": Out(1),
            "nz": Out(nz_item),
            "nz_pop": In(1),
            "nz_rewind": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth, lb = self.act_depth, self.local_bits
        m.submodules.acts = acts = Memory(shape=signed(ACT_BITS), depth=2 * depth, init=[])
        m.submodules.nonzeros = nzs = Memory(shape=self.nz_item, depth=2 * depth, init=[])
        act_w, act_r = acts.write_port(), acts.read_port()     # sync read: host read-back
        nz_w, nz_r = nzs.write_port(), nzs.read_port()         # sync read: LNZD head

        count = [Signal(lb + 1, name=f"count{b}") for b in range(2)]
        src_count = Mux(self.src_bank, count[1], count[0])
        dst_bank = ~self.src_bank

        # -- write-back: cycle w -> w + 1 ---------------------------------------------
        wb_go = Signal()
        wb_local = Signal(lb)
        m.d.sync += wb_go.eq(self.wb_en & self.wb_keep)
        with m.If(self.wb_en):
            m.d.sync += wb_local.eq(self.wb_local)
        # Round half up without a run-time constant: t = floor(acc / 2**(shift-1)) by one
        # arithmetic shift of 2*acc, then (t + 1) >> 1 = floor((acc + 2**(shift-1)) / 2**shift)
        # (shift 0 gives acc). One (acc_bits + 1)-bit shifter and an incrementer; a shift
        # past the accumulator width leaves 0 or -1 in t, i.e. 0, as numerics.round_shift.
        t = Signal(signed(self.acc_bits + 1))
        m.d.comb += t.eq((self.wb_acc << 1) >> self.shift)
        rounded = Signal(signed(self.acc_bits + 1))
        m.d.comb += rounded.eq((t + 1) >> 1)
        lo, hi = nm.int_range(ACT_BITS)
        y = Signal(signed(ACT_BITS))
        with m.If(rounded > hi):
            m.d.comb += y.eq(hi)
        with m.Elif(rounded < Mux(self.relu, 0, lo)):
            m.d.comb += y.eq(Mux(self.relu, 0, lo))
        with m.Else():
            m.d.comb += y.eq(rounded)

        # -- one write port each: write-back (busy) or host input (idle) --------------
        w_bank = Signal()
        w_local = Signal(lb)
        w_data = Signal(signed(ACT_BITS))
        w_en = Signal()
        with m.If(wb_go):
            m.d.comb += [w_bank.eq(dst_bank), w_local.eq(wb_local), w_data.eq(y), w_en.eq(1)]
        with m.Else():
            m.d.comb += [w_bank.eq(self.src_bank), w_local.eq(self.in_local), w_data.eq(self.in_data),
                         w_en.eq(self.in_en)]
        w_count = Mux(w_bank, count[1], count[0])
        append = w_en & (w_data != 0)
        m.d.comb += [
            act_w.addr.eq(Cat(w_local, w_bank)), act_w.data.eq(w_data), act_w.en.eq(w_en),
            nz_w.addr.eq(Cat(w_count[:lb], w_bank)), nz_w.en.eq(append),
            nz_w.data.local.eq(w_local), nz_w.data.value.eq(w_data),
        ]
        for b in range(2):
            with m.If((self.clear_src & (self.src_bank == b)) | (self.clear_dst & (dst_bank == b))):
                m.d.sync += count[b].eq(0)
            with m.Elif(append & (w_bank == b)):
                m.d.sync += count[b].eq(count[b] + 1)

        # -- host read-back of the source bank ------------------------------------------
        m.d.comb += [act_r.addr.eq(Cat(self.rd_local, self.src_bank)), self.rd_data.eq(act_r.data)]

        # -- non-zero list head: data for index rd_ptr is on the port -------------------
        rd_ptr = Signal(lb + 1)
        nxt = Signal(lb + 1)
        m.d.comb += nxt.eq(Mux(self.nz_rewind, 0, rd_ptr + self.nz_pop))
        m.d.sync += rd_ptr.eq(nxt)
        m.d.comb += [
            nz_r.addr.eq(Cat(nxt[:lb], self.src_bank)),
            self.nz.eq(nz_r.data),
            self.nz_valid.eq(rd_ptr < src_count),
        ]
        return m
