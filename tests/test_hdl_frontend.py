"""RTL front end of a PE: activation queue, column issue unit and the LNZD tree.

Every test compares the simulated RTL against an independent Python model written from
docs/cycle-model.md (and, for the issue unit, also against the golden recurrence in
`golden_model/cycle_model.py`), cycle by cycle.

Conventions of the testbenches: in each loop iteration = clock cycle c, the inputs for
cycle c are set first, the (settled, combinational) outputs of cycle c are read with
`ctx.get`, then `await ctx.tick()` ends the cycle. In an Amaranth 0.5 testbench `ctx.set`
settles the combinational logic before returning, so `ctx.get` right after it sees the
new values (test_testbench_reads_settled_comb_logic checks this assumption).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from eie.golden_model.config import Timing, lnzd_levels
from eie.golden_model.cycle_model import simulate_batch
from eie.hdl.act_queue import ActivationQueue
from eie.hdl.issue import ColumnIssue
from eie.hdl.lnzd import LNZD, Head, LNZDNode
from eie.hdl.params import ACT_BITS, ArrayParams, bits_for
from eie.hdl.reg_fifo import RegisterFIFO

# The constructor tests leave half-built components behind; their "never used" warning
# fires at garbage collection, possibly inside another test.
pytestmark = [pytest.mark.sim, pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

PARAMS = ArrayParams(n_pe=4, act_depth=64)
ITEM = PARAMS.act_item
ACT_MIN, ACT_MAX = -(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1


def run_sim(dut, testbench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def rand_act(rng, size=None):
    """Random non-zero 16-bit activations (extremes included now and then)."""
    v = rng.integers(ACT_MIN, ACT_MAX + 1, size=size)
    if size is None:
        return int(v) if v != 0 else 1
    v = np.where(v == 0, 1, v)
    ext = rng.random(size) < 0.1
    v = np.where(ext, rng.choice([ACT_MIN, ACT_MAX, -1, 1], size=size), v)
    return [int(x) for x in v]


# ------------------------------------------------------------------------------------
# Activation queue
# ------------------------------------------------------------------------------------

class QueueModel:
    """docs/cycle-model.md "Clocking conventions": FWFT, room = level < D at cycle start."""

    def __init__(self, depth):
        self.depth = depth
        self.items = []

    @property
    def room(self):
        return len(self.items) < self.depth

    @property
    def valid(self):
        return len(self.items) > 0

    def clock(self, push, item, pop):
        """End of a cycle: the state the next cycle starts from."""
        assert not push or self.room
        popped = self.items.pop(0) if pop and self.items else None
        if push:
            self.items.append(item)
        return popped


def test_testbench_reads_settled_comb_logic():
    """The testbench convention this file relies on: ctx.get after ctx.set is settled
    (here: which child an LNZD node takes from, a combinational function of its inputs)."""
    dut = LNZDNode(Head(4, 2), 2)

    async def tb(ctx):
        for n, (m, v, pe) in enumerate([(9, 5, 1), (3, -7, 2)]):
            ctx.set(dut.children[n].valid, 1)
            ctx.set(dut.children[n].payload, {"local": m, "value": v, "pe": pe})
        assert ctx.get(dut.children[1].ready) == 1 and ctx.get(dut.children[0].ready) == 0
        ctx.set(dut.children[1].payload.local, 10)
        assert ctx.get(dut.children[0].ready) == 1 and ctx.get(dut.children[1].ready) == 0

    run_sim(dut, tb, clock=False)


@pytest.mark.parametrize("depth", [0, -1, 2.0, "3", None])
def test_act_queue_rejects_bad_depth(depth):
    with pytest.raises(TypeError):
        ActivationQueue(ITEM, depth)


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
@pytest.mark.parametrize("p_push,p_pop", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (0.85, 0.85)])
def test_act_queue_matches_model(depth, p_push, p_pop):
    seed = depth * 1000 + int(p_push * 100) * 10 + int(p_pop * 100)
    rng = np.random.default_rng(seed)
    n_cycles = 250
    dut = ActivationQueue(ITEM, depth)
    model = QueueModel(depth)
    pushed, popped = [], []
    full_cycles = [0]

    async def tb(ctx):
        for c in range(n_cycles):
            # bursts: sometimes stop popping for a while so the queue fills up
            phase = (c // 40) % 3
            pp = p_pop if phase != 1 else 0.05
            ready = bool(rng.random() < pp)
            want_push = bool(rng.random() < p_push)

            # room is an output of the cycle start: it must not depend on this cycle's pop
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.room) == model.room, f"cycle {c}: room"
            assert ctx.get(dut.level) == len(model.items), f"cycle {c}: level"
            push = want_push and model.room
            item = {"index": int(rng.integers(0, 1 << PARAMS.index_bits)), "value": rand_act(rng)}
            ctx.set(dut.push, push)
            ctx.set(dut.push_data, item)
            # a push in this cycle is not visible before the next one
            assert ctx.get(dut.o.valid) == model.valid, f"cycle {c}: valid"
            assert ctx.get(dut.room) == model.room, f"cycle {c}: room after push/pop set"
            if model.valid:
                got = ctx.get(dut.o.payload)
                assert (got.index, got.value) == (model.items[0]["index"], model.items[0]["value"]), \
                    f"cycle {c}: payload"
            full_cycles[0] += not model.room
            if push:
                pushed.append((item["index"], item["value"]))
            out = model.clock(push, item, ready)
            if out is not None:
                popped.append((out["index"], out["value"]))
            await ctx.tick()

    run_sim(dut, tb)
    assert popped == pushed[:len(popped)]
    assert len(popped) > 30
    assert full_cycles[0] > 0, "the test never filled the queue"


def test_act_queue_pop_when_full_does_not_make_room_same_cycle():
    """Hand-written corner case: full queue, pop and (illegal-looking) push attempt."""
    dut = ActivationQueue(ITEM, 2)

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.room) == 1 and ctx.get(dut.o.valid) == 0
        ctx.set(dut.push, 1)
        ctx.set(dut.push_data, {"index": 5, "value": -3})
        assert ctx.get(dut.o.valid) == 0          # not visible in the push cycle
        await ctx.tick()
        ctx.set(dut.push_data, {"index": 6, "value": 4})
        assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload.index) == 5
        assert ctx.get(dut.room) == 1
        await ctx.tick()
        ctx.set(dut.push, 0)
        assert ctx.get(dut.room) == 0 and ctx.get(dut.level) == 2
        ctx.set(dut.o.ready, 1)                   # pop while full
        assert ctx.get(dut.room) == 0             # ... does not make room this cycle
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.room) == 1 and ctx.get(dut.level) == 1
        assert ctx.get(dut.o.payload.index) == 6 and ctx.get(dut.o.payload.value) == 4

    run_sim(dut, tb)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("p_push,p_pop", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (0.95, 0.95)])
def test_register_fifo_matches_the_queue_model(depth, p_push, p_pop):
    """The LNZD's register FIFO behaves like SyncFIFO (the queue model), pushing even
    when full (ignored) and popping when empty (ignored)."""
    rng = np.random.default_rng(depth * 100 + int(p_push * 10) + int(p_pop * 50))
    dut = RegisterFIFO(width=12, depth=depth)
    model = QueueModel(depth)
    full = [0]

    async def tb(ctx):
        for c in range(300):
            stalled = (c // 30) % 3 == 1                  # bursts without reads: the FIFO fills
            push, pop = bool(rng.random() < p_push), bool(rng.random() < (0.05 if stalled else p_pop))
            item = int(rng.integers(0, 1 << 12))
            ctx.set(dut.w_en, push)
            ctx.set(dut.w_data, item)
            ctx.set(dut.r_en, pop)
            assert ctx.get(dut.w_rdy) == model.room and ctx.get(dut.r_rdy) == model.valid, f"cycle {c}"
            assert ctx.get(dut.level) == len(model.items)
            if model.valid:
                assert ctx.get(dut.r_data) == model.items[0], f"cycle {c}: head"
            full[0] += not model.room
            model.clock(push and model.room, item, pop)
            await ctx.tick()

    run_sim(dut, tb)
    assert full[0] > 0


# ------------------------------------------------------------------------------------
# Column issue unit
# ------------------------------------------------------------------------------------

class QueueIssue(Elaboratable):
    """ActivationQueue -> ColumnIssue, as in a PE (the pointer memory is the testbench)."""

    def __init__(self, depth):
        self.q = ActivationQueue(ITEM, depth)
        self.iss = ColumnIssue(ITEM, ptr_addr_bits=PARAMS.ptr_addr_bits, entry_bits=PARAMS.entry_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = self.q
        m.submodules.iss = self.iss
        wiring.connect(m, self.q.o, self.iss.i)
        return m


POINTER_LATENCY = Timing().pointer_latency   # pop in cycle P, first issue in P + 2 at the earliest


def issue_schedule(B, n):
    """One PE's pops and first issue cycles (docs/cycle-model.md), c = max(1, n):
    P[t] = max(B[t] + 1, S[t-1] - 1)      the column register is free when the pointers land
    S[t] = max(P[t] + 2, S[t-1] + c[t-1])  the issue stage takes it when its column is done"""
    P, S = [], []
    prev_s = free = -(10 ** 9)
    for b, cnt in zip(B, n):
        p = max(b + 1, prev_s - POINTER_LATENCY + 1)
        st_ = max(p + POINTER_LATENCY, free)
        P.append(p)
        S.append(st_)
        prev_s, free = st_, st_ + max(1, cnt)
    return P, S


def expected_issue(S, starts, counts, acts):
    """cycle -> (entry, first, act) for every active cycle; (None, None, None) for a
    bubble (`first` and `act` qualify an issued entry, so they are not checked there)."""
    exp = {}
    for s0, s, n, a in zip(S, starts, counts, acts):
        if n == 0:
            exp[s0] = (None, None, None)
        for e in range(n):
            assert s0 + e not in exp
            exp[s0 + e] = (s + e, e == 0, a)
    return exp


def run_issue(items, B, pmem, base, depth=None, check_room_stalls=False):
    """Push item t at cycle B[t] (queue of `depth`) or, with depth None, drive the issue
    unit's stream directly with item t valid from B[t] + 1 until popped. The testbench
    is the pointer memory: p[a], p[a+1] the cycle after ptr_en, held otherwise.

    Returns per-cycle observations: pops {cycle: ptr_addr}, issue trace {cycle: ...}.
    """
    T = len(items)
    if depth is None:
        dut = ColumnIssue(ITEM, ptr_addr_bits=PARAMS.ptr_addr_bits, entry_bits=PARAMS.entry_bits)
        iss = dut
    else:
        dut = QueueIssue(depth)
        iss = dut.iss
    push_at = {int(b): t for t, b in enumerate(B)}
    assert len(push_at) == T
    pops, trace, room_seen = {}, {}, {}
    counts = [int(pmem[base + j + 1] - pmem[base + j]) for j, _ in items]
    horizon = int(max(B)) + 3 + sum(max(1, n) for n in counts) + 4 if T else 6

    async def tb(ctx):
        ctx.set(iss.base, base)
        last_addr = None
        nxt = 0                                   # direct mode: next item to present
        for c in range(horizon):
            if last_addr is not None:             # pointer memory: read data this cycle
                ctx.set(iss.ptr_start, int(pmem[last_addr]))
                ctx.set(iss.ptr_end, int(pmem[last_addr + 1]))
                ctx.set(iss.ptr_count, min(int(pmem[last_addr + 1] - pmem[last_addr]), 3))
            if depth is None:
                if nxt < T and B[nxt] + 1 <= c:
                    j, v = items[nxt]
                    ctx.set(iss.i.payload, {"index": j, "value": v})
                    ctx.set(iss.i.valid, 1)
                else:
                    # garbage payload while not valid
                    ctx.set(iss.i.payload, {"index": (c * 7) % 64, "value": -c})
                    ctx.set(iss.i.valid, 0)
            else:
                room_seen[c] = ctx.get(dut.q.room)
                if c in push_at:
                    j, v = items[push_at[c]]
                    assert room_seen[c], f"cycle {c}: push of item {push_at[c]} without room"
                    ctx.set(dut.q.push_data, {"index": j, "value": v})
                    ctx.set(dut.q.push, 1)
                else:
                    ctx.set(dut.q.push, 0)
            en = ctx.get(iss.ptr_en)
            assert en == (ctx.get(iss.i.valid) and ctx.get(iss.i.ready)), f"cycle {c}: ptr_en != pop"
            if en:
                pops[c] = ctx.get(iss.ptr_addr)
                nxt += 1
            last_addr = pops[c] if en else None
            if ctx.get(iss.active):
                if ctx.get(iss.issued.valid):
                    trace[c] = (ctx.get(iss.issued.entry), bool(ctx.get(iss.issued.first)), ctx.get(iss.issued.act))
                else:
                    trace[c] = (None, None, None)     # a bubble
            else:
                assert not ctx.get(iss.issued.valid), f"cycle {c}: issue without active"
            await ctx.tick()

    run_sim(dut, tb)
    return pops, trace, room_seen, counts


def check_issue(items, B, pmem, base, pops, trace, counts):
    P, S = issue_schedule(B, counts)
    starts = [int(pmem[base + j]) for j, _ in items]
    acts = [v for _, v in items]
    assert pops == {p: base + j for p, (j, _) in zip(P, items)}, "pop cycles / pointer addresses"
    exp = expected_issue(S, starts, counts, acts)
    assert sorted(trace) == sorted(exp), "active cycles"
    for c in sorted(exp):
        assert trace[c] == exp[c], f"cycle {c}: (entry, first, act)"
    # the entries, in order, are exactly every column's entries back to back
    issued = [trace[c][0] for c in sorted(trace) if trace[c][0] is not None]
    assert issued == [s + e for s, n in zip(starts, counts) for e in range(n)]
    return P


def random_columns(rng, n_cols):
    """Entry counts with many empty and one-entry columns and a few long ones."""
    kind = rng.random(n_cols)
    counts = np.where(kind < 0.4, 0, np.where(kind < 0.65, 1, rng.integers(2, 6, n_cols)))
    counts = np.where(kind > 0.93, rng.integers(12, 40, n_cols), counts)
    return counts


def random_pointer_memory(rng, n_cols):
    base = int(rng.integers(0, (1 << PARAMS.ptr_addr_bits) - n_cols - 1))
    counts = random_columns(rng, n_cols)
    first = int(rng.integers(0, 1000))
    p = first + np.concatenate([[0], np.cumsum(counts)])
    pmem = np.zeros((1 << PARAMS.ptr_addr_bits) + 1, dtype=np.int64)
    # pointers outside this batch's columns are garbage (never read)
    pmem[:] = rng.integers(0, 1 << PARAMS.entry_bits, pmem.size)
    pmem[base:base + n_cols + 1] = p
    assert p[-1] < (1 << PARAMS.entry_bits)
    return base, pmem


def random_items(rng, n_cols, T):
    js = sorted(rng.choice(n_cols, size=T, replace=False).tolist())
    return list(zip(js, rand_act(rng, T)))


def test_issue_worked_example():
    """docs/cycle-model.md worked example: one PE, D = 8, n = [0, 0, 3, 0]."""
    items = [(0, 11), (1, -22), (2, 33), (3, -44)]
    base = 100
    pmem = np.zeros(4097, dtype=np.int64)
    pmem[base:base + 5] = [40, 40, 40, 43, 43]
    B = [4, 5, 6, 7]
    pops, trace, _, counts = run_issue(items, B, pmem, base, depth=8)
    assert sorted(pops) == [5, 6, 7, 8]
    assert trace == {7: (None, None, None), 8: (None, None, None), 9: (40, True, 33),
                     10: (41, False, 33), 11: (42, False, 33), 12: (None, None, None)}
    assert max(trace) + 1 == 13       # compute = 13


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["queue", "direct"])
def test_issue_random_arrivals(seed, mode):
    """Arbitrary broadcast cycles (gaps and bursts) into a queue that never fills."""
    rng = np.random.default_rng(100 + seed)
    n_cols = 60
    T = int(rng.integers(15, 35))
    base, pmem = random_pointer_memory(rng, n_cols)
    items = random_items(rng, n_cols, T)
    gaps = np.where(rng.random(T) < 0.6, 1, rng.integers(2, 30, T))
    B = (int(rng.integers(0, 4)) + np.cumsum(gaps) - gaps[0]).tolist()
    pops, trace, _, counts = run_issue(items, B, pmem, base, depth=T if mode == "queue" else None)
    P = check_issue(items, B, pmem, base, pops, trace, counts)
    # a sanity check that the case is interesting
    assert counts.count(0) > 0 and counts.count(1) > 0
    assert any(p > b + 1 for p, b in zip(P, B)) and any(p == b + 1 for p, b in zip(P[1:], B[1:]))


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
@pytest.mark.parametrize("seed", range(2))
def test_issue_with_full_queue_matches_golden_recurrence(depth, seed):
    """One PE, broadcasts as fast as the golden model allows with a queue of `depth`:
    B and P from `simulate_batch`; the queue must have room at every B[t], must be full
    in every stall cycle, and the pops and issues must follow P."""
    rng = np.random.default_rng(200 + 10 * depth + seed)
    n_cols = 50
    T = 30
    base, pmem = random_pointer_memory(rng, n_cols)
    items = random_items(rng, n_cols, T)
    counts = np.array([pmem[base + j + 1] - pmem[base + j] for j, _ in items])
    tm = Timing(list_latency=int(rng.integers(0, 3)))
    Bg, Pg, Sg, compute = simulate_batch(counts[:, None], depth, tm)
    B = Bg.tolist()
    assert issue_schedule(B, counts.tolist()) == (Pg[:, 0].tolist(), Sg[:, 0].tolist())   # the two models agree
    pops, trace, room, counts2 = run_issue(items, B, pmem, base, depth=depth)
    P = check_issue(items, B, pmem, base, pops, trace, counts2)
    assert P == Pg[:, 0].tolist()
    assert max(trace) + 1 == compute
    # a stall before broadcast t: item t - D has not come back as a credit (popped at least
    # room_latency cycles before), whether or not the queue itself has room yet
    for t in range(1, T):
        for c in range(B[t - 1] + 1, B[t]):
            assert t >= depth and P[t - depth] + 1 + tm.room_latency > c, f"cycle {c}: needless stall"
    if depth <= 3:
        assert any(B[t] > B[t - 1] + 1 for t in range(1, T)), "the case never fills the queue"


# ------------------------------------------------------------------------------------
# LNZD
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 5, -1])
def test_lnzd_node_rejects_bad_child_count(n):
    with pytest.raises(TypeError):
        LNZDNode(Head(4, 2), n)


class ListSource:
    """A sorted list presented as a stream with `done`, as a PE's prefetch buffer does:
    with `gaps`, valid drops now and then while items remain (a slow source)."""

    def __init__(self, items, rng=None, gaps=0.0):
        self.items, self.rng, self.gaps, self.pos = list(items), rng, gaps, 0

    def drive(self, ctx, port, done_port, done_bit):
        """Set this cycle's valid/payload/done (done_port: the node's done vector)."""
        ready_now = self.pos < len(self.items) and not (self.gaps and self.rng.random() < self.gaps)
        ctx.set(port.valid, int(ready_now))
        if self.pos < len(self.items):
            ctx.set(port.payload, self.items[self.pos])
        self.offered = ready_now
        return (self.pos >= len(self.items)) << done_bit

    def after(self, ctx, port):
        """Call after the cycle's outputs are read: an item offered and taken advances."""
        if self.offered and ctx.get(port.ready):
            self.pos += 1


