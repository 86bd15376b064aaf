"""Per-PE CSC -> dense matrices: the exact inverse of the encoder."""

from __future__ import annotations

import numpy as np

from .image import EIEImage, EncodedLayer
from .numerics import dequantize

__all__ = ["decode_indices", "decode_weights", "decode_int_weights", "decode_image"]


def decode_indices(layer: EncodedLayer) -> np.ndarray:
    """Codebook-index matrix (n_out, n_in), uint8; padding entries leave zeros."""
    c = layer.coordinates
    idx = np.zeros((layer.n_out, layer.n_in), dtype=np.uint8)
    real = c.v != 0
    idx[c.row[real], c.col[real]] = c.v[real]
    return idx


def decode_int_weights(layer: EncodedLayer) -> np.ndarray:
    """Fixed-point weights (int64) as the hardware multiplies them."""
    return layer.codebook.astype(np.int64)[decode_indices(layer)]


def decode_weights(layer: EncodedLayer) -> np.ndarray:
    """Dense quantised weights as float64 (exact: int16 * 2**-w_frac)."""
    return dequantize(decode_int_weights(layer), layer.w_frac)


def decode_image(image: EIEImage) -> list[np.ndarray]:
    return [decode_weights(layer) for layer in image.layers]
