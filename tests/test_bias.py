"""Biases on EIE: a layer's bias is one more stored column (index n_in) whose activation is
always 1.0, shared with the layer's codebook (docs/image-format.md, docs/numerics.md)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.golden_model import (decode_bias, decode_bias_indices, decode_indices, decode_int_bias,
                              decode_int_weights, decode_weights, encode_layer, encode_network, balance_image)
from eie.golden_model import numerics as nm
from eie.golden_model.codebook import assign_indices
from eie.golden_model.config import EIEConfig
from eie.golden_model.errors import ConfigError, ImageFormatError, InputError
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.model import run_image
from eie.golden_model.reference import error_bound, float_reference

from .helpers import sparse_matrix
from .test_image_file import as_version, read_raw, write_raw, with_layer


def biased_net(rng, dims, n_pe, *, acc_depth=64, with_bias=None, density=0.3, scale=0.3):
    Ws = [sparse_matrix(rng, dims[i + 1], dims[i], density) for i in range(len(dims) - 1)]
    with_bias = with_bias or [True] * len(Ws)
    bs = [rng.normal(0, scale, dims[i + 1]) if on else None for i, on in enumerate(with_bias)]
    return Ws, bs, encode_network(Ws, n_pe, acc_depth=acc_depth, biases=bs, seed=1)


def integer_forward(image, a):
    """The fixed-point network written out here: acc = W_int a + b_int * 2**in_frac (the bias
    column's entries meet the activation 1.0), then the documented write-back."""
    for L in image.layers:
        acc = a @ decode_int_weights(L).T + decode_int_bias(L) * (1 << L.in_frac)
        a = nm.writeback(acc, L.shift, L.relu)
    return a


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n_pe=st.integers(1, 9), acc_depth=st.sampled_from([2, 5, 64]),
       dims=st.lists(st.integers(1, 40), min_size=2, max_size=4), density=st.floats(0, 1),
       mask=st.lists(st.booleans(), min_size=3, max_size=3))
def test_golden_model_adds_the_quantised_bias(seed, n_pe, acc_depth, dims, density, mask):
    rng = np.random.default_rng(seed)
    _, bs, image = biased_net(rng, dims, n_pe, acc_depth=acc_depth, with_bias=mask[:len(dims) - 1])
    a = rng.integers(-300, 300, (3, dims[0]))
    a[rng.random(a.shape) >= density] = 0
    res = run_image(image, a, int_input=True)
    np.testing.assert_array_equal(res.outputs_int, integer_forward(image, a))
    for L, b in zip(image.layers, bs):
        assert L.bias == (b is not None)
        assert L.n_cols == L.n_in + (b is not None)
        if b is not None:   # the bias is its codebook's nearest entry, exactly
            cb = L.codebook_float.astype(np.float64)
            np.testing.assert_array_equal(decode_bias_indices(L), assign_indices(b, cb))
        else:
            assert not decode_bias_indices(L).any()


def test_the_bias_column_is_broadcast_last_even_for_an_all_zero_input():
    rng = np.random.default_rng(2)
    _, _, image = biased_net(rng, (12, 8), 4)
    L = image.layers[0]
    res = run_image(image, np.zeros((1, 12), dtype=np.int64), int_input=True, trace=True)
    (bt,) = res.report.batches
    assert bt.columns.tolist() == [12]          # only the bias column, index n_in
    want = nm.writeback(decode_int_bias(L) * (1 << L.in_frac), L.shift, L.relu)
    np.testing.assert_array_equal(res.outputs_int[0], want)
    a = np.zeros((1, 12), dtype=np.int64)
    a[0, [3, 7, 11]] = [5, -9, 100]
    (bt,) = run_image(image, a, int_input=True, trace=True).report.batches
    assert bt.columns.tolist() == [3, 7, 11, 12]


def test_bias_free_layers_are_stored_as_before():
    rng = np.random.default_rng(3)
    W = sparse_matrix(rng, 20, 10, 0.4)
    plain = encode_network([W], 4)
    none = encode_network([W], 4, biases=[None])
    for a, b in zip(plain.layers, none.layers):
        assert not a.bias and not b.bias and a.n_cols == a.n_in
        np.testing.assert_array_equal(a.ptr, b.ptr)
        np.testing.assert_array_equal(a.v, b.v)
    biased = encode_network([W], 4, biases=[rng.normal(0, 0.3, 20)], codebooks=[plain.layers[0].codebook_float])
    np.testing.assert_array_equal(decode_indices(biased.layers[0]), decode_indices(plain.layers[0]))
    assert biased.layers[0].ptr.shape[1] == plain.layers[0].ptr.shape[1] + 1   # one more column per batch


