"""Formats far from 1 (docs/numerics.md, "Formats"): fractional bits from MIN_FRAC to
MAX_FRAC, negative ones included. Weights scaled by 1e6 ... 1e-15 encode with their own
power-of-two format, run on the golden model within the documented error bound of the
float reference, survive the image file, and go through `eie encode` / `eie run`; what
still cannot be held is refused with one line naming the layer or file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eie.cli import main
from eie.golden_model import InputError, decode_weights, encode_layer, encode_network
from eie.golden_model import numerics as nm
from eie.golden_model.encoder import writeback_format
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.model import run_image
from eie.golden_model.reference import error_bound, float_reference, float_weights, saturated_outputs

from .helpers import sparse_matrix
from .test_image_file import assert_same_image


def scaled_net(seed: int, w_scale: float, x_scale: float, bias: bool = False):
    """Two layers: the first's weights times w_scale, the second's times 1 / w_scale (so
    both directions are tried), inputs times x_scale; with a calibration batch."""
    rng = np.random.default_rng(seed)
    Ws = [sparse_matrix(rng, 24, 20, 0.4) * w_scale, sparse_matrix(rng, 10, 24, 0.5) / w_scale]
    x = rng.normal(0, 1, (6, 20)) * x_scale
    biases = [None, rng.normal(0, 0.5, 10) * x_scale] if bias else None  # the range of layer 1's outputs
    return Ws, x, biases


def assert_within_bound(image, x):
    """Every non-saturated output of every layer within reference.error_bound; returns the
    largest error of the last layer relative to its largest |output|."""
    res = run_image(image, x)
    ref = float_reference(image, x)
    bounds = error_bound(image, x, res.layer_outputs)
    for i, L in enumerate(image.layers):
        got = nm.dequantize(res.layer_outputs[i + 1], L.out_frac)
        ok = saturated_outputs(res.layer_outputs[i + 1]) | (np.abs(got - ref[i + 1]) <= bounds[i])
        assert np.all(ok), f"layer {i}: outside the error bound"
    assert not np.any(saturated_outputs(res.outputs_int))
    return float(np.abs(res.outputs - ref[-1]).max() / np.abs(ref[-1]).max()), res


SCALES = [(1e6, 1.0), (1e9, 1e-3), (1e-12, 1.0), (1e-15, 1e-15), (1e6, 1e6), (1e-12, 1e9)]


@pytest.mark.parametrize("w_scale, x_scale", SCALES)
def test_scaled_layers_run_within_the_error_bound(tmp_path, w_scale, x_scale):
    Ws, x, _ = scaled_net(11, w_scale, x_scale)
    image = encode_network(Ws, 4, acc_depth=4, calibration=x)
    fracs = [f for L in image.layers for f in (L.in_frac, L.w_frac, L.out_frac)]
    assert min(fracs) < 0 or max(fracs) > 30  # the formats the old range 0..30 could not hold
    rel, res = assert_within_bound(image, x)
    assert rel < 2e-3
    for L, W, q in zip(image.layers, Ws, image.meta["quantisation"]):
        D = decode_weights(L)
        assert np.all(D[W != 0] != 0)  # no weight lost
        assert q["rel_rms_error"] < 0.2 and q["w_frac"] == L.w_frac
        assert np.abs(D - float_weights(L)).max() <= 2.0 ** -(L.w_frac + 1)  # half a step from the centroids
    back = load_image(save_image(image, tmp_path / "s.eie"))
    assert_same_image(image, back)
    np.testing.assert_array_equal(run_image(back, x).outputs_int, res.outputs_int)


@pytest.mark.parametrize("w_scale, x_scale", [(1e9, 1e-9), (1e-12, 1e12)])
def test_scaled_layers_with_biases(w_scale, x_scale):
    """The biased layer's weights and bias are far from 1; its inputs are in 2**-15 .. 2**15."""
    Ws, x, biases = scaled_net(12, w_scale, x_scale, bias=True)
    image = encode_network(Ws, 2, acc_depth=8, calibration=x, biases=biases)
    L = image.layers[1]
    assert L.bias and 0 <= L.in_frac <= 14 and not 0 <= L.w_frac <= 30
    rel, _ = assert_within_bound(image, x)
    assert rel < 2e-3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), w_exp=st.integers(-100, 100), x_exp=st.integers(-100, 100),
       n_pe=st.sampled_from([1, 2, 3, 4]))
def test_any_power_of_two_scale_property(seed, w_exp, x_exp, n_pe):
    """A layer at any scale either encodes and meets the bound, or is refused naming it."""
    rng = np.random.default_rng(seed)
    W = sparse_matrix(rng, 12, 9, 0.5) * 2.0 ** w_exp
    W[0, 0] = 2.0 ** w_exp  # at least one non-zero weight
    x = rng.normal(0, 1, (3, 9)) * 2.0 ** x_exp
    try:
        image = encode_network([W], n_pe, calibration=x, names=["big"])
    except InputError as e:
        assert re.search(r"^(W0|big): |\(big\)|^calibration input: the input ", str(e)), str(e)
        # only a product format beyond the range is refused: outputs below 2**-126
        assert w_exp + x_exp < -100 or w_exp + x_exp > 100, str(e)
        return
    assert_within_bound(image, x)


