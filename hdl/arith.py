"""Arithmetic unit: codebook lookup, row address accumulation, multiply-accumulate."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .issue import issued_entry
from .params import ACT_BITS, CODEBOOK_SIZE, PRODUCT_BITS, fits_signed
from .spmat_read import fetched_entry

__all__ = ["ArithmeticUnit"]


class ArithmeticUnit(wiring.Component):
    """The PE's datapath from a fetched (v, z) entry to its accumulator (docs/numerics.md).

    Stages, for an entry issued in cycle i (docs/cycle-model.md, `pipeline_latency` = 5);
    every stage starts from registers:

    * i + 1 `fetch`: the SRAM row is read (SparseMatrixRead registers the entry's (v, z)).
    * i + 2 `decode`: w = codebook[layer][v] (register file); row = z for the first
      entry of a column, previous row + z + 1 otherwise.
    * i + 3 `multiply`: product w * a (exact, 32 bits) is registered; acc[row] is read.
    * i + 4 `read`: the accumulator's old value is registered. Its read missed the two
      entries before (written at the ends of i + 3 and i + 4), so this stage also
      registers whether either of them hit the same row.
    * i + 5 `accumulate`: acc[row] = saturate(old + product), where old is the sum of the
      entry before (same row), else of the one before that, else the memory's value (0
      if not written since the last write-back): back-to-back hits never stall.

    Write-back reads one accumulator per cycle through the same read port (`wb_en`,
    `wb_row` in cycle w; `wb_acc` registered, in w + 2) and clears it. A valid bit per
    accumulator, cleared by reset, makes a never-written accumulator read as 0 even after
    a reset in the middle of a batch.
    """

    def __init__(self, *, acc_depth: int, acc_bits: int, max_layers: int, row_bits: int, layer_bits: int,
                 entry_bits: int):
        self.acc_depth = acc_depth
        self.acc_bits = acc_bits
        self.max_layers = max_layers
        self.row_bits = row_bits
        super().__init__({
            "issued": In(issued_entry(entry_bits)),   # cycle i: valid, first, act (entry: unused)
            "fetched": In(fetched_entry()),           # cycle i + 2: v, z
            "layer": In(layer_bits),          # codebook of the running layer
            "wb_en": In(1),                   # read accumulator wb_row (write-back or a host read)
            "wb_row": In(row_bits),
            "wb_clear": In(1),                # ... and clear it (write-back; a host read keeps it)
            "clear": In(1),                   # batch cycle 0: every accumulator reads 0 from now on
            "wb_acc": Out(signed(acc_bits)),  # cycle w + 2
            "busy": Out(1),                   # an entry is in flight
            "cb_w_addr": In(layer_bits + 4),  # layer * 16 + v
            "cb_w_data": In(signed(ACT_BITS)),
            "cb_w_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        acc_bits, rb = self.acc_bits, self.row_bits

        m.submodules.codebook = cb = Memory(shape=signed(ACT_BITS), depth=self.max_layers * CODEBOOK_SIZE, init=[])
        cb_r = cb.read_port(domain="comb")     # 16 words per layer: asynchronous (register file)
        cb_w = cb.write_port()
        m.d.comb += [cb_w.addr.eq(self.cb_w_addr), cb_w.data.eq(self.cb_w_data), cb_w.en.eq(self.cb_w_en)]

        m.submodules.accumulators = accm = Memory(shape=signed(acc_bits), depth=self.acc_depth, init=[])
        acc_r = accm.read_port()               # synchronous, not transparent: the bypass covers it
        acc_w = accm.write_port()
        acc_valid = Signal(self.acc_depth)

        # -- fetch (i + 1): the entry's issue, first flag and activation travel along ------
        fetch_v, fetch_first = Signal(), Signal()
        fetch_act = Signal(signed(ACT_BITS))
        m.d.sync += [fetch_v.eq(self.issued.valid), fetch_first.eq(self.issued.first), fetch_act.eq(self.issued.act)]
        dec_v, dec_first = Signal(), Signal()
        dec_act = Signal(signed(ACT_BITS))
        m.d.sync += [dec_v.eq(fetch_v), dec_first.eq(fetch_first), dec_act.eq(fetch_act)]

        # -- decode (i + 2): codebook and row address ------------------------------------
        prev_row = Signal(rb)
        dec_row = Signal(rb)
        m.d.comb += [
            dec_row.eq(Mux(dec_first, self.fetched.z, prev_row + self.fetched.z + 1)),
            cb_r.addr.eq((self.layer << 4) | self.fetched.v),
        ]
        mul_v = Signal()
        mul_row = Signal(rb)
        mul_w = Signal(signed(ACT_BITS))
        mul_act = Signal(signed(ACT_BITS))
        m.d.sync += [mul_v.eq(dec_v), mul_w.eq(cb_r.data), mul_act.eq(dec_act)]   # (DSP input registers)
        with m.If(dec_v):
            m.d.sync += [prev_row.eq(dec_row), mul_row.eq(dec_row)]

        # -- multiply (i + 3): product, accumulator read ----------------------------------
        rd_v = Signal()
        rd_row = Signal(rb)
        rd_product = Signal(signed(PRODUCT_BITS))
        rd_hit = Signal()                      # acc[row] was written since its last clear
        m.d.sync += [rd_v.eq(mul_v), rd_row.eq(mul_row), rd_product.eq(mul_w * mul_act),
                     rd_hit.eq(acc_valid.bit_select(mul_row, 1))]

        # -- read (i + 4): old value registered, same-row checks against the two in flight --
        acc_v = Signal()
        acc_row = Signal(rb)
        # A product beyond +-2**acc_bits saturates any sum with a valid accumulator the same
        # way as its clamped value does, so it travels on clamped to acc_bits + 2 bits.
        p_bits = min(PRODUCT_BITS, acc_bits + 2)
        acc_product = Signal(signed(p_bits))
        p_clamped = Mux(fits_signed(rd_product, p_bits), rd_product, Mux(rd_product[-1], -(1 << (p_bits - 1)), (1 << (p_bits - 1)) - 1))
        acc_mem = Signal(signed(acc_bits))
        acc_hit = Signal()
        last_v = Signal()                      # the entry accumulated in the previous cycle
        last_row = Signal(rb)
        last_sum = Signal(signed(acc_bits))
        last2_sum = Signal(signed(acc_bits))   # ... and in the cycle before
        same_last = Signal()                   # old value = sum of the entry one ahead
        same_last2 = Signal()                  # old value = sum of the entry two ahead
        m.d.sync += [
            acc_v.eq(rd_v), acc_row.eq(rd_row), acc_product.eq(p_clamped), acc_mem.eq(acc_r.data),
            acc_hit.eq(rd_hit),
            same_last.eq(rd_v & acc_v & (acc_row == rd_row)),
            same_last2.eq(rd_v & last_v & (last_row == rd_row)),
        ]

        # -- accumulate (i + 5) ------------------------------------------------------------
        old = Signal(signed(acc_bits))
        with m.If(same_last):
            m.d.comb += old.eq(last_sum)
        with m.Elif(same_last2):
            m.d.comb += old.eq(last2_sum)
        with m.Elif(acc_hit):
            m.d.comb += old.eq(acc_mem)
        width = max(acc_bits, PRODUCT_BITS) + 1
        raw = Signal(signed(width))            # old + product, never wraps
        total = Signal(signed(acc_bits))
        m.d.comb += raw.eq(old + acc_product)
        fits = fits_signed(raw, acc_bits)
        with m.If(fits):
            m.d.comb += total.eq(raw)
        with m.Elif(raw[-1]):
            m.d.comb += total.eq(-(1 << (acc_bits - 1)))
        with m.Else():
            m.d.comb += total.eq((1 << (acc_bits - 1)) - 1)
        m.d.sync += [last_v.eq(acc_v), last2_sum.eq(last_sum)]
        with m.If(acc_v):
            m.d.sync += [last_row.eq(acc_row), last_sum.eq(total), acc_valid.bit_select(acc_row, 1).eq(1)]
        m.d.comb += [acc_w.addr.eq(acc_row), acc_w.data.eq(total), acc_w.en.eq(acc_v)]

        # -- accumulator read port: the multiply stage during compute, write-back after ---
        wb_hit = Signal()
        wb_read = Signal()
        m.d.comb += acc_r.addr.eq(Mux(self.wb_en, self.wb_row, mul_row))
        m.d.sync += wb_read.eq(self.wb_en)
        with m.If(self.wb_en):
            m.d.sync += wb_hit.eq(acc_valid.bit_select(self.wb_row, 1))
        with m.If(self.wb_en & self.wb_clear):
            m.d.sync += acc_valid.bit_select(self.wb_row, 1).eq(0)
        with m.If(self.clear):                 # after a run whose last batch was held, not written back
            m.d.sync += acc_valid.eq(0)
        with m.If(wb_read):
            m.d.sync += self.wb_acc.eq(Mux(wb_hit, acc_r.data, 0))
        m.d.comb += self.busy.eq(fetch_v | dec_v | mul_v | rd_v | acc_v)
        return m
