"""Cycle-level unit tests of the PE datapath blocks against independent Python models.

Blocks: PointerRead (hdl/ptr_read.py), SparseMatrixRead (hdl/spmat_read.py),
ArithmeticUnit (hdl/arith.py) and ActRW (hdl/act_rw.py). Every test drives the block
the way its docstring specifies (inputs in cycle i, outputs in cycle i + latency) and
compares against the golden definitions in `eie.golden_model` (row packing, saturation,
write-back rounding), never against recorded simulator output.

Testbench convention (Amaranth 0.5 async testbenches): `ctx.set(...)` drives the inputs
of the current cycle, `await ctx.tick()` moves past the clock edge, and the values read
right after it are those of the next cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.golden_model import numerics as nm
from eie.golden_model.config import Timing
from eie.hdl.host_map import PE_READ_LATENCY
from eie.golden_model.layout import pack_sram_rows, unpack_sram_rows
from eie.hdl.act_rw import ActRW
from eie.hdl.arith import ArithmeticUnit
from eie.hdl.params import ArrayParams, bits_for
from eie.hdl.ptr_read import PointerRead
from eie.hdl.spmat_read import SparseMatrixRead

pytestmark = pytest.mark.sim

ACT_LO, ACT_HI = nm.int_range(nm.ACT_BITS)


def run_sim(top, testbench):
    """Run one async testbench on `top` with a single `sync` clock."""
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


# ======================================================================================
# PointerRead: p[a], p[a+1] the cycle after (addr, en)
# ======================================================================================

async def host_load(ctx, dut, words) -> None:
    """Write `words` to addresses 0, 1, ... through the unit's host port (w_addr/w_data/w_en)."""
    for i, word in enumerate(words):
        ctx.set(dut.w_addr, i)
        ctx.set(dut.w_data, int(word))
        ctx.set(dut.w_en, 1)
        await ctx.tick()
    ctx.set(dut.w_en, 0)


def ptr_bench(depth, value_bits, loads, reads):
    """Load pointer tables and run reads; returns per-read (start, end) observed.

    `loads[k]` is a full table written before read group k; `reads[k]` is a list of
    (addr, en). Returns, per group, the (start, end) seen the cycle after each read.
    """
    dut = PointerRead(depth, bits_for(depth - 1), value_bits)
    seen = []

    async def tb(ctx):
        for table, group in zip(loads, reads):
            await host_load(ctx, dut, table)
            out = []
            for addr, en in group:
                ctx.set(dut.addr, addr)
                ctx.set(dut.en, en)
                await ctx.tick()
                out.append((ctx.get(dut.start), ctx.get(dut.end)))
            seen.append(out)

    run_sim(dut, tb)
    return seen


def ptr_expected(table, group):
    """Reference: a read gives (p[a], p[a+1]); with en=0 the outputs hold."""
    exp, held = [], None
    for addr, en in group:
        if en:
            held = (int(table[addr]), int(table[addr + 1]))
        exp.append(held)
    return exp


@pytest.mark.parametrize("depth", [2, 4, 64])
def test_ptr_read_every_address_back_to_back(depth):
    """All a in 0..depth-2, in order and in random order, one read per cycle, two tables."""
    rng = np.random.default_rng(depth)
    value_bits = 12
    tables = [rng.integers(0, 1 << value_bits, depth) for _ in range(2)]
    tables[1][: 2] = [0, (1 << value_bits) - 1]           # extremes of the value range
    addrs = list(range(depth - 1))
    groups = [[(int(a), 1) for a in addrs + list(rng.permutation(addrs))] for _ in tables]
    seen = ptr_bench(depth, value_bits, tables, groups)
    for table, group, got in zip(tables, groups, seen):
        assert got == ptr_expected(table, group)


@settings(max_examples=10)
@given(st.data())
def test_ptr_read_holds_when_disabled(data):
    """Random reads with idle cycles (en=0, addr changing): start/end keep the last read.

    Covers parity changes across idle cycles (even read, idle with odd addr, ...).
    """
    depth, value_bits = 16, 10
    table = data.draw(st.lists(st.integers(0, (1 << value_bits) - 1), min_size=depth, max_size=depth))
    first = data.draw(st.integers(0, depth - 2))
    rest = data.draw(st.lists(st.tuples(st.integers(0, depth - 2), st.booleans()), min_size=1, max_size=40))
    # Idle cycles may present any address, including depth - 1.
    group = [(first, 1)] + [(a if en else data.draw(st.integers(0, depth - 1)), int(en)) for a, en in rest]
    [got] = ptr_bench(depth, value_bits, [table], [group])
    assert got == ptr_expected(table, group)


# ======================================================================================
# SparseMatrixRead: (v, z) of entry e the cycle after (entry, en)
# ======================================================================================

SPMAT_DEPTH = 16                     # SRAM rows
SPMAT_ENTRIES = SPMAT_DEPTH * 8


