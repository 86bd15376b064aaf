"""Board top for FPGA builds: the EIE array driven by a built-in self-test (docs/fpga.md).

At elaboration a small fixed-seed network is encoded for the array (`selftest_program`),
run through the golden model, and turned into a ROM program of host-bus accesses: load
the image, write an input, START, poll STATUS until idle, then read every output and the
CYCLES register and compare them with the golden and cycle models. `SelfTest` replays the
program into `EIEArray.bus`; after the first pass it loops over input, run and check
forever, so a failure at any later pass is caught too. `BoardTop` puts that on a board
from `amaranth-boards` and drives its LEDs (pass, fail, busy, heartbeat).

ROM program: 16-bit words. Every run starts with a three-word header

* word 0: `region` (bits 0-3), `n_hw - 1` (bits 4-5), `op` (bits 6-7), `pe` (bits 8-15)
* word 1: first offset (consecutive accesses use offset, offset + 1, ...)
* word 2: count of accesses

followed, for WRITE and CHECK, by `count` items of `n_hw` little-endian halfwords: the
write data (zero-extended to 64 bits), or the expected low `16 * n_hw` bits of the read.
WAIT polls STATUS until BUSY = 0; END jumps back to the input section (`loop_pc`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth import Cat, Const, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import Out

from eie.golden_model import encode_network
from eie.golden_model.errors import ConfigError
from eie.golden_model.model import run_image

from . import host_map as hm
from .eie import EIEArray
from .loader import image_writes, input_writes, output_reads, start_writes
from .params import ArrayParams
from .rom_stream import RomStream

__all__ = ["Op", "SelfTestProgram", "selftest_image", "selftest_program", "SelfTest", "BoardTop"]


class Op:
    WRITE = 0
    CHECK = 1
    WAIT = 2
    END = 3


@dataclass
class SelfTestProgram:
    words: list[int]                 # the ROM
    loop_pc: int                     # first word of the input section (repeated forever)
    image: object                    # the EIEImage
    a_int: np.ndarray                # the input (n_in,)
    expected: np.ndarray             # golden outputs, int (n_out,)
    cycles: int                      # cycle model's CYCLES for the input
    n_writes: int = 0
    n_checks: int = 0
    runs: list = field(default_factory=list)   # (op, region, pe, offset, count, n_hw) per run

    @property
    def rom_bits(self) -> int:
        return 16 * len(self.words)

    def summary(self) -> dict:
        return {"layers": [[L.n_in, L.n_out] for L in self.image.layers], "rom_words": len(self.words),
                "bus_writes": self.n_writes, "checks": self.n_checks, "expected_cycles": self.cycles,
                "outputs": len(self.expected)}


def selftest_image(n_pe: int, max_layers: int = 1, acc_depth: int = 2, seed: int = 8, act_depth: int = 1 << 16):
    """The self-test network: 16 inputs -> 2 N outputs (ReLU) [-> 8 outputs if max_layers >= 2],
    every size capped at the activation memories (N * act_depth).

    Kept small so that the ROM grows about linearly with N; every PE owns two output rows
    of the first layer, and with two layers the bank swap and ReLU are exercised too.
    Returns (image, a_int).
    """
    rng = np.random.default_rng(seed)
    cap = n_pe * act_depth
    n_in, n_hidden, n_last = min(16, cap), min(2 * n_pe, cap), min(8, cap)
    shapes = [(n_hidden, n_in)] + ([(n_last, n_hidden)] if max_layers >= 2 else [])
    weights = [rng.normal(0, 0.5, s) * (rng.random(s) < 0.5) for s in shapes]
    image = encode_network(weights, n_pe, acc_depth=acc_depth, seed=seed, act_frac=8)
    a = rng.integers(-384, 384, n_in)
    a[rng.random(n_in) < 0.25] = 0
    a[0] = a[0] or 100         # at least one non-zero
    return image, a


def _runs(accesses):
    """Group (region, pe, offset, data) accesses into runs of consecutive offsets."""
    runs = []
    for region, pe, off, val in accesses:
        if runs and runs[-1][0] == region and runs[-1][1] == pe and runs[-1][2] + len(runs[-1][3]) == off:
            runs[-1][3].append(val)
        else:
            runs.append([region, pe, off, [val]])
    return runs


def _n_hw(values) -> int:
    most = max((int(v) for v in values), default=0)
    return max(1, min(4, -(-most.bit_length() // 16)))


def selftest_program(params: ArrayParams, seed: int = 8) -> SelfTestProgram:
    """Encode the self-test network for `params`, run the golden model, build the ROM."""
    image, a = selftest_image(params.n_pe, params.max_layers, min(2, params.acc_depth), seed, params.act_depth)
    gold = run_image(image, a, params.to_config(), int_input=True)
    expected = gold.hw_outputs_int[0]               # read below in hardware row order
    cycles = int(gold.report.cycles_per_sample[0])
    words: list[int] = []
    prog_runs = []

    def emit(op, region, pe, offset, values, n_hw=None):
        values = [int(v) for v in values]
        n_hw = n_hw or (_n_hw(values) if values else 1)
        if not (0 <= offset < 1 << 16 and len(values) < 1 << 16 and 0 <= pe < 256):
            raise ConfigError(f"self-test run at region {region}, PE {pe}, offset {offset} does not fit the ROM format")
        words.extend([region | (n_hw - 1) << 4 | op << 6 | pe << 8, offset, len(values)])
        for v in values:
            v &= (1 << (16 * n_hw)) - 1
            words.extend((v >> (16 * h)) & 0xFFFF for h in range(n_hw))
        prog_runs.append((op, region, pe, offset, len(values), n_hw))

    def emit_writes(writes):
        acc = []
        for addr, data in writes:
            region, pe, off = hm.split_address(addr)
            acc.append((region, pe, off, data))
        for region, pe, off, vals in _runs(acc):
            emit(Op.WRITE, region, pe, off, vals)

    load = image_writes(image, params)
    emit_writes(load)
    loop_pc = len(words)
    # input: CLEAR_INPUT, then each PE's activations in increasing local index (the
    # hardware needs increasing m per PE; the order between PEs does not matter)
    inp = input_writes(a, params.n_pe)
    clear, acts = inp[:1], inp[1:]
    acts = sorted(acts, key=lambda w: hm.split_address(w[0])[1:])
    emit_writes(clear + acts + start_writes())
    emit(Op.WAIT, hm.Region.CTRL, 0, hm.Ctrl.STATUS, [])
    reads = []
    for addr, val in zip(output_reads(len(expected), params.n_pe), expected):
        region, pe, off = hm.split_address(addr)
        reads.append((region, pe, off, int(val) & 0xFFFF))
    n_checks = 0
    for region, pe, off, vals in _runs(sorted(reads, key=lambda r: r[1:3])):
        emit(Op.CHECK, region, pe, off, vals, n_hw=1)
        n_checks += len(vals)
    emit(Op.CHECK, hm.Region.CTRL, 0, hm.Ctrl.CYCLES, [cycles], n_hw=3)
    emit(Op.END, 0, 0, 0, [])
    return SelfTestProgram(words=words, loop_pc=loop_pc, image=image, a_int=a, expected=expected,
                           cycles=cycles, n_writes=len(load) + len(inp) + 1, n_checks=n_checks + 1,
                           runs=prog_runs)


class SelfTest(wiring.Component):
    """Replays a `SelfTestProgram` into an `EIEArray` and compares what it reads back.

    Ports: `passed` (at least one pass completed and no failure so far), `failed`
    (a mismatch or a timeout, sticky until reset), `busy` (first pass not done yet),
    `passes` (completed passes, wraps).
    """

    def __init__(self, params: ArrayParams, program: SelfTestProgram | None = None, *, timeout: int = 1 << 20):
        self.params = params
        self.program = program or selftest_program(params)
        self.timeout = timeout
        self.array = EIEArray(params)
        super().__init__({"passed": Out(1), "failed": Out(1), "busy": Out(1), "passes": Out(24),
                          "mismatches": Out(16)})

    def elaborate(self, platform):
        m = Module()
        prog = self.program
        m.submodules.array = dut = self.array
        # the program, read ahead: `word` is the next unconsumed word when `ready`
        m.submodules.rom = rom = RomStream(prog.words)
        bus = dut.bus
        consume = Signal()
        word, ready = rom.r_data, rom.r_rdy
        m.d.comb += rom.r_en.eq(consume)

        op, region, n_hw1, pe = Signal(2), Signal(4), Signal(2), Signal(8)
        offset, count = Signal(16), Signal(16)
        hw = Signal(2)
        data = Signal(64)
        failed, done_once = Signal(), Signal()
        passes = Signal(24)
        mismatches = Signal(16)
        polls = Signal(range(self.timeout + 1))
        mask = Signal(64)
        got = Signal(64)               # bus.r_data of the previous cycle: reads are checked from a register
        lag = Signal(range(hm.READ_LATENCY + 2))
        m.d.sync += got.eq(bus.r_data)
        with m.Switch(n_hw1):
            for h in range(4):
                with m.Case(h):
                    m.d.comb += mask.eq((1 << (16 * (h + 1))) - 1)
        addr = Cat(offset, Const(0, hm.OFFSET_BITS - 16), pe, region)
        # The bus is driven from registers, as a host would: the request decided in cycle c
        # reaches the array in cycle c + 1 (so every read answers in c + 1 + READ_LATENCY).
        w_en, r_en = Signal(), Signal()
        m.d.sync += [bus.addr.eq(addr), bus.w_data.eq(data), bus.w_en.eq(w_en), bus.r_en.eq(r_en)]

        with m.FSM(init="HDR0"):
            with m.State("HDR0"):
                with m.If(ready):
                    m.d.comb += consume.eq(1)
                    m.d.sync += [region.eq(word[:4]), n_hw1.eq(word[4:6]), op.eq(word[6:8]), pe.eq(word[8:16])]
                    m.next = "HDR1"
            with m.State("HDR1"):
                with m.If(ready):
                    m.d.comb += consume.eq(1)
                    m.d.sync += offset.eq(word)
                    m.next = "HDR2"
            with m.State("HDR2"):
                with m.If(ready):
                    m.d.sync += [count.eq(word), hw.eq(0), data.eq(0), polls.eq(0)]
                    with m.Switch(op):
                        with m.Case(Op.WAIT):
                            m.d.comb += consume.eq(1)
                            m.next = "POLL"
                        with m.Case(Op.END):
                            # back to the input section (what was read ahead is dropped)
                            m.d.comb += [rom.jump.eq(1), rom.jump_to.eq(prog.loop_pc)]
                            m.d.sync += [passes.eq(passes + 1), done_once.eq(1)]
                            m.next = "HDR0"
                        with m.Default():
                            m.d.comb += consume.eq(1)
                            with m.If(word == 0):
                                m.next = "HDR0"
                            with m.Else():
                                m.next = "DATA"
            with m.State("DATA"):
                with m.If(ready):
                    m.d.comb += consume.eq(1)
                    with m.Switch(hw):
                        for h in range(4):
                            with m.Case(h):
                                m.d.sync += data[16 * h:16 * (h + 1)].eq(word)
                    m.d.sync += hw.eq(hw + 1)
                    with m.If(hw == n_hw1):
                        m.next = "ACCESS"
            with m.State("ACCESS"):
                with m.If(op == Op.WRITE):
                    m.d.comb += w_en.eq(1)
                    m.d.sync += [offset.eq(offset + 1), count.eq(count - 1), hw.eq(0), data.eq(0)]
                    with m.If(count == 1):
                        m.next = "HDR0"
                    with m.Else():
                        m.next = "DATA"
                with m.Else():
                    m.d.comb += r_en.eq(1)
                    m.d.sync += lag.eq(0)
                    m.next = "COMPARE"
            # the request goes out in the next cycle and is answered READ_LATENCY cycles later,
            # when `got` registers it: READ_LATENCY + 1 cycles of waiting
            with m.State("COMPARE"):
                m.d.sync += lag.eq(lag + 1)
                with m.If(lag == hm.READ_LATENCY):
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If((got & mask) != data):
                    m.d.sync += [failed.eq(1), mismatches.eq(mismatches + 1)]
                m.d.sync += [offset.eq(offset + 1), count.eq(count - 1), hw.eq(0), data.eq(0)]
                with m.If(count == 1):
                    m.next = "HDR0"
                with m.Else():
                    m.next = "DATA"
            with m.State("POLL"):
                m.d.comb += r_en.eq(1)
                m.d.sync += [polls.eq(polls + 1), lag.eq(0)]
                m.next = "POLL_WAIT"
            with m.State("POLL_WAIT"):
                m.d.sync += lag.eq(lag + 1)
                with m.If(lag == hm.READ_LATENCY):
                    m.next = "POLL_CHECK"
            with m.State("POLL_CHECK"):
                with m.If(~(got & hm.Status.BUSY).any()):
                    m.next = "HDR0"
                with m.Elif(polls == self.timeout):
                    m.d.sync += failed.eq(1)
                    m.next = "STUCK"
                with m.Else():
                    m.next = "POLL"
            with m.State("STUCK"):
                pass

        m.d.comb += [
            self.failed.eq(failed), self.passed.eq(done_once & ~failed), self.busy.eq(~done_once & ~failed),
            self.passes.eq(passes), self.mismatches.eq(mismatches),
        ]
        return m


class BoardTop(wiring.Component):
    """`SelfTest` on a board: LEDs from `leds` = {"pass": (name, n), "fail": ..., "busy": ...,
    "heartbeat": ...} (missing roles are not driven). Without a platform (simulation),
    the LED values are the `leds_o` port."""

    def __init__(self, params: ArrayParams, leds: dict | None = None, *, heartbeat_bit: int = 12,
                 program: SelfTestProgram | None = None):
        self.params = params
        self.leds = leds or {}
        self.heartbeat_bit = heartbeat_bit
        self.selftest = SelfTest(params, program)
        super().__init__({"leds_o": Out(4)})

    @property
    def program(self) -> SelfTestProgram:
        return self.selftest.program

    def elaborate(self, platform):
        m = Module()
        m.submodules.selftest = st = self.selftest
        hb = st.passes[min(self.heartbeat_bit, len(st.passes) - 1)] & ~st.failed
        values = {"pass": st.passed, "fail": st.failed, "busy": st.busy, "heartbeat": hb}
        m.d.comb += self.leds_o.eq(Cat(values["pass"], values["fail"], values["busy"], values["heartbeat"]))
        if platform is not None:
            for role, (name, number) in self.leds.items():
                m.submodules[f"led_{role}"] = buf = io.Buffer("o", platform.request(name, number, dir="-"))
                m.d.comb += buf.o.eq(values[role])
        return m
