"""Where each row, column and entry of a layer lives in the PE array.

Row i of W belongs to PE i mod N as local row i div N. Local rows are processed in
output batches ("blocks") of `acc_depth` rows, the size of the accumulator register
file; block b of PE k holds local rows b*acc_depth ... (b+1)*acc_depth - 1. Each PE
stores its slice as CSC over the extended column sequence (block, column), so column
key b*n_in + j spans entries ptr[k, b*n_in + j] ... ptr[k, b*n_in + j + 1] - 1.
"""

from __future__ import annotations

import numpy as np

from .numerics import INDEX_BITS, ZRUN_BITS

__all__ = ["local_rows", "n_blocks", "rows_in_block", "ENTRY_FIELDS", "ENTRY_BITS", "ENTRIES_PER_SRAM_ROW",
           "SRAM_ROW_BITS", "pack_sram_rows", "unpack_sram_rows"]

# One encoded entry, fields from the least significant bit: the 4-bit codebook index v,
# then the 4-bit zero run z. The RTL's `Entry` layout (hdl/spmat_read.py) is built from
# this, so the NumPy packer and the hardware cannot disagree.
ENTRY_FIELDS = {"v": INDEX_BITS, "z": ZRUN_BITS}
ENTRY_BITS = sum(ENTRY_FIELDS.values())
ENTRIES_PER_SRAM_ROW = 8  # one 64-bit sparse-matrix SRAM row = 8 (v, z) bytes
SRAM_ROW_BITS = ENTRY_BITS * ENTRIES_PER_SRAM_ROW


def local_rows(n_out: int, n_pe: int) -> np.ndarray:
    """Number of rows each PE holds, shape (n_pe,): ceil((n_out - k) / N), at least 0."""
    k = np.arange(n_pe)
    return np.maximum(0, (n_out - k + n_pe - 1) // n_pe)


def n_blocks(n_out: int, n_pe: int, acc_depth: int) -> int:
    """Output batches a layer needs: PE 0's local rows over the accumulator depth (>= 1)."""
    rows0 = (n_out + n_pe - 1) // n_pe
    return max(1, (rows0 + acc_depth - 1) // acc_depth)


def rows_in_block(n_out: int, n_pe: int, acc_depth: int) -> np.ndarray:
    """Local rows of PE k in block b, shape (n_pe, n_blocks)."""
    nb = n_blocks(n_out, n_pe, acc_depth)
    lr = local_rows(n_out, n_pe)[:, None]
    start = np.arange(nb)[None, :] * acc_depth
    return np.clip(lr - start, 0, acc_depth)


def pack_sram_rows(v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Pack one PE's entries into 64-bit SRAM rows (uint64), 8 entries per row.

    Entry e sits in row e // 8 at bits 8*(e % 8) ... 8*(e % 8) + 7: v in the low
    nibble, z in the high nibble. A partial last row is filled with zero bytes.
    """
    v = np.asarray(v, dtype=np.uint8)
    z = np.asarray(z, dtype=np.uint8)
    vb = ENTRY_FIELDS["v"]
    byte = (v & ((1 << vb) - 1)) | ((z & ((1 << ENTRY_FIELDS["z"]) - 1)) << vb)
    n_rows = (len(byte) + ENTRIES_PER_SRAM_ROW - 1) // ENTRIES_PER_SRAM_ROW
    padded = np.zeros(n_rows * ENTRIES_PER_SRAM_ROW, dtype=np.uint8)
    padded[: len(byte)] = byte
    return padded.view("<u8").astype(np.uint64)


def unpack_sram_rows(rows: np.ndarray, n_entries: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of pack_sram_rows: (v, z) of the first `n_entries` entries."""
    byte = np.asarray(rows, dtype="<u8").view(np.uint8)[:n_entries]
    vb = ENTRY_FIELDS["v"]
    return byte & ((1 << vb) - 1), byte >> vb
