"""Central control unit: layer descriptors and the batch schedule of docs/cycle-model.md."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eie.golden_model.config import Timing

from .host_map import LayerField
from .params import ArrayParams

__all__ = ["ControlUnit", "descriptor_layout"]


def descriptor_layout(p: ArrayParams) -> data.StructLayout:
    """One layer as the control unit sees it (written field by field by the host)."""
    return data.StructLayout({
        "n_in": p.index_bits + 1,
        "n_out": p.index_bits + 1,
        "rows0": p.local_bits + 1,
        "block_rows": p.row_bits + 1,
        "ptr_base": p.ptr_addr_bits,
        "shift": p.shift_bits,
        "relu": 1,
    })


_FIELDS = {LayerField.N_IN: "n_in", LayerField.N_OUT: "n_out", LayerField.ROWS0: "rows0",
           LayerField.BLOCK_ROWS: "block_rows", LayerField.PTR_BASE: "ptr_base",
           LayerField.SHIFT: "shift", LayerField.RELU: "relu"}


class ControlUnit(wiring.Component):
    """Runs layers 0 .. n_layers-1, each as output batches of `block_rows` rows per PE.

    Every batch: cycle 0 rewinds the LNZD lists; from cycle 1 the LNZD broadcasts until
    every list is walked, every queue is empty and no PE issues (cycle `compute`); two
    more cycles let the last accumulate land (`pipeline_latency` = 3 after the last
    issue); then R cycles read the accumulators (R = PE 0's rows in the batch) and one
    more writes the last output. The next batch starts on the following cycle; a new
    layer swaps the activation banks. `cycles` counts exactly these cycles.
    """

    TIMING = Timing()   # the latencies this micro-architecture implements

    def __init__(self, params: ArrayParams):
        self.params = p = params
        self.desc = descriptor_layout(p)
        super().__init__({
            "start": In(1),
            "n_layers": In(p.layer_bits + 1),
            "desc_w_layer": In(p.layer_bits),
            "desc_w_field": In(3),
            "desc_w_data": In(32),
            "desc_w_en": In(1),
            "all_idle": In(1),            # LNZD empty, queues empty, no PE issuing
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(48),
            "runs": Out(32),
            # to the PEs and the LNZD
            "layer": Out(p.layer_bits),
            "base": Out(p.ptr_addr_bits),
            "shift": Out(p.shift_bits),
            "relu": Out(1),
            "n_out": Out(p.index_bits + 1),
            "src_bank": Out(1),
            "clear_dst": Out(1),
            "nz_rewind": Out(1),
            "broadcast_en": Out(1),
            "wb_en": Out(1),
            "wb_row": Out(p.row_bits),
            "wb_local_base": Out(p.local_bits + 1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        tm = self.TIMING
        descs = Array(Signal(self.desc, name=f"desc{i}") for i in range(p.max_layers))
        with m.If(self.desc_w_en):
            for code, name in _FIELDS.items():
                with m.If(self.desc_w_field == code):
                    m.d.sync += getattr(descs[self.desc_w_layer], name).eq(self.desc_w_data)

        layer = Signal(p.layer_bits)
        cur = descs[layer]
        block_key = Signal(p.ptr_addr_bits)          # block * n_in
        local_base = Signal(p.local_bits + 1)        # block * block_rows
        rows_left = Signal(p.local_bits + 1)         # PE 0's rows from this block on
        wb_row = Signal(p.row_bits)
        fresh = Signal()                             # cycle 0 of a batch
        drain = Signal(range(max(tm.pipeline_latency, 1)))
        counter = Signal(48)
        src_bank = Signal()
        first_block = Signal()
        rows_here = Mux(rows_left < cur.block_rows, rows_left, cur.block_rows)

        m.d.comb += [
            self.layer.eq(layer),
            self.base.eq(cur.ptr_base + block_key),
            self.shift.eq(cur.shift),
            self.relu.eq(cur.relu),
            self.n_out.eq(cur.n_out),
            self.src_bank.eq(src_bank),
            self.wb_row.eq(wb_row),
            self.wb_local_base.eq(local_base),
        ]

        def begin_layer(index):
            m.d.sync += [layer.eq(index), block_key.eq(0), local_base.eq(0),
                         rows_left.eq(descs[index].rows0), fresh.eq(1), first_block.eq(1)]

        with m.FSM(name="control"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [counter.eq(0), self.done.eq(0)]
                    begin_layer(0)
                    m.next = "BATCH"
            with m.State("BATCH"):
                m.d.comb += [self.busy.eq(1), self.nz_rewind.eq(fresh),
                             self.clear_dst.eq(fresh & first_block), self.broadcast_en.eq(~fresh)]
                m.d.sync += [fresh.eq(0), counter.eq(counter + 1)]
                with m.If(~fresh & self.all_idle):     # this is cycle `compute`
                    m.d.sync += drain.eq(tm.pipeline_latency - 2)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [counter.eq(counter + 1), drain.eq(drain - 1)]
                with m.If(drain == 0):
                    m.d.sync += wb_row.eq(0)
                    m.next = "WRITEBACK"
            with m.State("WRITEBACK"):
                m.d.comb += [self.busy.eq(1), self.wb_en.eq(1)]
                m.d.sync += [counter.eq(counter + 1), wb_row.eq(wb_row + 1)]
                with m.If(wb_row + 1 >= rows_here):
                    m.next = "LAST_WRITE"
            with m.State("LAST_WRITE"):        # writeback_latency: the last output is written
                m.d.comb += self.busy.eq(1)
                m.d.sync += counter.eq(counter + 1)
                with m.If(rows_left > cur.block_rows):          # another batch of this layer
                    m.d.sync += [block_key.eq(block_key + cur.n_in), local_base.eq(local_base + cur.block_rows),
                                 rows_left.eq(rows_left - cur.block_rows), fresh.eq(1), first_block.eq(0)]
                    m.next = "BATCH"
                with m.Else():
                    m.d.sync += src_bank.eq(~src_bank)            # outputs become the next inputs
                    # the last layer is n_layers - 1, or the last descriptor if N_LAYERS is larger
                    with m.If((layer + 1 < self.n_layers) & (layer != self.params.max_layers - 1)):
                        begin_layer(layer + 1)
                        m.next = "BATCH"
                    with m.Else():
                        m.d.sync += [self.done.eq(1), self.cycles.eq(counter + 1), self.runs.eq(self.runs + 1)]
                        m.next = "IDLE"
        return m
