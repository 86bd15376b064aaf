import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eie.golden_model import numerics as nm
from eie.golden_model.errors import InputError


def test_quantize_rounds_half_up_and_saturates():
    q = nm.quantize([0.5, 1.5, -0.5, -1.5, 2.49, 1e9, -1e9], 0)
    assert q.tolist() == [1, 2, 0, -1, 2, 32767, -32768]


def test_quantize_rejects_nan_and_inf_naming_the_element():
    with pytest.raises(InputError, match="element 1"):
        nm.quantize([0.0, np.nan], 8, what="input")
    with pytest.raises(InputError, match="inf"):
        nm.quantize([np.inf], 8)


@pytest.mark.parametrize("frac", [nm.MIN_FRAC - 1, nm.MAX_FRAC + 1, 1.0, True, "3"])
def test_quantize_rejects_bad_frac(frac):
    with pytest.raises(InputError, match=rf"fractional bits must be an integer in {nm.MIN_FRAC}\.\.{nm.MAX_FRAC}"):
        nm.quantize([1.0], frac)


@pytest.mark.parametrize("max_abs", [0.0616, 1.0, 10.56, 127.99, 3000.0, 1e-6, 32767.4, 32767.5, 1e6, 1e9,
                                     1e-12, 1e-15, 1e30, 1e-30])
def test_choose_frac_is_the_largest_that_fits(max_abs):
    f = nm.choose_frac(max_abs)
    assert nm.MIN_FRAC <= f <= nm.MAX_FRAC
    assert np.floor(max_abs * 2.0 ** f + 0.5) <= 32767
    if f < nm.MAX_FRAC:
        assert np.floor(max_abs * 2.0 ** (f + 1) + 0.5) > 32767


@given(mant=st.floats(0.5, 1.0, exclude_max=True), exp=st.integers(nm.MIN_FRAC - 10, nm.MAX_FRAC + 10))
def test_choose_frac_over_the_whole_range(mant, exp):
    """Against the definition, tried from the finest format down (no shortcut)."""
    max_abs = float(np.ldexp(mant, exp - 16))
    want = next((f for f in range(nm.MAX_FRAC, nm.MIN_FRAC - 1, -1)
                 if np.floor(max_abs * 2.0 ** f + 0.5) <= 32767), nm.MIN_FRAC)
    assert nm.choose_frac(max_abs) == want


def test_quantize_saturates_values_beyond_float64_at_the_finest_format():
    with np.errstate(all="raise"):  # no overflow warning either
        assert nm.quantize([1e300, -1e300, 5e-39], nm.MAX_FRAC).tolist() == [32767, -32768, 0]


@given(q=st.integers(-32768, 32767), frac=st.integers(nm.MIN_FRAC, nm.MAX_FRAC))
def test_every_value_of_every_format_round_trips_exactly(q, frac):
    """q * 2**-frac is exact in float64 and in float32 (the image's codebook copy)."""
    x = nm.dequantize(q, frac)
    assert x == q * 2.0 ** -frac and float(np.float32(x)) == x
    assert nm.quantize(x, frac).item() == q
    assert nm.quantize(np.float32(x), frac).item() == q


@pytest.mark.parametrize("frac", [0, 7, 14])
def test_bias_layers_take_in_frac_0_to_14(frac):
    assert nm.check_bias_in_frac(frac, "fc0") == frac


@pytest.mark.parametrize("frac", [-1, 15, nm.MIN_FRAC, nm.MAX_FRAC])
def test_bias_layer_in_frac_outside_0_to_14_is_refused(frac):
    with pytest.raises(InputError, match=r"fc0: in_frac = -?\d+: a layer with a bias needs 0 <= in_frac <= 14"):
        nm.check_bias_in_frac(frac, "fc0")


def test_round_shift_matches_exact_rational_rounding(rng):
    acc = rng.integers(-(2**40), 2**40, 5000)
    for shift in (0, 1, 7, 19):
        got = nm.round_shift(acc, shift)
        want = np.array([((x * 2 + (1 << shift)) // (1 << (shift + 1))) if shift else x for x in acc.tolist()])
        np.testing.assert_array_equal(got, want)


def test_writeback_saturates_16_bit_outputs_then_relu():
    acc = np.array([2**30, -(2**30), 5 << 4, -(5 << 4), (3 << 3)])
    assert nm.writeback(acc, 4, relu=False).tolist() == [32767, -32768, 5, -5, 2]  # 1.5 rounds up
    assert nm.writeback(acc, 4, relu=True).tolist() == [32767, 0, 5, 0, 2]


def test_acc_bits_range_checked():
    with pytest.raises(InputError):
        nm.check_acc_bits(64)
    assert nm.check_acc_bits(48) == 48
