"""Central control unit: layer descriptors and the batch schedule of docs/cycle-model.md."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eie.golden_model.config import Timing

from .host_map import LayerField
from .params import ACT_BITS, ArrayParams

__all__ = ["ControlUnit", "descriptor_layout", "batch_signature"]


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
        # the bias column (EncodedLayer.bias): broadcast last with `bias_act` (0: none) from
        # PE `bias_pe`, local index `bias_local`; n_in above counts it (stored columns)
        "bias_act": signed(ACT_BITS),
        "bias_pe": p.pe_bits,
        "bias_local": p.local_bits,
    })


def batch_signature(p: ArrayParams) -> wiring.Signature:
    """What the control unit tells every PE, one signature fanned out to all of them:
    the running layer and batch (registers) and the write-back schedule."""
    return wiring.Signature({
        "layer": Out(p.layer_bits),                 # codebook and descriptor of the running layer
        "base": Out(p.ptr_addr_bits),               # pointer index of column 0 of this batch
        "shift": Out(p.shift_bits),
        "relu": Out(1),
        "last_row": Out(p.local_bits + 1),          # the layer's last local row ...
        "last_pes": Out(p.pe_bits + 1),             # ... is held by PEs 0 .. last_pes - 1
        "bias_on": Out(1),                          # the running layer has a bias column,
        "bias_pe": Out(p.pe_bits),                  # ... held by this PE at this local index,
        "bias_local": Out(p.local_bits),
        "bias_act": Out(signed(ACT_BITS)),          # ... whose activation is this (1.0)
        "src_bank": Out(1),
        "acc_bank": Out(1),                         # accumulator bank of the computing batch
        "wb_bank": Out(1),                          # ... and of the batch being written back
        "clear_dst": Out(1),
        "nz_rewind": Out(1),                        # batch cycle 0
        "wb_en": Out(1),
        "wb_row": Out(p.row_bits),
        "wb_local_base": Out(p.local_bits + 1),
    })


_FIELDS = {LayerField.N_IN: "n_in", LayerField.N_OUT: "n_out", LayerField.ROWS0: "rows0",
           LayerField.BLOCK_ROWS: "block_rows", LayerField.PTR_BASE: "ptr_base",
           LayerField.SHIFT: "shift", LayerField.RELU: "relu"}
_BIAS_SLICES = {"bias_act": (0, 16), "bias_pe": (16, 32), "bias_local": (32, 64)}  # host_map.bias_word


class ControlUnit(wiring.Component):
    """Runs layers 0 .. n_layers-1, each as output batches of `block_rows` rows per PE.

    Every batch: cycle 0 rewinds the LNZD lists; the LNZD broadcasts as soon as its tree
    has filled, until every list is walked, every queue is empty and no PE fetches or
    issues (cycle `compute`); at `compute` + `pipeline_latency` its sums are in its
    accumulator bank. Then, once the write-back unit has finished the previous batch, it
    starts on this one (R accumulator reads, R = PE 0's rows in the batch, and
    `writeback_latency` more cycles) while the next batch of the layer starts in the other
    bank; a layer's last batch is written back before the next layer starts (the banks
    swap), the run's last is held. `cycles` counts exactly these cycles
    (cycle_model.batch_lengths).
    The running layer's descriptor is copied into registers when the layer starts, so no
    descriptor multiplexer is on a compute path.
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
            "desc_w_data": In(64),
            "desc_w_en": In(1),
            "all_idle": In(1),            # LNZD empty, queues empty, no PE fetching or issuing
            "release": In(1),             # the host writes a new input: the held outputs are given up
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(48),
            "runs": Out(32),
            # the run's last output batch, held in the accumulators (host reads convert it)
            "held_valid": Out(1),
            "held_base": Out(p.local_bits + 1),
            "held_rows": Out(p.row_bits + 1),
            # to the PEs and the LNZD
            "batch": Out(batch_signature(p)),
            "broadcast_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        tm = self.TIMING
        assert tm.pipeline_latency >= 4, "DRAIN lasts pipeline_latency - 3 cycles"
        descs = Array(Signal(self.desc, name=f"desc{i}") for i in range(p.max_layers))
        with m.If(self.desc_w_en):
            for code, name in _FIELDS.items():
                with m.If(self.desc_w_field == code):
                    m.d.sync += getattr(descs[self.desc_w_layer], name).eq(self.desc_w_data)
            with m.If(self.desc_w_field == LayerField.BIAS):
                for name, (lo, hi) in _BIAS_SLICES.items():
                    m.d.sync += getattr(descs[self.desc_w_layer], name).eq(self.desc_w_data[lo:hi])

        layer = Signal(p.layer_bits)
        # the running layer's descriptor: a copy in registers (with one descriptor, itself)
        cur = Signal(self.desc) if p.max_layers > 1 else descs[0]
        base = Signal(p.ptr_addr_bits)               # ptr_base + block * n_in
        local_base = Signal(p.local_bits + 1)        # block * block_rows
        rows_left = Signal(p.local_bits + 1)         # PE 0's rows from this block on
        rows_here = Signal(p.row_bits + 1)           # rows of this block
        last_row = Signal(p.local_bits + 1)
        last_pes = Signal(p.pe_bits + 1)
        shift = Signal(p.shift_bits)                 # the running (after a run: the last) layer's
        relu = Signal()                              # write-back conversion
        bias_on = Signal()
        bias_pe = Signal(p.pe_bits)
        bias_local = Signal(p.local_bits)
        bias_act = Signal(signed(ACT_BITS))
        more_blocks = Signal()                       # rows_left > block_rows: another batch follows
        more_layers = Signal()                       # another layer follows this one
        fresh = Signal()                             # cycle 0 of a batch
        warm = Signal()                              # cycle 3 or later of a batch
        fresh1, fresh2 = Signal(), Signal()
        idle_seen = Signal()                         # all_idle of the previous cycle (registered)
        wait = Signal(range(max(tm.pipeline_latency, 2)))
        counter = Signal(48)
        src_bank = Signal()
        acc_bank = Signal()                          # accumulator bank of the computing batch
        first_block = Signal()
        clear_dst = Signal()                         # fresh & first_block, as a register
        bcast_on = Signal()                          # BATCH after cycle 0: the LNZD may broadcast
        m.d.sync += [idle_seen.eq(self.all_idle), fresh1.eq(fresh), fresh2.eq(fresh1), warm.eq(warm | fresh2)]
        # busy = not IDLE, as a register of its own (set with the start, cleared with the
        # return to IDLE): the host bus gates its writes with it, so no FSM decode is on that path
        running = Signal()
        m.d.comb += self.busy.eq(running)

        # -- the write-back unit: R accumulator reads, one per cycle, then writeback_latency
        # cycles for the last output. It works on a finished batch's bank while the next
        # batch of the same layer computes in the other bank (double-buffered accumulators).
        wb_on = Signal()                             # reading rows
        wb_tail = Signal()                           # the last rows' outputs being written
        wb_row = Signal(p.row_bits)
        wb_last = Signal()                           # wb_row is the batch's last row
        wb_rows = Signal(p.row_bits + 1)
        wb_base = Signal(p.local_bits + 1)           # the written-back batch's local base
        wb_bank = Signal()
        wb_wait = Signal(range(max(tm.writeback_latency, 2)))
        # free from the next cycle on: a launch now starts its first read in the next cycle
        wb_free = ~wb_on & (~wb_tail | (wb_wait == 0))
        with m.If(wb_on):
            m.d.sync += [wb_row.eq(wb_row + 1), wb_last.eq(wb_row + 2 >= wb_rows)]
            with m.If(wb_last):
                m.d.sync += [wb_on.eq(0), wb_tail.eq(1), wb_wait.eq(tm.writeback_latency - 1)]
        with m.Elif(wb_tail):
            m.d.sync += wb_wait.eq(wb_wait - 1)
            with m.If(wb_wait == 0):
                m.d.sync += wb_tail.eq(0)

        # the batch signals to the PEs come straight from flip-flops
        m.d.comb += [self.batch.nz_rewind.eq(fresh), self.batch.clear_dst.eq(clear_dst),
                     self.broadcast_en.eq(bcast_on), self.batch.wb_en.eq(wb_on)]
        m.d.comb += [
            self.batch.layer.eq(layer),
            self.batch.base.eq(base),
            self.batch.shift.eq(shift),
            self.batch.relu.eq(relu),
            self.batch.last_row.eq(last_row),
            self.batch.last_pes.eq(last_pes),
            self.batch.bias_on.eq(bias_on), self.batch.bias_pe.eq(bias_pe),
            self.batch.bias_local.eq(bias_local), self.batch.bias_act.eq(bias_act),
            self.batch.src_bank.eq(src_bank),
            self.batch.acc_bank.eq(acc_bank),
            self.batch.wb_bank.eq(wb_bank),
            self.batch.wb_row.eq(wb_row),
            self.batch.wb_local_base.eq(wb_base),
        ]

        def start_batch():
            """Batch cycle 0 follows, in the other accumulator bank."""
            m.d.sync += [fresh.eq(1), warm.eq(0), bcast_on.eq(0), acc_bank.eq(~acc_bank)]

        def begin_layer(index):
            d = descs[index]
            if p.max_layers > 1:
                m.d.sync += cur.eq(d)
            nxt = index + 1
            m.d.sync += [layer.eq(index), base.eq(d.ptr_base), local_base.eq(0), shift.eq(d.shift), relu.eq(d.relu),
                         rows_left.eq(d.rows0), rows_here.eq(Mux(d.rows0 < d.block_rows, d.rows0, d.block_rows)),
                         more_blocks.eq(d.rows0 > d.block_rows),
                         # the last layer is n_layers - 1, or the last descriptor if N_LAYERS is larger
                         more_layers.eq((nxt < self.n_layers) & (nxt < p.max_layers)),
                         last_row.eq(d.rows0 - 1), last_pes.eq(d.n_out - (d.rows0 - 1) * p.n_pe),
                         first_block.eq(1), clear_dst.eq(1),
                         bias_on.eq(d.bias_act != 0), bias_pe.eq(d.bias_pe), bias_local.eq(d.bias_local),
                         bias_act.eq(d.bias_act)]
            start_batch()

        def next_batch():
            left = rows_left - cur.block_rows
            m.d.sync += [base.eq(base + cur.n_in), local_base.eq(local_base + cur.block_rows),
                         rows_left.eq(left), more_blocks.eq(left > cur.block_rows),
                         rows_here.eq(Mux(left < cur.block_rows, left, cur.block_rows)), first_block.eq(0)]
            start_batch()

        def launch_writeback():
            """This batch's write-back starts in the next cycle (the unit is free by then)."""
            m.d.sync += [wb_on.eq(1), wb_row.eq(0), wb_last.eq(rows_here <= 1), wb_rows.eq(rows_here),
                         wb_base.eq(local_base), wb_bank.eq(acc_bank)]

        def after_drain():
            """The batch's sums are in its bank. Once the write-back unit is free: the run's
            last batch ends (held, not written back); another batch of this layer starts
            while this one is written back; a layer's last batch is written back before the
            next layer reads its outputs."""
            with m.If(~wb_free):
                m.next = "WAIT"
            with m.Elif(~more_blocks & ~more_layers):
                m.d.sync += [running.eq(0), src_bank.eq(~src_bank), self.held_valid.eq(1), self.held_base.eq(local_base),
                             self.held_rows.eq(rows_here),
                             self.done.eq(1), self.cycles.eq(counter + 1), self.runs.eq(self.runs + 1)]
                m.next = "IDLE"
            with m.Elif(more_blocks):
                launch_writeback()
                next_batch()
                m.next = "BATCH"
            with m.Else():
                launch_writeback()
                m.next = "LAYER_END"

        # Every decision below is taken from registers: `start` comes registered from the
        # host bus, all_idle is registered (idle_seen), the end-of-block and end-of-layer
        # tests are kept as flags. The PEs and the LNZD see the batch signals one cycle
        # late (a register stage per group of PEs, hdl/eie.py): batch cycle t there is
        # cycle t + 1 here, and their all_idle reaches idle_seen two cycles after it was
        # true. Neither costs a cycle: DRAIN is two cycles shorter than pipeline_latency
        # (the first write-back read still reaches the PEs in their cycle
        # compute + pipeline_latency), and `warm` waits for the PEs' batch cycle 1.
        with m.FSM(name="control"):
            with m.State("IDLE"):
                with m.If(self.release):
                    m.d.sync += self.held_valid.eq(0)
                with m.If(self.start):
                    m.d.sync += [running.eq(1), counter.eq(0), self.done.eq(0), self.held_valid.eq(0)]
                    begin_layer(0)
                    m.next = "BATCH"
            with m.State("BATCH"):
                m.d.sync += [fresh.eq(0), clear_dst.eq(0), bcast_on.eq(1), counter.eq(counter + 1)]
                with m.If(warm & idle_seen):           # this is cycle `compute` + 2
                    m.d.sync += [wait.eq(tm.pipeline_latency - 4), bcast_on.eq(0)]
                    m.next = "DRAIN"
            with m.State("DRAIN"):             # pipeline_latency - 3 cycles
                m.d.sync += [counter.eq(counter + 1), wait.eq(wait - 1)]
                with m.If(wait == 0):
                    after_drain()
            with m.State("WAIT"):              # the previous batch is still being written back
                m.d.sync += counter.eq(counter + 1)
                after_drain()
            with m.State("LAYER_END"):         # the layer's last batch is being written back
                m.d.sync += counter.eq(counter + 1)
                with m.If(wb_free):
                    m.d.sync += src_bank.eq(~src_bank)            # outputs become the next inputs
                    begin_layer(layer + 1)
                    m.next = "BATCH"
        return m
