"""Activation read/write unit: source/destination register files, write-back, non-zero lists."""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from eie.golden_model import numerics as nm

from .params import ACT_BITS, fits_signed
from .reg_fifo import RegisterFIFO

__all__ = ["ActRW"]

class ActRW(wiring.Component):
    """The PE's activations: two banks that swap roles per layer (source / destination).

    Each bank holds the dense activations (host read-back) and, beside them, the list of
    the bank's non-zero activations in increasing index order, which the LNZD walks: zeros
    are detected when a value is written (by the host or by write-back), so broadcasting
    skips them at no cost.

    Write-back (cycle w: `wb_en`, `wb_local`, `wb_keep`; cycle w + 2: `wb_acc`) runs over
    registered stages: `shift` (w + 2), `round` (w + 3: round half up, saturate to 16
    bits, ReLU) and `write` (w + 4: the destination bank and its non-zero list), i.e.
    `writeback_latency` = 4 (docs/numerics.md, step 3). `wb_keep` is low for accumulator
    rows this PE does not own (the last block of a layer).

    The list head goes to the LNZD as a stream (`nz`, with `nz_done` once the list is
    walked): a four-entry buffer is kept filled from the list memory, so the LNZD sees
    registers, not the memory's output, and can take one item per cycle. The memory's
    output lands in a register of its own first (a block RAM's output is slow: it drives
    no logic). `nz_rewind` (batch cycle 0) empties the buffer and reads entry 0 again: it
    is valid from cycle 3 (`list_latency`).

    A layer's bias column (`bias_here`: this PE holds column n_in) is one more list entry
    after the stored ones, `bias_item`, which is not in the memory: it takes the same
    read slot and lands in place of the memory's output, so it reaches the LNZD exactly
    as a stored activation would (broadcast last: it has the highest index).
    """

    PREFETCH = 4    # a read in flight, one landing, two buffered: one item per cycle, read ahead

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
            "wb_peek": In(1),                 # this wb_en is a host read of a held output: convert, do not write
            "shift": In(shift_bits),
            "relu": In(1),
            # host access to the source bank
            "in_en": In(1),
            "in_local": In(local_bits),
            "in_data": In(signed(ACT_BITS)),
            "rd_local": In(local_bits),
            "rd_data": Out(signed(ACT_BITS)),  # PE_READ_LATENCY (5) cycles after rd_local: the dense
                                               # value, or the converted accumulator of a peek
            # non-zero list of the source bank, for the LNZD
            "nz": Out(stream.Signature(nz_item)),
            "nz_done": Out(1),
            "nz_rewind": In(1),
            # the bias column, an entry after the list (valid from nz_rewind to the layer's end)
            "bias_here": In(1),
            "bias_item": In(nz_item),
        })

    def elaborate(self, platform):
        m = Module()
        depth, lb = self.act_depth, self.local_bits
        m.submodules.acts = acts = Memory(shape=signed(ACT_BITS), depth=2 * depth, init=[])
        m.submodules.nonzeros = nzs = Memory(shape=self.nz_item, depth=2 * depth, init=[])
        act_w, act_r = acts.write_port(), acts.read_port()     # sync read: host read-back
        nz_w, nz_r = nzs.write_port(), nzs.read_port()         # sync read: LNZD prefetch

        count = [Signal(lb + 1, name=f"count{b}") for b in range(2)]
        src_count = Mux(self.src_bank, count[1], count[0])
        dst_bank = ~self.src_bank

        # -- write-back: cycle w -> w + 4 ---------------------------------------------
        stage_go = [Signal(name=f"wb_go{n}") for n in range(4)]       # w + 1 ... w + 4
        stage_local = [Signal(lb, name=f"wb_local{n}") for n in range(4)]
        m.d.sync += [stage_go[0].eq(self.wb_en & self.wb_keep & ~self.wb_peek), stage_local[0].eq(self.wb_local)]
        for n in range(1, 4):
            m.d.sync += [stage_go[n].eq(stage_go[n - 1]), stage_local[n].eq(stage_local[n - 1])]
        # shift (w + 2). Round half up without a run-time constant: t = floor(acc / 2**(shift-1))
        # by one arithmetic shift of 2*acc, then (t + 1) >> 1 = floor((acc + 2**(shift-1)) / 2**shift)
        # (shift 0 gives acc). A shift past the accumulator width leaves 0 or -1 in t, i.e. 0,
        # as numerics.round_shift.
        shifted = Signal(signed(self.acc_bits + 1))
        m.d.sync += shifted.eq((self.wb_acc << 1) >> self.shift)
        # round (w + 3): saturate by the bits above the 16-bit range, then ReLU
        rounded = Signal(signed(self.acc_bits + 1))
        m.d.comb += rounded.eq((shifted + 1) >> 1)
        fits = fits_signed(rounded, ACT_BITS)
        lo, hi = nm.int_range(ACT_BITS)
        y = Signal(signed(ACT_BITS))
        with m.If(self.relu & rounded[-1]):
            m.d.sync += y.eq(0)
        with m.Elif(fits):
            m.d.sync += y.eq(rounded)
        with m.Elif(rounded[-1]):
            m.d.sync += y.eq(lo)
        with m.Else():
            m.d.sync += y.eq(hi)
        wb_go, wb_local = stage_go[3], stage_local[3]

        # -- host input, registered here with its zero test: the group's copy of the host
        # bus reaches four PEs, so its wires are long, and they end in these flip-flops ------
        in_en, in_nz, in_bank = Signal(), Signal(), Signal()
        in_local = Signal(lb)
        in_data = Signal(signed(ACT_BITS))
        m.d.sync += [in_en.eq(self.in_en), in_nz.eq(self.in_data != 0), in_local.eq(self.in_local),
                     in_data.eq(self.in_data), in_bank.eq(self.src_bank)]

        # -- one write port each: write-back (busy) or host input (idle), at w + 4 ------
        w_bank = Signal()
        w_local = Signal(lb)
        w_data = Signal(signed(ACT_BITS))
        w_en, w_nz = Signal(), Signal()
        with m.If(wb_go):
            m.d.comb += [w_bank.eq(dst_bank), w_local.eq(wb_local), w_data.eq(y), w_en.eq(1), w_nz.eq(y != 0)]
        with m.Else():
            m.d.comb += [w_bank.eq(in_bank), w_local.eq(in_local), w_data.eq(in_data),
                         w_en.eq(in_en), w_nz.eq(in_nz)]
        w_count = Mux(w_bank, count[1], count[0])
        append = w_en & w_nz
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
        # the address is registered (as the host input is: a read one cycle after a write
        # sees it), the block RAM's output goes straight into a flip-flop, then waits for
        # the peek path: a host read of a held output (wb_en with wb_peek, one cycle after
        # the request) goes through the write-back stages, whose `y` is ready five cycles
        # after the request, like the dense value here
        rd_local = Signal(lb)
        m.d.sync += rd_local.eq(self.rd_local)
        m.d.comb += act_r.addr.eq(Cat(rd_local, self.src_bank))
        dense = [Signal(signed(ACT_BITS), name=f"rd_dense{n}") for n in range(3)]
        peek = [Signal(name=f"rd_peek{n}") for n in range(4)]
        m.d.sync += [dense[0].eq(act_r.data), peek[0].eq(self.wb_peek & self.wb_en)]
        m.d.sync += [dense[n].eq(dense[n - 1]) for n in range(1, 3)]
        m.d.sync += [peek[n].eq(peek[n - 1]) for n in range(1, 4)]
        m.d.comb += self.rd_data.eq(Mux(peek[3], y, dense[2]))

        # -- non-zero list prefetch for the LNZD -----------------------------------------
        buf = ResetInserter(self.nz_rewind)(RegisterFIFO(width=self.nz_item.size, depth=self.PREFETCH))
        m.submodules.nz_prefetch = buf
        rd_ptr = Signal(lb + 1)              # next list entry to read
        all_read = Signal()                  # rd_ptr == list_len (a register)
        list_len = Signal(lb + 1)            # entries of this batch's list: the bank's, + the bias
        stored = Signal(lb + 1)              # ... of them in the memory (a register)
        bias_read = Signal()                 # the read in flight is the bias slot
        in_flight = Signal()                 # a read issued last cycle: its data is on the port
        landed = Signal()                    # ... and the one before: its data in `land`
        land = Signal(self.nz_item)
        read = Signal()
        with m.If(self.nz_rewind):
            empty = src_count == 0
            m.d.comb += [read.eq(~empty | self.bias_here), nz_r.addr.eq(Cat(C(0, lb), self.src_bank))]
            m.d.sync += [rd_ptr.eq(read), all_read.eq(Mux(self.bias_here, empty, src_count <= 1)),
                         list_len.eq(src_count + self.bias_here), stored.eq(src_count),
                         bias_read.eq(self.bias_here & empty)]
        with m.Else():
            m.d.comb += [read.eq(~all_read & (buf.level + in_flight + landed < self.PREFETCH)),
                         nz_r.addr.eq(Cat(rd_ptr[:lb], self.src_bank))]
            m.d.sync += bias_read.eq(read & (rd_ptr == stored))   # past the memory's entries: the bias
            with m.If(read):
                m.d.sync += [rd_ptr.eq(rd_ptr + 1), all_read.eq(rd_ptr + 1 == list_len)]
        m.d.sync += [in_flight.eq(read), land.eq(Mux(bias_read, self.bias_item, nz_r.data)), landed.eq(in_flight & ~self.nz_rewind)]
        m.d.comb += [
            nz_r.en.eq(read),
            buf.w_data.eq(land), buf.w_en.eq(landed & ~self.nz_rewind),
            self.nz.valid.eq(buf.r_rdy), self.nz.payload.eq(buf.r_data), buf.r_en.eq(self.nz.ready),
            self.nz_done.eq(all_read & ~in_flight & ~landed & ~buf.r_rdy),
        ]
        return m