def stable_merge(lists, key):
    """Merge sorted lists; ties go to the lower list (the LNZD's tie rule)."""
    out = [(key(x), n, i, x) for n, lst in enumerate(lists) for i, x in enumerate(lst)]
    return [x for *_, x in sorted(out, key=lambda t: t[:3])]


def run_merge(dut, inputs, done_port, lists, rng, gaps, p_take, horizon, payload_of):
    """Drive sorted `lists` into the stream `inputs` (with `done_port`), take `dut.out`
    with probability `p_take` per cycle until `dut.done`; returns the items taken (by
    `payload_of`) and the cycles they were taken in."""
    out, out_cycles = [], []

    async def tb(ctx):
        srcs = [ListSource(lst, rng, gaps) for lst in lists]
        for c in range(horizon):
            done = 0
            for n, src in enumerate(srcs):
                done |= src.drive(ctx, inputs[n], done_port, n)
            ctx.set(done_port, done)
            take = int(rng.random() < p_take)
            ctx.set(dut.out.ready, take)
            if ctx.get(dut.done):
                break
            if take and ctx.get(dut.out.valid):
                out.append(payload_of(ctx.get(dut.out.payload)))
                out_cycles.append(c)
            for n, src in enumerate(srcs):
                src.after(ctx, inputs[n])
            await ctx.tick()
        else:
            raise AssertionError("the merge never reported done")

    run_sim(dut, tb)
    return out, out_cycles


