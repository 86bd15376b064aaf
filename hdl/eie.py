"""The EIE array: N PEs, the LNZD tree, the control unit and the host bus."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import host_map as hm
from .control import ControlUnit
from .lnzd import LNZD
from .params import ArrayParams
from .pe import PE

__all__ = ["HostBus", "EIEArray"]


#: The host bus as seen by the host (docs/host-interface.md): one word access per cycle;
#: writes take effect at the clock edge, read data is valid READ_LATENCY (5) cycles after `r_en`.
HostBus = wiring.Signature({
    "addr": Out(hm.ADDR_BITS),
    "w_data": Out(hm.DATA_BITS),
    "w_en": Out(1),
    "r_en": Out(1),
    "r_data": In(hm.DATA_BITS),
    "r_valid": In(1),
})


class EIEArray(wiring.Component):
    """Efficient Inference Engine array (Han et al., ISCA 2016) behind a memory-mapped bus.

    I/O mode (not busy): the host loads codebooks, pointers, sparse-matrix rows, layer
    descriptors and the input activations, and reads outputs. Compute mode: a START
    command runs the layers; writes are ignored until STATUS.BUSY drops.
    """

    def __init__(self, params: ArrayParams | None = None):
        self.params = params or ArrayParams()
        super().__init__({"bus": In(HostBus)})
        # Internal events for simulation traces (not ports): broadcast, batch cycle 0, pops.
        self.probe_broadcast = Signal()
        self.probe_batch_start = Signal()
        self.probe_pops = Signal(self.params.n_pe)
        self.probe_busy = Signal()
        self.probe_running = Signal()   # probe_busy one cycle later, from a register: no glitches

    def elaborate(self, platform):
        m = Module()
        p = self.params
        N = p.n_pe
        m.submodules.control = ctl = ControlUnit(p)
        m.submodules.lnzd = lnzd = LNZD(N, p.local_bits, p.index_bits)
        pes = []
        for k in range(N):
            pe = PE(p, k)
            m.submodules[f"pe{k}"] = pe
            pes.append(pe)

        # -- compute datapath -----------------------------------------------------------
        # The broadcaster sits at the LNZD root: it sends the root's item when every PE has a
        # credit (a free queue entry; counters here, so the AND of N is local) and writes it
        # into broadcast registers, one per group of four PEs, which write the queues in the
        # next cycle (broadcast_latency). A PE's pop comes back registered and is a credit
        # again the cycle after (room_latency = 2, docs/cycle-model.md).
        D = p.fifo_depth
        credits = [Signal(range(D + 1), init=D, name=f"credit{k}") for k in range(N)]
        pop_back = [Signal(name=f"pop_back{k}") for k in range(N)]
        go = Signal()
        m.d.comb += [
            go.eq(ctl.broadcast_en & lnzd.out.valid & Cat(c != 0 for c in credits).all()),
            lnzd.out.ready.eq(go), lnzd.flush.eq(ctl.batch.nz_rewind),
        ]
        for k, pe in enumerate(pes):
            m.d.sync += pop_back[k].eq(pe.popped)
            with m.If(ctl.batch.nz_rewind):
                m.d.sync += credits[k].eq(D)
            with m.Else():
                m.d.sync += credits[k].eq(credits[k] - go + pop_back[k])
        groups = (N + 3) // 4
        bc_valid = [Signal(name=f"bcast_valid{g}", attrs={"keep": 1}) for g in range(groups)]
        bc_item = [Signal(p.act_item, name=f"bcast_item{g}", attrs={"keep": 1}) for g in range(groups)]
        for g in range(groups):
            m.d.sync += bc_valid[g].eq(go)
            with m.If(go):
                m.d.sync += bc_item[g].eq(lnzd.out.payload)
        m.d.comb += ctl.all_idle.eq(lnzd.done & ~bc_valid[0] & Cat(pe.idle for pe in pes).all())
        m.d.comb += [
            self.probe_broadcast.eq(bc_valid[0]), self.probe_batch_start.eq(ctl.batch.nz_rewind),
            self.probe_pops.eq(Cat(pe.popped for pe in pes)),
            self.probe_busy.eq(ctl.busy),
        ]
        m.d.sync += self.probe_running.eq(ctl.busy)
        wiring.connect(m, ctl.batch, *(pe.batch for pe in pes))
        for k, pe in enumerate(pes):
            wiring.connect(m, pe.nz, lnzd.heads[k])
            m.d.comb += [lnzd.heads_done[k].eq(pe.nz_done), pe.push_data.eq(bc_item[k // 4]), pe.push.eq(bc_valid[k // 4])]

        # -- host bus -------------------------------------------------------------------
        bus = self.bus
        region = bus.addr[hm.REGION_SHIFT:]
        pe_sel = bus.addr[hm.PE_SHIFT:hm.REGION_SHIFT]
        offset = bus.addr[:hm.OFFSET_BITS]
        # START is registered on its way to the control unit; the host sees BUSY from the cycle
        # after the START write (the command pending, then the run), and writes are ignored then
        start_pending = Signal()
        host_busy = ctl.busy | start_pending
        write = bus.w_en & ~host_busy
        n_layers = Signal(p.layer_bits + 1)

        ctrl_w = write & (region == hm.Region.CTRL)
        m.d.sync += start_pending.eq(ctrl_w & (offset == hm.Ctrl.CMD) & bus.w_data[0])
        m.d.comb += ctl.start.eq(start_pending)
        clear_src = ctrl_w & (offset == hm.Ctrl.CMD) & bus.w_data[1]
        # a new input (CLEAR_INPUT or an activation write) gives up the held outputs
        m.d.comb += ctl.release.eq(clear_src | (write & (region == hm.Region.ACT)))
        with m.If(ctrl_w & (offset == hm.Ctrl.N_LAYERS)):
            m.d.sync += n_layers.eq(bus.w_data)
        m.d.comb += [
            ctl.n_layers.eq(n_layers),
            ctl.desc_w_en.eq(write & (region == hm.Region.LAYER)),
            ctl.desc_w_layer.eq(offset >> 3),
            ctl.desc_w_field.eq(offset[:3]),
            ctl.desc_w_data.eq(bus.w_data),
        ]
        for k, pe in enumerate(pes):
            mine = pe_sel == k
            m.d.comb += [
                pe.clear_src.eq(clear_src),
                pe.cb_w_en.eq(write & (region == hm.Region.CODEBOOK)),
                pe.cb_w_addr.eq(offset), pe.cb_w_data.eq(bus.w_data),
                pe.ptr_w_en.eq(write & (region == hm.Region.PTR) & mine),
                pe.ptr_w_addr.eq(offset), pe.ptr_w_data.eq(bus.w_data),
                pe.spmat_w_en.eq(write & (region == hm.Region.SPMAT) & mine),
                pe.spmat_w_addr.eq(offset), pe.spmat_w_data.eq(bus.w_data),
                pe.in_en.eq(write & (region == hm.Region.ACT) & mine),
                pe.in_local.eq(offset), pe.in_data.eq(bus.w_data),
                pe.rd_local.eq(offset),
            ]

        # Reads answer in c + READ_LATENCY (5). The request travels down a register pipeline;
        # activation reads come from each PE five cycles later (the memory's output registered,
        # or, for an output of the run's last batch, still held in the accumulators, the
        # accumulator read in c + 1 and converted by the write-back stages: `peek`); a CTRL
        # register is selected in c + 4. No memory output reaches the bus unregistered.
        lat = hm.READ_LATENCY
        assert lat == 5
        req_valid = [Signal(name=f"rq_valid{n}") for n in range(lat)]
        req_region = [Signal(4, name=f"rq_region{n}") for n in range(lat)]
        req_pe = [Signal(8, name=f"rq_pe{n}") for n in range(lat)]
        req_ctrl = [Signal(hm.OFFSET_BITS, name=f"rq_ctrl{n}") for n in range(lat - 1)]
        m.d.sync += [req_valid[0].eq(bus.r_en), req_region[0].eq(region), req_pe[0].eq(pe_sel), req_ctrl[0].eq(offset)]
        for n in range(1, lat):
            m.d.sync += [req_valid[n].eq(req_valid[n - 1]), req_region[n].eq(req_region[n - 1]),
                         req_pe[n].eq(req_pe[n - 1])]
            if n < lat - 1:
                m.d.sync += req_ctrl[n].eq(req_ctrl[n - 1])
        m.d.comb += bus.r_valid.eq(req_valid[-1])
        r_reg = Signal(hm.DATA_BITS)
        with m.Switch(req_ctrl[-1]):
            with m.Case(hm.Ctrl.STATUS):
                m.d.sync += r_reg.eq(Cat(host_busy, ctl.done))
            with m.Case(hm.Ctrl.CYCLES):
                m.d.sync += r_reg.eq(ctl.cycles)
            with m.Case(hm.Ctrl.N_LAYERS):
                m.d.sync += r_reg.eq(n_layers)
            with m.Case(hm.Ctrl.INFO):
                m.d.sync += r_reg.eq(N | (p.fifo_depth << 16) | (p.acc_depth << 32) | (p.max_layers << 48))
            with m.Case(hm.Ctrl.RUNS):
                m.d.sync += r_reg.eq(ctl.runs)
            with m.Default():
                m.d.sync += r_reg.eq(0)
        # a read of a held output: every PE reads the same accumulator row, the addressed one answers
        peek_row = Signal(offset.shape().width + 1)
        m.d.comb += peek_row.eq(offset - ctl.held_base)
        peek, peek_r = Signal(), Signal()
        peek_row_r = Signal(p.row_bits)
        m.d.comb += peek.eq(bus.r_en & (region == hm.Region.ACT) & ctl.held_valid & ~host_busy
                            & (offset >= ctl.held_base) & (peek_row < ctl.held_rows))
        m.d.sync += [peek_r.eq(peek), peek_row_r.eq(peek_row)]      # registered: the range check is
        for pe in pes:                                              # off the accumulator's address path
            m.d.comb += [pe.peek_en.eq(peek_r & ~host_busy), pe.peek_row.eq(peek_row_r)]
        with m.If(req_region[-1] == hm.Region.ACT):
            with m.Switch(req_pe[-1]):
                for k, pe in enumerate(pes):
                    with m.Case(k):
                        m.d.comb += bus.r_data.eq(pe.rd_data.as_signed())
        with m.Elif(req_region[-1] == hm.Region.CTRL):
            m.d.comb += bus.r_data.eq(r_reg)
        return m
