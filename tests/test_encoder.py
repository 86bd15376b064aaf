"""Encoder/decoder: the paper's and the seed's examples, corner cases, property round trips."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eie.golden_model import decode_indices, decode_int_weights, encode_indices, encode_layer
from eie.golden_model.codebook import assign_indices, kmeans_codebook
from eie.golden_model.errors import InputError
from eie.golden_model.image import EIEImage
from eie.golden_model.layout import pack_sram_rows, unpack_sram_rows

from .helpers import sparse_matrix


def pe_slice(ptr, v, z, k):
    off = np.concatenate([[0], np.cumsum(ptr[:, -1].astype(np.int64))])
    return ptr[k].tolist(), v[off[k]:off[k + 1]].tolist(), z[off[k]:off[k + 1]].tolist()


def test_paper_fig2_padding_example():
    """EIE paper: column [0,0,1,2, 18 zeros, 3] -> v=[1,2,0,3], z=[2,0,15,2]."""
    col = np.array([0, 0, 1, 2] + [0] * 18 + [3]).reshape(-1, 1)
    ptr, v, z = encode_indices(col, 1, 64)
    assert pe_slice(ptr, v, z, 0) == ([0, 4], [1, 2, 0, 3], [2, 0, 15, 2])


def test_paper_fig3_pe0_pointers_and_relative_rows(rng):
    """EIE paper Fig. 3: 16x8 matrix on 4 PEs; PE0 stores W0,0 W8,0 W12,0 W4,1 W0,2 W12,2
    W0,4 W4,4 W0,5 W12,5 W0,6 W8,7 W12,7 with relative indices 0 1 0 1 0 2 0 0 0 2 0 2 0
    and column pointers 0 3 4 6 6 8 10 11 13."""
    idx = np.zeros((16, 8), dtype=np.uint8)
    pe0 = [(0, 0), (8, 0), (12, 0), (4, 1), (0, 2), (12, 2), (0, 4), (4, 4), (0, 5), (12, 5), (0, 6), (8, 7), (12, 7)]
    for n, (r, c) in enumerate(pe0):
        idx[r, c] = 1 + n % 15
    other = rng.random((16, 8)) < 0.3
    other[::4] = False
    idx[other] = 7
    ptr, v, z = encode_indices(idx, 4, 64)
    p, vv, zz = pe_slice(ptr, v, z, 0)
    assert p == [0, 3, 4, 6, 6, 8, 10, 11, 13]
    assert zz == [0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 0, 2, 0]
    assert vv == [1 + n % 15 for n in range(13)]


def test_seed_8x4_example_per_column_counting():
    """8x4 on 4 PEs, PE0 holds rows 0 and 4: w00 w01 w42 w03 w43, pointers 0 1 2 3 5.
    Counting zeros across columns would give w42 a run of 2; this project counts per
    column (as the authors' FC8 data does), which gives 1."""
    idx = np.zeros((8, 4), dtype=np.uint8)
    for r, c in [(0, 0), (0, 1), (4, 2), (0, 3), (4, 3)]:
        idx[r, c] = 5
    ptr, v, z = encode_indices(idx, 4, 64)
    p, vv, zz = pe_slice(ptr, v, z, 0)
    assert p == [0, 1, 2, 3, 5]
    assert zz == [0, 0, 1, 0, 0]


@pytest.mark.parametrize("gap, want_v, want_z", [
    (15, [3], [15]),                 # run of exactly 15 zeros: fits in z, no padding
    (16, [0, 3], [15, 0]),           # run of 16: one padding entry
    (31, [0, 3], [15, 15]),
    (32, [0, 0, 3], [15, 15, 0]),
])
def test_runs_of_15_and_16_zeros(gap, want_v, want_z):
    col = np.zeros((gap + 1, 1), dtype=np.uint8)
    col[gap] = 3
    ptr, v, z = encode_indices(col, 1, 64)
    assert (v.tolist(), z.tolist()) == (want_v, want_z)
    layer = _layer(col, 1, 64)
    np.testing.assert_array_equal(decode_indices(layer), col)


def _layer(idx, n_pe, acc_depth):
    from eie.golden_model.image import EncodedLayer

    ptr, v, z = encode_indices(idx, n_pe, acc_depth)
    cb = np.arange(16, dtype=np.int16) * 100
    layer = EncodedLayer("t", idx.shape[1], idx.shape[0], True, 8, 8, 8, cb, (cb / 256).astype(np.float32),
                         ptr, v, z, acc_depth)
    EIEImage(n_pe, acc_depth, [layer]).validate()
    return layer


def test_empty_columns_have_equal_pointers():
    idx = np.zeros((8, 5), dtype=np.uint8)
    idx[:, 1] = 2
    idx[3, 4] = 9
    ptr, _, _ = encode_indices(idx, 2, 64)
    assert ptr[0].tolist() == [0, 0, 4, 4, 4, 4]
    assert ptr[1].tolist() == [0, 0, 4, 4, 4, 5]


def test_all_zero_matrix_encodes_to_no_entries():
    layer = encode_layer(np.zeros((10, 7)), 4)
    assert layer.v.size == 0 and int(layer.ptr.max()) == 0
    assert not decode_int_weights(layer).any()


def test_column_entirely_in_one_pe():
    idx = np.zeros((16, 3), dtype=np.uint8)
    idx[::4, 1] = 6  # rows 0, 4, 8, 12 -> all PE 0 of 4
    ptr, v, z = encode_indices(idx, 4, 64)
    assert ptr[0].tolist() == [0, 0, 4, 4]
    assert [int(p[-1]) for p in ptr[1:]] == [0, 0, 0]


def test_fewer_rows_than_pes_and_rows_not_multiple_of_n(rng):
    for n_out, n_pe in [(3, 8), (13, 4), (1, 64)]:
        idx = (rng.random((n_out, 9)) < 0.6) * rng.integers(1, 16, (n_out, 9))
        layer = _layer(idx.astype(np.uint8), n_pe, 64)
        np.testing.assert_array_equal(decode_indices(layer), idx)
        assert all(int(layer.ptr[k, -1]) == 0 for k in range(n_out, n_pe))


def test_output_batches_restart_rows_per_block(rng):
    """Rows longer than one batch: acc_depth=2 on 2 PEs cuts 11 rows into 3 blocks."""
    idx = (rng.random((11, 5)) < 0.7) * rng.integers(1, 16, (11, 5))
    layer = _layer(idx.astype(np.uint8), 2, 2)
    assert layer.ptr.shape == (2, 3 * 5 + 1)
    assert layer.z.max() <= 1  # at most 2 local rows per (block, column)
    np.testing.assert_array_equal(decode_indices(layer), idx)


@given(n_out=st.integers(1, 70), n_in=st.integers(1, 40), n_pe=st.integers(1, 9),
       acc_depth=st.integers(1, 40), density=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_round_trip_random(n_out, n_in, n_pe, acc_depth, density, seed):
    rng = np.random.default_rng(seed)
    idx = ((rng.random((n_out, n_in)) < density) * rng.integers(1, 16, (n_out, n_in))).astype(np.uint8)
    layer = _layer(idx, n_pe, acc_depth)
    np.testing.assert_array_equal(decode_indices(layer), idx)
    assert layer.z.max(initial=0) <= 15
    assert np.count_nonzero(layer.v) == np.count_nonzero(idx)


@given(n_rows=st.integers(1, 300), density=st.floats(0.0, 0.2), seed=st.integers(0, 2**31))
def test_long_sparse_columns_need_padding(n_rows, density, seed):
    rng = np.random.default_rng(seed)
    idx = ((rng.random((n_rows, 2)) < density) * 4).astype(np.uint8)
    layer = _layer(idx, 1, 512)
    np.testing.assert_array_equal(decode_indices(layer), idx)


def test_encode_layer_decodes_to_codebook_values_exactly(rng):
    W = sparse_matrix(rng, 40, 30, 0.3)
    layer = encode_layer(W, 4)
    Wq = decode_int_weights(layer)
    assert not np.any(Wq[W == 0])  # pruned weights stay zero
    idx = assign_indices(W, layer.codebook_float)
    np.testing.assert_array_equal(Wq, layer.codebook.astype(np.int64)[idx])


def test_given_codebook_is_used(rng):
    cb = np.array([0] + list(np.linspace(-1, 1, 15)))
    W = sparse_matrix(rng, 20, 20, 0.5)
    layer = encode_layer(W, 2, codebook=cb)
    np.testing.assert_allclose(layer.codebook_float, cb.astype(np.float32))
    with pytest.raises(InputError, match="entry 0"):
        encode_layer(W, 2, codebook=np.ones(16))


def test_kmeans_codebook_reserves_zero_and_is_exact_for_few_values():
    W = np.array([[0, 0.5, -0.25], [0.5, 0, 0.125]])
    cb = kmeans_codebook(W)
    assert cb[0] == 0 and set(cb[1:4]) == {-0.25, 0.125, 0.5}
    assert kmeans_codebook(np.zeros((3, 3))).tolist() == [0.0] * 16


def test_kmeans_codebook_reduces_error_vs_linear(rng):
    w = rng.normal(0, 1, 5000)
    cb = kmeans_codebook(w)
    err_km = np.abs(cb[assign_indices(w, cb)] - w).mean()
    lin = np.concatenate([[0], np.linspace(w.min(), w.max(), 15)])
    err_lin = np.abs(lin[assign_indices(w, lin)] - w).mean()
    assert err_km < err_lin


def test_bad_weights_named():
    with pytest.raises(InputError, match=r"element \[1, 0\]"):
        encode_layer(np.array([[1.0, 0.0], [np.nan, 1.0]]), 2)
    with pytest.raises(InputError, match="2-D"):
        encode_layer(np.ones(5), 2)
    with pytest.raises(InputError, match="n_pe"):
        encode_layer(np.ones((2, 2)), 0)


@given(n=st.integers(0, 50), seed=st.integers(0, 2**31))
def test_sram_row_packing_round_trip(n, seed):
    rng = np.random.default_rng(seed)
    v, z = rng.integers(0, 16, n), rng.integers(0, 16, n)
    rows = pack_sram_rows(v, z)
    assert len(rows) == -(-n // 8)
    v2, z2 = unpack_sram_rows(rows, n)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(z2, z)


def test_sram_row_bit_positions():
    rows = pack_sram_rows([1, 2], [3, 4])
    assert int(rows[0]) == 0x31 | (0x42 << 8)
