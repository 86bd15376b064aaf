"""Bit-exact functional model: y = act(W a) in the fixed point of docs/numerics.md.

Exact integer arithmetic, vectorised: products are < 2**31 and the accumulator is at
most 48 bits, so every partial sum is an integer below 2**53 and a float64 sparse
matrix product is exact. Saturation of the accumulator (acc_bits) depends on the order
of the additions (increasing column, the broadcast order); it can only occur where the
sum of |products| exceeds the accumulator range, and only those (sample, row) pairs are
replayed sequentially.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from . import numerics as nm
from .errors import InputError
from .image import EIEImage, EncodedLayer

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["int_matrix", "accumulate", "run_layer", "run_network", "quantize_input", "check_int_input"]

_CSR_CACHE: "weakref.WeakKeyDictionary[EncodedLayer, tuple]" = weakref.WeakKeyDictionary()


def _matrices(layer: EncodedLayer) -> tuple[csr_matrix, csr_matrix, float]:
    """(W, |W|, max row L1 norm of W), built once per layer; W is (n_out, n_cols): with a
    bias its last column is the bias, which meets the constant bias activation."""
    cached = _CSR_CACHE.get(layer)
    if cached is None:
        from scipy.sparse import csr_matrix  # SciPy (a tenth of a second): deferred, `eie info` never needs it

        c = layer.coordinates
        real = c.v != 0
        vals = layer.codebook.astype(np.float64)[c.v[real]]
        W = csr_matrix((vals, (c.row[real], c.col[real])), shape=(layer.n_out, layer.n_cols))
        W.sort_indices()
        absW = abs(W)
        row_l1 = float(np.asarray(absW.sum(axis=1)).max(initial=0.0))
        cached = _CSR_CACHE[layer] = (W, absW, row_l1)
    return cached


def int_matrix(layer: EncodedLayer) -> csr_matrix:
    """The layer's fixed-point weights as a CSR matrix (float64 holding integers), with
    the bias column last if the layer has one (see EncodedLayer.with_bias_input)."""
    return _matrices(layer)[0]


def check_int_input(a, n_in: int, what: str = "input") -> np.ndarray:
    """(batch, n_in) int64 from an integer array already in 16-bit fixed point."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{what}: expected integer fixed-point activations, got dtype {a.dtype}")
    a2 = np.atleast_2d(a).astype(np.int64)
    if a2.ndim != 2 or a2.shape[1] != n_in:
        raise InputError(f"{what}: expected shape ({n_in},) or (batch, {n_in}), got {a.shape}")
    lo, hi = nm.int_range(nm.ACT_BITS)
    if a2.size and (a2.min() < lo or a2.max() > hi):
        raise InputError(f"{what}: values must fit signed {nm.ACT_BITS} bits ({lo}..{hi})")
    return a2


def quantize_input(image: EIEImage, x, what: str = "input") -> np.ndarray:
    """Float input (n_in,) or (batch, n_in) -> int64 in the first layer's input format."""
    L0 = image.layers[0]
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or x.shape[-1:] != (L0.n_in,) or x.ndim > 2:
        raise InputError(f"{what}: expected numbers of shape ({L0.n_in},) or (batch, {L0.n_in}), "
                         f"got {x.shape} {x.dtype}")
    return np.atleast_2d(nm.quantize(x, L0.in_frac, nm.ACT_BITS, what=what))


def _saturating_sum(products: np.ndarray, lo: int, hi: int) -> int:
    acc = 0
    for p in products.tolist():
        acc = min(max(acc + p, lo), hi)
    return acc


def accumulate(layer: EncodedLayer, a: np.ndarray, acc_bits: int = nm.DEFAULT_ACC_BITS) -> np.ndarray:
    """Accumulator contents after a layer: (batch, n_out) int64, saturating at acc_bits."""
    nm.check_acc_bits(acc_bits)
    W, absW, row_l1 = _matrices(layer)
    a = layer.with_bias_input(a)
    af = a.T.astype(np.float64)
    acc = np.asarray(W @ af).T.astype(np.int64)
    lo, hi = nm.int_range(acc_bits)
    if a.size == 0 or row_l1 * np.abs(a).max() <= hi:
        return acc  # no partial sum can leave the accumulator range
    bound = np.asarray(absW @ np.abs(af)).T
    risky = np.argwhere(bound > hi)
    for s, r in risky:  # rare: only where saturation is possible at all
        lo_i, hi_i = W.indptr[r], W.indptr[r + 1]
        prods = W.data[lo_i:hi_i].astype(np.int64) * a[s, W.indices[lo_i:hi_i]]
        acc[s, r] = _saturating_sum(prods, lo, hi)
    return acc


def run_layer(layer: EncodedLayer, a: np.ndarray, acc_bits: int = nm.DEFAULT_ACC_BITS) -> np.ndarray:
    """One layer on (batch, n_in) int inputs -> (batch, n_out) int64 16-bit outputs."""
    return nm.writeback(accumulate(layer, a, acc_bits), layer.shift, layer.relu)


def run_network(image: EIEImage, a, acc_bits: int = nm.DEFAULT_ACC_BITS) -> list[np.ndarray]:
    """Every layer in turn (the register files swap between layers).

    Returns the list [input, output of layer 0, output of layer 1, ...], each
    (batch, n) int64, so the cycle model can see each layer's input activations.
    """
    acts = [check_int_input(a, image.layers[0].n_in)]
    for layer in image.layers:
        acts.append(run_layer(layer, acts[-1], acc_bits))
    return acts


def logical_outputs(image: EIEImage, acts: list[np.ndarray]) -> list[np.ndarray]:
    """run_network's list with every layer's output un-permuted to the original row order
    (load-balanced images store rows permuted, EncodedLayer.row_perm; the input never is)."""
    return [acts[0]] + [L.outputs_to_logical(y) if L.row_perm is not None else y
                        for L, y in zip(image.layers, acts[1:])]
