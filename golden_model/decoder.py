"""Per-PE CSC -> dense matrices: the exact inverse of the encoder.

By default the matrices come back in the original (logical) row and column order, as
the user gave them to the encoder; `order="hardware"` gives them as stored, with the
load-balancing permutation applied (see EncodedLayer.row_perm and docs/image-format.md).
For an unpermuted layer both are the same.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .image import EIEImage, EncodedLayer
from .numerics import dequantize

__all__ = ["decode_indices", "decode_weights", "decode_int_weights", "decode_image", "decode_bias_indices",
           "decode_bias", "decode_int_bias", "ORDERS"]

ORDERS = ("logical", "hardware")


def decode_indices(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Codebook-index matrix (n_out, n_in), uint8; padding entries leave zeros.

    `order="logical"`: original rows and columns; `"hardware"`: as the PEs store them
    (hardware row r = logical row row_perm[r], hardware column c = logical col_perm[c]).
    """
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}, not {order!r}")
    c = layer.coordinates
    idx = np.zeros((layer.n_out, layer.n_in), dtype=np.uint8)
    real = (c.v != 0) & (c.col < layer.n_in)
    rows, cols = c.row[real], c.col[real]
    if order == "logical":
        rows, cols = layer.logical_rows[rows], layer.logical_cols[cols]
    idx[rows, cols] = c.v[real]
    return idx


def decode_int_weights(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Fixed-point weights (int64) as the hardware multiplies them."""
    return layer.codebook.astype(np.int64)[decode_indices(layer, order)]


def decode_weights(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Dense quantised weights as float64 (exact: int16 * 2**-w_frac)."""
    return dequantize(decode_int_weights(layer, order), layer.w_frac)


def decode_bias_indices(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Codebook index of each row's bias (n_out,), uint8: the bias column's entries;
    all zeros for a layer without a bias (or whose biases all quantise to 0)."""
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}, not {order!r}")
    c = layer.coordinates
    idx = np.zeros(layer.n_out, dtype=np.uint8)
    sel = (c.v != 0) & (c.col == layer.n_in) if layer.bias else np.zeros(c.v.shape, dtype=bool)
    rows = c.row[sel]
    idx[layer.logical_rows[rows] if order == "logical" else rows] = c.v[sel]
    return idx


def decode_int_bias(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Fixed-point biases (int64, n_out) at w_frac, as the bias column adds them."""
    return layer.codebook.astype(np.int64)[decode_bias_indices(layer, order)]


def decode_bias(layer: EncodedLayer, order: str = "logical") -> np.ndarray:
    """Biases as float64 (n_out,) (exact: int16 * 2**-w_frac); zeros without a bias."""
    return dequantize(decode_int_bias(layer, order), layer.w_frac)


def decode_image(image: EIEImage, order: str = "logical") -> list[np.ndarray]:
    return [decode_weights(layer, order) for layer in image.layers]
