"""In-memory EIE image: a network's layers in the per-PE interleaved CSC format.

The on-disk form is in image_file.py; both are specified in docs/image-format.md.
`validate()` is the single place that checks an image's consistency, so a loaded
file, an encoder result and a hand-built image all meet the same rules.

Row permutation (load balancing, golden_model/balance.py): a layer may store its rows in
a permuted *hardware order*: hardware row r (PE r mod N, local row r div N) holds the
original (*logical*) row `row_perm[r]`. The next layer's columns are stored in the same
order (`col_perm` = the previous layer's `row_perm`), so layers chain on the hardware
without un-permuting; only the last layer's outputs are un-permuted on read-back.
Everything stored (ptr, v, z, coordinates) is in hardware order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import numerics as nm
from .errors import ImageFormatError
from .layout import n_blocks, rows_in_block

__all__ = ["EncodedLayer", "EIEImage", "EntryCoordinates", "permutation_problem", "is_identity_permutation",
           "MAX_N_PE", "MAX_ACC_DEPTH", "MAX_DIM"]

# Limits of the format (docs/image-format.md), checked before a size is used for anything:
MAX_N_PE = 4096          # the paper builds 64 PEs and projects up to 256
MAX_ACC_DEPTH = 1 << 16  # accumulators per PE (the paper: 64)
MAX_DIM = (1 << 31) - 1  # n_in, n_out


def permutation_problem(perm, n: int) -> str | None:
    """None if `perm` is a permutation of range(n) (1-D integers), else what is wrong."""
    p = np.asarray(perm)
    if p.ndim != 1 or p.shape[0] != n:
        return f"expected {n} entries (a permutation of 0..{n - 1}), got shape {p.shape}"
    if p.dtype.kind not in "iu":
        return f"expected integers, got dtype {p.dtype}"
    if n == 0:
        return None
    bad = (p < 0) | (p >= n)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        return f"entry {i} = {int(p[i])} is outside 0..{n - 1}"
    seen = np.bincount(p.astype(np.int64), minlength=n)
    if np.any(seen != 1):
        dup = int(np.flatnonzero(seen > 1)[0])
        missing = int(np.flatnonzero(seen == 0)[0])
        return f"not a permutation of 0..{n - 1}: {dup} appears {int(seen[dup])} times and {missing} is missing"
    return None


def is_identity_permutation(perm) -> bool:
    """No permutation (None) or 0, 1, ..., n-1."""
    return perm is None or bool(np.array_equal(perm, np.arange(len(perm))))


@dataclass(frozen=True)
class EntryCoordinates:
    """Every stored entry of a layer, in storage order (PE, then column key, then row)."""

    pe: np.ndarray        # PE index
    colkey: np.ndarray    # block * n_cols + column
    col: np.ndarray       # column j of W (j = n_in: the bias column)
    block: np.ndarray     # output batch
    row: np.ndarray       # global row i of W
    row_in_block: np.ndarray  # local row within the output batch (what the z's count)
    v: np.ndarray         # codebook index (0 = padding)
    z: np.ndarray         # zero run before the entry


@dataclass(eq=False, frozen=True)
class EncodedLayer:
    """One fully-connected layer, y = act(W a), as the PE array stores it."""

    name: str
    n_in: int
    n_out: int
    relu: bool
    in_frac: int          # fractional bits of the input activations
    w_frac: int           # fractional bits of the codebook values
    out_frac: int         # fractional bits of the output activations
    codebook: np.ndarray  # int16 (16,), codebook[0] == 0
    codebook_float: np.ndarray  # float32 (16,): the centroids before fixed point
    ptr: np.ndarray       # uint32 (n_pe, n_blocks * n_cols + 1)
    v: np.ndarray         # uint8 (entries,), all PEs concatenated in PE order
    z: np.ndarray         # uint8 (entries,)
    acc_depth: int        # accumulators per PE: local rows per output batch
    # Load balancing (optional, None = identity): hardware row r holds logical row
    # row_perm[r]; hardware column c is logical input col_perm[c], which must equal the
    # previous layer's row_perm (the network input itself is never permuted).
    row_perm: np.ndarray | None = None   # int64 (n_out,)
    col_perm: np.ndarray | None = None   # int64 (n_in,)
    # Bias (format 1.3): one more stored column, index n_in, after the n_in inputs; its
    # activation is always 1.0 (`bias_activation` in the input format), so its entries
    # are the bias, quantised with the layer's codebook like any weight. Never permuted.
    bias: bool = False

    def __post_init__(self):
        # Decoded coordinates and matrices are cached per layer, so the arrays are frozen:
        # an in-place edit would otherwise go unseen. Build a new layer to change one.
        for name in ("codebook", "codebook_float", "ptr", "v", "z", "row_perm", "col_perm"):
            val = getattr(self, name)
            if val is None:
                continue
            arr = np.array(val, copy=True)
            if name.endswith("_perm") and arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)  # validate() rejects anything else, naming the field
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    # -- hardware <-> logical order -------------------------------------------------------
    @property
    def is_permuted(self) -> bool:
        """True if rows or columns are stored in a non-identity order."""
        return not (is_identity_permutation(self.row_perm) and is_identity_permutation(self.col_perm))

    @property
    def logical_rows(self) -> np.ndarray:
        """Logical row held by each hardware row, int64 (n_out,) (arange if unpermuted)."""
        return np.arange(self.n_out) if self.row_perm is None else self.row_perm

    @property
    def logical_cols(self) -> np.ndarray:
        """Logical input of each hardware column, int64 (n_in,) (arange if unpermuted)."""
        return np.arange(self.n_in) if self.col_perm is None else self.col_perm

    def outputs_to_logical(self, y: np.ndarray) -> np.ndarray:
        """Outputs (..., n_out) in hardware row order -> original row order (a new array)."""
        y = np.asarray(y)
        if self.row_perm is None:
            return y.copy()
        out = np.empty_like(y)
        out[..., self.row_perm] = y
        return out

    def outputs_to_hardware(self, y: np.ndarray) -> np.ndarray:
        """Inverse of outputs_to_logical."""
        y = np.asarray(y)
        return y.copy() if self.row_perm is None else y[..., self.row_perm]

    @property
    def n_pe(self) -> int:
        return int(self.ptr.shape[0])

    @property
    def n_cols(self) -> int:
        """Stored columns per output batch: the n_in inputs, plus the bias column."""
        return self.n_in + int(bool(self.bias))

    @property
    def bias_activation(self) -> int:
        """The bias column's activation: 1.0 in the input format (2**in_frac)."""
        return 1 << int(self.in_frac)

    def with_bias_input(self, a) -> np.ndarray:
        """Int inputs (batch, n_in) -> the broadcast activations (batch, n_cols): the bias
        column's constant appended, so it is broadcast last, after every input."""
        a = np.asarray(a, dtype=np.int64)
        if not self.bias:
            return a
        one = np.full(a.shape[:-1] + (1,), self.bias_activation, dtype=np.int64)
        return np.concatenate([a, one], axis=-1)

    @property
    def shift(self) -> int:
        """Right shift from the accumulator format to the output format."""
        return self.in_frac + self.w_frac - self.out_frac

    @property
    def entries_per_pe(self) -> np.ndarray:
        return self.ptr[:, -1].astype(np.int64)

    @property
    def entry_offsets(self) -> np.ndarray:
        """Start of each PE's entries in v/z, shape (n_pe + 1,)."""
        return np.concatenate([[0], np.cumsum(self.entries_per_pe)])

    def pe_entries(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, v, z) of PE k, as loaded into that PE's memories."""
        off = self.entry_offsets
        return self.ptr[k], self.v[off[k]:off[k + 1]], self.z[off[k]:off[k + 1]]

    def column_counts(self) -> np.ndarray:
        """Entries per (PE, column key), shape (n_pe, n_blocks * n_cols)."""
        return np.diff(self.ptr.astype(np.int64), axis=1)

    @cached_property
    def coordinates(self) -> EntryCoordinates:
        """Decode every entry's position (vectorised; see docs/image-format.md)."""
        n_pe = self.n_pe
        ptr = self.ptr.astype(np.int64)
        n_keys = ptr.shape[1] - 1
        counts = np.diff(ptr, axis=1).ravel()
        pe = np.repeat(np.arange(n_pe), ptr[:, -1])
        colkey = np.repeat(np.tile(np.arange(n_keys), n_pe), counts)
        steps = self.z.astype(np.int64) + 1
        csum = np.cumsum(steps)
        group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        base = np.where(group_start > 0, np.concatenate([[0], csum])[group_start], 0)
        row_in_block = csum - np.repeat(base, counts) - 1
        block = colkey // self.n_cols
        local = block * self.acc_depth + row_in_block
        return EntryCoordinates(
            pe=pe, colkey=colkey, col=colkey % self.n_cols, block=block,
            row=local * n_pe + pe, row_in_block=row_in_block,
            v=self.v.astype(np.int64), z=self.z.astype(np.int64),
        )


