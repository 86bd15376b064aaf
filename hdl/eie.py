"""The EIE array: N PEs, the LNZD tree, the control unit and the host bus."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import host_map as hm
from .control import ControlUnit, batch_signature
from .lnzd import LNZD
from .params import ACT_BITS, ArrayParams
from .pe import PE
from .register_stage import REPLICA_ATTR, RegisterStage

__all__ = ["HostBus", "HostRequest", "EIEArray", "GROUP"]


#: The host bus as seen by the host (docs/host-interface.md): one word access per cycle;
#: writes take effect in order, read data is valid READ_LATENCY (8) cycles after `r_en`.
HostBus = wiring.Signature({
    "addr": Out(hm.ADDR_BITS),
    "w_data": Out(hm.DATA_BITS),
    "w_en": Out(1),
    "r_en": Out(1),
    "r_data": In(hm.DATA_BITS),
    "r_valid": In(1),
})

#: One host access on its way into the array (registered at the array's edge, then again
#: per group of PEs, with `busy` as it was for this access).
HostRequest = wiring.Signature({
    "addr": Out(hm.ADDR_BITS),
    "w_data": Out(hm.DATA_BITS),
    "w_en": Out(1),
    "r_en": Out(1),
    "busy": Out(1),
})

#: PEs per group: each group has its own copy of the broadcast, batch-control and host
#: registers, so no net runs from one flip-flop to every PE.
GROUP = 4


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
        m.submodules.lnzd = lnzd = LNZD(N, p.local_bits, p.index_bits, leaf_slice=p.leaf_slice)
        pes = []
        for k in range(N):
            pe = PE(p, k)
            m.submodules[f"pe{k}"] = pe
            pes.append(pe)

        # -- batch control: the control unit's signals, one register stage per group ---
        # The PEs, the LNZD and the broadcaster see the control unit's batch signals one
        # cycle late (from copies next to them); the control unit runs its schedule one
        # cycle ahead to match (hdl/control.py), so the cycle counts do not change.
        groups = (N + GROUP - 1) // GROUP
        replica = groups > 1             # with one group there is nothing to keep apart
        replica_attrs = {REPLICA_ATTR: 1} if replica else {}
        batch_sig = batch_signature(p)
        root_batch = RegisterStage(batch_sig, "root_batch", replica=replica)
        m.submodules.root_batch = root_batch
        batch_stages = []
        for g in range(groups):
            stage = RegisterStage(batch_sig, f"batch{g}", replica=replica)
            m.submodules[f"batch_stage{g}"] = stage
            batch_stages.append(stage)
        wiring.connect(m, ctl.batch, root_batch.i, *(st.i for st in batch_stages))
        for g, stage in enumerate(batch_stages):
            wiring.connect(m, stage.o, *(pe.batch for pe in pes[g * GROUP:(g + 1) * GROUP]))
        rewind = root_batch.o.nz_rewind

        # -- compute datapath -----------------------------------------------------------
        # The broadcaster sits at the LNZD root: it sends the root's item when every PE has a
        # credit (a free queue entry; counters here) and writes it into broadcast registers,
        # one per group of four PEs, which write the queues in the next cycle
        # (broadcast_latency). A PE's pop comes back registered and is a credit again the
        # cycle after (room_latency = 2, docs/cycle-model.md).
        # "Every PE has a credit" is itself a register (`all_credit`, a copy per group, like
        # the broadcast enable), set from the counters one cycle ahead: next cycle every
        # counter is above 0 if, with this cycle's pops, every counter is at least 2 when
        # this cycle broadcasts, or at least 1 when it does not. So a broadcast decision is
        # one gate of registers, and the N-input AND is not on the path of `go`.
        D = p.fifo_depth
        credits = [Signal(range(D + 1), init=D, name=f"credit{k}") for k in range(N)]
        pop_back = [Signal(name=f"pop_back{k}") for k in range(N)]
        bcast_en = [Signal(name=f"bcast_en{g}", attrs=replica_attrs) for g in range(groups)]
        all_credit = [Signal(init=1, name=f"all_credit{g}", attrs=replica_attrs) for g in range(groups)]
        go = [Signal(name=f"go{g}") for g in range(groups)]
        after_go = Cat((c + b >= 2) for c, b in zip(credits, pop_back)).all()
        after_idle = Cat((c != 0) | b for c, b in zip(credits, pop_back)).all()
        for g in range(groups):
            m.d.sync += bcast_en[g].eq(ctl.broadcast_en)
            m.d.comb += go[g].eq(bcast_en[g] & lnzd.out.valid & all_credit[g])
            with m.If(rewind):
                m.d.sync += all_credit[g].eq(1)
            with m.Else():
                m.d.sync += all_credit[g].eq(Mux(go[g], after_go, after_idle))
        m.d.comb += [lnzd.out.ready.eq(go[0]), lnzd.flush.eq(rewind)]
        for k, pe in enumerate(pes):
            m.d.sync += pop_back[k].eq(pe.popped)
            with m.If(rewind):
                m.d.sync += credits[k].eq(D)
            with m.Else():
                m.d.sync += credits[k].eq(credits[k] - go[k // GROUP] + pop_back[k])
        bc_valid = [Signal(name=f"bcast_valid{g}", attrs=replica_attrs) for g in range(groups)]
        bc_item = [Signal(p.act_item, name=f"bcast_item{g}", attrs=replica_attrs) for g in range(groups)]
        for g in range(groups):
            m.d.sync += bc_valid[g].eq(go[g])
            with m.If(go[g]):
                m.d.sync += bc_item[g].eq(lnzd.out.payload)
        m.d.comb += ctl.all_idle.eq(lnzd.done & ~bc_valid[0] & Cat(pe.idle for pe in pes).all())
        m.d.comb += [
            self.probe_broadcast.eq(bc_valid[0]), self.probe_batch_start.eq(rewind),
            self.probe_pops.eq(Cat(pe.popped for pe in pes)),
            self.probe_busy.eq(ctl.busy),
        ]
        m.d.sync += self.probe_running.eq(ctl.busy)
        for k, pe in enumerate(pes):
            wiring.connect(m, pe.nz, lnzd.heads[k])
            m.d.comb += [lnzd.heads_done[k].eq(pe.nz_done), pe.push_data.eq(bc_item[k // GROUP]),
                         pe.push.eq(bc_valid[k // GROUP])]

        # -- host bus -------------------------------------------------------------------
        # Every access is registered at the array's edge (`rq`, cycle c + 1): the control
        # registers and the layer descriptors are written from there. It is registered
        # again per group of PEs (c + 2) with the busy flag of its cycle, and the PEs
        # decode it from that copy. Accesses keep their order; the PEs apply them a cycle
        # after the control registers, as they see the batch signals a cycle late too.
        m.submodules.host_request = edge = RegisterStage(HostRequest, "rq", replica=False)
        rq = edge.o
        m.d.comb += [edge.i.addr.eq(self.bus.addr), edge.i.w_data.eq(self.bus.w_data),
                     edge.i.w_en.eq(self.bus.w_en), edge.i.r_en.eq(self.bus.r_en)]
        region = rq.addr[hm.REGION_SHIFT:]
        offset = rq.addr[:hm.OFFSET_BITS]
        # START is registered on its way to the control unit; the host sees BUSY from the cycle
        # after the START write (the command pending, then the run), and writes are ignored then
        start_pending = Signal()
        host_busy = ctl.busy | start_pending
        write = rq.w_en & ~host_busy
        n_layers = Signal(p.layer_bits + 1)

        ctrl_w = write & (region == hm.Region.CTRL)
        m.d.sync += start_pending.eq(ctrl_w & (offset == hm.Ctrl.CMD) & rq.w_data[0])
        m.d.comb += ctl.start.eq(start_pending)
        # a new input (CLEAR_INPUT or an activation write) gives up the held outputs
        clear_src = ctrl_w & (offset == hm.Ctrl.CMD) & rq.w_data[1]
        m.d.comb += ctl.release.eq(clear_src | (write & (region == hm.Region.ACT)))
        with m.If(ctrl_w & (offset == hm.Ctrl.N_LAYERS)):
            m.d.sync += n_layers.eq(rq.w_data)
        m.d.comb += [
            ctl.n_layers.eq(n_layers),
            ctl.desc_w_en.eq(write & (region == hm.Region.LAYER)),
            ctl.desc_w_layer.eq(offset >> 3),
            ctl.desc_w_field.eq(offset[:3]),
            ctl.desc_w_data.eq(rq.w_data),
        ]

        # per group: the copy (c + 2), its decode into every PE's ports; a read of a held
        # output (every PE reads the same accumulator row, the addressed one answers) is
        # decided here and registered (c + 3), off the accumulator's address path
        for g in range(groups):
            gs = RegisterStage(HostRequest, f"rq{g}", replica=replica)
            m.submodules[f"host_stage{g}"] = gs
            m.d.comb += [gs.i.addr.eq(rq.addr), gs.i.w_data.eq(rq.w_data), gs.i.w_en.eq(rq.w_en),
                         gs.i.r_en.eq(rq.r_en), gs.i.busy.eq(host_busy)]
            grq = gs.o
            g_region = grq.addr[hm.REGION_SHIFT:]
            g_pe = grq.addr[hm.PE_SHIFT:hm.REGION_SHIFT]
            g_offset = grq.addr[:hm.OFFSET_BITS]
            g_write = grq.w_en & ~grq.busy
            g_clear = g_write & (g_region == hm.Region.CTRL) & (g_offset == hm.Ctrl.CMD) & grq.w_data[1]
            peek_row = Signal(g_offset.shape().width + 1, name=f"peek_row{g}")
            peek, peek_r = Signal(name=f"peek{g}"), Signal(name=f"peek_r{g}")
            peek_row_r = Signal(p.row_bits, name=f"peek_row_r{g}")
            m.d.comb += [
                peek_row.eq(g_offset - ctl.held_base),
                peek.eq(grq.r_en & (g_region == hm.Region.ACT) & ctl.held_valid & ~grq.busy
                        & (g_offset >= ctl.held_base) & (peek_row < ctl.held_rows)),
            ]
            m.d.sync += [peek_r.eq(peek), peek_row_r.eq(peek_row)]
            for k in range(g * GROUP, min(N, (g + 1) * GROUP)):
                pe = pes[k]
                mine = g_pe == k
                m.d.comb += [
                    pe.clear_src.eq(g_clear),
                    pe.cb_w_en.eq(g_write & (g_region == hm.Region.CODEBOOK)),
                    pe.cb_w_addr.eq(g_offset), pe.cb_w_data.eq(grq.w_data),
                    pe.ptr_w_en.eq(g_write & (g_region == hm.Region.PTR) & mine),
                    pe.ptr_w_addr.eq(g_offset), pe.ptr_w_data.eq(grq.w_data),   # ptr_item's bits
                    pe.spmat_w_en.eq(g_write & (g_region == hm.Region.SPMAT) & mine),
                    pe.spmat_w_addr.eq(g_offset), pe.spmat_w_data.eq(grq.w_data),
                    pe.in_en.eq(g_write & (g_region == hm.Region.ACT) & mine),
                    pe.in_local.eq(g_offset), pe.in_data.eq(grq.w_data),
                    pe.rd_local.eq(g_offset),
                    pe.peek_en.eq(peek_r), pe.peek_row.eq(peek_row_r),
                ]

        # Reads answer in c + READ_LATENCY (8): activation reads come from the PE at
        # c + 2 + PE_READ_LATENCY (the memory's output registered, or, for an output of
        # the run's last batch, still held in the accumulators, the accumulator read in
        # c + 3 and converted by the write-back stages: `peek`) and are chosen among the
        # group's PEs into a register of the group (c + 8); a CTRL register is selected in
        # c + 7. The request's kind and PE travel down a register pipeline from `rq`. No
        # memory output reaches the bus unregistered, and the bus's multiplexer chooses
        # among the groups' registers, not among N PEs spread over the chip.
        lat = hm.READ_LATENCY
        assert lat == 3 + hm.PE_READ_LATENCY
        depth = lat - 1                                    # stages after rq
        req_valid = [Signal(name=f"rq_valid{n}") for n in range(depth)]
        req_region = [Signal(4, name=f"rq_region{n}") for n in range(depth)]
        req_pe = [Signal(8, name=f"rq_pe{n}") for n in range(depth)]
        req_ctrl = [Signal(hm.OFFSET_BITS, name=f"rq_ctrl{n}") for n in range(depth - 1)]
        m.d.sync += [req_valid[0].eq(rq.r_en), req_region[0].eq(region),
                     req_pe[0].eq(rq.addr[hm.PE_SHIFT:hm.REGION_SHIFT]), req_ctrl[0].eq(offset)]
        for n in range(1, depth):
            m.d.sync += [req_valid[n].eq(req_valid[n - 1]), req_region[n].eq(req_region[n - 1]),
                         req_pe[n].eq(req_pe[n - 1])]
            if n < depth - 1:
                m.d.sync += req_ctrl[n].eq(req_ctrl[n - 1])
        m.d.comb += self.bus.r_valid.eq(req_valid[-1])
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
        group_rd = [Signal(signed(ACT_BITS), name=f"rd_group{g}") for g in range(groups)]
        for g in range(groups):
            with m.Switch(req_pe[-2]):
                for k in range(g * GROUP, min(N, (g + 1) * GROUP)):
                    with m.Case(k):
                        m.d.sync += group_rd[g].eq(pes[k].rd_data)
        with m.If(req_region[-1] == hm.Region.ACT):
            with m.Switch(req_pe[-1]):
                for k in range(N):
                    with m.Case(k):
                        m.d.comb += self.bus.r_data.eq(group_rd[k // GROUP].as_signed())
        with m.Elif(req_region[-1] == hm.Region.CTRL):
            m.d.comb += self.bus.r_data.eq(r_reg)
        return m
