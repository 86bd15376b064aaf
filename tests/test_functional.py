"""Golden functional model: bit-exact against a naive integer reference, and within the
derived error bound of the float reference (docs/numerics.md)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eie.golden_model import encode_network, decode_int_weights
from eie.golden_model import numerics as nm
from eie.golden_model.errors import InputError
from eie.golden_model.functional import accumulate, run_layer, run_network, quantize_input
from eie.golden_model.reference import error_bound, float_reference, saturated_outputs

from .helpers import sparse_matrix


def naive_layer(Wint, a, shift, relu, acc_bits):
    """Per-element Python reference: sequential saturating adds in column order."""
    lo, hi = nm.int_range(acc_bits)
    out = []
    for row in Wint.tolist():
        acc = 0
        for w, x in zip(row, a.tolist()):
            if w and x:
                acc = min(max(acc + w * x, lo), hi)
        y = (acc + (1 << (shift - 1))) >> shift if shift else acc
        y = min(max(y, -32768), 32767)
        out.append(max(y, 0) if relu else y)
    return np.array(out)


@given(n_out=st.integers(1, 25), n_in=st.integers(1, 25), n_pe=st.integers(1, 6),
       wd=st.floats(0, 1), ad=st.floats(0, 1), acc_bits=st.sampled_from([16, 20, 24, 32, 48]),
       relu=st.booleans(), seed=st.integers(0, 2**31))
def test_layer_matches_naive_reference(n_out, n_in, n_pe, wd, ad, acc_bits, relu, seed):
    rng = np.random.default_rng(seed)
    W = sparse_matrix(rng, n_out, n_in, wd, scale=2.0)
    image = encode_network([W], n_pe, act_frac=6, relu_last=relu)
    L = image.layers[0]
    a = rng.integers(-32768, 32768, (3, n_in)) * (rng.random((3, n_in)) < ad)
    got = run_layer(L, a, acc_bits)
    Wint = decode_int_weights(L)
    for s in range(3):
        np.testing.assert_array_equal(got[s], naive_layer(Wint, a[s], L.shift, relu, acc_bits))


def test_accumulator_saturation_is_sequential_not_final_clip():
    """Saturation of the accumulator: +big, +big, -big in column order saturates at the
    second add, so the result is max - big, not clip(big)."""
    W = np.array([[1.0, 1.0, -1.0]])
    image = encode_network([W], 1, act_frac=0, codebooks=[[0] + [1.0] * 7 + [-1.0] * 8])
    L = image.layers[0]
    a = np.array([[300, 300, 300]])
    acc_bits = 24
    lo, hi = nm.int_range(acc_bits)
    w = int(L.codebook[1])
    assert w * 300 < hi < 2 * w * 300  # the second add saturates
    acc = accumulate(L, a, acc_bits)
    assert acc[0, 0] == hi - w * 300
    assert accumulate(L, a, 48)[0, 0] == w * 300


def test_output_saturation_to_16_bits():
    W = np.full((2, 4), 1.0)
    W[1] = -1.0
    image = encode_network([W], 2, act_frac=0, relu_last=True)
    y = run_layer(image.layers[0], np.full((1, 4), 32000), 48)
    assert y.tolist() == [[32767, 0]]  # saturated high; the negative one is cut by ReLU


def test_output_saturation_negative_without_relu():
    W = -np.ones((1, 4))
    image = encode_network([W], 1, act_frac=0)
    assert not image.layers[0].relu
    assert run_layer(image.layers[0], np.full((1, 4), 32000), 48).tolist() == [[-32768]]


def test_all_zero_input_gives_zero_outputs(rng):
    image = encode_network([sparse_matrix(rng, 30, 20, 0.5)], 4)
    acts = run_network(image, np.zeros((1, 20), dtype=np.int64))
    assert not acts[-1].any()


def test_all_zero_matrix_gives_zero_outputs(rng):
    image = encode_network([np.zeros((9, 5))], 4)
    assert not run_network(image, rng.integers(-100, 100, (2, 5)))[-1].any()


def test_stack_is_layer_by_layer_composition(rng):
    """Register-file swap across layers: layer l's 16-bit outputs are layer l+1's inputs."""
    Ws = [sparse_matrix(rng, 40, 30, 0.3), sparse_matrix(rng, 20, 40, 0.3), sparse_matrix(rng, 7, 20, 0.5)]
    x = np.abs(rng.normal(size=(4, 30)))
    image = encode_network(Ws, 4, calibration=x)
    acts = run_network(image, quantize_input(image, x))
    a = acts[0]
    for i, L in enumerate(image.layers):
        a = run_layer(L, a)
        np.testing.assert_array_equal(a, acts[i + 1])
        assert L.relu == (i < 2)
    assert (acts[1] >= 0).all() and (acts[2] >= 0).all()


@given(seed=st.integers(0, 2**31), wd=st.floats(0.02, 1), depth=st.integers(1, 3))
def test_golden_within_error_bound_of_float(seed, wd, depth):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 60, depth + 1)
    Ws = [sparse_matrix(rng, sizes[i + 1], sizes[i], wd) for i in range(depth)]
    x = np.maximum(rng.normal(0, 1, (3, sizes[0])), 0)
    image = encode_network(Ws, 3, calibration=x)
    acts = run_network(image, quantize_input(image, x))
    ref = float_reference(image, x)
    bounds = error_bound(image, x, acts)
    for i, L in enumerate(image.layers):
        got = nm.dequantize(acts[i + 1], L.out_frac)
        ok = saturated_outputs(acts[i + 1]) | (np.abs(got - ref[i + 1]) <= bounds[i])
        assert ok.all()
        # the bound is not vacuous: within a few output LSBs per unit of weight/input error
        assert bounds[i].max() < 1.0


def test_bad_inputs_are_named(rng):
    image = encode_network([sparse_matrix(rng, 4, 6, 0.5)], 2)
    with pytest.raises(InputError, match="shape"):
        run_network(image, np.zeros((1, 5), dtype=np.int64))
    with pytest.raises(InputError, match="16 bits"):
        run_network(image, np.full((1, 6), 40000))
    with pytest.raises(InputError, match="integer"):
        run_network(image, np.zeros((1, 6)))
    with pytest.raises(InputError, match="element 2"):
        quantize_input(image, np.array([0, 0, np.nan, 0, 0, 0]))
