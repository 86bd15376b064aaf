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
#: writes take effect at the clock edge, read data is valid the cycle after `r_en`.
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
        room = Cat(pe.room for pe in pes).all()
        go = ctl.broadcast_en & room
        m.d.comb += [lnzd.go.eq(go), ctl.all_idle.eq(~lnzd.valid & Cat(pe.idle for pe in pes).all())]
        m.d.comb += [
            self.probe_broadcast.eq(go & lnzd.valid), self.probe_batch_start.eq(ctl.nz_rewind),
            self.probe_pops.eq(Cat(pe.popped for pe in pes)), self.probe_busy.eq(ctl.busy),
        ]
        m.d.sync += self.probe_running.eq(ctl.busy)
        for k, pe in enumerate(pes):
            m.d.comb += [
                lnzd.heads[k].eq(pe.nz), lnzd.heads_valid[k].eq(pe.nz_valid),
                pe.nz_pop.eq(lnzd.pops[k]), pe.nz_rewind.eq(ctl.nz_rewind),
                pe.push_data.index.eq(lnzd.index), pe.push_data.value.eq(lnzd.value),
                pe.push.eq(go & lnzd.valid),
                pe.base.eq(ctl.base), pe.layer.eq(ctl.layer), pe.src_bank.eq(ctl.src_bank),
                pe.clear_dst.eq(ctl.clear_dst), pe.shift.eq(ctl.shift), pe.relu.eq(ctl.relu),
                pe.n_out.eq(ctl.n_out), pe.wb_en.eq(ctl.wb_en), pe.wb_row.eq(ctl.wb_row),
                pe.wb_local_base.eq(ctl.wb_local_base),
            ]

        # -- host bus -------------------------------------------------------------------
        bus = self.bus
        region = bus.addr[hm.REGION_SHIFT:]
        pe_sel = bus.addr[hm.PE_SHIFT:hm.REGION_SHIFT]
        offset = bus.addr[:hm.OFFSET_BITS]
        write = bus.w_en & ~ctl.busy
        n_layers = Signal(p.layer_bits + 1)

        ctrl_w = write & (region == hm.Region.CTRL)
        m.d.comb += ctl.start.eq(ctrl_w & (offset == hm.Ctrl.CMD) & bus.w_data[0])
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

        # reads: registers now, activation memories one cycle later; both answer in c + 1
        r_region = Signal(4)
        r_pe = Signal(8)
        r_reg = Signal(hm.DATA_BITS)
        m.d.sync += bus.r_valid.eq(bus.r_en)
        with m.If(bus.r_en):
            m.d.sync += [r_region.eq(region), r_pe.eq(pe_sel)]
            with m.Switch(offset):
                with m.Case(hm.Ctrl.STATUS):
                    m.d.sync += r_reg.eq(Cat(ctl.busy, ctl.done))
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
        with m.If(r_region == hm.Region.ACT):
            with m.Switch(r_pe):
                for k, pe in enumerate(pes):
                    with m.Case(k):
                        m.d.comb += bus.r_data.eq(pe.rd_data.as_signed())
        with m.Elif(r_region == hm.Region.CTRL):
            m.d.comb += bus.r_data.eq(r_reg)
        return m
