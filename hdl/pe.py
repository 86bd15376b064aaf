"""Processing element: queue, column issue, pointer and matrix reads, MAC, activations."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .act_queue import ActivationQueue
from .act_rw import ActRW
from .arith import ArithmeticUnit
from .control import batch_signature
from .issue import ColumnIssue
from .params import ACT_BITS, ArrayParams
from .ptr_read import PointerRead
from .spmat_read import SparseMatrixRead

__all__ = ["PE"]


class PE(wiring.Component):
    """EIE processing element k of N (Han et al., ISCA 2016, Fig. 4).

    Holds output rows i with i % N == k and input activations j with j % N == k. The
    control unit drives the batch-level inputs (`base`, `layer`, write-back schedule);
    the LNZD tree reads `nz_*` and pushes broadcasts into the queue.
    """

    def __init__(self, params: ArrayParams, index: int):
        self.params = p = params
        self.index = index
        super().__init__({
            # broadcast from the LNZD
            "push_data": In(p.act_item),
            "push": In(1),
            "room": Out(1),
            # batch control (from the control unit)
            "batch": In(batch_signature(p)),
            "clear_src": In(1),
            "idle": Out(1),                 # queue empty and nothing fetched or issued
            "popped": Out(1),               # an item left the queue (observability: traces)
            # non-zero list for the LNZD
            "nz": Out(stream.Signature(p.nz_item)),
            "nz_done": Out(1),
            # host access
            "ptr_w_addr": In(p.ptr_addr_bits), "ptr_w_data": In(p.ptr_item), "ptr_w_en": In(1),
            "spmat_w_addr": In(p.spmat_addr_bits), "spmat_w_data": In(64), "spmat_w_en": In(1),
            "cb_w_addr": In(p.layer_bits + 4), "cb_w_data": In(signed(ACT_BITS)), "cb_w_en": In(1),
            "in_en": In(1), "in_local": In(p.local_bits), "in_data": In(signed(ACT_BITS)),
            "rd_local": In(p.local_bits), "rd_data": Out(signed(ACT_BITS)),
            "peek_en": In(1), "peek_row": In(p.row_bits),    # host read of a held output (idle only)
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.queue = queue = ActivationQueue(p.act_item, p.fifo_depth)
        m.submodules.column_issue = issue = ColumnIssue(p.act_item, ptr_addr_bits=p.ptr_addr_bits, entry_bits=p.entry_bits)
        m.submodules.ptr_read = ptrs = PointerRead(p.ptr_depth, p.ptr_addr_bits, p.ptr_item)
        m.submodules.spmat_read = spmat = SparseMatrixRead(p.spmat_depth, p.entry_bits, p.spmat_addr_bits)
        m.submodules.arith = arith = ArithmeticUnit(acc_depth=p.acc_depth, acc_bits=p.acc_bits,
                                                    max_layers=p.max_layers, row_bits=p.row_bits,
                                                    layer_bits=p.layer_bits, entry_bits=p.entry_bits)
        m.submodules.act_rw = acts = ActRW(act_depth=p.act_depth, local_bits=p.local_bits, acc_bits=p.acc_bits,
                                           shift_bits=p.shift_bits, nz_item=p.nz_item)

        m.d.comb += [
            queue.push_data.eq(self.push_data), queue.push.eq(self.push), self.room.eq(queue.room),
        ]
        # the entry stream: queue -> column issue -> (sparse-matrix read, arithmetic), then
        # sparse-matrix read -> arithmetic three cycles later
        wiring.connect(m, queue.o, issue.i)
        wiring.connect(m, issue.issued, spmat.issued, arith.issued)
        wiring.connect(m, spmat.fetched, arith.fetched)
        m.d.comb += [
            issue.base.eq(self.batch.base),
            ptrs.addr.eq(issue.ptr_addr), ptrs.en.eq(issue.ptr_en),
            issue.ptr_start.eq(ptrs.start.value), issue.ptr_end.eq(ptrs.end.value),
            issue.ptr_count.eq(ptrs.end.count),
            arith.layer.eq(self.batch.layer),
            self.idle.eq(issue.idle),
            self.popped.eq(queue.o.valid & queue.o.ready),
        ]

        # write-back: accumulator row r of this batch is local activation m = base + r,
        # global output i = m * N + k. Only PEs 0 .. last_pes - 1 hold the last row m = last_row
        # (an output i = m * N + k beyond n_out belongs to no one).
        wb_local = Signal(p.local_bits + 1)
        m.d.comb += [
            wb_local.eq(self.batch.wb_local_base + self.batch.wb_row),
            arith.wb_en.eq(self.batch.wb_en | self.peek_en), arith.wb_clear.eq(self.batch.wb_en),
            arith.wb_row.eq(Mux(self.batch.wb_en, self.batch.wb_row, self.peek_row)),
            # a held output is in the last batch's bank, which is still acc_bank
            arith.wb_bank.eq(Mux(self.batch.wb_en, self.batch.wb_bank, self.batch.acc_bank)),
            arith.acc_bank.eq(self.batch.acc_bank),
            arith.clear.eq(self.batch.nz_rewind),
            acts.wb_en.eq(self.batch.wb_en | self.peek_en), acts.wb_peek.eq(~self.batch.wb_en & self.peek_en),
            acts.wb_local.eq(wb_local),
            acts.wb_keep.eq((wb_local != self.batch.last_row) | (self.index < self.batch.last_pes)),
            acts.wb_acc.eq(arith.wb_acc), acts.shift.eq(self.batch.shift), acts.relu.eq(self.batch.relu),
            acts.src_bank.eq(self.batch.src_bank), acts.clear_src.eq(self.clear_src), acts.clear_dst.eq(self.batch.clear_dst),
            self.nz_done.eq(acts.nz_done), acts.nz_rewind.eq(self.batch.nz_rewind),
            # the layer's bias column is this PE's if bias_pe is k: its list ends with it
            acts.bias_here.eq(self.batch.bias_on & (self.batch.bias_pe == self.index)),
            acts.bias_item.local.eq(self.batch.bias_local), acts.bias_item.value.eq(self.batch.bias_act),
        ]
        wiring.connect(m, wiring.flipped(self.nz), acts.nz)
        m.d.comb += [
            ptrs.w_addr.eq(self.ptr_w_addr), ptrs.w_data.eq(self.ptr_w_data), ptrs.w_en.eq(self.ptr_w_en),
            spmat.w_addr.eq(self.spmat_w_addr), spmat.w_data.eq(self.spmat_w_data), spmat.w_en.eq(self.spmat_w_en),
            arith.cb_w_addr.eq(self.cb_w_addr), arith.cb_w_data.eq(self.cb_w_data), arith.cb_w_en.eq(self.cb_w_en),
            acts.in_en.eq(self.in_en), acts.in_local.eq(self.in_local), acts.in_data.eq(self.in_data),
            acts.rd_local.eq(self.rd_local), self.rd_data.eq(acts.rd_data),
        ]
        return m