def test_kmeans_codebook_covers_weights_and_bias():
    """Without a codebook the centroids are fit to the weights and the biases together: a
    bias far outside the weights gets a centroid of its own."""
    rng = np.random.default_rng(4)
    W = sparse_matrix(rng, 16, 16, 0.5, scale=0.1)
    b = np.zeros(16)
    b[5] = 3.0
    image = encode_network([W], 2, biases=[b])
    assert decode_bias(image.layers[0])[5] == pytest.approx(3.0, rel=1e-3)
    assert not decode_bias(image.layers[0])[np.arange(16) != 5].any()   # zero biases store nothing


def test_float_reference_and_bound_include_the_bias():
    rng = np.random.default_rng(5)
    x = rng.random((4, 30))
    Ws, bs, _ = biased_net(rng, (30, 25, 10), 4)
    image = encode_network(Ws, 4, biases=bs, calibration=x)
    res = run_image(image, x)
    want = float_reference(image, x)
    bound = error_bound(image, x, res.layer_outputs)
    assert np.all(np.abs(res.outputs - want[-1]) <= bound[-1])
    # without the bias term the float reference would differ by more than the bound
    no_bias = np.maximum(x @ decode_weights(image.layers[0]).T, 0) @ decode_weights(image.layers[1]).T
    assert np.any(np.abs(res.outputs - no_bias) > bound[-1])


def test_calibrated_formats_leave_room_for_the_bias_activation():
    """Inputs below 0.5 get 15 or more fractional bits; 1.0 must fit, so a biased layer caps at 14."""
    rng = np.random.default_rng(6)
    W = sparse_matrix(rng, 8, 6, 1.0, scale=0.01)
    x = rng.random((3, 6)) * 0.4
    assert encode_network([W], 2, calibration=x).layers[0].in_frac >= 15
    image = encode_network([W], 2, calibration=x, biases=[np.full(8, 0.002)])
    assert image.layers[0].in_frac == nm.MAX_BIAS_FRAC == 14
    assert image.layers[0].bias_activation == 1 << 14


@pytest.mark.parametrize("in_frac", [15, -1, -20])
def test_bias_needs_in_frac_0_to_14(in_frac):
    """1.0 = 2**in_frac must be a 16-bit integer: not above 14, and not negative (2**-1 is no integer)."""
    rng = np.random.default_rng(7)
    W = sparse_matrix(rng, 8, 6, 1.0)
    with pytest.raises(InputError, match=rf"fc0: in_frac = {in_frac}: a layer with a bias needs 0 <= in_frac <= 14"):
        encode_layer(W, 2, in_frac=in_frac, bias=np.ones(8))
    image = encode_network([W], 2, biases=[np.ones(8)])
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.in_frac: in_frac = {in_frac}: a layer with a bias"):
        with_layer(image, 0, in_frac=in_frac, out_frac=in_frac).validate()


def test_bias_layer_whose_inputs_need_a_negative_format_is_refused():
    """Calibrated inputs of 2**15 or more need in_frac < 0: refused, naming the option, not saturated."""
    rng = np.random.default_rng(8)
    W = sparse_matrix(rng, 8, 6, 1.0)
    x = rng.normal(0, 1, (4, 6)) * 1e6
    assert encode_network([W], 2, calibration=x).layers[0].in_frac < 0
    with pytest.raises(InputError, match=r"W0: calib sets its in_frac = -\d+: a layer with a bias needs 0 <= in_frac"):
        encode_network([W], 2, calibration=x, biases=[np.ones(8)], calibration_name="calib")
    with pytest.raises(InputError, match=r"W0: --act-frac sets its in_frac = -2: a layer with a bias"):
        encode_network([W], 2, act_frac=-2, biases=[np.ones(8)], act_frac_name="--act-frac")


@pytest.mark.parametrize("bias, match", [
    (np.ones(7), r"shape \(8,\)"),
    (np.ones((8, 1)), r"shape \(8,\)"),
    (np.array([np.nan] + [0.0] * 7), "finite"),
    (np.full(8, 1e39), r"weights must be below 1\.70139e\+38"),
    (np.ones(8) * 1j, "complex"),
    ("bias", "numbers"),
])
def test_bad_bias_is_named(bias, match):
    W = np.eye(8, 6)
    with pytest.raises(InputError, match=match):
        encode_network([W], 2, biases=[bias])


def test_bad_bias_list_is_named():
    W = np.eye(8, 6)
    with pytest.raises(InputError, match="biases: expected a list of one entry"):
        encode_network([W, np.eye(3, 8)], 2, biases=[np.ones(8)])
    with pytest.raises(InputError, match="biases: expected a list"):
        encode_network([W], 2, biases=np.ones((1, 8)))


def test_image_file_round_trip_and_version(tmp_path):
    rng = np.random.default_rng(8)
    _, _, image = biased_net(rng, (20, 15, 6), 3, with_bias=[True, False])
    path = save_image(image, tmp_path / "b.eie")
    back = load_image(path)
    assert back.file_format["version"] == "1.3"
    assert [L.bias for L in back.layers] == [True, False]
    a = rng.integers(-200, 200, (2, 20))
    np.testing.assert_array_equal(run_image(back, a, int_input=True).outputs_int,
                                  run_image(image, a, int_input=True).outputs_int)
    assert json.loads(json.dumps(back.summary()))["layers"][0]["bias"] is True


