"""Cycle model: against an independent cycle-by-cycle simulation of the FIFOs and PE
front-ends (docs/cycle-model.md), plus invariants and the corner cases."""

from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eie.golden_model import encode_network
from eie.golden_model.config import EIEConfig, Timing, lnzd_levels
from eie.golden_model.cycle_model import batch_lengths, cycle_report, simulate_batch
from eie.golden_model.errors import ConfigError
from eie.golden_model.functional import run_network
from eie.golden_model.model import run_image

from .helpers import sparse_matrix


def per_cycle_sim(entries, depth, timing=Timing()):
    """Explicit per-cycle state machine of the RTL's front end (docs/rtl.md), independent
    of the recurrence: a broadcaster with one credit counter per PE (D at the start; a pop
    comes back one cycle later and is a credit again the cycle after that) that decides in
    cycle c and writes every queue in c + 1 (the broadcast registers); SyncFIFO queues
    (a write visible the next cycle; never written when full); and per PE a pointer read
    (data one cycle after the pop), a column register and an issue stage. A PE pops when
    the column register will be free, or taken by the issue stage, when the pointers land."""
    assert timing.pointer_latency == 2, "the RTL's pointer read: one cycle in flight, then the column register"
    assert (timing.broadcast_latency, timing.room_latency) == (1, 2), "the RTL's broadcast registers and credits"
    T, N = entries.shape
    lat = timing.lnzd_latency(N)
    queues = [deque() for _ in range(N)]
    credits = [depth] * N
    pop_back = [0] * N          # PE k popped in the previous cycle (registered on its way back)
    in_broadcast = None         # item decided in the previous cycle, written into the queues now
    pending = [None] * N        # item whose pointers land at the end of this cycle
    column = [None] * N         # the column register
    issue_end = [0] * N         # the issue stage is busy in cycles < issue_end
    B, P, S = [None] * T, [[None] * N for _ in range(T)], [[None] * N for _ in range(T)]
    nxt, cyc = 0, 0
    while True:
        decide = nxt < T and cyc >= lat and all(c >= 1 for c in credits)
        popped = [0] * N
        for k in range(N):   # every decision uses the state at the start of the cycle
            taken = column[k] is not None and issue_end[k] <= cyc
            if taken:
                t = column[k]
                S[t][k] = cyc
                issue_end[k] = cyc + max(1, int(entries[t, k]))
            held_next = pending[k] is not None or (column[k] is not None and not taken)
            can_pop = not held_next or issue_end[k] <= cyc + 1
            if taken:
                column[k] = None
            if pending[k] is not None:
                column[k], pending[k] = pending[k], None
            if queues[k] and can_pop:
                t = queues[k].popleft()
                P[t][k] = cyc
                pending[k] = t
                popped[k] = 1
        for k in range(N):
            credits[k] += pop_back[k] - int(decide)
        pop_back = popped
        if in_broadcast is not None:          # the write of the item decided last cycle
            B[in_broadcast] = cyc
            for q in queues:
                assert len(q) < depth, "a queue written while full"
                q.append(in_broadcast)
        in_broadcast = nxt if decide else None
        nxt += decide
        cyc += 1
        if (nxt == T and in_broadcast is None and not any(queues)
                and all(x is None for x in pending + column) and max(issue_end) <= cyc):
            break
    compute = max(max(issue_end), cyc) if T else 1
    as_arr = lambda a: np.array(a, dtype=np.int64).reshape(T, N)
    return np.array(B, dtype=np.int64), as_arr(P), as_arr(S), compute


