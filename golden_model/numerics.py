"""Fixed-point numerics of EIE, implemented once (see docs/numerics.md).

Every value the hardware holds is a two's-complement integer with a per-layer number
of fractional bits (a power-of-two scale). The RTL reproduces these functions bit for
bit; nothing else in the project re-implements them.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "ACT_BITS", "WEIGHT_BITS", "INDEX_BITS", "ZRUN_BITS", "CODEBOOK_SIZE", "PRODUCT_BITS",
    "DEFAULT_ACC_BITS", "MIN_ACC_BITS", "MAX_ACC_BITS", "MAX_FRAC",
    "int_range", "saturate", "quantize", "dequantize", "choose_frac",
    "round_shift", "writeback", "check_acc_bits",
]

ACT_BITS = 16          # activations: signed 16-bit
WEIGHT_BITS = 16       # codebook values: signed 16-bit
INDEX_BITS = 4         # codebook index v
ZRUN_BITS = 4          # zero-run z
CODEBOOK_SIZE = 1 << INDEX_BITS
PRODUCT_BITS = ACT_BITS + WEIGHT_BITS  # exact signed product
DEFAULT_ACC_BITS = 48  # a DSP48-style accumulator; cannot saturate for n_in <= 2**16
MIN_ACC_BITS = 16
MAX_ACC_BITS = 48      # keeps every partial sum exact in float64 (< 2**53)
MAX_FRAC = 30          # fractional bits of any format: 0 .. MAX_FRAC
MAX_BIAS_FRAC = ACT_BITS - 2  # a bias column's activation 1.0 = 2**in_frac fits signed ACT_BITS


def int_range(bits: int) -> tuple[int, int]:
    """Smallest and largest value of a signed `bits`-wide integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x, bits: int):
    """Clamp integers to the signed `bits`-wide range (int64 in, int64 out)."""
    lo, hi = int_range(bits)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def check_acc_bits(acc_bits: int) -> int:
    if not isinstance(acc_bits, (int, np.integer)) or not MIN_ACC_BITS <= acc_bits <= MAX_ACC_BITS:
        raise InputError(
            f"acc_bits must be an integer in {MIN_ACC_BITS}..{MAX_ACC_BITS}, not {acc_bits!r}")
    return int(acc_bits)


def _check_frac(frac, what: str) -> int:
    if not isinstance(frac, (int, np.integer)) or not 0 <= frac <= MAX_FRAC:
        raise InputError(f"{what}: fractional bits must be an integer in 0..{MAX_FRAC}, not {frac!r}")
    return int(frac)


def quantize(x, frac: int, bits: int = ACT_BITS, what: str = "value"):
    """Float -> signed fixed point with `frac` fractional bits.

    Round half up (floor(x * 2**frac + 1/2)), then saturate to `bits`. The same rule
    as the hardware's write-back rounding, so host and RTL agree on ties.
    """
    frac = _check_frac(frac, what)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x.ravel()))[0]
        raise InputError(f"{what}: element {bad} is {float(x.ravel()[bad])!r}; expected finite numbers")
    lo, hi = int_range(bits)
    scaled = np.floor(x * float(1 << frac) + 0.5)
    return np.clip(scaled, lo, hi).astype(np.int64)


def dequantize(q, frac: int):
    """Signed fixed point -> float64 (exact)."""
    return np.asarray(q, dtype=np.float64) * (2.0 ** -int(frac))


def choose_frac(max_abs: float, bits: int = ACT_BITS, max_frac: int = MAX_FRAC) -> int:
    """Most fractional bits such that +-max_abs still fits in `bits` after rounding."""
    max_abs = float(max_abs)
    if not np.isfinite(max_abs):
        raise InputError(f"cannot choose a fixed-point format for max |x| = {max_abs!r}")
    _, hi = int_range(bits)
    if max_abs == 0.0:
        return max_frac
    for frac in range(max_frac, -1, -1):
        if np.floor(max_abs * (1 << frac) + 0.5) <= hi:
            return frac
    return 0


def round_shift(acc, shift: int):
    """Arithmetic right shift by `shift` with round half up (add 2**(shift-1) first).

    Done at full width (int64 here; acc_bits + 1 bits in the RTL), so the rounding
    constant can never overflow.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if shift == 0:
        return acc
    return (acc + (1 << (shift - 1))) >> shift


def writeback(acc, shift: int, relu: bool):
    """Accumulator -> 16-bit activation: round, saturate to 16 bits, then ReLU."""
    y = saturate(round_shift(acc, shift), ACT_BITS)
    if relu:
        y = np.maximum(y, 0)
    return y
