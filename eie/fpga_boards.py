"""The FPGA boards `eie fpga` builds for: device, capacity, array preset, LEDs and tool
options of each (docs/fpga.md). Data only: no Amaranth until a platform is made."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ["Board", "BOARDS", "LARGE_DESIGN_PES"]


@dataclass(frozen=True)
class Board:
    name: str
    platform: str                    # "module:Class" in amaranth_boards
    family: str                      # "ice40" | "ecp5"
    device: str
    capacity: dict                   # lut, ff, bram, dsp (device totals, for the synthesis check)
    preset: dict                     # ArrayParams for this board, except n_pe
    leds: dict                       # role -> (resource, number)
    synth_opts: str = ""
    memory_styles: dict = field(default_factory=dict)   # memory name -> "logic" | "block"
    nextpnr_opts: str = ""           # extra nextpnr options for n_pe >= LARGE_DESIGN_PES
    target_mhz: float = 0.0          # the clock nextpnr is asked for (0: the board's own clock)
    note: str = ""

    @property
    def tools(self) -> list[str]:
        return ["yosys", f"nextpnr-{self.family}", {"ice40": "icepack", "ecp5": "ecppack"}[self.family]]

    @property
    def clock_mhz(self) -> float:
        """The board's oscillator (no PLL: the self-test runs at it)."""
        return 25.0 if self.family == "ecp5" else 12.0

    def make_platform(self, target_mhz: float | None = None):
        """The amaranth-boards platform; with `target_mhz`, its clock constraint (what
        nextpnr optimises for and reports against) is raised to that frequency. The
        bitstream still runs from the board's oscillator."""
        mod, cls = self.platform.split(":")
        base = getattr(importlib.import_module(mod), cls)
        if not target_mhz:
            return base()
        hz = float(target_mhz) * 1e6

        class Raised(base):
            def iter_port_clock_constraints(self):
                return [(port, hz) for port, _ in super().iter_port_clock_constraints()]

            def iter_signal_clock_constraints(self):
                return [(sig, hz) for sig, _ in super().iter_signal_clock_constraints()]

        Raised.__name__ = base.__name__
        return Raised()


_ULX3S_LEDS = {"pass": ("led", 0), "fail": ("led", 1), "busy": ("led", 2), "heartbeat": ("led", 3)}
# ECP5: every memory in DP16KD block RAM or distributed RAM, chosen by Yosys.
_ECP5_PRESET = dict(fifo_depth=8, acc_depth=64, act_depth=256, ptr_depth=1024, spmat_depth=512,
                    max_layers=4, acc_bits=32)
# The self-test's program ROM in block RAM: read ahead from an address register into a
# register FIFO (hdl/rom_stream.py), so the block RAM's slow output only feeds flip-flops.
# (In LUTs, its multiplexer tree, ~2,000 words at 16 PEs, was that build's critical path.)
_ECP5_STYLES = {"rom": "block"}

# For 16 PEs and more, nextpnr-ecp5 uses router2: router1 was still resolving congestion
# of the 29-PE design after 30 minutes. Small designs keep router1 (faster for them here,
# and 39 against 34 MHz at 4 PEs).
_ECP5_PNR = "--router router2"
LARGE_DESIGN_PES = 16

BOARDS: dict[str, Board] = {b.name: b for b in [
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "iCE40UP5K-SG48",
          capacity={"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8},
          # 30 EBRs of 256 x 16 for 4 PEs: the 64-bit matrix rows (4 EBRs), the two pointer
          # banks and the codebook go to block RAM (7 per PE, 28 + 1 for the self-test
          # ROM); activations, non-zero lists and accumulators are kept tiny and in logic.
          preset=dict(fifo_depth=2, acc_depth=2, act_depth=2, ptr_depth=512, spmat_depth=256,
                      max_layers=1, acc_bits=16),
          leds={"pass": ("led_g", 0), "fail": ("led_r", 0)},
          synth_opts="-dsp",
          memory_styles={"acts": "logic", "nonzeros": "logic", "accumulators": "logic", "storage": "logic",
                         "sram": "block", "even": "block", "odd": "block", "codebook": "block", "rom": "block"},
          target_mhz=30.0,
          note="5,280 LCs and 30 EBRs: 4 PEs fit only with 2 activations per PE and bank "
               "(vectors of up to 8 elements) and 16-bit accumulators"),
    Board("ice40-hx8k", "amaranth_boards.ice40_hx8k_b_evn:ICE40HX8KBEVNPlatform", "ice40", "iCE40HX8K-CT256",
          capacity={"lut": 7680, "ff": 7680, "bram": 32, "dsp": 0},
          preset=dict(fifo_depth=2, acc_depth=2, act_depth=2, ptr_depth=512, spmat_depth=256,
                      max_layers=1, acc_bits=16),
          leds={"pass": ("led", 0), "fail": ("led", 1), "busy": ("led", 2), "heartbeat": ("led", 3)},
          memory_styles={"acts": "logic", "nonzeros": "logic", "accumulators": "logic", "storage": "logic",
                         "sram": "block", "even": "block", "odd": "block", "codebook": "block", "rom": "block"},
          target_mhz=30.0,
          note="no DSP blocks: every 16 x 16 multiplier is built from LUTs"),
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "LFE5U-85F-6BG381C",
          capacity={"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156},
          preset=_ECP5_PRESET, leds=_ULX3S_LEDS, nextpnr_opts=_ECP5_PNR, memory_styles=_ECP5_STYLES,
          target_mhz=100.0),
    Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", "LFE5U-45F-6BG381C",
          capacity={"lut": 43848, "ff": 43848, "bram": 108, "dsp": 72},
          preset=_ECP5_PRESET, leds=_ULX3S_LEDS, nextpnr_opts=_ECP5_PNR, memory_styles=_ECP5_STYLES,
          target_mhz=100.0),
    Board("ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5", "LFE5U-25F-6BG381C",
          capacity={"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28},
          preset=_ECP5_PRESET, leds=_ULX3S_LEDS, nextpnr_opts=_ECP5_PNR, memory_styles=_ECP5_STYLES,
          target_mhz=100.0),
]}
