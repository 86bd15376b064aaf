"""The self-test program as a stream of ROM words, read ahead of the consumer."""

from __future__ import annotations

from amaranth import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .reg_fifo import RegisterFIFO

__all__ = ["RomStream"]


class RomStream(wiring.Component):
    """Words `rom[a], rom[a + 1], ...` from a ROM, one per cycle in steady state.

    The ROM is read from an address register and its word lands in a three-entry register
    FIFO, so neither the ROM's address nor the read behind it (a block RAM, or a LUT
    multiplexer tree when the ROM is kept in logic) waits on the consumer's decision in the
    same cycle: at 16 PEs the self-test's "FSM state -> next address -> ROM tree" path was
    the critical path of the whole build (docs/fpga.md). `jump` (with `jump_to`) drops what
    was read ahead and restarts at `jump_to`; its word is there two cycles later.

    Ports: `r_data`, `r_rdy`, `r_en` (the FIFO's read side: the word at the head, there is
    one, take it); `jump`, `jump_to`.
    """

    DEPTH = 3   # one read in flight + two words held: a word every cycle when read every cycle

    def __init__(self, words: list[int], *, width: int = 16):
        self.words = list(words)
        self.width = width
        super().__init__({
            "r_data": Out(width), "r_rdy": Out(1), "r_en": In(1),
            "jump": In(1), "jump_to": In(range(max(1, len(self.words)))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=self.width, depth=len(self.words), init=self.words)
        rd = rom.read_port()
        fifo = RegisterFIFO(width=self.width, depth=self.DEPTH)
        m.submodules.fifo = fifo = ResetInserter(self.jump)(fifo)

        addr = Signal(range(len(self.words) + 1))
        in_flight = Signal()                  # the word at `addr - 1` is on the ROM port
        fetch = Signal()
        # room for the word in flight and this one, whatever the consumer does
        m.d.comb += [
            fetch.eq((fifo.level + in_flight < self.DEPTH) & (addr < len(self.words))),
            rd.addr.eq(addr), rd.en.eq(fetch),
            fifo.w_data.eq(rd.data), fifo.w_en.eq(in_flight),
            self.r_data.eq(fifo.r_data), self.r_rdy.eq(fifo.r_rdy), fifo.r_en.eq(self.r_en),
        ]
        with m.If(self.jump):
            m.d.sync += [addr.eq(self.jump_to), in_flight.eq(0)]
        with m.Else():
            m.d.sync += [addr.eq(addr + fetch), in_flight.eq(fetch)]
        return m