def spmat_bench(rows, ops):
    """Write `rows` (uint64), then run ops; returns the (v, z) seen after each issue.

    ops: ("issue", entry) -> one cycle with en=1; ("idle",) -> one cycle with en=0 and a
    random-looking entry on the port; ("write", row, value) -> one host write cycle.
    """
    dut = SparseMatrixRead(SPMAT_DEPTH, bits_for(SPMAT_ENTRIES), bits_for(SPMAT_DEPTH - 1))
    seen = []

    async def tb(ctx):
        issued = []            # per cycle: was it an issue
        await host_load(ctx, dut, rows)

        async def step():      # (v, z) of the issue VZ_DELAY cycles back are registered now
            await ctx.tick()
            if len(issued) >= VZ_DELAY and issued[-VZ_DELAY]:
                seen.append((ctx.get(dut.fetched.v), ctx.get(dut.fetched.z)))

        for k, op in enumerate(ops):
            ctx.set(dut.issued.valid, 0)
            ctx.set(dut.w_en, 0)
            if op[0] == "issue":
                ctx.set(dut.issued.entry, op[1])
                ctx.set(dut.issued.valid, 1)
            elif op[0] == "idle":
                ctx.set(dut.issued.entry, (k * 37) % SPMAT_ENTRIES)   # ignored while en=0
            else:
                ctx.set(dut.w_addr, op[1])
                ctx.set(dut.w_data, int(op[2]))
                ctx.set(dut.w_en, 1)
            issued.append(op[0] == "issue")
            await step()
        ctx.set(dut.issued.valid, 0)
        ctx.set(dut.w_en, 0)
        for _ in range(VZ_DELAY - 1):
            issued.append(False)
            await step()

    run_sim(dut, tb)
    return seen


def spmat_expected(rows, ops):
    """Reference: decode the current SRAM contents with unpack_sram_rows."""
    rows = np.array(rows, dtype=np.uint64)
    exp = []
    for op in ops:
        if op[0] == "write":
            rows[op[1]] = op[2]
        elif op[0] == "issue":
            v, z = unpack_sram_rows(rows, SPMAT_ENTRIES)
            exp.append((int(v[op[1]]), int(z[op[1]])))
    return exp


def random_rows(rng):
    v = rng.integers(0, 16, SPMAT_ENTRIES)
    z = rng.integers(0, 16, SPMAT_ENTRIES)
    return pack_sram_rows(v, z)


u64 = st.integers(0, (1 << 64) - 1)
entry_st = st.integers(0, SPMAT_ENTRIES - 1)
spmat_op_st = st.one_of(
    # a column: consecutive entries, possibly crossing row boundaries
    st.tuples(st.just("col"), entry_st, st.integers(1, 20)),
    st.tuples(st.just("jump"), entry_st),
    st.tuples(st.just("repeat"), entry_st, st.integers(2, 4)),
    st.tuples(st.just("idle"), st.integers(1, 3)),
    st.tuples(st.just("write"), st.integers(0, SPMAT_DEPTH - 1), u64),
)


def expand_spmat_ops(spec):
    ops = []
    for s in spec:
        if s[0] == "col":
            ops += [("issue", e) for e in range(s[1], min(s[1] + s[2], SPMAT_ENTRIES))]
        elif s[0] == "jump":
            ops.append(("issue", s[1]))
        elif s[0] == "repeat":
            ops += [("issue", s[1])] * s[2]
        elif s[0] == "idle":
            ops += [("idle",)] * s[1]
        else:
            ops.append(s)
    return ops


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), spec=st.lists(spmat_op_st, min_size=1, max_size=25))
def test_spmat_read_random_sequences(seed, spec):
    """Columns, jumps, repeated entries, idle gaps and host rewrites, against unpack_sram_rows."""
    rows = random_rows(np.random.default_rng(seed))
    ops = expand_spmat_ops(spec)
    assert spmat_bench(rows, ops) == spmat_expected(rows, ops)


def test_spmat_read_every_entry_in_column_order():
    """One long column over the whole SRAM, then the same backwards (a new row every entry)."""
    rng = np.random.default_rng(7)
    v = rng.integers(0, 16, SPMAT_ENTRIES)
    z = rng.integers(0, 16, SPMAT_ENTRIES)
    rows = pack_sram_rows(v, z)
    ops = [("issue", e) for e in range(SPMAT_ENTRIES)] + [("issue", e) for e in reversed(range(SPMAT_ENTRIES))]
    got = spmat_bench(rows, ops)
    # Independent of unpack_sram_rows: the (v, z) the rows were packed from.
    order = list(range(SPMAT_ENTRIES)) + list(reversed(range(SPMAT_ENTRIES)))
    assert got == [(int(v[e]), int(z[e])) for e in order]