@given(T=st.integers(0, 40), N=st.integers(1, 20), depth=st.integers(1, 9), list_lat=st.integers(0, 3),
       maxn=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_recurrence_equals_per_cycle_simulation(T, N, depth, list_lat, maxn, seed):
    entries = np.random.default_rng(seed).integers(0, maxn + 1, (T, N))
    tm = Timing(list_latency=list_lat)
    B, P, S, compute = simulate_batch(entries, depth, tm)
    B2, P2, S2, compute2 = per_cycle_sim(entries, depth, tm)
    np.testing.assert_array_equal(B, B2)
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_array_equal(S, S2)
    assert compute == compute2


def test_lnzd_latency_grows_one_cycle_per_tree_level():
    t = Timing()
    assert [lnzd_levels(n) for n in (1, 4, 5, 16, 17, 64, 65, 256)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert t.lnzd_latency(4) == t.list_latency + 1 and t.lnzd_latency(64) == t.list_latency + 3
    assert t.first_broadcast(16) == t.lnzd_latency(16) + t.broadcast_latency


def _report(W, x, n_pe, depth=8, acc_depth=64, **kw):
    image = encode_network(W if isinstance(W, list) else [W], n_pe, acc_depth=acc_depth, calibration=x, **kw)
    return run_image(image, x, EIEConfig.for_image(image, fifo_depth=depth)).report


@given(seed=st.integers(0, 2**31), n_pe=st.integers(1, 8), wd=st.floats(0.01, 1), ad=st.floats(0, 1))
def test_bounds_and_deeper_queues_never_slower(seed, n_pe, wd, ad):
    rng = np.random.default_rng(seed)
    n_out, n_in = rng.integers(1, 50, 2)
    W = sparse_matrix(rng, n_out, n_in, wd)
    x = np.abs(rng.normal(size=n_in)) * (rng.random(n_in) < ad)
    image = encode_network([W], n_pe, acc_depth=int(rng.integers(1, 20)))
    acts = run_network(image, np.atleast_2d(np.round(x * 256)).astype(np.int64))
    prev = None
    for depth in (1, 2, 3, 4, 8, 16, 64):
        rep = cycle_report(image, acts, EIEConfig.for_image(image, fifo_depth=depth))
        assert rep.cycles >= rep.busiest_pe_entries >= rep.balanced_bound
        assert rep.useful_macs <= rep.busiest_pe_entries * n_pe
        if prev is not None:
            assert rep.cycles <= prev
        prev = rep.cycles


def test_one_pe_dense_gives_the_dense_count(rng):
    n_out, n_in = 9, 13
    W = rng.normal(size=(n_out, n_in)) + 5.0  # no zero weights
    x = rng.random(n_in) + 0.5                # no zero activations
    t = Timing()
    for depth in (1, 2, 8):
        rep = _report(W, x, 1, depth)
        assert rep.useful_macs == n_out * n_in
        # first broadcast, pop, pointers, then every entry back to back (docs/cycle-model.md);
        # the run's only batch is held in the accumulators: no write-back
        want = t.first_broadcast(1) + 1 + t.pointer_latency + n_in * n_out + t.pipeline_latency
        assert rep.cycles == want


def test_all_zero_input_costs_only_fixed_overhead(rng):
    W = sparse_matrix(rng, 20, 10, 0.5)
    rep = _report(W, np.zeros(10), 4)
    t = Timing()
    assert rep.broadcasts == 0 and rep.useful_macs == 0
    assert rep.cycles == 1 + t.pipeline_latency   # one batch, held: no write-back


def test_all_zero_matrix_costs_one_cycle_per_broadcast(rng):
    rep = _report(np.zeros((8, 12)), np.ones(12), 4)
    assert rep.as_dict()["entries_processed"] == 0
    assert rep.as_dict()["per_pe"][0]["empty_columns"] == 12
    assert rep.as_dict()["per_pe"][0]["busy_cycles"] == 12


def test_empty_columns_cost_one_bubble_each():
    entries = np.array([[0], [0], [3], [0]])
    t = Timing(list_latency=2, lnzd_level_latency=1, broadcast_latency=1, pointer_latency=2)   # first broadcast 4
    B, P, S, compute = simulate_batch(entries, 8, t)
    assert B.tolist() == [4, 5, 6, 7]
    assert P[:, 0].tolist() == [5, 6, 7, 8]
    assert S[:, 0].tolist() == [7, 8, 9, 12]   # bubble, bubble, three entries (9, 10, 11), bubble
    assert compute == 13


def test_same_accumulator_on_consecutive_cycles_has_no_stall(rng):
    """One output row, every column non-zero: the same accumulator is hit every cycle;
    the bypass means the PE still issues one entry per cycle."""
    n_in = 40
    W = rng.normal(size=(1, n_in)) + 3
    rep = _report(W, rng.random(n_in) + 1, 1, depth=8)   # deep enough for the credit loop
    t = Timing()
    lead = t.first_broadcast(1) + 1 + t.pointer_latency
    assert rep.cycles == lead + n_in + t.pipeline_latency
    assert rep.as_dict()["per_pe"][0]["idle_cycles"] == lead


def test_full_queue_stalls_the_broadcast(rng):
    """A column whose entries all land in one PE (rows 0, 4, 8, ... on 4 PEs) keeps that
    PE busy while the others idle; with queue depth 1 the broadcaster stalls."""
    W = np.zeros((64, 6))
    W[::4, :] = 1.0
    x = np.ones(6)
    rep = _report(W, x, 4, depth=1)
    d = rep.as_dict()
    assert d["broadcast_stall_cycles"] > 0
    assert [p["entries"] for p in d["per_pe"]] == [16 * 6, 0, 0, 0]
    assert d["per_pe"][1]["busy_cycles"] == 6  # one bubble per empty column
    assert rep.cycles >= 16 * 6
    assert _report(W, x, 4, depth=16).as_dict()["broadcast_stall_cycles"] == 0


def test_fewer_rows_than_pes(rng):
    W = sparse_matrix(rng, 3, 10, 1.0)
    rep = _report(W, np.ones(10), 8)
    d = rep.as_dict()
    assert all(p["entries"] == 0 and p["empty_columns"] == 10 for p in d["per_pe"][3:])


def test_rows_not_multiple_of_n_and_output_batches(rng):
    """Layer longer than one batch: 45 rows on 2 PEs with 4 accumulators -> 6 batches, each
    re-broadcasting the input; cycles are the sum of the batches."""
    W = sparse_matrix(rng, 45, 12, 0.5)
    x = np.abs(rng.normal(size=12)) + 0.1
    image = encode_network([W], 2, acc_depth=4, calibration=x)
    res = run_image(image, x, EIEConfig.for_image(image), trace=True)
    rep = res.report
    assert len(rep.batches) == 6
    assert rep.broadcasts == 6 * 12
    assert rep.cycles == sum(b.cycles for b in rep.batches)
    assert [b.writeback_rows for b in rep.batches] == [4, 4, 4, 4, 4, 3]
    # every batch is written back but the last, which the host reads from the accumulators;
    # a write-back overlaps the next batch, which waits only for the one before it
    t = Timing()
    start, wb_free, want = 0, 0, []
    for n, b in enumerate(rep.batches):
        go = max(start + b.compute_cycles + t.pipeline_latency, wb_free)
        wb_free = go + b.writeback_rows + t.writeback_latency
        want.append(go - start)
        start = go
    assert [b.cycles for b in rep.batches] == want
    one = encode_network([W], 2, acc_depth=64, calibration=x)
    np.testing.assert_array_equal(res.outputs_int, run_image(one, x).outputs_int)


def test_writeback_overlaps_the_next_batch_and_waits_for_the_previous():
    """batch_lengths by hand: sums ready at start + compute + 6, write-back 4 + rows."""
    t = Timing(pipeline_latency=6, writeback_latency=4)
    # 26 (ready, write-back until 34), 35 - 26 = 9 (ready at 35), last: ready 44, written back by 52
    assert batch_lengths([20, 3, 3], [4, 4, 4], t) == [26, 9, 17]
    assert batch_lengths([20, 3, 3], [4, 4, 4], t, held=True) == [26, 9, 9]
    # ready at 26, 33, 45; write-backs 26-38, 38-50: the second batch waits until 38, the held last until 50
    assert batch_lengths([20, 1, 1], [8, 8, 8], t, held=True) == [26, 12, 12]
    assert batch_lengths([5], [3], t) == [5 + 6 + 3 + 4]
    assert batch_lengths([5], [3], t, held=True) == [11]


def test_stack_cycles_add_up_over_layers(rng):
    Ws = [sparse_matrix(rng, 30, 20, 0.3), sparse_matrix(rng, 10, 30, 0.3)]
    x = np.abs(rng.normal(size=(2, 20)))
    image = encode_network(Ws, 4, calibration=x)
    rep = run_image(image, x).report
    assert rep.cycles == sum(L["cycles"] for L in rep.layers) == sum(rep.cycles_per_sample)
    assert len(rep.cycles_per_sample) == 2


def test_config_mismatch_is_reported(rng):
    image = encode_network([sparse_matrix(rng, 30, 20, 0.3)], 4, acc_depth=16)
    acts = run_network(image, np.ones((1, 20), dtype=np.int64))
    with pytest.raises(ConfigError, match="4 PEs"):
        cycle_report(image, acts, EIEConfig(n_pe=8))
    with pytest.raises(ConfigError, match="acc_depth"):
        cycle_report(image, acts, EIEConfig(n_pe=4, acc_depth=8))
    with pytest.raises(ConfigError, match="activation memories"):
        cycle_report(image, acts, EIEConfig(n_pe=4, acc_depth=16, act_depth=5))
    with pytest.raises(ConfigError, match="fifo_depth"):
        EIEConfig(fifo_depth=0)
