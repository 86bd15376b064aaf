"""Arithmetic unit: codebook lookup, row address accumulation, multiply-accumulate."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .issue import issued_entry
from .params import ACT_BITS, CODEBOOK_SIZE, PRODUCT_BITS, fits_signed
from .register_stage import REPLICA_ATTR
from .spmat_read import fetched_entry

__all__ = ["ArithmeticUnit"]


class ArithmeticUnit(wiring.Component):
    """The PE's datapath from a fetched (v, z) entry to its accumulator (docs/numerics.md).

    Stages, for an entry issued in cycle i (docs/cycle-model.md, `pipeline_latency` = 7);
    every stage starts from registers:

    * i + 1 `fetch`: the SRAM row is read (SparseMatrixRead registers the row and slot).
    * i + 2 `select`: SparseMatrixRead picks the entry's (v, z) from the row into registers.
    * i + 3 `decode`: w = codebook[layer][v] (register file); row = z for the first
      entry of a column, previous row + z + 1 otherwise.
    * i + 4 `multiply`: product w * a (exact, 32 bits) is registered; acc[row] is read.
    * i + 5 `read`: the accumulator's old value is registered. Its read missed the three
      entries before (written at the ends of i + 5, i + 6 and i + 7), so this stage
      registers whether the entry just ahead hits the same row, and the sum of the latest
      of the two before it that does (`pre_*`).
    * i + 6 `accumulate`: sum = saturate(old + product), where old is the sum of the
      entry before (same row), else `pre_sum`, else the memory's value (0 if not written
      since the last write-back): back-to-back hits never stall.
    * i + 7 `write`: acc[row] = sum, from registers (the adder and saturation are not on
      the path into the memory).

    The accumulators are double-buffered: batch after batch alternates between two
    banks (`acc_bank`), so the write-back of a finished batch (`wb_bank`) reads its bank
    through a second read port while the next batch accumulates in the other. Write-back
    reads one accumulator per cycle (`wb_en`, `wb_row` in cycle w; `wb_acc` registered, in
    w + 2) and clears its valid bit (in w + 1). A valid bit per accumulator, cleared by
    reset and for the whole bank when a batch starts in it (`clear`), makes a never-written
    accumulator read as 0.
    """

    def __init__(self, *, acc_depth: int, acc_bits: int, max_layers: int, row_bits: int, layer_bits: int,
                 entry_bits: int):
        self.acc_depth = acc_depth
        self.acc_bits = acc_bits
        self.max_layers = max_layers
        self.row_bits = row_bits
        super().__init__({
            "issued": In(issued_entry(entry_bits)),   # cycle i: valid, first, act (entry: unused)
            "fetched": In(fetched_entry()),           # cycle i + 3: v, z
            "layer": In(layer_bits),          # codebook of the running layer
            "acc_bank": In(1),                # the computing batch's bank
            "wb_en": In(1),                   # read accumulator wb_row of bank wb_bank
            "wb_row": In(row_bits),           # (write-back, or a host read of a held output)
            "wb_bank": In(1),
            "wb_clear": In(1),                # ... and clear it (write-back; a host read keeps it)
            "clear": In(1),                   # batch cycle 0: every accumulator of acc_bank reads 0 from cycle 2 on
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

        depth = 1 << rb                        # a bank's rows (acc_depth, at least 2): address = bank, row
        m.submodules.accumulators = accm = Memory(shape=signed(acc_bits), depth=2 * depth, init=[])
        acc_r = accm.read_port()               # synchronous, not transparent: the bypass covers it
        wb_r = accm.read_port()                # write-back and host reads
        acc_w = accm.write_port()
        acc_valid = Signal(2 * depth)          # bit bank * depth + row
        # each read port sees its bank's half through a register: one cycle late, which
        # neither needs (the bypass covers the three entries before a read, write-back and
        # host reads come long after the sums), and a 1-of-depth choice, not 1-of-2*depth
        valid_acc = Signal(depth)
        valid_wb = Signal(depth)
        m.d.sync += [valid_acc.eq(Mux(self.acc_bank, acc_valid[depth:], acc_valid[:depth])),
                     valid_wb.eq(Mux(self.wb_bank, acc_valid[depth:], acc_valid[:depth]))]

        # -- fetch (i + 1), select (i + 2): the entry's issue, first flag and activation
        # travel along while SparseMatrixRead reads and selects its (v, z) ----------------
        fetch_v, fetch_first = Signal(), Signal()
        fetch_act = Signal(signed(ACT_BITS))
        m.d.sync += [fetch_v.eq(self.issued.valid), fetch_first.eq(self.issued.first), fetch_act.eq(self.issued.act)]
        sel_v, sel_first = Signal(), Signal()
        sel_act = Signal(signed(ACT_BITS))
        m.d.sync += [sel_v.eq(fetch_v), sel_first.eq(fetch_first), sel_act.eq(fetch_act)]
        dec_v, dec_first = Signal(), Signal()
        dec_act = Signal(signed(ACT_BITS))
        m.d.sync += [dec_v.eq(sel_v), dec_first.eq(sel_first), dec_act.eq(sel_act)]

        # -- decode (i + 3): codebook and row address ------------------------------------
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

        # -- multiply (i + 4): product, accumulator read ----------------------------------
        rd_v = Signal()
        rd_row = Signal(rb)
        rd_product = Signal(signed(PRODUCT_BITS))
        rd_hit = Signal()                      # acc[row] was written since its last clear
        m.d.sync += [rd_v.eq(mul_v), rd_row.eq(mul_row), rd_product.eq(mul_w * mul_act),
                     rd_hit.eq(valid_acc.bit_select(mul_row, 1))]

        # -- read (i + 5): old value registered, same-row checks against the two in flight --
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
        last_row = Signal(rb)                  # (its sum is written to memory now: `write`)
        last_sum = Signal(signed(acc_bits))
        last2_v = Signal()                     # ... and in the cycle before
        last2_row = Signal(rb)
        last2_sum = Signal(signed(acc_bits))
        same_last = Signal()                   # old value = sum of the entry one ahead
        pre_hit = Signal()                     # ... else the sum of the entry two or three ahead:
        pre_sum = Signal(signed(acc_bits))
        hit2 = rd_v & last_v & (last_row == rd_row)
        hit3 = rd_v & last2_v & (last2_row == rd_row)
        m.d.sync += [
            acc_v.eq(rd_v), acc_row.eq(rd_row), acc_product.eq(p_clamped), acc_mem.eq(acc_r.data),
            acc_hit.eq(rd_hit),
            same_last.eq(rd_v & acc_v & (acc_row == rd_row)),
            pre_hit.eq(hit2 | hit3), pre_sum.eq(Mux(hit2, last_sum, last2_sum)),
        ]

        # -- accumulate (i + 6) ------------------------------------------------------------
        old = Signal(signed(acc_bits))
        with m.If(same_last):
            m.d.comb += old.eq(last_sum)
        with m.Elif(pre_hit):
            m.d.comb += old.eq(pre_sum)
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
        m.d.sync += [last_v.eq(acc_v), last2_v.eq(last_v), last2_row.eq(last_row), last2_sum.eq(last_sum)]
        with m.If(acc_v):
            m.d.sync += [last_row.eq(acc_row), last_sum.eq(total),
                         acc_valid.bit_select(Cat(acc_row, self.acc_bank), 1).eq(1)]

        # -- write (i + 7) -------------------------------------------------------------------
        m.d.comb += [acc_w.addr.eq(Cat(last_row, self.acc_bank)), acc_w.data.eq(last_sum), acc_w.en.eq(last_v)]

        # -- read ports: the multiply stage's, and the write-back's ----------------------
        m.d.comb += acc_r.addr.eq(Cat(mul_row, self.acc_bank))
        m.d.comb += wb_r.addr.eq(Cat(self.wb_row, self.wb_bank))
        # The write-back's row, bank and clear are registered here (w + 1), a copy per PE
        # (the PEs of a group see the same inputs; synthesis would share one copy), and the
        # valid bit is looked up and cleared from the copy: the row's net reaches only the
        # memory's address, not 64 multiplexers in four PEs. valid_wb in w + 1 holds the
        # valid bits as they were in w, before this read's own clear.
        wb_read = Signal()
        wb_row_r = Signal(rb, attrs={REPLICA_ATTR: 1})
        wb_bank_r = Signal(attrs={REPLICA_ATTR: 1})
        wb_clear_r = Signal(attrs={REPLICA_ATTR: 1})
        m.d.sync += [wb_read.eq(self.wb_en), wb_row_r.eq(self.wb_row), wb_bank_r.eq(self.wb_bank),
                     wb_clear_r.eq(self.wb_en & self.wb_clear)]
        wb_hit = valid_wb.bit_select(wb_row_r, 1)
        with m.If(self.clear):                 # a batch starts in acc_bank (the other may be written back)
            with m.If(self.acc_bank):
                m.d.sync += acc_valid[depth:].eq(0)
            with m.Else():
                m.d.sync += acc_valid[:depth].eq(0)
        with m.If(wb_clear_r):
            m.d.sync += acc_valid.bit_select(Cat(wb_row_r, wb_bank_r), 1).eq(0)
        with m.If(wb_read):
            m.d.sync += self.wb_acc.eq(Mux(wb_hit, wb_r.data, 0))
        m.d.comb += self.busy.eq(fetch_v | sel_v | dec_v | mul_v | rd_v | acc_v | last_v)
        return m
