"""Fixed-point numerics of EIE, implemented once (see docs/numerics.md).

Every value the hardware holds is a two's-complement integer with a per-layer number
of fractional bits (a power-of-two scale). The RTL reproduces these functions bit for
bit; nothing else in the project re-implements them.

A number of fractional bits may be negative (a step above 1: weights or activations far
above 1) or above 16 (values far below 1). The array only ever sees the write-back shift
in_frac + w_frac - out_frac, so the formats' range is a host matter; conversions scale by
powers of two with ldexp, which is exact (a left shift by a negative count is an error).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "ACT_BITS", "WEIGHT_BITS", "INDEX_BITS", "ZRUN_BITS", "CODEBOOK_SIZE", "PRODUCT_BITS",
    "DEFAULT_ACC_BITS", "MIN_ACC_BITS", "MAX_ACC_BITS",
    "MIN_FRAC", "MAX_FRAC", "MAX_MAGNITUDE", "MIN_BIAS_FRAC", "MAX_BIAS_FRAC",
    "int_range", "saturate", "check_frac", "bias_in_frac_problem", "check_bias_in_frac", "magnitude_limit",
    "pow2", "quantize", "dequantize", "choose_frac", "round_shift", "writeback", "check_acc_bits",
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
# Fractional bits of any format: MIN_FRAC .. MAX_FRAC. Every value a format holds,
# q * 2**-frac with 1 <= |q| <= 2**15, is then a normal float32 (2**-126 .. 2**128): the image
# stores the codebook's float centroids as float32 (docs/numerics.md, "Formats").
MIN_FRAC = -112        # 2**15 * 2**112 = 2**127 < the largest float32
MAX_FRAC = 126         # one step 2**-126 is the smallest normal float32
MAX_MAGNITUDE = float(np.ldexp((1 << (ACT_BITS - 1)) - 0.5, -MIN_FRAC))  # |x| below this fits the widest format
MIN_BIAS_FRAC = 0      # a bias column's activation 1.0 = 2**in_frac must be an integer ...
MAX_BIAS_FRAC = ACT_BITS - 2  # ... that fits signed ACT_BITS


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


def check_frac(frac, what: str) -> int:
    """A number of fractional bits as an int in MIN_FRAC..MAX_FRAC (InputError otherwise)."""
    if not isinstance(frac, (int, np.integer)) or isinstance(frac, bool) or not MIN_FRAC <= frac <= MAX_FRAC:
        raise InputError(f"{what}: fractional bits must be an integer in {MIN_FRAC}..{MAX_FRAC}, not {frac!r}")
    return int(frac)


def bias_in_frac_problem(in_frac: int) -> str | None:
    """Why a layer with a bias cannot have this input format (None if it can).

    The bias column's activation is 1.0 = 2**in_frac as a signed 16-bit integer.
    """
    if MIN_BIAS_FRAC <= in_frac <= MAX_BIAS_FRAC:
        return None
    return (f"in_frac = {in_frac}: a layer with a bias needs {MIN_BIAS_FRAC} <= in_frac <= {MAX_BIAS_FRAC} "
            f"(its bias column's activation 1.0 = 2^in_frac must be a signed {ACT_BITS}-bit integer)")


def check_bias_in_frac(in_frac: int, what: str) -> int:
    """in_frac of a layer with a bias, checked by bias_in_frac_problem (InputError)."""
    if (msg := bias_in_frac_problem(in_frac)):
        raise InputError(f"{what}: {msg}")
    return in_frac


def magnitude_limit(kind: str) -> str:
    """The rule a value too large for every format breaks, for error messages."""
    return (f"{kind} must be below {MAX_MAGNITUDE:.6g} in magnitude (16-bit values with at least "
            f"{MIN_FRAC} fractional bits; docs/numerics.md)")


def pow2(frac: int) -> float:
    """2.0**frac as an exact float64 (for any frac in MIN_FRAC..MAX_FRAC, negative too)."""
    return float(np.ldexp(1.0, int(frac)))


def quantize(x, frac: int, bits: int = ACT_BITS, what: str = "value"):
    """Float -> signed fixed point with `frac` fractional bits.

    Round half up (floor(x * 2**frac + 1/2)), then saturate to `bits`. The same rule
    as the hardware's write-back rounding, so host and RTL agree on ties.
    """
    frac = check_frac(frac, what)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x.ravel()))[0]
        raise InputError(f"{what}: element {bad} is {float(x.ravel()[bad])!r}; expected finite numbers")
    lo, hi = int_range(bits)
    with np.errstate(over="ignore"):  # a finite x beyond the float64 range at this scale saturates
        scaled = np.floor(x * pow2(frac) + 0.5)
    return np.clip(scaled, lo, hi).astype(np.int64)


def dequantize(q, frac: int):
    """Signed fixed point -> float64 (exact: a power-of-two scale of a 16-bit integer)."""
    return np.asarray(q, dtype=np.float64) * pow2(-int(frac))


def choose_frac(max_abs: float, bits: int = ACT_BITS, max_frac: int = MAX_FRAC) -> int:
    """Most fractional bits (MIN_FRAC..max_frac) such that +-max_abs still fits in `bits`
    after rounding: the finest power-of-two step that holds the range, whatever its scale.

    max_frac for 0 (nothing to hold); MIN_FRAC when even that saturates (the caller refuses).
    """
    max_abs = float(max_abs)
    if not np.isfinite(max_abs):
        raise InputError(f"cannot choose a fixed-point format for max |x| = {max_abs!r}")
    if max_abs == 0.0:
        return max_frac
    _, hi = int_range(bits)
    # 2**(e-1) <= max_abs < 2**e: the answer is bits-1-e or one below it (rounding up to 2**(bits-1))
    frac = min(max_frac, bits - 1 - int(np.frexp(max_abs)[1]))
    while frac > MIN_FRAC and np.floor(max_abs * pow2(frac) + 0.5) > hi:
        frac -= 1
    return max(frac, MIN_FRAC)


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
