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

from eie.golden_model.cycle_model import simulate_batch
from eie.hdl.act_queue import ActivationQueue
from eie.hdl.issue import ColumnIssue
from eie.hdl.lnzd import LNZD, Head, LNZDNode
from eie.hdl.params import ACT_BITS, ArrayParams, bits_for

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
    """The testbench convention this file relies on: ctx.get after ctx.set is settled."""
    dut = LNZDNode(Head(4, 2), 2)

    async def tb(ctx):
        ctx.set(dut.children, [{"valid": 1, "local": 9, "value": 5, "pe": 1},
                               {"valid": 1, "local": 3, "value": -7, "pe": 2}])
        ctx.set(dut.grant, 1)
        assert ctx.get(dut.out.local) == 3 and ctx.get(dut.out.value) == -7
        assert ctx.get(dut.grants) == 0b10
        ctx.set(dut.children[1].local, 10)
        assert ctx.get(dut.out.local) == 9 and ctx.get(dut.out.pe) == 1
        assert ctx.get(dut.grants) == 0b01

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


def pop_cycles(B, n):
    """P[t] = max(B[t] + 1, P[t-1] + c[t-1]), c = max(1, n) (docs/cycle-model.md)."""
    P, free = [], 0
    for b, cnt in zip(B, n):
        p = max(b + 1, free)
        P.append(p)
        free = p + max(1, cnt)
    return P


def expected_issue(P, starts, counts, acts):
    """cycle -> (entry, first, act) for every active cycle; (None, None, None) for a
    bubble (`first` and `act` qualify an issued entry, so they are not checked there)."""
    exp = {}
    for p, s, n, a in zip(P, starts, counts, acts):
        if n == 0:
            exp[p + 1] = (None, None, None)
        for e in range(n):
            assert p + 1 + e not in exp
            exp[p + 1 + e] = (s + e, e == 0, a)
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
    horizon = int(max(B)) + 2 + sum(max(1, n) for n in counts) + 4 if T else 6

    async def tb(ctx):
        ctx.set(iss.base, base)
        last_addr = None
        nxt = 0                                   # direct mode: next item to present
        for c in range(horizon):
            if last_addr is not None:             # pointer memory: read data this cycle
                ctx.set(iss.ptr_start, int(pmem[last_addr]))
                ctx.set(iss.ptr_end, int(pmem[last_addr + 1]))
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
                if ctx.get(iss.issue):
                    trace[c] = (ctx.get(iss.entry), bool(ctx.get(iss.first)), ctx.get(iss.act))
                else:
                    trace[c] = (None, None, None)     # a bubble
            else:
                assert not ctx.get(iss.issue), f"cycle {c}: issue without active"
            await ctx.tick()

    run_sim(dut, tb)
    return pops, trace, room_seen, counts


def check_issue(items, B, pmem, base, pops, trace, counts):
    P = pop_cycles(B, counts)
    starts = [int(pmem[base + j]) for j, _ in items]
    acts = [v for _, v in items]
    assert pops == {p: base + j for p, (j, _) in zip(P, items)}, "pop cycles / pointer addresses"
    exp = expected_issue(P, starts, counts, acts)
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
    B = [1, 2, 3, 4]
    pops, trace, _, counts = run_issue(items, B, pmem, base, depth=8)
    assert sorted(pops) == [2, 3, 4, 7]
    assert trace == {3: (None, None, None), 4: (None, None, None), 5: (40, True, 33),
                     6: (41, False, 33), 7: (42, False, 33), 8: (None, None, None)}
    assert max(trace) + 1 == 9        # compute = 9


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
    lat = int(rng.integers(0, 3))
    Bg, Pg, compute = simulate_batch(counts[:, None], depth, lnzd_latency=lat)
    B = Bg.tolist()
    assert pop_cycles(B, counts.tolist()) == Pg[:, 0].tolist()   # the two models agree
    pops, trace, room, counts2 = run_issue(items, B, pmem, base, depth=depth)
    P = check_issue(items, B, pmem, base, pops, trace, counts2)
    assert P == Pg[:, 0].tolist()
    assert max(trace) + 1 == compute
    stalls = [c for t in range(1, T) for c in range(B[t - 1] + 1, B[t])]
    for c in stalls:
        assert not room[c], f"cycle {c}: stall cycle but the queue has room"
    if depth <= 3:
        assert stalls, "the case never fills the queue"


# ------------------------------------------------------------------------------------
# LNZD
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 5, -1])
def test_lnzd_node_rejects_bad_child_count(n):
    with pytest.raises(TypeError):
        LNZDNode(Head(4, 2), n)