def test_a_power_of_two_scale_moves_only_the_formats():
    """W * 2**k with the inputs * 2**j is the same integer image with fracs moved by -k, -j:
    the array sees only the write-back shift, so its outputs are the same integers."""
    rng = np.random.default_rng(13)
    W = rng.choice([-0.75, -0.25, 0.125, 0.5, 1.5], (16, 12)) * (rng.random((16, 12)) < 0.5)
    x = rng.normal(0, 1, (4, 12))
    base = encode_network([W], 4, calibration=x)
    for k, j in ((40, -3), (-60, 20), (100, -90)):
        moved = encode_network([W * 2.0 ** k], 4, calibration=x * 2.0 ** j)
        L0, L1 = base.layers[0], moved.layers[0]
        assert (L1.in_frac, L1.w_frac, L1.out_frac) == (L0.in_frac - j, L0.w_frac - k, L0.out_frac - k - j)
        assert L1.shift == L0.shift
        for f in ("codebook", "ptr", "v", "z"):
            np.testing.assert_array_equal(getattr(L1, f), getattr(L0, f))
        np.testing.assert_array_equal(run_image(moved, x * 2.0 ** j).outputs_int, run_image(base, x).outputs_int)


# -- what is still refused ------------------------------------------------------------------
def test_write_back_shift_out_of_range_is_refused_naming_the_layer():
    """Products with more fractional bits than MAX_FRAC + 47: the output format would need
    more than MAX_FRAC; the message names the layer and the rule."""
    with pytest.raises(InputError, match=r"fc3: the write-back shift in_frac \+ w_frac - out_frac = 100 \+ 80 - "
                                         r"out_frac must be in 0\.\.47, so out_frac must be at least 133, "
                                         r"outside -112\.\.126"):
        writeback_format(126, 100, 80, "fc3")
    with pytest.raises(InputError, match=r"fc3: .* so out_frac must be at most -120, outside -112\.\.126"):
        writeback_format(-112, -60, -60, "fc3")


@pytest.mark.parametrize("out_frac, want", [(200, 50), (-200, 3), (40, 40), (30, 30)])
def test_write_back_format_is_moved_into_the_shift_range(out_frac, want):
    """s = in_frac + w_frac - out_frac kept in 0..47: out_frac clamped to 3..50 here."""
    got = writeback_format(max(nm.MIN_FRAC, min(nm.MAX_FRAC, out_frac)), 20, 30, "fc0")
    assert got == want and 0 <= 20 + 30 - got < nm.MAX_ACC_BITS


def test_tiny_inputs_on_tiny_weights_are_refused_when_outputs_leave_the_range():
    rng = np.random.default_rng(14)
    W = sparse_matrix(rng, 8, 6, 0.8) * 1e-30
    x = rng.normal(0, 1, (2, 6)) * 1e-30
    with pytest.raises(InputError, match=r"fc0: the write-back shift .* out_frac must be at least"):
        encode_network([W], 2, calibration=x)


def test_calibrated_activations_beyond_the_widest_format_are_refused():
    rng = np.random.default_rng(15)
    W = sparse_matrix(rng, 8, 6, 0.8)
    x = rng.normal(0, 1, (2, 6)) * 1e300
    with pytest.raises(InputError, match=r"calib: the input reaches .*; activations must be below 1\.70139e\+38"):
        encode_network([W], 2, calibration=x, calibration_name="calib")


def test_biased_layer_whose_inputs_all_round_to_0_is_refused():
    """A biased layer's input format is capped at 14 fractional bits; calibrated inputs
    below 2**-15 would all quantise to 0 there, so the layer is refused, naming it."""
    rng = np.random.default_rng(18)
    Ws = [sparse_matrix(rng, 8, 6, 0.8) * 1e-9, sparse_matrix(rng, 4, 8, 0.8)]
    x = rng.normal(0, 1, (3, 6))
    with pytest.raises(InputError, match=r"W1: calib: the output of layer 0 \(fc0\) reaches only .*would all quantise to 0 at "
                                         r"in_frac = 14"):
        encode_network(Ws, 2, calibration=x, biases=[None, np.ones(4)], calibration_name="calib")
    assert encode_network(Ws, 2, calibration=x).layers[1].in_frac > 14  # without the bias: its own format


def test_encode_layer_checks_its_formats():
    W = np.eye(4)
    with pytest.raises(InputError, match=r"fc0: in_frac: fractional bits must be an integer in -112\.\.126"):
        encode_layer(W, 2, in_frac=127)
    with pytest.raises(InputError, match=r"fc0: out_frac: fractional bits must be an integer in -112\.\.126"):
        encode_layer(W, 2, out_frac=-113)


