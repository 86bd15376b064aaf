"""Benchmark layers as codebook-index matrices that can be encoded for any PE count.

Synthetic layers follow Table III: every weight is kept with probability `w` (uniform,
independent), its codebook index uniform in 1..15; every input is non-zero with
probability `a`. Seeds are fixed per layer, so a run is reproducible. The real FC8
layer comes from the authors' files, decoded to indices with their codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie.golden_model import numerics as nm
from eie.golden_model.codebook import fixed_point_codebook
from eie.golden_model.decoder import decode_indices
from eie.golden_model.csc import DEFAULT_ACC_DEPTH, encode_indices
from eie.golden_model.fc8 import fc8_image, find_fc8_dir, load_fc8
from eie.golden_model.functional import quantize_input
from eie.golden_model.image import EIEImage, EncodedLayer

__all__ = ["BenchLayer", "synthetic_layer", "fc8_layer", "SYNTHETIC_CODEBOOK"]

# 15 non-zero shared weights, symmetric around 0 (entry 0 is the exact zero).
SYNTHETIC_CODEBOOK = np.concatenate([[0.0], np.linspace(-0.5, -0.0625, 8), np.linspace(0.0625, 0.5, 7)]).astype(np.float32)
_ROW_CHUNK = 256


@dataclass
class BenchLayer:
    """One benchmark layer: indices (n_out, n_in), codebook and one int input vector."""

    name: str
    idx: np.ndarray           # uint8 codebook indices, 0 = pruned
    codebook: np.ndarray      # float32 (16,)
    a: np.ndarray             # int64 (n_in,) fixed-point input (in_frac)
    in_frac: int
    source: str
    reference: object = None  # FC8 only: the authors' files it was read from (golden_model.fc8.FC8Reference)

    @property
    def shape(self) -> tuple[int, int]:
        return self.idx.shape

    @property
    def weight_density(self) -> float:
        return float(np.count_nonzero(self.idx)) / self.idx.size

    @property
    def act_density(self) -> float:
        return float(np.count_nonzero(self.a)) / self.a.size

    @property
    def useful_macs(self) -> int:
        return int(np.count_nonzero(self.idx[:, self.a != 0]))

    def image(self, n_pe: int, acc_depth: int = DEFAULT_ACC_DEPTH) -> EIEImage:
        """Encode for `n_pe` PEs (interleaved rows, per-PE CSC), no k-means: the indices are given."""
        cb_int, w_frac = fixed_point_codebook(self.codebook.astype(np.float64))
        ptr, v, z = encode_indices(self.idx, n_pe, acc_depth)
        n_out, n_in = self.idx.shape
        layer = EncodedLayer(name=self.name, n_in=n_in, n_out=n_out, relu=False, in_frac=self.in_frac,
                             w_frac=w_frac, out_frac=self.in_frac, codebook=cb_int,
                             codebook_float=self.codebook, ptr=ptr, v=v, z=z, acc_depth=acc_depth)
        return EIEImage(n_pe=n_pe, acc_depth=acc_depth, layers=[layer],
                        meta={"bench": self.name, "source": self.source}, source=self.name).validate()

    def dense_weights(self) -> np.ndarray:
        """float64 dense weights (the baselines' W)."""
        return self.codebook.astype(np.float64)[self.idx]

    def float_input(self) -> np.ndarray:
        return self.a.astype(np.float64) * 2.0 ** -self.in_frac


def synthetic_layer(name: str, n_in: int, n_out: int, weight_density: float, act_density: float,
                    seed: int) -> BenchLayer:
    """Uniform random sparsity at the given densities (see the module docstring)."""
    for what, d in (("weight_density", weight_density), ("act_density", act_density)):
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"{name}: {what} must be in [0, 1], not {d!r}")
    rng = np.random.default_rng(seed)
    idx = np.zeros((n_out, n_in), dtype=np.uint8)
    for r0 in range(0, n_out, _ROW_CHUNK):
        rows = idx[r0:r0 + _ROW_CHUNK]
        keep = rng.random(rows.shape, dtype=np.float32) < weight_density
        rows[keep] = rng.integers(1, nm.CODEBOOK_SIZE, int(keep.sum()), dtype=np.uint8)
    a = np.where(rng.random(n_in) < act_density, rng.integers(1, 256, n_in), 0).astype(np.int64)
    return BenchLayer(name, idx, SYNTHETIC_CODEBOOK, a, in_frac=8,
                      source=f"synthetic (seed {seed}, w {weight_density:.4g}, a {act_density:.4g})")


def fc8_layer(fc8_dir=None) -> BenchLayer | None:
    """The authors' AlexNet FC8 (indices, codebook, input) or None when the data is absent."""
    d = fc8_dir or find_fc8_dir()
    if d is None:
        return None
    ref = load_fc8(d)
    image = fc8_image(ref)
    L = image.layers[0]
    a = quantize_input(image, ref.act)[0].astype(np.int64)
    return BenchLayer("FC8 (authors)", decode_indices(L).astype(np.uint8), ref.codebook.astype(np.float32), a,
                      in_frac=L.in_frac, source=str(d), reference=ref)