def test_files_before_1_3_load_without_biases(tmp_path):
    rng = np.random.default_rng(9)
    plain = save_image(encode_network([sparse_matrix(rng, 9, 5, 0.5)], 2), tmp_path / "p.eie")
    raw = as_version(read_raw(plain), 2)
    old = load_image(write_raw(tmp_path / "old.eie", raw))
    assert old.file_format["version"] == "1.2" and not old.layers[0].bias
    raw.header["layers"][0]["bias"] = False     # a 1.2 file cannot say bias
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.bias: not a field of format version 1\.2"):
        load_image(write_raw(tmp_path / "bad.eie", raw))


def test_bias_flag_in_a_file_must_match_the_pointers(tmp_path):
    rng = np.random.default_rng(10)
    _, _, image = biased_net(rng, (10, 6), 2)
    raw = read_raw(save_image(image, tmp_path / "b.eie"))
    raw.header["layers"][0]["bias"] = False
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.ptr: expected shape"):
        load_image(write_raw(tmp_path / "flip.eie", raw))
    raw.header["layers"][0]["bias"] = 1
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.bias: expected bool"):
        load_image(write_raw(tmp_path / "int.eie", raw))


def test_balancing_keeps_the_bias():
    rng = np.random.default_rng(11)
    x = rng.random((6, 40))
    Ws, bs, _ = biased_net(rng, (40, 37, 9), 4, acc_depth=4, density=0.4)
    image = encode_network(Ws, 4, acc_depth=4, biases=bs, calibration=x)
    bal = balance_image(image, x)
    assert [L.bias for L in bal.layers] == [True, True]
    np.testing.assert_array_equal(run_image(bal, x).outputs_int, run_image(image, x).outputs_int)
    for L, M in zip(image.layers, bal.layers):
        np.testing.assert_array_equal(decode_bias_indices(L), decode_bias_indices(M))
    assert run_image(bal, x).report.cycles <= run_image(image, x).report.cycles


def test_bias_column_counts_against_the_activation_memories():
    image = encode_network([np.eye(8, 8)], 2, biases=[np.ones(8)])
    EIEConfig(n_pe=2, act_depth=5).check_image(image)
    with pytest.raises(ConfigError, match="bias column: 9 columns exceed the activation memories"):
        EIEConfig(n_pe=2, act_depth=4).check_image(image)


# -- the command line: `eie encode` takes b0, b1, ... beside W0, W1, ... ----------------------
def test_encode_npz_with_biases_runs_like_the_library(tmp_path, capsys):
    from .test_cli import eie, eie_json

    rng = np.random.default_rng(13)
    W0, W1 = sparse_matrix(rng, 12, 9, 0.5), sparse_matrix(rng, 4, 12, 0.5)
    b1 = rng.normal(0, 0.4, 4)
    np.savez(tmp_path / "w.npz", W0=W0, W1=W1, b1=b1)
    x = rng.random((3, 9))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "w.eie"
    rc, _, err = eie(capsys, "encode", tmp_path / "w.npz", "--n-pe", 3, "--calibrate", tmp_path / "x.npy", "-o", out)
    assert rc == 0, err
    assert [L["bias"] for L in eie_json(capsys, "info", out)["layers"]] == [False, True]
    want = encode_network([W0, W1], 3, biases=[None, b1], calibration=x)
    got = load_image(out)
    np.testing.assert_array_equal(run_image(got, x).outputs_int, run_image(want, x).outputs_int)
    np.testing.assert_array_equal(decode_bias(got.layers[1]), decode_bias(want.layers[1]))


@pytest.mark.parametrize("members, fragment", [
    ({"W0": np.eye(4, 3), "b0": np.ones(5)}, r"[b0]: expected a bias vector of shape (4,)"),
    ({"W0": np.eye(4, 3), "b1": np.ones(4)}, "optional biases b0, b1"),
    ({"W0": np.eye(4, 3), "bias": np.ones(4)}, "optional biases b0, b1"),
    ({"W0": np.eye(4, 3), "b0": np.array(["x"] * 4)}, "[b0]"),
])
def test_encode_rejects_bad_bias_members(tmp_path, capsys, members, fragment):
    from .test_cli import assert_one_line_error, eie

    np.savez(tmp_path / "w.npz", **members)
    rc, _, err = eie(capsys, "encode", tmp_path / "w.npz", "--n-pe", 2, "-o", tmp_path / "w.eie")
    assert_one_line_error(rc, err, "encode")
    assert fragment in err, err
    assert not (tmp_path / "w.eie").exists()


def test_sim_bias_needs_fc8(capsys):
    from .test_cli import assert_one_line_error, eie

    rc, _, err = eie(capsys, "sim", "--bias")
    assert_one_line_error(rc, err, "sim")
    assert "--bias: only with --fc8" in err
