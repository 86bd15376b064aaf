"""Load balancing by output-row permutation (beyond the EIE paper; docs/cycle-model.md).

EIE interleaves rows over PEs (row i -> PE i mod N), so each PE's work is whatever its
rows happen to hold; the busiest PE sets the pace and the activation queues only hide
short-term differences. Here we choose which original (logical) row each hardware row
holds, keeping the interleaved layout and each PE's row count (PE k still holds
local_rows(n_out, N)[k] rows in every output batch):

1. **LPT**: rows sorted by expected work (entries in the columns that are broadcast,
   each column weighted by its activation probability), each given to the least-loaded
   PE that still has room (capacity-constrained longest-processing-time-first).
2. **Prefix refinement**: the cycle model's critical path can hop from PE to PE (a PE
   that falls D broadcasts behind stalls the LNZD), so not only the totals but every
   PE's running work over the broadcast sequence should track the mean. The columns are
   cut into G groups of equal expected broadcasts; the deviation of every PE's
   cumulative work from the mean at each group boundary is minimised in least squares
   by pairwise row swaps between PEs (steepest descent from the worst PE, exact
   incremental updates; swaps keep the row counts).
3. **Selection by the cycle model**: the identity, the current permutation (if any),
   LPT and the refinement for each G are run through the real cycle model
   (cycle_model.simulate_batch, padding entries included) on the evaluation activation
   patterns; the fewest cycles wins, ties go to the earlier candidate, so the result is
   never worse than the identity on those patterns.

Everything is deterministic: ties break by index; the only random draw (evaluation
patterns from fractional probabilities) is seeded.

The permutation is stored in the image (EncodedLayer.row_perm, next layer's col_perm);
the golden model's user-facing outputs come back in the original order. Results are
bit-identical to the unbalanced image unless an accumulator saturates (acc_bits): the
broadcast order of a permuted layer's inputs changes, and saturating sums depend on it.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field, replace

from typing import TYPE_CHECKING

import numpy as np

from .config import DEFAULT_FIFO_DEPTH, Timing
from .cycle_model import batch_lengths, simulate_batch
from .decoder import decode_bias_indices, decode_indices
from .csc import MAX_RUN, encode_indices
from .errors import InputError
from .functional import check_int_input, logical_outputs, quantize_input, run_network
from .image import EIEImage, is_identity_permutation, permutation_problem
from .layout import n_blocks, rows_in_block

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["BalanceOptions", "RowBalance", "lpt_assign", "refine_prefix", "balance_rows",
           "activation_statistics", "balance_image", "pe_work"]


@dataclass(frozen=True)
class BalanceOptions:
    """Knobs of the balancing search (defaults measured on AlexNet FC8, docs/cycle-model.md)."""

    fifo_depth: int = DEFAULT_FIFO_DEPTH   # queue depth at which candidates are scored
    groups: tuple = (32, 128, 512)         # column groups of the prefix refinement: one candidate each
    max_patterns: int = 8                  # evaluation activation patterns per layer
    max_swaps_per_row: int = 4             # refinement budget (swaps per row of an output batch)
    seed: int = 0                          # patterns drawn from fractional probabilities

    def __post_init__(self):
        for name in ("fifo_depth", "max_patterns", "max_swaps_per_row"):
            val = getattr(self, name)
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise InputError(f"balance option {name} must be a positive integer, not {val!r}")
        groups = tuple(self.groups)
        if any(not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1 for g in groups):
            raise InputError(f"balance option groups must be positive integers, not {self.groups!r}")
        object.__setattr__(self, "groups", groups)

    def as_dict(self) -> dict:
        return {"fifo_depth": int(self.fifo_depth), "groups": [int(g) for g in self.groups],
                "max_patterns": int(self.max_patterns), "max_swaps_per_row": int(self.max_swaps_per_row),
                "seed": int(self.seed)}


@dataclass
class RowBalance:
    """Result of balance_rows for one layer."""

    perm: np.ndarray               # int64 (n_out,): hardware row r holds logical row perm[r]
    chosen: str                    # winning candidate ("identity", "current", "lpt", "refine-g<G>")
    cycles: dict                   # candidate -> cycle-model cycles summed over the evaluation patterns
    busiest_pe_entries: dict       # candidate -> busiest PE's entries summed over the patterns
    patterns: int                  # number of evaluation patterns
    seconds: float
    swaps: dict = field(default_factory=dict)  # refinement candidate -> swaps made

    @property
    def is_identity(self) -> bool:
        return is_identity_permutation(self.perm)

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "cycles": {k: int(v) for k, v in self.cycles.items()},
                "busiest_pe_entries": {k: int(v) for k, v in self.busiest_pe_entries.items()},
                "patterns": int(self.patterns), "seconds": round(float(self.seconds), 3),
                "swaps": {k: int(v) for k, v in self.swaps.items()}}


# -- step 1: LPT ----------------------------------------------------------------------------
def lpt_assign(work, capacity) -> np.ndarray:
    """Capacity-constrained LPT: item i -> bin, heaviest item first to the least-loaded bin
    with room left (ties: lower item index first, then lower bin). sum(capacity) must equal
    the number of items."""
    work = np.asarray(work, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    if int(capacity.sum()) != len(work) or np.any(capacity < 0):
        raise InputError(f"capacities {capacity.tolist()} do not hold exactly {len(work)} items")
    heap = [(0.0, k) for k in range(len(capacity)) if capacity[k] > 0]
    heapq.heapify(heap)
    left = capacity.copy()
    out = np.empty(len(work), dtype=np.int64)
    for i in np.argsort(-work, kind="stable"):
        load, k = heapq.heappop(heap)
        out[i] = k
        left[k] -= 1
        if left[k]:
            heapq.heappush(heap, (load + work[i], k))
    return out


# -- step 2: prefix refinement ----------------------------------------------------------------
def refine_prefix(assign, prefix, n_bins: int, max_swaps: int) -> tuple[np.ndarray, int]:
    """Swap items between bins to minimise sum_k ||Q_k - mean_k Q_k||^2, where Q_k is the sum
    of `prefix` rows (each item's cumulative work at the group boundaries) of bin k.

    Steepest descent from the bin with the largest deviation: the best swap of one of its
    items with an item of another bin, by the exact change
        dF(r, s) = 2 (U[s,a] - U[s,b] - U[r,a] + U[r,b]) + 2 ||x_r - x_s||^2,
    U[x, k] = x . D_k (D_k = Q_k - mean), a = bin of r, b = bin of s; a bin with no
    improving swap is skipped until a swap involves it; when every bin is skipped, one
    more pass over all bins runs, and the search ends when that pass finds nothing (a
    local optimum for single swaps) or after `max_swaps`.
    Returns (new assignment, swaps made); bin sizes never change.
    """
    x = np.asarray(prefix, dtype=np.float64)
    pe = np.array(assign, dtype=np.int64)
    n = len(pe)
    if n_bins < 2 or n < 2 or x.shape[1] == 0:
        return pe, 0
    Q = np.zeros((n_bins, x.shape[1]))
    np.add.at(Q, pe, x)
    dev = Q - Q.mean(axis=0)
    U = x @ dev.T                                   # (n, n_bins)
    nrm = np.einsum("ij,ij->i", x, x)
    ar = np.arange(n)
    scale = float(np.abs(x).max()) ** 2 or 1.0
    stuck = np.zeros(n_bins, dtype=bool)
    swaps, swaps_at_reset = 0, -1
    while swaps < max_swaps:
        size = np.einsum("ij,ij->i", dev, dev)
        size[stuck] = -1.0
        a = int(np.argmax(size))
        if size[a] <= 0:                            # every bin stuck: one more full pass, then stop
            if swaps == swaps_at_reset:
                break
            stuck[:] = False
            swaps_at_reset = swaps
            continue
        ra = np.flatnonzero(pe == a)
        if len(ra) == 0 or len(ra) == n:             # nothing to swap with
            stuck[a] = True
            continue
        own_s = U[ar, pe]
        dF = 2.0 * (U[:, a][None, :] - own_s[None, :] - U[ra, a][:, None] + U[ra][:, pe]) \
            + 2.0 * (nrm[ra][:, None] + nrm[None, :] - 2.0 * (x[ra] @ x.T))
        dF[:, pe == a] = np.inf
        i, s = divmod(int(np.argmin(dF)), n)
        if not dF[i, s] < -1e-9 * scale:
            stuck[a] = True
            continue
        r, b = int(ra[i]), int(pe[s])
        delta = x[s] - x[r]
        d = x @ delta
        U[:, a] += d
        U[:, b] -= d
        dev[a] += delta
        dev[b] -= delta
        pe[r], pe[s] = b, a
        stuck[a] = stuck[b] = False
        swaps += 1
    return pe, swaps


def _group_matrix(col_prob: np.ndarray, groups: int) -> csr_matrix:
    """(n_in, G') sparse: column j -> its group, weighted by p_j; groups of equal expected
    broadcasts over the active columns in broadcast (increasing index) order."""
    act = np.flatnonzero(col_prob > 0)
    g = max(1, min(groups, len(act)))
    mass = col_prob[act]
    before = np.concatenate([[0.0], np.cumsum(mass)[:-1]])
    gid = np.minimum((before / mass.sum() * g).astype(np.int64), g - 1)
    from scipy.sparse import csr_matrix  # deferred (see _balance_rows)

    return csr_matrix((mass, (act, gid)), shape=(len(col_prob), g))


# -- evaluation with the cycle model ----------------------------------------------------------
def _block_rows(n_out: int, n_pe: int, acc_depth: int) -> list[list[np.ndarray]]:
    """rows[b][k] = hardware rows of PE k in output batch b, in local-row order."""
    rib = rows_in_block(n_out, n_pe, acc_depth)
    return [[(b * acc_depth + np.arange(rib[k, b])) * n_pe + k for k in range(n_pe)]
            for b in range(rib.shape[1])]


def _counts(nz: csr_matrix, idx, perm: np.ndarray, n_pe: int, acc_depth: int) -> np.ndarray:
    """Entries per (PE, column key) of the layer stored in hardware order `perm`, padding
    included: (n_pe, n_blocks * n_in), as EncodedLayer.column_counts()."""
    n_out, n_in = nz.shape
    if int(rows_in_block(n_out, n_pe, acc_depth).max()) <= MAX_RUN + 1:
        # no zero run can reach 16 rows: no padding entries, counts are plain sums
        h = np.arange(n_out)
        key = (h % n_pe) * n_blocks(n_out, n_pe, acc_depth) + (h // n_pe) // acc_depth
        from scipy.sparse import csr_matrix  # deferred (see _balance_rows)

        A = csr_matrix((np.ones(n_out), (key, perm)), shape=(n_pe * n_blocks(n_out, n_pe, acc_depth), n_out))
        c = (A @ nz).toarray().astype(np.int64)       # rows (k, b), columns j
        return c.reshape(n_pe, -1)
    ptr, _, _ = encode_indices(np.asarray(idx)[perm], n_pe, acc_depth)
    return np.diff(ptr.astype(np.int64), axis=1)


def pe_work(counts: np.ndarray, n_in: int, patterns: np.ndarray, fifo_depth: int,
            writeback_rows, timing: Timing | None = None, last_layer: bool = False) -> tuple[int, int]:
    """(cycles, busiest PE entries) of one layer, summed over the activation `patterns`
    (bool (P, n_in), hardware column order), from its column counts (n_pe, n_blocks * n_in)
    and PE 0's rows per batch, timed as cycle_model.layer_batches does (batch_lengths; the
    run's last layer holds its last batch in the accumulators)."""
    tm = timing or Timing()
    n_pe = counts.shape[0]
    nb = counts.shape[1] // n_in
    cycles = 0
    per_pe = np.zeros(n_pe, dtype=np.int64)
    for pat in patterns:
        cols = np.flatnonzero(pat)
        computes = []
        for b in range(nb):
            ent = counts[:, b * n_in + cols].T
            computes.append(simulate_batch(ent, fifo_depth, tm)[3])
            per_pe += ent.sum(axis=0)
        cycles += sum(batch_lengths(computes, writeback_rows[:nb], tm, held=last_layer))
    return int(cycles), int(per_pe.max(initial=0))


def _patterns_from(col_prob: np.ndarray, options: BalanceOptions) -> np.ndarray:
    """Evaluation patterns from probabilities: exact if every p is 0 or 1, else seeded draws."""
    if np.all((col_prob == 0) | (col_prob == 1)):
        return (col_prob > 0)[None, :]
    rng = np.random.default_rng(options.seed)
    return rng.random((options.max_patterns, len(col_prob))) < col_prob[None, :]


# -- one layer ------------------------------------------------------------------------------
def balance_rows(idx, n_pe: int, acc_depth: int = 64, *, col_prob=None, patterns=None,
                 options: BalanceOptions | None = None, current=None, last_layer: bool = False) -> RowBalance:
    """Choose the row permutation of one layer.

    idx: codebook-index matrix (n_out, n_in), 0 = zero weight, columns in the order they
    are broadcast (for a layer after a permuted one: already in that hardware order).
    col_prob: (n_in,) probability that input j is non-zero (default: 1 for all).
    patterns: bool (P, n_in) activation patterns to score candidates on (default: from
    col_prob; all ones without it). current: an existing permutation to keep if best.
    last_layer: the image's last layer (its last batch is timed without write-back).
    Returns RowBalance with perm (hardware row r holds logical row perm[r]).
    """
    t0 = time.perf_counter()
    options = options or BalanceOptions()
    idx = np.asarray(idx)
    if idx.ndim != 2 or 0 in idx.shape:
        raise InputError(f"index matrix must be non-empty 2-D (n_out, n_in), got shape {idx.shape}")
    if not isinstance(n_pe, (int, np.integer)) or n_pe < 1:
        raise InputError(f"n_pe must be a positive integer, not {n_pe!r}")
    if not isinstance(acc_depth, (int, np.integer)) or acc_depth < 1:
        raise InputError(f"acc_depth must be a positive integer, not {acc_depth!r}")
    n_out, n_in = idx.shape
    p = np.ones(n_in) if col_prob is None else np.asarray(col_prob, dtype=np.float64)
    if p.shape != (n_in,):
        raise InputError(f"col_prob: expected {n_in} probabilities, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        bad = int(np.flatnonzero(~((p >= 0) & (p <= 1)))[0])
        raise InputError(f"col_prob[{bad}] = {p[bad]!r}: expected a probability in [0, 1]")
    if patterns is None:
        patterns = _patterns_from(p, options)
    patterns = np.atleast_2d(np.asarray(patterns)).astype(bool)
    if patterns.shape[1:] != (n_in,):
        raise InputError(f"patterns: expected shape (P, {n_in}), got {patterns.shape}")
    if current is not None and (msg := permutation_problem(current, n_out)):
        raise InputError(f"current permutation: {msg}")

    with _single_threaded_blas():
        return _balance_rows(idx, n_pe, acc_depth, p, patterns, options, current, t0, last_layer)


def _single_threaded_blas():
    """The refinement multiplies small matrices thousands of times: BLAS threads only add
    contention (5-10x slower on a busy 2-core machine), so they are limited to one."""
    try:
        from threadpoolctl import threadpool_limits  # optional dependency: only if installed
    except ImportError:  # pragma: no cover - scikit-learn brings it
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _balance_rows(idx, n_pe, acc_depth, p, patterns, options, current, t0, last_layer) -> RowBalance:
    n_out, n_in = idx.shape
    from scipy.sparse import csr_matrix  # SciPy: deferred to a balancing run, so `eie --help` and `info` skip it

    nz = csr_matrix(idx != 0, dtype=np.float64)
    cands: dict[str, np.ndarray] = {"identity": np.arange(n_out)}
    if current is not None and not np.array_equal(current, cands["identity"]):
        cands["current"] = np.asarray(current, dtype=np.int64)
    swaps: dict[str, int] = {}
    if n_pe > 1 and np.any(p > 0):
        blocks = _block_rows(n_out, n_pe, acc_depth)
        work = np.asarray(nz @ p).ravel()            # expected entries of every row
        lpt = [None] * len(blocks)
        for b, per_pe in enumerate(blocks):          # each output batch keeps its set of rows
            rows = np.concatenate(per_pe)
            lpt[b] = (rows, lpt_assign(work[rows], [len(r) for r in per_pe]))
        cands["lpt"] = _perm_from(blocks, lpt, n_out)
        for g in options.groups:
            gm = _group_matrix(p, g)
            assign = []
            total = 0
            for rows, a0 in lpt:
                prefix = np.cumsum((nz[rows] @ gm).toarray(), axis=1)
                a1, k = refine_prefix(a0, prefix, n_pe, options.max_swaps_per_row * len(rows))
                assign.append((rows, a1))
                total += k
            name = f"refine-g{gm.shape[1]}"
            if name not in cands:
                cands[name] = _perm_from(blocks, assign, n_out)
                swaps[name] = total
    cycles, busiest = {}, {}
    rows0 = rows_in_block(n_out, n_pe, acc_depth)[0]
    for name, perm in cands.items():
        cycles[name], busiest[name] = pe_work(_counts(nz, idx, perm, n_pe, acc_depth), n_in, patterns,
                                              options.fifo_depth, rows0, last_layer=last_layer)
    best = min(cands, key=lambda nm: cycles[nm])     # dicts keep insertion order: ties -> earlier
    return RowBalance(cands[best], best, cycles, busiest, len(patterns), time.perf_counter() - t0, swaps)


def _perm_from(blocks, assigns, n_out: int) -> np.ndarray:
    """Hardware-row permutation from per-batch assignments (rows, PE of each row): PE k's
    rows go to its local rows of that batch in increasing logical order."""
    perm = np.empty(n_out, dtype=np.int64)
    for per_pe, (rows, pe) in zip(blocks, assigns):
        for k, hw in enumerate(per_pe):
            perm[hw] = np.sort(rows[pe == k])
    return perm


# -- whole images ---------------------------------------------------------------------------
def activation_statistics(image: EIEImage, x=None, *, int_input: bool = False, max_patterns: int = 8):
    """Per layer, in logical (original) order: (probability that each input is non-zero,
    bool patterns of up to `max_patterns` evenly spaced samples), from the golden model on
    `x` (float, or int with int_input). Without x: probability 1, one all-ones pattern."""
    if x is None:
        return [(np.ones(L.n_in), np.ones((1, L.n_in), dtype=bool)) for L in image.layers]
    a = (check_int_input(x, image.layers[0].n_in, "calibration") if int_input
         else quantize_input(image, x, "calibration"))
    if a.shape[0] == 0:
        raise InputError("calibration: no samples (expected at least one input vector)")
    acts = run_network(image, a)
    out = []
    pick = np.unique(np.linspace(0, a.shape[0] - 1, min(max_patterns, a.shape[0])).round().astype(np.int64))
    for y in logical_outputs(image, acts)[:-1]:       # each layer's input, logical order
        nzm = y != 0
        out.append((nzm.mean(axis=0), nzm[pick]))
    return out


def balance_image(image: EIEImage, calibration=None, *, int_input: bool = False,
                  options: BalanceOptions | None = None) -> EIEImage:
    """Re-balance every layer of `image` (a new validated image; the input is unchanged).

    The index matrices are decoded in logical order and re-encoded with the same
    codebooks and formats (no k-means), so this works for any image, e.g. the authors'
    FC8. `calibration`: inputs (float, or int16 fixed point with int_input) whose
    activation statistics weight the columns and score the candidates; without it every
    input counts as non-zero. Layers are balanced in order, each with its columns in the
    previous layer's new hardware order. `image.meta["balance"]` records the choice.
    """
    options = options or BalanceOptions()
    t0 = time.perf_counter()
    image.validate()
    stats = activation_statistics(image, calibration, int_input=int_input, max_patterns=options.max_patterns)
    layers, report = [], []
    prev = None                                       # new row_perm of the previous layer
    for i, (L, (prob, pats)) in enumerate(zip(image.layers, stats)):
        cols = np.arange(L.n_in) if prev is None else prev
        idx = decode_indices(L)[:, cols]               # logical rows, hardware columns
        prob, pats = prob[cols], pats[:, cols]
        if L.bias:                                     # the bias column: last, always broadcast
            idx = np.concatenate([idx, decode_bias_indices(L)[:, None]], axis=1)
            prob = np.append(prob, 1.0)
            pats = np.concatenate([pats, np.ones((pats.shape[0], 1), dtype=bool)], axis=1)
        res = balance_rows(idx, image.n_pe, image.acc_depth, col_prob=prob, patterns=pats,
                           options=options, current=L.row_perm, last_layer=i == len(image.layers) - 1)
        row_perm = None if res.is_identity else res.perm
        col_perm = prev
        if row_perm is None and col_perm is None and not L.is_permuted:
            layers.append(L)                           # unchanged: keep the very same entries
        else:
            src = idx if row_perm is None else idx[row_perm]
            ptr, v, z = encode_indices(src, image.n_pe, image.acc_depth)
            layers.append(replace(L, ptr=ptr, v=v, z=z, row_perm=row_perm, col_perm=col_perm))
        prev = row_perm
        report.append({"name": L.name, **res.as_dict()})
    meta = dict(image.meta)
    meta["balance"] = {"method": "lpt + prefix refinement, chosen by the cycle model",
                       "options": options.as_dict(),
                       "calibration_samples": 0 if calibration is None else int(np.atleast_2d(calibration).shape[0]),
                       "seconds": round(time.perf_counter() - t0, 3), "layers": report}
    return EIEImage(n_pe=image.n_pe, acc_depth=image.acc_depth, layers=layers, meta=meta,
                    source=image.source).validate()
