"""One register stage for every member of a signature: a copy of a bundle near its users."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterStage", "REPLICA_ATTR"]

#: Flip-flops with this attribute are copies of each other on purpose (same input, one copy
#: per group of PEs, placed near its loads). Synthesis would merge them into one flip-flop
#: driving every PE again; the FPGA flow marks them `keep` (eie/fpga.py).
REPLICA_ATTR = "eie_replica"


class RegisterStage(wiring.Component):
    """`o` is `i` one cycle later. `signature` is flat with outputs only (as seen by its
    driver); instantiate one stage per group of PEs (`replica`) to split a net that would
    otherwise run from one register to all of them."""

    def __init__(self, signature: wiring.Signature, name: str = "stage", *, replica: bool = True):
        for member_name, member in signature.members.items():
            if not member.is_port or member.flow != Out:
                raise TypeError(f"RegisterStage: member {member_name!r} must be an output port")
        self._stage_name = name
        self._attrs = {REPLICA_ATTR: 1} if replica else {}
        super().__init__({"i": In(signature), "o": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        for member_name in self.i.signature.members:
            src = getattr(self.i, member_name)
            reg = Signal.like(src, name=f"{self._stage_name}_{member_name}", attrs=self._attrs)
            m.d.sync += reg.eq(src)
            m.d.comb += getattr(self.o, member_name).eq(reg)
        return m