# -- the CLI, end to end ----------------------------------------------------------------------
def eie(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("w_scale, x_scale", [(1e9, 1e-3), (1e-12, 1.0)])
def test_cli_encode_and_run_far_from_1(tmp_path, capsys, w_scale, x_scale):
    Ws, x, _ = scaled_net(16, w_scale, x_scale)
    np.savez(tmp_path / "W.npz", W0=Ws[0], W1=Ws[1])
    np.save(tmp_path / "x.npy", x)
    img = tmp_path / "net.eie"
    rc, out, err = eie(capsys, "encode", tmp_path / "W.npz", "--n-pe", 2, "--calibrate", tmp_path / "x.npy",
                       "-o", img)
    assert rc == 0 and err == "", err
    assert "step 2^" in out
    rc, out, err = eie(capsys, "run", img, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert rc == 0, err
    image = load_image(img)
    y = np.load(tmp_path / "y.npy")
    ref = float_reference(image, x)[-1]
    res = run_image(image, x)
    bound = error_bound(image, x, res.layer_outputs)[-1]
    assert np.all(np.abs(y - ref) <= bound)
    rc, out, _ = eie(capsys, "info", img, "--json")
    formats = [L["formats"] for L in json.loads(out)["layers"]]
    assert formats == [{"in_frac": L.in_frac, "w_frac": L.w_frac, "out_frac": L.out_frac} for L in image.layers]


def test_cli_act_frac_takes_negative_formats(tmp_path, capsys):
    rng = np.random.default_rng(17)
    np.save(tmp_path / "W.npy", sparse_matrix(rng, 8, 6, 0.8))
    rc, out, err = eie(capsys, "encode", tmp_path / "W.npy", "--n-pe", 2, "--act-frac", -20, "-o",
                       tmp_path / "o.eie", "--json")
    assert rc == 0, err
    L = json.loads(out)["layers"][0]["formats"]
    assert L["in_frac"] == -20 and 0 <= L["in_frac"] + L["w_frac"] - L["out_frac"] < 48


# -- the image file ---------------------------------------------------------------------------
@pytest.mark.parametrize("minor", [0, 1, 2, 3])
def test_older_files_load_and_wide_formats_keep_the_layout(tmp_path, minor):
    """Files of every earlier minor version still load; the wider range changes no field's
    layout or meaning, so a wide-format file relabelled as an older minor loads the same."""
    from .test_image_file import as_version, read_raw, write_raw

    for w_scale, x_scale in ((1.0, 1.0), (1e9, 1e-3)):
        Ws, x, _ = scaled_net(19, w_scale, x_scale)
        image = encode_network(Ws, 2, calibration=x, meta={"scale": w_scale})
        raw = as_version(read_raw(save_image(image, tmp_path / f"{w_scale:g}.eie")), minor)
        old = load_image(write_raw(tmp_path / f"{w_scale:g}-1.{minor}.eie", raw))
        assert_same_image(image, old)
        assert old.file_format["version"] == f"1.{minor}"


def test_all_zero_layers_leave_the_formats_alone():
    """A layer without non-zero weights keeps w_frac 30 (no range to fit): a stack of them
    encodes without pushing later formats out of range, outputs exactly 0."""
    rng = np.random.default_rng(20)
    Ws = [np.zeros((8, 6))] + [np.zeros((8, 8))] * 5 + [sparse_matrix(rng, 4, 8, 0.8)]
    image = encode_network(Ws, 2)
    assert [L.w_frac for L in image.layers[:-1]] == [30] * 6
    assert {(L.in_frac, L.out_frac) for L in image.layers} == {(8, 8)}
    assert not run_image(image, rng.normal(0, 1, (2, 6))).outputs_int.any()


def test_uncalibrated_tiny_weights_warn_that_outputs_would_round_to_0(tmp_path, capsys):
    """Without --calibrate the output format is --act-frac; weights x 1e-12 on Q7.8 inputs give
    outputs below half its step. out_frac is raised (losslessly) to s = 47, and one warning says so."""
    rng = np.random.default_rng(21)
    np.save(tmp_path / "W.npy", sparse_matrix(rng, 8, 6, 0.8) * 1e-12)
    rc, out, err = eie(capsys, "encode", tmp_path / "W.npy", "--n-pe", 2, "-o", tmp_path / "o.eie", "--json")
    assert rc == 0
    L = load_image(tmp_path / "o.eie").layers[0]
    assert L.shift == 47 and L.out_frac > 8
    assert json.loads(out)["quantisation"][0]["out_frac_raised_from"] == 8
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eie encode: warning: WEIGHTS ")
    assert f"outputs would all round to 0 at out_frac 8 (products at in_frac + w_frac = {L.in_frac + L.w_frac}); " \
           f"out_frac raised to {L.out_frac}: pass --calibrate" in lines[0]
    x = np.ones(6)
    calibrated = encode_network([np.load(tmp_path / "W.npy")], 2, calibration=x)
    assert "out_frac_raised_from" not in calibrated.meta["quantisation"][0]
