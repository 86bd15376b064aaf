"""Cycle model of the EIE PE array: the timing contract of the RTL (docs/cycle-model.md).

Per output batch of a layer, with T non-zero input activations broadcast in increasing
index order and n[k, t] entries of PE k in the t-th broadcast column, c = max(1, n):

    B[t]    = max(B[t-1] + 1, first_broadcast(N), max_k P[k, t-D] + 1 + room_latency)   broadcast
    P[k, t] = max(B[t] + 1, S[k, t-1] - pointer_latency + 1)             pop cycle of PE k
    S[k, t] = max(P[k, t] + pointer_latency, S[k, t-1] + c[k, t-1])      first issue cycle
    entries of item t are issued in cycles S[k, t] ... S[k, t] + c[k, t] - 1

where compute = max_k(S[k, T-1] + c[k, T-1]) (1 when T = 0). A batch's sums are in the
accumulators at compute + pipeline_latency; its write-back (R rows of PE 0, then
writeback_latency) overlaps the next batch of the same layer (double-buffered
accumulators), but starts only when the previous write-back has finished, and the next
batch waits for that too (batch_lengths). A layer's last batch is written back before the
next layer starts; the run's last batch is not written back (its outputs stay in the
accumulators and are converted as the host reads them). The recurrence runs over
broadcasts, vectorised over PEs, so a 64-PE FC8 run is a few thousand NumPy steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import EIEConfig, Timing
from .image import EIEImage, EncodedLayer
from .layout import n_blocks, rows_in_block

__all__ = ["BatchTiming", "simulate_batch", "batch_lengths", "layer_batches", "CycleReport", "cycle_report"]


@dataclass
class BatchTiming:
    """Cycle-by-cycle schedule of one output batch (all cycles relative to its start)."""

    layer: int
    block: int
    columns: np.ndarray        # (T,) broadcast column indices j, increasing
    broadcast: np.ndarray      # (T,) B[t]
    pop: np.ndarray            # (T, N) P[k, t]
    start: np.ndarray          # (T, N) S[k, t]: first issue cycle of the column
    cost: np.ndarray           # (T, N) c[k, t] = max(1, n[k, t])
    entries: np.ndarray        # (T, N) n[k, t]
    compute_cycles: int
    writeback_rows: int
    cycles: int


def simulate_batch(entries: np.ndarray, fifo_depth: int, timing: Timing | None = None):
    """Run the recurrence on an entry-count matrix (T, N); returns (B, P, S, compute_cycles)."""
    tm = timing or Timing()
    entries = np.asarray(entries, dtype=np.int64)
    T, N = entries.shape
    cost = np.maximum(entries, 1)
    B = np.zeros(T, dtype=np.int64)
    P = np.zeros((T, N), dtype=np.int64)
    S = np.zeros((T, N), dtype=np.int64)
    if T == 0:
        return B, P, S, 1
    lp = tm.pointer_latency
    free = np.full(N, np.iinfo(np.int64).min // 2)     # S[k, t-1] + c[k, t-1]: issue stage free
    prev_s = np.full(N, np.iinfo(np.int64).min // 2)   # S[k, t-1]: the column register frees
    last_b = tm.first_broadcast(N) - 1
    for t in range(T):
        b = last_b + 1
        if t >= fifo_depth:
            b = max(b, int(P[t - fifo_depth].max()) + 1 + tm.room_latency)
        B[t] = last_b = b
        p = np.maximum(prev_s - lp + 1, b + 1)
        P[t] = p
        s = np.maximum(p + lp, free)
        S[t] = prev_s = s
        free = s + cost[t]
    return B, P, S, int(free.max())


def batch_lengths(computes, writeback_rows, timing, held: bool = False) -> list[int]:
    """Cycles of each output batch of one layer (start to the next batch's start; the
    last: to the layer's end), given each batch's compute cycles and PE 0's rows.

    Batch b's sums are ready at `ready = start + compute + pipeline_latency`. The next
    step (write-back of b together with the start of b + 1, or the end of the run) waits
    until the write-back of b - 1 has finished: go = max(ready, wb_free). The write-back
    then takes R + writeback_latency cycles; a layer's last batch ends when it is done,
    the run's last batch (`held`) at `go`, not written back."""
    tm = timing
    out, start, wb_free = [], 0, 0
    n = len(computes)
    for b, (compute, rows) in enumerate(zip(computes, writeback_rows)):
        go = max(start + int(compute) + tm.pipeline_latency, wb_free)
        if b == n - 1 and held:
            end = go
        else:
            wb_free = go + int(rows) + tm.writeback_latency
            end = wb_free if b == n - 1 else go
        out.append(end - start)
        start = end
    return out


def layer_batches(layer: EncodedLayer, a: np.ndarray, config: EIEConfig, layer_index: int = 0,
                  last_layer: bool = False):
    """Yield BatchTiming for every output batch of one layer on one input vector (int);
    `last_layer`: the run's last layer, whose last batch is held in the accumulators."""
    cols = np.flatnonzero(layer.with_bias_input(a))  # the bias column, if any, is broadcast last
    counts = layer.column_counts()                   # (N, n_blocks * n_cols)
    rows = rows_in_block(layer.n_out, layer.n_pe, layer.acc_depth)
    tm = config.timing
    nb = n_blocks(layer.n_out, layer.n_pe, layer.acc_depth)
    runs = []
    for b in range(nb):
        ent = counts[:, b * layer.n_cols + cols].T    # (T, N)
        runs.append((ent, simulate_batch(ent, config.fifo_depth, tm)))
    lengths = batch_lengths([r[1][3] for r in runs], rows[0, :nb], tm, held=last_layer)
    for b, ((ent, (B, P, S, compute)), total) in enumerate(zip(runs, lengths)):
        yield BatchTiming(layer_index, b, cols, B, P, S, np.maximum(ent, 1), ent, compute, int(rows[0, b]), total)


@dataclass
class CycleReport:
    """Totals over every layer, batch and input sample (see docs/cycle-model.md)."""

    config: EIEConfig
    cycles: int = 0
    cycles_per_sample: list = field(default_factory=list)
    broadcasts: int = 0
    broadcast_stall_cycles: int = 0
    layers: list = field(default_factory=list)
    pe_entries: np.ndarray | None = None
    pe_padding: np.ndarray | None = None
    pe_busy: np.ndarray | None = None
    pe_idle: np.ndarray | None = None
    pe_empty_columns: np.ndarray | None = None
    batches: list = field(default_factory=list)     # BatchTiming, when traced

    @property
    def useful_macs(self) -> int:
        return int((self.pe_entries - self.pe_padding).sum())

    @property
    def busiest_pe_entries(self) -> int:
        return int(self.pe_entries.max())

    @property
    def balanced_bound(self) -> int:
        n = self.config.n_pe
        return int(-(-int(self.pe_entries.sum()) // n))

    def as_dict(self) -> dict:
        n = self.config.n_pe
        return {
            "cycles": self.cycles,
            "cycles_per_sample": self.cycles_per_sample,
            "useful_macs": self.useful_macs,
            "entries_processed": int(self.pe_entries.sum()),
            "padding_entries": int(self.pe_padding.sum()),
            "busiest_pe_entries": self.busiest_pe_entries,
            "balanced_bound": self.balanced_bound,
            "load_balance_efficiency": (self.balanced_bound / self.cycles) if self.cycles else 1.0,
            "broadcasts": self.broadcasts,
            "broadcast_stall_cycles": self.broadcast_stall_cycles,
            "config": self.config.as_dict(),
            "layers": self.layers,
            "per_pe": [
                {"pe": k, "entries": int(self.pe_entries[k]), "padding_entries": int(self.pe_padding[k]),
                 "useful_macs": int(self.pe_entries[k] - self.pe_padding[k]),
                 "busy_cycles": int(self.pe_busy[k]), "idle_cycles": int(self.pe_idle[k]),
                 "empty_columns": int(self.pe_empty_columns[k])}
                for k in range(n)
            ],
        }


def _padding_counts(layer: EncodedLayer) -> np.ndarray:
    """Padding entries per (PE, column key), shape like column_counts()."""
    c = layer.coordinates
    n_keys = layer.ptr.shape[1] - 1
    pad = c.v == 0
    flat = np.bincount(c.pe[pad] * n_keys + c.colkey[pad], minlength=layer.n_pe * n_keys)
    return flat.reshape(layer.n_pe, n_keys)


def cycle_report(image: EIEImage, layer_inputs: list[np.ndarray], config: EIEConfig,
                 trace: bool = False) -> CycleReport:
    """Cycles of running `image`, given every layer's int input (from run_network).

    `layer_inputs[i]` is (batch, n_in) for layer i; samples run one after another.
    """
    config.check_image(image)
    N = config.n_pe
    rep = CycleReport(config=config, pe_entries=np.zeros(N, np.int64), pe_padding=np.zeros(N, np.int64),
                      pe_busy=np.zeros(N, np.int64), pe_idle=np.zeros(N, np.int64),
                      pe_empty_columns=np.zeros(N, np.int64))
    n_samples = np.asarray(layer_inputs[0]).shape[0]
    pads = [_padding_counts(L) for L in image.layers]
    per_layer = [{"name": L.name, "cycles": 0, "batches": n_blocks(L.n_out, N, L.acc_depth),
                  "broadcasts": 0, "entries_processed": 0} for L in image.layers]
    rep.cycles_per_sample = [0] * n_samples
    for s in range(n_samples):
        for i, L in enumerate(image.layers):
            a = np.asarray(layer_inputs[i])[s]
            for bt in layer_batches(L, a, config, i, last_layer=i == len(image.layers) - 1):
                T = len(bt.columns)
                rep.cycles += bt.cycles
                rep.cycles_per_sample[s] += bt.cycles
                rep.broadcasts += T
                if T:
                    first = config.timing.first_broadcast(N)
                    earliest = np.maximum(np.concatenate([[first - 1], bt.broadcast[:-1]]) + 1, first)
                    rep.broadcast_stall_cycles += int((bt.broadcast - earliest).sum())
                rep.pe_entries += bt.entries.sum(axis=0)
                keys = bt.block * L.n_cols + bt.columns
                rep.pe_padding += pads[i][:, keys].sum(axis=1)
                busy = bt.cost.sum(axis=0) if T else np.zeros(N, np.int64)
                rep.pe_busy += busy
                rep.pe_idle += bt.compute_cycles - busy
                rep.pe_empty_columns += (bt.entries == 0).sum(axis=0)
                pl = per_layer[i]
                pl["cycles"] += bt.cycles
                pl["broadcasts"] += T
                pl["entries_processed"] += int(bt.entries.sum())
                if trace:
                    rep.batches.append(bt)
    rep.layers = per_layer
    return rep