@pytest.mark.parametrize("gap", [0, 1, 3])
def test_spmat_read_host_write_invalidates_held_row(gap):
    """Rewrite the row last fetched; the next entry in that row must see the new data."""
    rng = np.random.default_rng(11 + gap)
    rows = random_rows(rng)
    new_rows = random_rows(rng)
    ops = [("issue", 8 * 5 + 2), ("issue", 8 * 5 + 3)]          # row 5 fetched and held
    ops += [("idle",)] * gap
    ops += [("write", 5, new_rows[5])]
    ops += [("idle",)] * gap
    ops += [("issue", 8 * 5 + 3), ("issue", 8 * 5 + 7), ("issue", 8 * 5 + 0)]
    got = spmat_bench(rows, ops)
    new_v, new_z = unpack_sram_rows(new_rows, SPMAT_ENTRIES)
    assert got[-3:] == [(int(new_v[e]), int(new_z[e])) for e in (43, 47, 40)]
    assert got == spmat_expected(rows, ops)


# ======================================================================================
# ArithmeticUnit: codebook, row address, saturating MAC with bypass, write-back
# ======================================================================================

ACC_DEPTH = 32
N_LAYERS = 2


@dataclass
class Issue:
    first: int
    act: int
    v: int
    z: int


class ArithModel:
    """Python reference of the accumulate path (docs/numerics.md, steps 1-2)."""

    def __init__(self, acc_bits, codebook):
        self.acc_bits = acc_bits
        self.codebook = codebook
        self.acc = [0] * ACC_DEPTH
        self.prev_row = 0
        self.sat_hi = self.sat_lo = False     # did saturation happen (test-quality check)

    def issue(self, layer, e: Issue):
        row = e.z if e.first else self.prev_row + e.z + 1
        assert row < ACC_DEPTH, "test generator produced an out-of-range row"
        self.prev_row = row
        raw = self.acc[row] + int(self.codebook[layer][e.v]) * e.act
        total = int(nm.saturate(raw, self.acc_bits))
        lo, hi = nm.int_range(self.acc_bits)
        self.sat_hi |= raw > hi
        self.sat_lo |= raw < lo
        self.acc[row] = total

    def writeback(self, row):
        val, self.acc[row] = self.acc[row], 0
        return val


def make_arith(acc_bits):
    return ArithmeticUnit(acc_depth=ACC_DEPTH, acc_bits=acc_bits, max_layers=N_LAYERS,
                          row_bits=bits_for(ACC_DEPTH - 1), layer_bits=bits_for(N_LAYERS - 1), entry_bits=12)


async def arith_load_codebook(ctx, dut, codebook):
    for layer, words in enumerate(codebook):
        for v, w in enumerate(words):
            ctx.set(dut.cb_w_addr, layer * 16 + v)
            ctx.set(dut.cb_w_data, int(w))
            ctx.set(dut.cb_w_en, 1)
            await ctx.tick()
    ctx.set(dut.cb_w_en, 0)


VZ_DELAY = 3   # (v, z) of an entry issued in cycle i arrive in cycle i + 3 (SparseMatrixRead)
WB_DELAY = 2   # wb_acc of a row read in cycle w is valid in cycle w + 2


async def arith_compute(ctx, dut, layer, slots, garbage):
    """One slot per cycle (Issue or None = idle); v/z of a slot go in VZ_DELAY cycles later.

    Inputs that are ignored in a cycle (first/act when idle, v/z of an idle slot) carry
    values from `garbage` to show they are ignored. Returns the number of cycles `busy`
    stays high after the last slot's v/z.
    """
    ctx.set(dut.layer, layer)
    timeline = list(slots) + [None] * VZ_DELAY
    for n, s in enumerate(timeline):
        if s is None:
            ctx.set(dut.issued.valid, 0)
            ctx.set(dut.issued.first, int(garbage.integers(0, 2)))
            ctx.set(dut.issued.act, int(garbage.integers(ACT_LO, ACT_HI + 1)))
        else:
            ctx.set(dut.issued.valid, 1)
            ctx.set(dut.issued.first, s.first)
            ctx.set(dut.issued.act, s.act)
        prev = timeline[n - VZ_DELAY] if n >= VZ_DELAY else None
        if prev is None:
            ctx.set(dut.fetched.v, int(garbage.integers(0, 16)))
            ctx.set(dut.fetched.z, int(garbage.integers(0, 16)))
        else:
            ctx.set(dut.fetched.v, prev.v)
            ctx.set(dut.fetched.z, prev.z)
        await ctx.tick()
    ctx.set(dut.fetched.v, 0)
    ctx.set(dut.fetched.z, 0)
    busy = 0
    while ctx.get(dut.busy):
        busy += 1
        assert busy < 10, "busy never drops"
        await ctx.tick()
    return busy


async def arith_writeback(ctx, dut, rows, clear=True):
    """wb_en/wb_row in cycle w, wb_acc read in cycle w + WB_DELAY; one row per cycle.
    `clear` False: a host read of held outputs (the accumulators keep their sums)."""
    out = []
    ctx.set(dut.wb_clear, int(clear))
    for n in range(len(rows) + WB_DELAY - 1):
        ctx.set(dut.wb_en, int(n < len(rows)))
        if n < len(rows):
            ctx.set(dut.wb_row, rows[n])
        await ctx.tick()
        if n >= WB_DELAY - 1:
            out.append(ctx.get(dut.wb_acc))
    ctx.set(dut.wb_en, 0)
    return out


