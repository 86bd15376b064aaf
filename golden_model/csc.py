"""The per-PE interleaved CSC packing of a codebook-index matrix (docs/image-format.md).

Row i goes to PE i mod N (local row i div N); local rows are cut into output batches
of `acc_depth`; within each (batch, column) the entries are stored in row order with
z = zeros before the entry in that column (per-column counting, reset at each column
start). A gap of g zeros needs g // 16 padding entries (v = 0, z = 15), then the real
entry with z = g % 16 (EIE paper, Fig. 2 and Section III). The encoder and the load
balancer both pack with it.
"""

from __future__ import annotations

import numpy as np

from . import numerics as nm
from .errors import InputError
from .image import MAX_ACC_DEPTH, MAX_N_PE
from .layout import n_blocks

__all__ = ["DEFAULT_ACC_DEPTH", "MAX_RUN", "check_pe_args", "encode_indices"]

DEFAULT_ACC_DEPTH = 64  # accumulator register file per PE (EIE paper: 64 entries)
MAX_RUN = (1 << nm.ZRUN_BITS) - 1


def check_pe_args(n_pe, acc_depth):
    if not isinstance(n_pe, (int, np.integer)) or not 1 <= n_pe <= MAX_N_PE:
        raise InputError(f"n_pe must be an integer in 1..{MAX_N_PE}, not {n_pe!r}")
    if not isinstance(acc_depth, (int, np.integer)) or not 1 <= acc_depth <= MAX_ACC_DEPTH:
        raise InputError(f"acc_depth must be an integer in 1..{MAX_ACC_DEPTH}, not {acc_depth!r}")



def encode_indices(idx, n_pe: int, acc_depth: int = DEFAULT_ACC_DEPTH):
    """Codebook-index matrix (n_out, n_in), 0 = zero -> (ptr, v, z) for all PEs."""
    check_pe_args(n_pe, acc_depth)
    idx = np.asarray(idx)
    if idx.ndim != 2:
        raise InputError(f"index matrix must be 2-D (n_out, n_in), got shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() > MAX_RUN):
        raise InputError("codebook indices must be in 0..15")
    n_out, n_in = idx.shape
    nb = n_blocks(n_out, n_pe, acc_depth)
    n_keys = nb * n_in
    r, c = np.nonzero(idx)
    vals = idx[r, c].astype(np.uint8)
    pe = r % n_pe
    local = r // n_pe
    blk = local // acc_depth
    lrow = local % acc_depth
    key = blk * n_in + c
    order = np.lexsort((lrow, key, pe))
    pe, key, lrow, vals = pe[order], key[order], lrow[order], vals[order]
    group = pe * n_keys + key
    new_group = np.ones(len(group), dtype=bool)
    new_group[1:] = group[1:] != group[:-1]
    prev = np.where(new_group, -1, np.concatenate([[-1], lrow[:-1]]))
    gap = lrow - prev - 1
    count = gap // (MAX_RUN + 1) + 1          # padding entries + the real one
    ends = np.cumsum(count)
    total = int(ends[-1]) if len(ends) else 0
    v = np.zeros(total, dtype=np.uint8)
    z = np.full(total, MAX_RUN, dtype=np.uint8)
    v[ends - 1] = vals
    z[ends - 1] = gap % (MAX_RUN + 1)
    per_key = np.bincount(group, weights=count, minlength=n_pe * n_keys).astype(np.int64)
    ptr = np.zeros((n_pe, n_keys + 1), dtype=np.int64)
    ptr[:, 1:] = np.cumsum(per_key.reshape(n_pe, n_keys), axis=1)
    if ptr.size and ptr[:, -1].max() >= 1 << 32:
        raise InputError("a PE would hold 2**32 or more entries; use more PEs")
    return ptr.astype(np.uint32), v, z