@dataclass(eq=False)
class EIEImage:
    """A network compiled for `n_pe` PEs with `acc_depth` accumulators per PE."""

    n_pe: int
    acc_depth: int
    layers: list[EncodedLayer]
    meta: dict = field(default_factory=dict)
    source: str = "<image>"  # file name used in error messages
    # set by image_file.load_image: {"version": "1.2", "header": "crc32" | "unprotected"}
    file_format: dict | None = None

    # -- validation -----------------------------------------------------------------
    def fail(self, where: str, msg: str):
        raise ImageFormatError(f"{self.source}: {where}: {msg}")

    def validate(self) -> "EIEImage":
        """Check every rule of docs/image-format.md; raise ImageFormatError naming the field."""
        if not isinstance(self.n_pe, int) or not 1 <= self.n_pe <= MAX_N_PE:
            self.fail("n_pe", f"expected an integer in 1..{MAX_N_PE}, got {self.n_pe!r}")
        if not isinstance(self.acc_depth, int) or not 1 <= self.acc_depth <= MAX_ACC_DEPTH:
            self.fail("acc_depth", f"expected an integer in 1..{MAX_ACC_DEPTH}, got {self.acc_depth!r}")
        if not self.layers:
            self.fail("layers", "expected at least one layer")
        for i, layer in enumerate(self.layers):
            self._validate_layer(i, layer)
        first = self.layers[0]
        if not is_identity_permutation(first.col_perm):
            self.fail("layers[0].col_perm", "the network input is never permuted: expected none or the identity")
        for i in range(1, len(self.layers)):
            prev, cur = self.layers[i - 1], self.layers[i]
            if cur.n_in != prev.n_out:
                self.fail(f"layers[{i}].n_in", f"{cur.n_in} does not match layers[{i-1}].n_out = {prev.n_out}")
            if cur.in_frac != prev.out_frac:
                self.fail(f"layers[{i}].in_frac",
                          f"{cur.in_frac} does not match layers[{i-1}].out_frac = {prev.out_frac} "
                          "(the register files swap without rescaling)")
            if not np.array_equal(cur.logical_cols, prev.logical_rows):
                self.fail(f"layers[{i}].col_perm",
                          f"does not match layers[{i-1}].row_perm: a layer's columns must be in the previous "
                          "layer's hardware row order (the register files swap without un-permuting)")
        return self

    def _validate_layer(self, i: int, L: EncodedLayer):
        w = f"layers[{i}]"
        if L.ptr.ndim != 2 or L.ptr.shape[0] != self.n_pe:
            self.fail(f"{w}.ptr", f"expected one pointer array per PE ({self.n_pe}), got shape {L.ptr.shape}")
        if L.acc_depth != self.acc_depth:
            self.fail(f"{w}.acc_depth", f"{L.acc_depth} differs from the image's acc_depth {self.acc_depth}")
        for name in ("n_in", "n_out"):
            val = getattr(L, name)
            if not isinstance(val, (int, np.integer)) or not 1 <= val <= MAX_DIM:
                self.fail(f"{w}.{name}", f"expected an integer in 1..{MAX_DIM}, got {val!r}")
        for name, n in (("row_perm", L.n_out), ("col_perm", L.n_in)):
            perm = getattr(L, name)
            if perm is not None and (msg := permutation_problem(perm, n)):
                self.fail(f"{w}.{name}", f"{msg} (layer {L.name!r})")
        for name in ("in_frac", "w_frac", "out_frac"):
            val = getattr(L, name)
            if not isinstance(val, (int, np.integer)) or not nm.MIN_FRAC <= val <= nm.MAX_FRAC:
                self.fail(f"{w}.{name}", f"expected an integer in {nm.MIN_FRAC}..{nm.MAX_FRAC}, got {val!r}")
        if not isinstance(L.bias, (bool, np.bool_)):
            self.fail(f"{w}.bias", f"expected true or false, got {L.bias!r}")
        if L.bias and (msg := nm.bias_in_frac_problem(L.in_frac)):
            self.fail(f"{w}.in_frac", msg)
        if not 0 <= L.shift < nm.MAX_ACC_BITS:
            self.fail(f"{w}.out_frac", f"in_frac + w_frac - out_frac = {L.shift}; expected 0..{nm.MAX_ACC_BITS - 1}")
        cb, cbf = np.asarray(L.codebook), np.asarray(L.codebook_float)
        if cb.shape != (nm.CODEBOOK_SIZE,):
            self.fail(f"{w}.codebook", f"expected {nm.CODEBOOK_SIZE} entries, got shape {cb.shape}")
        if cbf.shape != (nm.CODEBOOK_SIZE,):
            self.fail(f"{w}.codebook_float", f"expected {nm.CODEBOOK_SIZE} entries, got shape {cbf.shape}")
        if not np.all(np.isfinite(cbf)):
            bad = int(np.flatnonzero(~np.isfinite(cbf))[0])
            self.fail(f"{w}.codebook_float[{bad}]", f"expected a finite number, got {cbf[bad]!r}")
        lo, hi = nm.int_range(nm.WEIGHT_BITS)
        if cb.min() < lo or cb.max() > hi:
            self.fail(f"{w}.codebook", f"values must fit signed {nm.WEIGHT_BITS} bits")
        if cb[0] != 0 or cbf[0] != 0:
            self.fail(f"{w}.codebook[0]", "entry 0 is reserved for the value 0 (padding)")
        expect = nm.quantize(cbf, L.w_frac, nm.WEIGHT_BITS)
        if not np.array_equal(expect, cb.astype(np.int64)):
            bad = int(np.flatnonzero(expect != cb)[0])
            self.fail(f"{w}.codebook[{bad}]",
                      f"{int(cb[bad])} is not codebook_float[{bad}] = {float(cbf[bad])!r} at w_frac={L.w_frac} "
                      f"(expected {int(expect[bad])})")
        nb = n_blocks(L.n_out, self.n_pe, self.acc_depth)
        want = (self.n_pe, nb * L.n_cols + 1)
        if L.ptr.ndim != 2 or L.ptr.shape != want:
            cols = "n_in+1 (bias)" if L.bias else "n_in"
            self.fail(f"{w}.ptr", f"expected shape {want} (n_pe, n_blocks*{cols}+1 with n_blocks={nb}), "
                                  f"got {L.ptr.shape}")
        ptr = L.ptr.astype(np.int64)
        if np.any(ptr[:, 0] != 0):
            k = int(np.flatnonzero(ptr[:, 0] != 0)[0])
            self.fail(f"{w}.ptr[PE {k}][0]", f"expected 0, got {int(ptr[k, 0])}")
        d = np.diff(ptr, axis=1)
        if np.any(d < 0):
            k, j = map(int, np.argwhere(d < 0)[0])
            self.fail(f"{w}.ptr[PE {k}]", f"pointers must be non-decreasing: ptr[{j+1}]={ptr[k, j+1]} < ptr[{j}]={ptr[k, j]}")
        total = int(ptr[:, -1].sum())
        for name in ("v", "z"):
            arr = getattr(L, name)
            if arr.ndim != 1 or arr.shape[0] != total:
                self.fail(f"{w}.{name}", f"expected {total} entries (sum of every PE's last pointer), got shape {arr.shape}")
            if arr.size and int(arr.max()) > 15:
                bad = int(np.flatnonzero(arr > 15)[0])
                self.fail(f"{w}.{name}[{bad}]", f"{int(arr[bad])} does not fit 4 bits (0..15)")
        coords = L.coordinates
        row_in_block = coords.row_in_block
        if total:
            limit = rows_in_block(L.n_out, self.n_pe, self.acc_depth)[coords.pe, coords.block]
            over = row_in_block >= limit
            if np.any(over):
                e = int(np.flatnonzero(over)[0])
                k = int(coords.pe[e])
                self.fail(f"{w}.z", f"entry {e - int(L.entry_offsets[k])} of PE {k} lands on local row "
                          f"{int(row_in_block[e])} of block {int(coords.block[e])}, past the {int(limit[e])} rows "
                          f"PE {k} holds there (n_out={L.n_out}: shape mismatch)")

    # -- summaries ------------------------------------------------------------------
    def summary(self) -> dict:
        out = {"n_pe": self.n_pe, "acc_depth": self.acc_depth, "layers": []}
        for L in self.layers:
            coords = L.coordinates
            real = int(np.count_nonzero(coords.v))
            out["layers"].append({
                "name": L.name, "n_in": L.n_in, "n_out": L.n_out, "relu": L.relu, "bias": bool(L.bias),
                "formats": {"in_frac": L.in_frac, "w_frac": L.w_frac, "out_frac": L.out_frac},
                "blocks": n_blocks(L.n_out, self.n_pe, self.acc_depth),
                "entries": int(L.v.size), "padding_entries": int(L.v.size) - real,
                "weight_density": int(np.count_nonzero(coords.v[coords.col < L.n_in])) / (L.n_in * L.n_out),
                "max_pe_entries": int(L.entries_per_pe.max()),
                "row_permuted": not is_identity_permutation(L.row_perm),
            })
        return out