def random_slots(rng, n_cols, act_max, p_idle=0.25):
    """A batch of columns: multi-entry columns, runs of same-row single-entry columns,
    alternating rows (hits two cycles apart) and idle gaps."""

    a_lo = ACT_LO if act_max == ACT_HI else -act_max

    def act():                                                 # only non-zero activations are broadcast
        if rng.random() < 0.2:
            return int(rng.choice([a_lo, act_max]))
        a = 0
        while a == 0:
            a = int(rng.integers(a_lo, act_max + 1))
        return a

    slots = []
    for _ in range(n_cols):
        kind = rng.integers(0, 4)
        if kind == 0:                                          # a column with several entries
            a, row = act(), int(rng.integers(0, 16))
            col = [Issue(1, a, int(rng.integers(0, 16)), row)]
            for _ in range(int(rng.integers(0, 8))):
                if row >= ACC_DEPTH - 1:
                    break
                z = int(rng.integers(0, min(16, ACC_DEPTH - 1 - row)))
                z = 0 if rng.random() < 0.3 else z              # z=0: consecutive rows
                row += z + 1
                col.append(Issue(0, a, int(rng.integers(0, 16)), z))
            slots += col
        elif kind == 1:                                        # back-to-back hits on one row
            z = int(rng.integers(0, 16))
            slots += [Issue(1, act(), int(rng.integers(1, 16)), z) for _ in range(int(rng.integers(2, 7)))]
        elif kind == 2:                                        # hits 2 apart: x y x y ...
            zs = [int(x) for x in rng.integers(0, 16, 2)]
            slots += [Issue(1, act(), int(rng.integers(1, 16)), zs[i % 2]) for i in range(int(rng.integers(3, 7)))]
        else:                                                  # rows past 16 via a non-first entry
            a = act()
            slots += [Issue(1, a, int(rng.integers(0, 16)), 15),
                      Issue(0, a, int(rng.integers(0, 16)), int(rng.integers(0, ACC_DEPTH - 16)))]
        if rng.random() < p_idle:
            slots += [None] * int(rng.integers(1, 4))
    return slots


def random_codebook(rng, w_max):
    cb = rng.integers(-w_max, w_max + 1, (N_LAYERS, 16))
    cb[:, 0] = 0                                               # index 0 is the padding entry
    if w_max == ACT_HI:
        cb[0, 1:3] = [ACT_LO, ACT_HI]                          # full 16-bit extremes
        cb[1, 1:3] = [ACT_HI, ACT_LO]
    else:
        cb[:, 1:3] = [-w_max, w_max]
    return cb


def arith_random_run(acc_bits, w_max, act_max, seed, n_batches=4, n_cols=120):
    """Batches of random columns, each followed by a write-back of every row (random
    order); compares wb_acc with ArithModel. Returns the model (for saturation flags)."""
    rng = np.random.default_rng(seed)
    garbage = np.random.default_rng(seed + 1)
    codebook = random_codebook(rng, w_max)
    model = ArithModel(acc_bits, codebook)
    dut = make_arith(acc_bits)
    batches = [(b % N_LAYERS, random_slots(rng, n_cols, act_max), rng.permutation(ACC_DEPTH))
               for b in range(n_batches)]
    results = []

    async def tb(ctx):
        await arith_load_codebook(ctx, dut, codebook)
        for layer, slots, order in batches:
            busy = await arith_compute(ctx, dut, layer, slots, garbage)
            results.append((busy, await arith_writeback(ctx, dut, [int(r) for r in order])))

    run_sim(dut, tb)
    for (layer, slots, order), (busy, got) in zip(batches, results):
        for s in slots:
            if s is not None:
                model.issue(layer, s)
        expected = [model.writeback(int(r)) for r in order]
        assert got == expected
        # The last issue is in the final slot cycle unless the batch ends idle.
        tail = next(i for i, s in enumerate(reversed(slots)) if s is not None)
        # busy in cycles i+1 .. i+pipeline_latency after the last issue i; the driver
        # returns in cycle i + VZ_DELAY + 1 + tail
        assert busy == max(0, Timing().pipeline_latency - VZ_DELAY - tail)
    return model


# Products bounded so that sums stay near the accumulator range and saturate gradually.
@pytest.mark.parametrize("acc_bits,w_max,act_max,saturates", [
    (16, 181, 181, True),      # |w * a| < 2**15
    (20, 724, 724, True),      # |w * a| < 2**19
    (32, ACT_HI, ACT_HI, True),
    (48, ACT_HI, ACT_HI, False),  # 2**47 needs > 2**17 full-scale products: exactness only
])
def test_arith_random_columns(acc_bits, w_max, act_max, saturates):
    model = arith_random_run(acc_bits, w_max, act_max, seed=acc_bits)
    assert (model.sat_hi and model.sat_lo) == saturates