@pytest.mark.parametrize("n_children", [1, 2, 3, 4])
def test_lnzd_node(n_children):
    rng = np.random.default_rng(300 + n_children)
    layout = Head(4, 3)
    dut = LNZDNode(layout, n_children)

    async def tb(ctx):
        for it in range(300):
            p_valid = [0.0, 0.3, 0.7, 1.0][it % 4]
            kids = [{"valid": int(rng.random() < p_valid),
                     "local": int(rng.integers(0, 3 if it % 2 else 16)),     # many ties
                     "value": rand_act(rng), "pe": int(rng.integers(0, 8))}
                    for _ in range(n_children)]
            grant = int(rng.random() < 0.7)
            ctx.set(dut.children, kids)
            ctx.set(dut.grant, grant)
            cands = [(k["local"], i) for i, k in enumerate(kids) if k["valid"]]
            assert ctx.get(dut.out.valid) == bool(cands)
            if cands:
                win = min(cands)[1]
                out = ctx.get(dut.out)
                assert (out.local, out.value, out.pe) == \
                    (kids[win]["local"], kids[win]["value"], kids[win]["pe"]), (kids, win)
                assert ctx.get(dut.grants) == (grant << win)
            else:
                assert ctx.get(dut.grants) == 0

    run_sim(dut, tb, clock=False)


def lnzd_dut(n_pe, local_bits):
    return LNZD(n_pe, local_bits, bits_for(n_pe * (1 << local_bits) - 1))


@pytest.mark.parametrize("n_pe", [1, 2, 3, 4, 5, 8, 16, 64])
def test_lnzd_random_heads(n_pe):
    rng = np.random.default_rng(400 + n_pe)
    local_bits = 5
    dut = lnzd_dut(n_pe, local_bits)
    n_vec = 150 if n_pe <= 16 else 80

    async def tb(ctx):
        for it in range(n_vec):
            p_valid = [0.0, 0.05, 0.3, 0.8, 1.0][it % 5]
            valid = (rng.random(n_pe) < p_valid).astype(int)
            if it % 5 == 1 and not valid.any():
                valid[rng.integers(0, n_pe)] = 1              # exactly one-ish valid head
            hi = [2, 4, 1 << local_bits][it % 3]                 # many ties on m
            local = rng.integers(0, hi, n_pe)
            if it % 7 == 0:
                local[:] = (1 << local_bits) - 1                  # all at the maximum m
            value = rand_act(rng, n_pe)
            go = int(rng.random() < 0.6)
            ctx.set(dut.heads, [{"local": int(local[k]), "value": value[k]} for k in range(n_pe)])
            ctx.set(dut.heads_valid, int(sum(int(v) << k for k, v in enumerate(valid))))
            ctx.set(dut.go, go)
            js = [int(local[k]) * n_pe + k for k in range(n_pe) if valid[k]]
            assert ctx.get(dut.valid) == bool(js)
            if js:
                j = min(js)
                k = j % n_pe
                assert ctx.get(dut.index) == j
                assert ctx.get(dut.value) == value[k]
                assert ctx.get(dut.pops) == (go << k)
            else:
                assert ctx.get(dut.pops) == 0

    run_sim(dut, tb, clock=False)


@pytest.mark.parametrize("n_pe,always_go", [(1, True), (3, True), (4, False), (5, True),
                                             (16, True), (64, False), (64, True)])
def test_lnzd_walk(n_pe, always_go):
    """Each PE k holds the sorted local indices m of the non-zeros a[m * N + k]; the LNZD
    must broadcast np.flatnonzero(a) in order, one per `go` cycle."""
    rng = np.random.default_rng(500 + n_pe + 1000 * always_go)
    local_bits = 4
    n = int(rng.integers(n_pe * (1 << local_bits) // 2, n_pe * (1 << local_bits) + 1))
    a = np.where(rng.random(n) < 0.3, rand_act(rng, n), 0)
    if n_pe >= 4:
        a[n_pe * 2:n_pe * 3] = rand_act(rng, n_pe)    # a dense stretch: ties on m
    lists = [[(m, int(a[m * n_pe + k])) for m in range((n - k + n_pe - 1) // n_pe) if a[m * n_pe + k]]
             for k in range(n_pe)]
    dut = lnzd_dut(n_pe, local_bits)
    out = []

    async def tb(ctx):
        ptr = [0] * n_pe
        idle = 0
        for c in range(4 * n + 10):
            heads = [lst[p] if p < len(lst) else (0, 0) for lst, p in zip(lists, ptr)]
            valid = [p < len(lst) for lst, p in zip(lists, ptr)]
            go = 1 if always_go else int(rng.random() < 0.6)
            ctx.set(dut.heads, [{"local": m, "value": v} for m, v in heads])
            ctx.set(dut.heads_valid, sum(int(v) << k for k, v in enumerate(valid)))
            ctx.set(dut.go, go)
            if not any(valid):
                assert not ctx.get(dut.valid) and ctx.get(dut.pops) == 0
                break
            assert ctx.get(dut.valid)
            pops = ctx.get(dut.pops)
            if go:
                out.append((ctx.get(dut.index), ctx.get(dut.value)))
                assert pops != 0 and pops & (pops - 1) == 0, f"pops {pops:#x} not one-hot"
                k = pops.bit_length() - 1
                assert valid[k]
                ptr[k] += 1
            else:
                idle += 1
                assert pops == 0
        else:
            raise AssertionError("the walk did not finish")
        # always go: exactly one broadcast per cycle
        assert c == len(out) + idle

    run_sim(dut, tb, clock=False)
    nz = np.flatnonzero(a)
    assert [j for j, _ in out] == nz.tolist()
    assert [v for _, v in out] == a[nz].tolist()
