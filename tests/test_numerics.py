import numpy as np
import pytest

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


def test_quantize_rejects_bad_frac():
    with pytest.raises(InputError, match="fractional bits"):
        nm.quantize([1.0], 31)


@pytest.mark.parametrize("max_abs", [0.0616, 1.0, 10.56, 127.99, 3000.0, 1e-6])
def test_choose_frac_is_the_largest_that_fits(max_abs):
    f = nm.choose_frac(max_abs)
    assert np.floor(max_abs * 2**f + 0.5) <= 32767
    if f < nm.MAX_FRAC:
        assert np.floor(max_abs * 2 ** (f + 1) + 0.5) > 32767


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
