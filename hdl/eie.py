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
#: writes take effect at the clock edge, read data is valid READ_LATENCY (2) cycles after `r_en`.
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
        # Internal events for simulation traces (not ports): broadcast, batch cycle 0, pops, takes.
        self.probe_broadcast = Signal()
        self.probe_batch_start = Signal()
        self.probe_pops = Signal(self.params.n_pe)
        self.probe_takes = Signal(self.params.n_pe)   # a PE's column register went to its issue stage
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
        # A broadcast goes out when the LNZD root has an item and every queue has room: the
        # root's output buffer and the queue levels are registers, so this AND is short.
        room = Cat(pe.room for pe in pes).all()
        go = Signal()
        m.d.comb += [
            go.eq(ctl.broadcast_en & room & lnzd.out.valid),
            lnzd.out.ready.eq(go), lnzd.flush.eq(ctl.batch.nz_rewind),
            ctl.all_idle.eq(lnzd.done & Cat(pe.idle for pe in pes).all()),
        ]
        m.d.comb += [
            self.probe_broadcast.eq(go), self.probe_batch_start.eq(ctl.batch.nz_rewind),
            self.probe_pops.eq(Cat(pe.popped for pe in pes)), self.probe_takes.eq(Cat(pe.taken for pe in pes)),
            self.probe_busy.eq(ctl.busy),
        ]
        m.d.sync += self.probe_running.eq(ctl.busy)
        wiring.connect(m, ctl.batch, *(pe.batch for pe in pes))
        for k, pe in enumerate(pes):
            wiring.connect(m, pe.nz, lnzd.heads[k])
            m.d.comb += [lnzd.heads_done[k].eq(pe.nz_done), pe.push_data.eq(lnzd.out.payload), pe.push.eq(go)]

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

        # reads: the request is registered in cycle c; in c + 1 the CTRL register is selected
        # and registered, and the activation memories' (registered) data arrive: both answer
        # in c + READ_LATENCY (2), so no memory output reaches the bus unregistered
        assert hm.READ_LATENCY == 2
        r_region, r_region2 = Signal(4), Signal(4)
        r_pe, r_pe2 = Signal(8), Signal(8)
        r_ctrl = Signal(hm.OFFSET_BITS)
        r_reg = Signal(hm.DATA_BITS)
        r_valid1 = Signal()
        m.d.sync += [r_valid1.eq(bus.r_en), bus.r_valid.eq(r_valid1), r_region2.eq(r_region), r_pe2.eq(r_pe)]
        with m.If(bus.r_en):
            m.d.sync += [r_region.eq(region), r_pe.eq(pe_sel), r_ctrl.eq(offset)]
        with m.If(r_valid1):
            with m.Switch(r_ctrl):
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
        with m.If(r_region2 == hm.Region.ACT):
            with m.Switch(r_pe2):
                for k, pe in enumerate(pes):
                    with m.Case(k):
                        m.d.comb += bus.r_data.eq(pe.rd_data.as_signed())
        with m.Elif(r_region2 == hm.Region.CTRL):
            m.d.comb += bus.r_data.eq(r_reg)
        return m
