"""Weight sharing: a 16-entry codebook per layer, entry 0 reserved for the exact zero.

k-means on the non-zero weights (15 centroids, linear initialisation as in Deep
Compression, Han et al. ICLR 2016, which found it the best of the three inits), or a
codebook the user gives. The encoder stores indices; the decoder looks them up.
"""

from __future__ import annotations

import numpy as np

from . import numerics as nm
from .errors import InputError

__all__ = ["kmeans_codebook", "check_codebook", "assign_indices", "fixed_point_codebook"]

N_CENTROIDS = nm.CODEBOOK_SIZE - 1


def kmeans_codebook(weights, seed: int = 0, max_iter: int = 300) -> np.ndarray:
    """16 float centroids: [0.0, 15 k-means centroids of the non-zero weights, ascending].

    With fewer than 15 distinct non-zero values the distinct values themselves are the
    centroids (exact), and the unused slots repeat the last one.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    nz = w[w != 0]
    cb = np.zeros(nm.CODEBOOK_SIZE)
    if nz.size == 0:
        return cb
    uniq = np.unique(nz)
    if uniq.size <= N_CENTROIDS:
        cents = uniq
    else:
        from sklearn.cluster import KMeans  # scikit-learn (slow to import): deferred to k-means

        init = np.linspace(nz.min(), nz.max(), N_CENTROIDS).reshape(-1, 1)
        km = KMeans(n_clusters=N_CENTROIDS, init=init, n_init=1, max_iter=max_iter,
                    random_state=seed).fit(nz.reshape(-1, 1))
        cents = np.sort(km.cluster_centers_.ravel())
    cents = _away_from_zero(cents)
    cb[1:1 + cents.size] = cents
    cb[1 + cents.size:] = cents[-1]
    return cb


def _away_from_zero(cents: np.ndarray) -> np.ndarray:
    """Move centroids that would round to 0 in the codebook's fixed-point format to +-1 step.

    A cluster straddling 0 can have a mean of (almost) 0; its weights would then decode to
    0 like pruned ones. One step (2**-w_frac) is the nearest value the hardware can hold.
    Not done when even the largest centroid rounds to 0: that layer is out of range, and
    the encoder refuses it (encoder.quantisation_report).
    """
    w_frac = nm.choose_frac(np.abs(cents).max(), nm.WEIGHT_BITS)
    step = 2.0 ** -w_frac
    if np.abs(cents).max() < step / 2:
        return cents
    rounds_to_zero = np.floor(cents / step + 0.5) == 0
    return np.where(rounds_to_zero, np.where(cents < 0, -step, step), cents)


def check_codebook(codebook, what: str = "codebook") -> np.ndarray:
    cb = np.asarray(codebook, dtype=np.float64)
    if cb.shape != (nm.CODEBOOK_SIZE,):
        raise InputError(f"{what}: expected {nm.CODEBOOK_SIZE} values, got shape {cb.shape}")
    if not np.all(np.isfinite(cb)):
        raise InputError(f"{what}: expected finite values, got {cb.tolist()}")
    if np.abs(cb).max() >= nm.MAX_MAGNITUDE:
        k = int(np.argmax(np.abs(cb)))
        raise InputError(f"{what}: entry {k} is {cb[k]:.6g}; {nm.magnitude_limit('codebook values')}")
    if cb[0] != 0:
        raise InputError(f"{what}: entry 0 is reserved for 0.0 (padding), got {cb[0]!r}")
    return cb


def assign_indices(weights, codebook) -> np.ndarray:
    """Index matrix: 0 where the weight is 0, else the nearest of entries 1..15."""
    w = np.asarray(weights, dtype=np.float64)
    cb = check_codebook(codebook)
    idx = np.zeros(w.shape, dtype=np.uint8)
    mask = w != 0
    vals = w[mask]
    if vals.size:
        cands = cb[1:]
        order = np.argsort(cands, kind="stable")
        sorted_c = cands[order]
        pos = np.clip(np.searchsorted(sorted_c, vals), 1, len(sorted_c) - 1)
        left, right = sorted_c[pos - 1], sorted_c[pos]
        pick = np.where(np.abs(vals - left) <= np.abs(right - vals), pos - 1, pos)
        idx[mask] = (order[pick] + 1).astype(np.uint8)
    return idx


# An all-zero codebook (a layer without non-zero weights) has no range to fit. It keeps the
# format it always had, so such images are unchanged, and it leaves the output format free
# from in_frac - 17 to in_frac + 30 (encoder.writeback_format); choose_frac(0) would give
# MAX_FRAC and force every later format up.
ZERO_CODEBOOK_FRAC = 30


def fixed_point_codebook(codebook, w_frac: int | None = None) -> tuple[np.ndarray, int]:
    """(int16 codebook, w_frac): the most fractional bits that keep every entry in 16 bits."""
    cb = check_codebook(codebook)
    if w_frac is None:
        w_frac = nm.choose_frac(np.abs(cb).max(), nm.WEIGHT_BITS) if cb.any() else ZERO_CODEBOOK_FRAC
    return nm.quantize(cb, w_frac, nm.WEIGHT_BITS, what="codebook").astype(np.int16), w_frac