@pytest.mark.parametrize("acc_bits", [
    16,
    20,
    31,
    48,
])
def test_arith_random_columns_full_scale_products(acc_bits):
    """Full 16-bit codebook values and activations for every accumulator width."""
    arith_random_run(acc_bits, ACT_HI, ACT_HI, seed=100 + acc_bits, n_batches=2, n_cols=40)


def arith_single_products(acc_bits, products):
    """Each (w, a) is a one-entry column on row 0 (acc starts at 0); returns wb_acc list."""
    dut = make_arith(acc_bits)
    out = []

    async def tb(ctx):
        for k, (w, a) in enumerate(products):
            await arith_load_codebook(ctx, dut, [[0, w] + [0] * 14, [0] * 16])
            await arith_compute(ctx, dut, 0, [Issue(1, a, 1, 0)], np.random.default_rng(k))
            out.extend(await arith_writeback(ctx, dut, [0]))

    run_sim(dut, tb)
    return out


def test_arith_single_product_beyond_acc_range_saturates():
    """Minimal reproduction: acc_bits=16, acc=0, product (-32768)*(-32768) = 2**30.

    Golden: saturate(0 + 2**30, 16) = 32767: the adder must be as wide as the product,
    not only the accumulator, or 2**30 wraps to 0 and 2**16 to -2**16 (a bug once found).
    """
    cases = [(ACT_LO, ACT_LO), (256, 256), (256, -256), (200, 200)]
    got = arith_single_products(16, cases)
    assert got == [int(nm.saturate(w * a, 16)) for w, a in cases]


def test_arith_extreme_products_exact_at_48_bits():
    """Single products at the 16x16 extremes are exact (no saturation) at 48 bits."""
    cases = [(ACT_LO, ACT_LO), (ACT_LO, ACT_HI), (ACT_HI, ACT_HI), (ACT_HI, ACT_LO), (-1, 1), (1, -1)]
    assert arith_single_products(48, cases) == [w * a for w, a in cases]


def test_arith_writeback_clears_and_unwritten_rows_read_zero():
    """Write-back clears: a second write-back reads 0, untouched rows read 0, and the
    next batch starts from zero on rows it shares with the previous one."""
    acc_bits = 48
    codebook = [[0] + list(range(1, 16)), [0] + list(range(-1, -16, -1))]
    batch1 = [Issue(1, 1000, 3, 2), Issue(0, 1000, 5, 0), Issue(1, -7, 15, 2)]   # rows 2, 3, 2
    batch2 = [Issue(1, 11, 4, 3), Issue(1, 13, 4, 3)]                           # row 3 twice
    dut = make_arith(acc_bits)
    got = {}

    async def tb(ctx):
        g = np.random.default_rng(0)
        await arith_load_codebook(ctx, dut, codebook)
        await arith_compute(ctx, dut, 0, batch1, g)
        got["wb1"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)))
        got["wb1_again"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)))
        await arith_compute(ctx, dut, 1, batch2, g)
        got["wb2"] = await arith_writeback(ctx, dut, [2, 3, 4])

    run_sim(dut, tb)
    expected1 = [0] * ACC_DEPTH
    expected1[2] = 3 * 1000 + 15 * -7
    expected1[3] = 5 * 1000
    assert got["wb1"] == expected1
    assert got["wb1_again"] == [0] * ACC_DEPTH
    assert got["wb2"] == [0, -4 * 11 + -4 * 13, 0]


def test_arith_host_reads_keep_the_sums_and_clear_empties_every_row():
    """A read without wb_clear (the host reading the run's held last batch) leaves every
    sum in place, however often; `clear` (batch cycle 0) makes every row read 0 again."""
    codebook = [[0] + list(range(1, 16)), [0] * 16]
    batch = [Issue(1, 100, 3, 1), Issue(0, 7, 2, 1), Issue(1, -9, 5, 0)]     # rows 1, 3, 0
    dut = make_arith(32)
    got = {}

    async def tb(ctx):
        g = np.random.default_rng(1)
        await arith_load_codebook(ctx, dut, codebook)
        await arith_compute(ctx, dut, 0, batch, g)
        got["peek1"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)), clear=False)
        got["peek2"] = await arith_writeback(ctx, dut, [3, 1, 0, 3], clear=False)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()          # the read ports see the valid bits one cycle late
        got["after_clear"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)), clear=False)

    run_sim(dut, tb)
    want = [0] * ACC_DEPTH
    want[1], want[3], want[0] = 300, 14, -45
    assert got["peek1"] == want
    assert got["peek2"] == [14, 300, -45, 14]
    assert got["after_clear"] == [0] * ACC_DEPTH