@pytest.mark.parametrize("n_children", [1, 2, 3, 4])
@pytest.mark.parametrize("gaps,p_ready", [(0.0, 1.0), (0.3, 1.0), (0.0, 0.5), (0.4, 0.6)])
def test_lnzd_node_merges_in_order(n_children, gaps, p_ready):
    """Sorted child lists (many ties, some empty) with random stalls of the children and
    of the parent: the node's output is their stable merge by m. Without stalls it passes
    one item per cycle from cycle 1 on (one register stage)."""
    rng = np.random.default_rng(300 + n_children + int(100 * gaps) + int(10 * p_ready))
    layout = Head(4, 3)
    dut = LNZDNode(layout, n_children)
    lists = []
    for n in range(n_children):
        size = int(rng.integers(0, 25)) if n != 1 else 0 if n_children > 2 else 3
        local = np.sort(rng.integers(0, 6 if n % 2 else 16, size))             # many ties
        lists.append([{"local": int(m), "value": rand_act(rng), "pe": n} for m in local])
    want = stable_merge(lists, key=lambda h: h["local"])
    out, out_cycles = run_merge(dut, dut.children, dut.children_done, lists, rng, gaps, p_ready,
                                40 * (len(want) + 2),
                                lambda p: {"local": p.local, "value": p.value, "pe": p.pe})
    assert out == want
    if gaps == 0 and p_ready == 1 and want:
        assert out_cycles == list(range(1, 1 + len(want)))


