"""Float reference and the error bound the golden model must meet (docs/numerics.md)."""

from __future__ import annotations

import numpy as np

from .decoder import decode_bias_indices, decode_indices
from .image import EIEImage
from .numerics import ACT_BITS, dequantize, int_range

__all__ = ["float_weights", "float_bias", "float_reference", "error_bound", "saturated_outputs",
           "saturation_counts"]


def float_weights(layer) -> np.ndarray:
    """W with the float centroids (no fixed point): what a float accelerator would use."""
    return layer.codebook_float.astype(np.float64)[decode_indices(layer)]


def float_bias(layer) -> np.ndarray:
    """The bias with the float centroids (n_out,); zeros for a layer without one."""
    return layer.codebook_float.astype(np.float64)[decode_bias_indices(layer)]


def float_reference(image: EIEImage, x) -> list[np.ndarray]:
    """Float64 forward pass: [x, y0, y1, ...] with float weights and activations."""
    acts = [np.atleast_2d(np.asarray(x, dtype=np.float64))]
    for L in image.layers:
        y = acts[-1] @ float_weights(L).T + float_bias(L)
        acts.append(np.maximum(y, 0) if L.relu else y)
    return acts


def error_bound(image: EIEImage, x, golden_acts: list[np.ndarray], reference=None) -> list[np.ndarray]:
    """Per-output bound on |golden - float| for every layer, valid while no output saturates.

    Layer input error e (exact for the first layer), fixed-point weights W~ = W + dW,
    golden input a~ (so |a~ - a| <= e):
        |W~ a~ - W a| <= |dW| |a~| + |W| e,   plus 2**-(out_frac+1) for the rounding,
    and ReLU is 1-Lipschitz. A relative 1e-12 covers float64 rounding of the reference.

    The float network is the image's own (its float centroids) unless `reference` gives
    one [(W, b or None), ...] per layer in the weights' original order, e.g. an imported
    model's unshared weights: dW then holds the weight-sharing error too.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    L0 = image.layers[0]
    e = np.abs(dequantize(golden_acts[0], L0.in_frac) - x)
    bounds = []
    for i, L in enumerate(image.layers):
        idx = decode_indices(L)  # decode once for both weight matrices
        bidx = decode_bias_indices(L)
        cbf, cbq = L.codebook_float.astype(np.float64), dequantize(L.codebook.astype(np.int64), L.w_frac)
        if reference is None:
            Wf, bf = cbf[idx], cbf[bidx]
        else:
            Wf = np.asarray(reference[i][0], dtype=np.float64)
            bf = np.zeros(L.n_out) if reference[i][1] is None else np.asarray(reference[i][1], dtype=np.float64)
        a_g = np.abs(dequantize(golden_acts[i], L.in_frac))
        absW = np.abs(Wf)
        db = np.abs(cbq[bidx] - bf)  # the bias meets an exact 1.0: only its weight error
        e = a_g @ np.abs(cbq[idx] - Wf).T + e @ absW.T + db + 2.0 ** -(L.out_frac + 1)
        e = e + 1e-12 * (a_g @ absW.T) + 1e-300
        bounds.append(e)
    return bounds


def saturated_outputs(golden: np.ndarray) -> np.ndarray:
    """Mask of outputs at the 16-bit limits, where the bound does not apply."""
    lo, hi = int_range(ACT_BITS)
    return (golden == lo) | (golden == hi)


def saturation_counts(layer_outputs: list) -> list[int]:
    """Per layer, how many outputs (over the batch) sit at the 16-bit limits: a count > 0 says
    the layer's activation format is too narrow for these inputs (a silent clip otherwise).
    `layer_outputs`: RunResult.layer_outputs ([input, y0, y1, ...])."""
    return [int(np.count_nonzero(saturated_outputs(np.asarray(y)))) for y in layer_outputs[1:]]