def test_arith_reset_mid_accumulation():
    """A reset with entries landed and in flight: afterwards every accumulator reads 0
    until written, and the next batch accumulates from zero."""
    acc_bits = 20
    codebook = [[0] + list(range(100, 1600, 100)), [0] * 16]
    rst = Signal()
    dut = make_arith(acc_bits)
    top = ResetInserter(rst)(dut)
    old = [Issue(1, 50, 1, z) for z in (4, 5, 6, 7, 4, 5)]      # rows 4..7 landed, then in flight
    new = [Issue(1, 3, 2, 5), Issue(0, 3, 1, 1)]                   # rows 5 and 7
    got = {}

    async def tb(ctx):
        g = np.random.default_rng(3)
        await arith_load_codebook(ctx, dut, codebook)
        ctx.set(dut.layer, 0)
        # Issue the old batch but reset before its pipeline drains (entries in flight).
        timeline = old + [None] * VZ_DELAY
        for n, s in enumerate(timeline):
            ctx.set(dut.issued.valid, int(s is not None))
            if s is not None:
                ctx.set(dut.issued.first, s.first)
                ctx.set(dut.issued.act, s.act)
            if n >= VZ_DELAY:
                ctx.set(dut.fetched.v, timeline[n - VZ_DELAY].v)
                ctx.set(dut.fetched.z, timeline[n - VZ_DELAY].z)
            await ctx.tick()
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        got["busy_after_reset"] = ctx.get(dut.busy)
        got["after_reset"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)))
        # Reset again with landed sums, then a new batch.
        await arith_compute(ctx, dut, 0, old, g)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        await arith_compute(ctx, dut, 0, new, g)
        got["new"] = await arith_writeback(ctx, dut, list(range(ACC_DEPTH)))

    run_sim(top, tb)
    assert got["busy_after_reset"] == 0
    assert got["after_reset"] == [0] * ACC_DEPTH
    expected = [0] * ACC_DEPTH
    expected[5] = 3 * codebook[0][2]
    expected[7] = 3 * codebook[0][1]
    assert got["new"] == expected


# ======================================================================================
# ActRW: write-back numerics, non-zero lists, host access, bank swap
# ======================================================================================

ACT_DEPTH = 16
LIST_LATENCY = Timing().list_latency             # rewind in cycle 0, first item valid in cycle 3
WRITEBACK_LATENCY = Timing().writeback_latency   # wb_en in cycle w, written at the end of w + 4


def make_actrw(acc_bits):
    p = ArrayParams(act_depth=ACT_DEPTH, acc_bits=acc_bits)
    return ActRW(act_depth=ACT_DEPTH, local_bits=p.local_bits, acc_bits=acc_bits,
                 shift_bits=p.shift_bits, nz_item=p.nz_item)