def lnzd_dut(n_pe, local_bits, leaf_slice=False):
    return LNZD(n_pe, local_bits, bits_for(n_pe * (1 << local_bits) - 1), leaf_slice=leaf_slice)


@pytest.mark.parametrize("n_pe,go_rate,gaps,leaf_slice", [
    (1, 1.0, 0.0, False), (3, 1.0, 0.0, False), (4, 0.6, 0.0, False), (5, 1.0, 0.0, False),
    (16, 1.0, 0.0, False), (16, 0.7, 0.2, False), (17, 1.0, 0.0, False),
    (64, 0.6, 0.0, False), (64, 1.0, 0.0, False), (64, 0.8, 0.3, False),
    (1, 1.0, 0.0, True), (5, 1.0, 0.0, True), (16, 0.7, 0.2, True), (64, 1.0, 0.0, True), (64, 0.8, 0.3, True)])
def test_lnzd_walk(n_pe, go_rate, gaps, leaf_slice):
    """Each PE k holds the sorted local indices m of the non-zeros a[m * N + k]; the LNZD
    must broadcast np.flatnonzero(a) in order. With the lists' streams always valid and
    the root always taken, the first broadcast comes `levels` cycles after the lists are
    ready (one more behind a leaf slice) and then one per cycle (the cycle model's one
    broadcast per cycle)."""
    rng = np.random.default_rng(500 + n_pe + int(1000 * go_rate) + int(100 * gaps))
    local_bits = 4
    n = int(rng.integers(n_pe * (1 << local_bits) // 2, n_pe * (1 << local_bits) + 1))
    a = np.where(rng.random(n) < 0.3, rand_act(rng, n), 0)
    if n_pe >= 4:
        a[n_pe * 2:n_pe * 3] = rand_act(rng, n_pe)    # a dense stretch: ties on m
    lists = [[{"local": m, "value": int(a[m * n_pe + k])} for m in range((n - k + n_pe - 1) // n_pe)
              if a[m * n_pe + k]] for k in range(n_pe)]
    dut = lnzd_dut(n_pe, local_bits, leaf_slice)
    out, out_cycles = run_merge(dut, dut.heads, dut.heads_done, lists, rng, gaps, go_rate, 6 * n + 20,
                                lambda p: (p.index, p.value))
    nz = np.flatnonzero(a)
    assert [j for j, _ in out] == nz.tolist()
    assert [v for _, v in out] == a[nz].tolist()
    if go_rate == 1 and gaps == 0:
        first = lnzd_levels(n_pe) + int(leaf_slice)
        assert out_cycles == list(range(first, first + len(nz)))
