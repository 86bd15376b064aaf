"""Activation queue: the FIFO of broadcast (index, value) items in front of each PE."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ActivationQueue"]


class ActivationQueue(wiring.Component):
    """`depth` broadcast items, first-word fall-through (Amaranth `SyncFIFO`).

    The write side is not a stream on purpose: the broadcast registers write all N queues
    in the same cycle, and the broadcaster's credits (one per PE, hdl/eie.py) guarantee
    the room, so `push` does not wait for anything. An item pushed in cycle c can be
    popped from cycle c + 1; a pop does not make room before the next cycle
    (docs/cycle-model.md).

    Ports: `push_data`, `push` (in), `room` (out: level < depth); `o` stream to the PE.
    """

    def __init__(self, item_layout, depth: int):
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        self.depth = depth
        self.item_layout = item_layout
        super().__init__({
            "push_data": In(item_layout),
            "push": In(1),
            "room": Out(1),
            "o": Out(stream.Signature(item_layout)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFO(width=self.item_layout.size, depth=self.depth)
        m.d.comb += [
            q.w_data.eq(self.push_data),
            q.w_en.eq(self.push),
            self.room.eq(q.w_rdy),
            self.o.payload.eq(q.r_data),
            self.o.valid.eq(q.r_rdy),
            q.r_en.eq(self.o.ready),
            self.level.eq(q.level),
        ]
        return m