class ActBench:
    """Drives an ActRW and keeps a Python model of both banks and both non-zero lists."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self.src = 0
        self.data = [[0] * ACT_DEPTH for _ in range(2)]   # memory init is all zero
        self.nz = [[], []]

    async def tick(self):
        await self.ctx.tick()

    async def set_src(self, bank):
        self.src = bank
        self.ctx.set(self.dut.src_bank, bank)

    async def clear(self, src=False, dst=False):
        self.ctx.set(self.dut.clear_src, int(src))
        self.ctx.set(self.dut.clear_dst, int(dst))
        await self.tick()
        self.ctx.set(self.dut.clear_src, 0)
        self.ctx.set(self.dut.clear_dst, 0)
        if src:
            self.nz[self.src] = []
        if dst:
            self.nz[1 - self.src] = []

    async def host_write(self, items):
        """(local, value) pairs into the source bank, one per cycle."""
        for local, value in items:
            self.ctx.set(self.dut.in_en, 1)
            self.ctx.set(self.dut.in_local, local)
            self.ctx.set(self.dut.in_data, value)
            await self.tick()
            self.data[self.src][local] = value
            if value != 0:
                self.nz[self.src].append((local, value))
        self.ctx.set(self.dut.in_en, 0)
        await self.tick()      # ActRW registers a host input: it is written a cycle later

    async def host_read(self, locals_):
        """rd_local in cycle c, rd_data PE_READ_LATENCY (5) cycles later, one per cycle."""
        out = []
        locals_ = list(locals_)
        lag = PE_READ_LATENCY - 1
        for n in range(len(locals_) + lag):
            if n < len(locals_):
                self.ctx.set(self.dut.rd_local, locals_[n])
            await self.tick()
            if n >= lag:   # the answer to the request `lag` ticks back
                out.append(self.ctx.get(self.dut.rd_data))
        return out

    async def walk(self):
        """Rewind, then take the list stream every cycle until `nz_done`; returns
        [(local, value)]. The first item is valid in cycle LIST_LATENCY after the rewind and
        the rest follow one per cycle (the prefetch keeps up)."""
        ctx, nz = self.ctx, self.dut.nz
        ctx.set(self.dut.nz_rewind, 1)
        ctx.set(nz.ready, 1)
        await self.tick()
        ctx.set(self.dut.nz_rewind, 0)
        out, cycle, valid_cycles = [], 1, []
        while not ctx.get(self.dut.nz_done):
            assert cycle <= ACT_DEPTH + 4, "the list never ends"
            if ctx.get(nz.valid):
                out.append((ctx.get(nz.payload.local), ctx.get(nz.payload.value)))
                valid_cycles.append(cycle)
            await self.tick()
            cycle += 1
        ctx.set(nz.ready, 0)
        assert valid_cycles == list(range(LIST_LATENCY, LIST_LATENCY + len(out)))
        return out

    async def writeback(self, items, shift, relu):
        """(local, keep, acc): wb_en/wb_local/wb_keep in cycle w, wb_acc in cycle w + 2;
        returns once the last row is written (cycle w + WRITEBACK_LATENCY)."""
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.shift, shift)
        ctx.set(dut.relu, int(relu))
        timeline = list(items) + [None] * WRITEBACK_LATENCY
        for n, it in enumerate(timeline):
            ctx.set(dut.wb_en, int(it is not None))
            if it is not None:
                ctx.set(dut.wb_local, it[0])
                ctx.set(dut.wb_keep, int(it[1]))
            # the accumulator of the row two cycles back; any value when there is none
            acc_of = timeline[n - WB_DELAY] if n >= WB_DELAY else None
            ctx.set(dut.wb_acc, acc_of[2] if acc_of is not None else 1)
            await self.tick()
        ctx.set(dut.wb_en, 0)
        dst = 1 - self.src
        for local, keep, acc in items:
            if keep:
                y = int(nm.writeback(acc, shift, relu))
                self.data[dst][local] = y
                if y != 0:
                    self.nz[dst].append((local, y))

    async def check_source(self):
        """Source bank contents and its non-zero list against the model."""
        got = await self.host_read(range(ACT_DEPTH))
        assert got == self.data[self.src]
        assert await self.walk() == self.nz[self.src]


def acc_values(rng, acc_bits, shift, n):
    """Extremes, rounding ties and output-saturation boundaries for this shift, plus random."""
    lo, hi = nm.int_range(acc_bits)
    special = [lo, lo + 1, hi, hi - 1, 0, 1, -1]
    if shift:
        h = 1 << (shift - 1)
        special += [h, -h, h - 1, -h - 1, 3 * h, -3 * h]                   # ties round up
    for edge in (ACT_HI, ACT_LO):                                          # around +-32767.5 etc.
        for d in (-1, 0, 1):
            special.append(((2 * edge + 1) << shift >> 1) + d)
    special = [x for x in special if lo <= x <= hi]
    randoms = [int(rng.integers(lo, hi, endpoint=True)) for _ in range(n // 2)]
    # log-uniform magnitudes: most values land near the output range after the shift
    mags = rng.integers(0, acc_bits, n)
    randoms += [int(np.clip(int(rng.integers(-(1 << m), (1 << m) + 1)), lo, hi)) for m in mags]
    vals = special + randoms
    return [vals[i] for i in rng.permutation(len(vals))]


@pytest.mark.parametrize("acc_bits", [16, 20, 48])
def test_actrw_writeback_numerics_and_dst_list(acc_bits):
    """Every shift 0..47, ReLU on/off, random row order, ~20% wb_keep=0: the destination
    bank equals numerics.writeback, its list holds the non-zero outputs in write order."""
    rng = np.random.default_rng(acc_bits)
    dut = make_actrw(acc_bits)
    checked = {"n": 0, "nonzero_lists": 0, "relu_zero": 0}

    async def tb(ctx):
        b = ActBench(ctx, dut)
        for bank in (0, 1):                                        # known contents in both banks
            await b.set_src(bank)
            await b.host_write([(i, int(rng.integers(ACT_LO, ACT_HI + 1))) for i in range(ACT_DEPTH)])
        for shift in range(48):
            for relu in (False, True):
                vals = acc_values(rng, acc_bits, shift, 10)
                for start in range(0, len(vals), ACT_DEPTH):
                    chunk = vals[start:start + ACT_DEPTH]
                    locals_ = rng.permutation(ACT_DEPTH)[: len(chunk)]
                    keep = rng.random(len(chunk)) > 0.2
                    items = [(int(l), bool(k), a) for l, k, a in zip(locals_, keep, chunk)]
                    await b.clear(dst=True)
                    await b.writeback(items, shift, relu)
                    await b.set_src(1 - b.src)                     # outputs become the next inputs
                    await b.check_source()
                    checked["n"] += len(items)
                    checked["nonzero_lists"] += bool(b.nz[b.src])
                    checked["relu_zero"] += relu and any(k and a < 0 for _, k, a in items)

    run_sim(dut, tb)
    assert checked["n"] > 48 * 2 * 20 and checked["nonzero_lists"] > 48 and checked["relu_zero"] > 10


def test_actrw_writeback_directed_values():
    """A few hand-computed write-backs (no reference to numerics.writeback)."""
    dut = make_actrw(48)
    cases = [  # (acc, shift, relu, expected)
        (5, 1, False, 3), (-5, 1, False, -2), (6, 2, False, 2), (-6, 2, False, -1),
        (1 << 40, 0, False, 32767), (-(1 << 40), 0, False, -32768), (-(1 << 40), 0, True, 0),
        (-(1 << 47), 47, False, -1), ((1 << 47) - 1, 47, False, 1), (65535, 1, False, 32767),
        (65533, 1, False, 32767), (65532, 1, False, 32766), (-65537, 1, False, -32768),
        (-65535, 1, False, -32767), (-3, 0, True, 0), (7, 0, True, 7),
    ]
    seen = []

    async def tb(ctx):
        b = ActBench(ctx, dut)
        for acc, shift, relu, _ in cases:
            await b.clear(dst=True)
            await b.writeback([(3, True, acc)], shift, relu)
            await b.set_src(1 - b.src)
            seen.append((await b.host_read([3]))[0])
            await b.set_src(1 - b.src)

    run_sim(dut, tb)
    assert seen == [c[3] for c in cases]


def test_actrw_host_input_lists_and_banks():
    """Host writes go to the source bank (zeros not listed), rd_data four cycles after
    rd_local, each bank keeps its own data and list, clear_src/clear_dst empty one list."""
    rng = np.random.default_rng(5)
    dut = make_actrw(48)

    def values(n):
        v = rng.integers(ACT_LO, ACT_HI + 1, n)
        v[rng.random(n) < 0.4] = 0
        v[:2] = [ACT_LO, ACT_HI]
        return [int(x) for x in v]

    async def tb(ctx):
        b = ActBench(ctx, dut)
        for bank in (0, 1):
            await b.set_src(bank)
            await b.clear(src=True)
            locals_ = [int(x) for x in rng.permutation(ACT_DEPTH)[:12]]
            await b.host_write(list(zip(locals_, values(12))))
            await b.check_source()
        # Bank 0 is unaffected by bank 1's clear and writes.
        await b.set_src(0)
        await b.check_source()
        # Reading in random order, including repeats.
        order = [int(x) for x in rng.integers(0, ACT_DEPTH, 30)]
        assert await b.host_read(order) == [b.data[0][i] for i in order]
        # clear_dst (bank 1) leaves the source list alone and empties bank 1's list.
        await b.clear(dst=True)
        assert b.nz[0] and await b.walk() == b.nz[0]
        await b.set_src(1)
        assert await b.walk() == []
        # clear_src (bank 1 now) leaves bank 0's list alone.
        await b.host_write([(4, 99), (2, -1)])
        assert await b.walk() == [(4, 99), (2, -1)]
        await b.clear(src=True)
        assert await b.walk() == []
        await b.set_src(0)
        await b.check_source()
        # A list can be walked again after a rewind, and refilled after a clear.
        assert await b.walk() == b.nz[0]
        await b.clear(src=True)
        await b.host_write([(0, 0), (7, 5), (15, -32768), (1, 0)])
        await b.check_source()
        assert b.nz[0] == [(7, 5), (15, -32768)]

    run_sim(dut, tb)


def test_actrw_wb_keep_and_source_head_during_writeback():
    """wb_keep=0 rows leave the destination untouched and unlisted; write-back does not
    disturb the source bank's data or its list head."""
    dut = make_actrw(32)

    async def tb(ctx):
        b = ActBench(ctx, dut)
        await b.set_src(1)
        await b.host_write([(i, 100 + i) for i in range(ACT_DEPTH)])    # bank 1: all non-zero
        await b.set_src(0)
        await b.clear(src=True)
        await b.host_write([(2, 7), (9, -8)])
        # head of the source list, then a write-back into bank 1
        ctx.set(dut.nz_rewind, 1)
        await ctx.tick()
        ctx.set(dut.nz_rewind, 0)
        for _ in range(LIST_LATENCY - 1):
            await ctx.tick()
        nz = dut.nz
        head = (ctx.get(nz.valid), ctx.get(nz.payload.local), ctx.get(nz.payload.value))
        assert head == (1, 2, 7)
        await b.clear(dst=True)
        items = [(r, r % 3 != 2, (r - 4) * 1000) for r in range(ACT_DEPTH)]
        await b.writeback(items, 0, False)
        assert (ctx.get(nz.valid), ctx.get(nz.payload.local), ctx.get(nz.payload.value)) == head
        await b.check_source()
        await b.set_src(1)
        await b.check_source()
        # rows r % 3 == 2 kept their host values; the list skips them (and row 4 = 0)
        assert [b.data[1][r] for r in (2, 4, 5, 8, 10)] == [102, 0, 105, 108, 6000]
        assert [l for l, _ in b.nz[1]] == [r for r in range(ACT_DEPTH) if r % 3 != 2 and r != 4]

    run_sim(dut, tb)
