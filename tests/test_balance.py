"""Load balancing by output-row permutation (golden_model/balance.py): valid permutations
that keep the interleaved layout, bit-identical outputs in the original order, the image
file round trip, rejected permutations naming their field, fewer FC8 cycles, and the RTL
matching the golden model bit and cycle for cycle on a permuted image."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.cli import main
from eie.golden_model import EIEImage, ImageFormatError, InputError, decode_indices, decode_weights
from eie.golden_model import encode_layer, encode_network
from eie.golden_model.balance import (BalanceOptions, activation_statistics, balance_image, balance_rows,
                                      lpt_assign, refine_prefix)
from eie.golden_model.config import EIEConfig
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.layout import local_rows, n_blocks
from eie.golden_model.model import run_image
from eie.hdl import host_map as hm
from eie.hdl.loader import output_reads

from .helpers import sparse_matrix
from .test_image_file import as_version, read_raw, write_raw


def uneven_matrix(rng, n_out, n_in, density):
    """Rows of very different densities (as in real layers): worth balancing."""
    W = rng.normal(0, 0.5, (n_out, n_in))
    row_density = np.clip(density * rng.gamma(0.7, 1 / 0.7, (n_out, 1)), 0, 1)
    return W * (rng.random((n_out, n_in)) < row_density)


def int_inputs(rng, batch, n_in, density, scale=512):
    a = rng.integers(-scale, scale, (batch, n_in))
    a[rng.random((batch, n_in)) >= density] = 0
    return a


def hw_blocks(n_out, n_pe, acc_depth):
    """Output batch of every hardware row."""
    return (np.arange(n_out) // n_pe) // acc_depth


def assert_valid_perm(perm, n_out, n_pe, acc_depth):
    perm = np.asarray(perm)
    assert sorted(perm.tolist()) == list(range(n_out))
    # same interleaved layout: every output batch keeps its set of rows, so every PE keeps
    # exactly the rows the interleave gives it in every batch
    blk = hw_blocks(n_out, n_pe, acc_depth)
    assert np.array_equal(blk[perm], blk)


# -- building blocks --------------------------------------------------------------------------
def test_lpt_respects_capacities_and_balances():
    work = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 1], float)
    a = lpt_assign(work, [3, 3, 2, 2])
    assert np.bincount(a, minlength=4).tolist() == [3, 3, 2, 2]
    loads = np.bincount(a, weights=work, minlength=4)
    assert loads.max() - loads.min() <= work.max()
    np.testing.assert_array_equal(a, lpt_assign(work, [3, 3, 2, 2]))  # deterministic
    with pytest.raises(InputError, match="capacities"):
        lpt_assign(work, [3, 3, 3])


def test_refine_never_worse_and_keeps_bin_sizes():
    rng = np.random.default_rng(5)
    x = np.cumsum(rng.random((40, 12)) < 0.3, axis=1).astype(float)
    a0 = np.arange(40) % 5

    def objective(a):
        Q = np.zeros((5, 12))
        np.add.at(Q, a, x)
        return float(((Q - Q.mean(0)) ** 2).sum())

    a1, swaps = refine_prefix(a0, x, 5, 1000)
    assert swaps > 0 and objective(a1) < objective(a0)
    assert np.array_equal(np.bincount(a1, minlength=5), np.bincount(a0, minlength=5))


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), n_pe=st.sampled_from([1, 2, 3, 4, 8, 16]),
       acc_depth=st.integers(1, 40), n_out=st.integers(1, 70), n_in=st.integers(1, 30),
       density=st.sampled_from([0.02, 0.1, 0.4, 1.0]), prob=st.booleans())
def test_permutation_validity(seed, n_pe, acc_depth, n_out, n_in, density, prob):
    rng = np.random.default_rng(seed)
    idx = (rng.random((n_out, n_in)) < density) * rng.integers(1, 16, (n_out, n_in))
    p = rng.random(n_in) if prob else None
    res = balance_rows(idx, n_pe, acc_depth, col_prob=p)
    assert_valid_perm(res.perm, n_out, n_pe, acc_depth)
    assert res.cycles[res.chosen] <= res.cycles["identity"]     # never worse on its patterns
    again = balance_rows(idx, n_pe, acc_depth, col_prob=p)
    np.testing.assert_array_equal(res.perm, again.perm)          # deterministic


def test_rows_longer_than_16_use_padding_aware_counts():
    """Rows per PE above 16: zero runs need padding entries, which the scoring counts."""
    rng = np.random.default_rng(3)
    idx = (rng.random((300, 20)) < 0.03) * rng.integers(1, 16, (300, 20))
    res = balance_rows(idx, 4, 128)
    assert_valid_perm(res.perm, 300, 4, 128)
    from eie.golden_model.csc import encode_indices
    from eie.golden_model.balance import pe_work
    from eie.golden_model.layout import rows_in_block

    ptr, v, _ = encode_indices(idx[res.perm], 4, 128)
    assert np.any(v == 0)                                        # padding really occurs
    counts = np.diff(ptr.astype(np.int64), axis=1)
    cyc, _ = pe_work(counts, 20, np.ones((1, 20), bool), 8, rows_in_block(300, 4, 128)[0])
    assert cyc == res.cycles[res.chosen]


# -- golden outputs: balanced == unbalanced, bit for bit, in the original order -------------
@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), n_pe=st.sampled_from([1, 2, 3, 4, 8]),
       acc_depth=st.integers(1, 6), layers=st.integers(1, 3), calibrate=st.booleans(),
       w_density=st.sampled_from([0.05, 0.3, 0.8]))
def test_balanced_outputs_equal_unbalanced(seed, n_pe, acc_depth, layers, calibrate, w_density):
    rng = np.random.default_rng(seed)
    dims = [int(rng.integers(1, 41)) for _ in range(layers + 1)]
    Ws = [uneven_matrix(rng, dims[i + 1], dims[i], w_density) for i in range(layers)]
    calib = rng.normal(0, 1, (4, dims[0])) if calibrate else None
    plain = encode_network(Ws, n_pe, acc_depth=acc_depth, calibration=calib, seed=seed % 97)
    bal = encode_network(Ws, n_pe, acc_depth=acc_depth, calibration=calib, seed=seed % 97, balance=True)
    assert bal.meta["balance"]["layers"][0]["chosen"]
    for Lp, Lb in zip(plain.layers, bal.layers):
        np.testing.assert_array_equal(decode_indices(Lb), decode_indices(Lp))      # logical order
        np.testing.assert_array_equal(decode_weights(Lb), decode_weights(Lp))
        hw = decode_indices(Lp)[Lb.logical_rows][:, Lb.logical_cols]
        np.testing.assert_array_equal(decode_indices(Lb, "hardware"), hw)
        if Lb.row_perm is not None:
            assert_valid_perm(Lb.row_perm, Lb.n_out, n_pe, acc_depth)
    x = rng.normal(0, 1, (3, dims[0]))
    rp, rb = run_image(plain, x), run_image(bal, x)
    for yp, yb in zip(rp.layer_outputs, rb.layer_outputs):
        np.testing.assert_array_equal(yb, yp)
    np.testing.assert_array_equal(rb.outputs_int, rp.outputs_int)
    np.testing.assert_array_equal(rb.outputs, rp.outputs)
    np.testing.assert_array_equal(rb.hw_outputs_int, bal.layers[-1].outputs_to_hardware(rp.outputs_int))
    assert rb.report.useful_macs == rp.report.useful_macs                           # same work


def test_balance_image_of_a_balanced_image_and_statistics():
    rng = np.random.default_rng(11)
    Ws = [uneven_matrix(rng, 30, 24, 0.3), uneven_matrix(rng, 10, 30, 0.5)]
    x = rng.normal(0, 1, (6, 24))
    plain = encode_network(Ws, 4, acc_depth=4, calibration=x)
    bal = balance_image(plain, x)
    assert any(L.row_perm is not None for L in bal.layers)
    again = balance_image(bal, x)                     # re-balancing starts from the logical matrices
    for a, b in zip(bal.layers, again.layers):
        np.testing.assert_array_equal(decode_indices(a), decode_indices(b))
    np.testing.assert_array_equal(run_image(again, x).outputs_int, run_image(plain, x).outputs_int)
    # statistics are in logical order, whatever the permutation
    for (p1, s1), (p2, s2) in zip(activation_statistics(plain, x), activation_statistics(bal, x)):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)
    assert plain.meta.get("balance") is None and bal.meta["balance"]["calibration_samples"] == 6
    # the scores are the cycle model's own figures (6 samples <= max_patterns: all of them)
    per_layer = bal.meta["balance"]["layers"]
    rep_bal, rep_plain = run_image(bal, x).report, run_image(plain, x).report
    for i, L in enumerate(per_layer):
        assert L["cycles"][L["chosen"]] == rep_bal.layers[i]["cycles"]
    assert per_layer[0]["cycles"]["identity"] == rep_plain.layers[0]["cycles"]


def test_explicit_permutations_in_encode_layer():
    rng = np.random.default_rng(2)
    W = sparse_matrix(rng, 9, 7, 0.5)
    rp, cp = rng.permutation(9), rng.permutation(7)
    L = encode_layer(W, 2, acc_depth=2, row_perm=rp, col_perm=cp)
    L0 = encode_layer(W, 2, acc_depth=2)
    np.testing.assert_array_equal(decode_indices(L), decode_indices(L0))
    np.testing.assert_array_equal(decode_indices(L, "hardware"), decode_indices(L0)[rp][:, cp])
    with pytest.raises(InputError, match="row_perm"):
        encode_layer(W, 2, row_perm=[0, 1, 2])
    with pytest.raises(InputError, match="order"):
        decode_indices(L, "sideways")


# -- image files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def balanced_net():
    rng = np.random.default_rng(20240612)
    Ws = [uneven_matrix(rng, 26, 20, 0.3), uneven_matrix(rng, 18, 26, 0.4), uneven_matrix(rng, 7, 18, 0.5)]
    calib = rng.normal(0, 1, (5, 20))
    image = encode_network(Ws, 4, acc_depth=4, calibration=calib, balance=True)
    assert all(L.row_perm is not None for L in image.layers)
    return image, calib


def test_image_file_round_trip(balanced_net, tmp_path):
    image, x = balanced_net
    path = save_image(image, tmp_path / "b.eie")
    raw = read_raw(path)
    assert (raw.major, raw.minor) == (1, 3)
    assert "layers[0].row_perm" in raw.arrays and raw.arrays["layers[0].row_perm"].dtype == np.dtype("<u4")
    assert not any(k.endswith("col_perm") for k in raw.arrays)    # implied by the previous layer
    loaded = load_image(path)
    for a, b in zip(image.layers, loaded.layers):
        for f in ("ptr", "v", "z", "row_perm"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        np.testing.assert_array_equal(a.logical_cols, b.logical_cols)
    assert json.loads(json.dumps(image.meta)) == loaded.meta
    np.testing.assert_array_equal(run_image(loaded, x).outputs_int, run_image(image, x).outputs_int)
    assert loaded.summary()["layers"][0]["row_permuted"]


def test_unpermuted_image_has_no_permutation_arrays(tmp_path):
    rng = np.random.default_rng(1)
    image = encode_network([sparse_matrix(rng, 8, 6, 0.5)], 2)
    raw = read_raw(save_image(image, tmp_path / "p.eie"))
    assert (raw.major, raw.minor) == (1, 3)
    assert not any(k.endswith("row_perm") for k in raw.arrays)


def test_file_without_the_permutation_is_hardware_order(balanced_net, tmp_path):
    """What a 1.0 reader sees: the same hardware image, outputs in hardware order."""
    image, x = balanced_net
    raw = read_raw(save_image(image, tmp_path / "b.eie"))
    raw.arrays = {k: v for k, v in raw.arrays.items() if not k.endswith("row_perm")}
    as_version(raw, 0)
    old = load_image(write_raw(tmp_path / "old.eie", raw))
    assert all(L.row_perm is None for L in old.layers)
    np.testing.assert_array_equal(run_image(old, x).outputs_int, run_image(image, x).hw_outputs_int)


@pytest.mark.parametrize("bad,match", [
    (lambda p: np.where(p == 1, 0, p), "appears 2 times"),
    (lambda p: p[:-1], "expected 26 entries"),
    (lambda p: np.where(p == 0, 99, p), "outside 0..25"),
])
def test_bad_permutation_in_file(balanced_net, tmp_path, bad, match):
    image, _ = balanced_net
    raw = read_raw(save_image(image, tmp_path / "b.eie"))
    raw.arrays["layers[0].row_perm"] = bad(raw.arrays["layers[0].row_perm"]).astype("<u4")
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.row_perm: .*{match}"):
        load_image(write_raw(tmp_path / "bad.eie", raw))


def test_bad_permutation_dtype_in_file(balanced_net, tmp_path):
    image, _ = balanced_net
    raw = read_raw(save_image(image, tmp_path / "b.eie"))
    raw.arrays["layers[1].row_perm"] = raw.arrays["layers[1].row_perm"].astype("<i8")
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.row_perm: dtype"):
        load_image(write_raw(tmp_path / "bad.eie", raw))


def _with_layer(image, i, **changes):
    layers = list(image.layers)
    layers[i] = dataclasses.replace(layers[i], **changes)
    return EIEImage(n_pe=image.n_pe, acc_depth=image.acc_depth, layers=layers, meta=dict(image.meta))


def test_bad_permutations_in_memory(balanced_net):
    image, _ = balanced_net
    L0, L1 = image.layers[0], image.layers[1]
    cases = [
        (_with_layer(image, 0, row_perm=np.zeros(26, int)), r"layers\[0\]\.row_perm: not a permutation"),
        (_with_layer(image, 0, row_perm=L0.row_perm.astype(float)), r"layers\[0\]\.row_perm: expected integers"),
        (_with_layer(image, 1, col_perm=np.arange(26)), r"layers\[1\]\.col_perm: does not match layers\[0\]\.row_perm"),
        (_with_layer(image, 0, col_perm=np.arange(20)[::-1]), r"layers\[0\]\.col_perm: the network input"),
        (_with_layer(image, 1, col_perm=L1.col_perm[:5]), r"layers\[1\]\.col_perm: expected 26 entries"),
    ]
    for img, match in cases:
        with pytest.raises(ImageFormatError, match=match):
            img.validate()
        with pytest.raises(ImageFormatError, match=match):
            save_image(img, "/nonexistent/never-written.eie")
    assert "'fc0'" in str(pytest.raises(ImageFormatError, cases[0][0].validate).value)  # names the layer


# -- FC8: fewer cycles ---------------------------------------------------------------------
@pytest.mark.fc8
def test_fc8_balancing_reduces_cycles(fc8_dir):
    from eie.golden_model.fc8 import fc8_image, load_fc8

    ref = load_fc8(fc8_dir)
    image = fc8_image(ref)
    base = run_image(image, ref.act)
    for calib in (None, ref.act):          # structure only, and the layer's input statistics
        bal = balance_image(image, calib)
        assert bal.layers[0].row_perm is not None
        res = run_image(bal, ref.act)
        if calib is not None:
            scores = bal.meta["balance"]["layers"][0]["cycles"]
            assert scores["identity"] == base.report.cycles and min(scores.values()) == res.report.cycles
        np.testing.assert_array_equal(res.outputs_int, base.outputs_int)
        assert res.report.cycles < base.report.cycles
        assert res.report.busiest_pe_entries < base.report.busiest_pe_entries
        for depth in (1, 16):
            cfg = EIEConfig.for_image(image, fifo_depth=depth)
            assert run_image(bal, ref.act, cfg).report.cycles <= run_image(image, ref.act, cfg).report.cycles


# -- read-back, scoreboard, CLI ---------------------------------------------------------------
def test_output_reads_unpermute():
    perm = np.array([2, 0, 3, 1, 4])
    hw = output_reads(5, 2)
    logical = output_reads(5, 2, perm)
    for r in range(5):
        assert logical[perm[r]] == hw[r]          # logical output perm[r] sits at hardware row r
    assert hw[3] == hm.address(hm.Region.ACT, 1, 1)


def test_scoreboard_compares_in_hardware_order(balanced_net):
    from eie.sim.cases import Case
    from eie.sim.scoreboard import Scoreboard

    image, _ = balanced_net
    a = int_inputs(np.random.default_rng(4), 2, 20, 0.7)
    board = Scoreboard(EIEConfig.for_image(image))
    case = Case("balanced", image, a)
    expected = board.expect(case)
    gold = run_image(image, a, int_input=True)
    ok = board.check(case, expected, 0, gold.hw_outputs_int[0], expected[1][0], expected[1][0])
    assert ok.ok
    if not np.array_equal(gold.outputs_int[0], gold.hw_outputs_int[0]):
        bad = board.check(case, expected, 0, gold.outputs_int[0], expected[1][0], expected[1][0])
        assert not bad.ok and "logical_index" in bad.first_mismatch


def test_cli_encode_balance(tmp_path, capsys):
    rng = np.random.default_rng(8)
    Ws = {"W0": uneven_matrix(rng, 24, 16, 0.3), "W1": uneven_matrix(rng, 8, 24, 0.5)}
    np.savez(tmp_path / "w.npz", **Ws)
    x = rng.normal(0, 1, (4, 16))
    np.save(tmp_path / "x.npy", x)
    for extra, name in (([], "plain.eie"), (["--balance"], "bal.eie")):
        rc = main(["encode", str(tmp_path / "w.npz"), "--n-pe", "4", "--acc-depth", "2", "--calibrate",
                   str(tmp_path / "x.npy"), "-o", str(tmp_path / name), "--json", *extra])
        assert rc == 0
        capsys.readouterr()
    plain, bal = load_image(tmp_path / "plain.eie"), load_image(tmp_path / "bal.eie")
    assert "balance" in bal.meta and any(L.row_perm is not None for L in bal.layers)
    outs = []
    for name in ("plain.eie", "bal.eie"):
        assert main(["run", str(tmp_path / name), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["outputs_int"] == outs[1]["outputs_int"]
    np.testing.assert_array_equal(run_image(bal, x).outputs_int, run_image(plain, x).outputs_int)


def test_cli_balance_an_existing_image(tmp_path, capsys):
    rng = np.random.default_rng(9)
    image = encode_network([uneven_matrix(rng, 40, 24, 0.3)], 4, acc_depth=4)
    save_image(image, tmp_path / "net.eie")
    x = rng.normal(0, 1, (6, 24))
    np.save(tmp_path / "x.npy", x)
    rc = main(["balance", str(tmp_path / "net.eie"), "--calibrate", str(tmp_path / "x.npy"),
               "-o", str(tmp_path / "bal.eie"), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["outputs_identical"] and info["cycles_after"] <= info["cycles_before"]
    bal = load_image(tmp_path / "bal.eie")
    np.testing.assert_array_equal(run_image(bal, x).outputs_int, run_image(image, x).outputs_int)
    # nothing is overwritten without --force, and bad calibration names the option
    assert main(["balance", str(tmp_path / "net.eie"), "-o", str(tmp_path / "bal.eie")]) != 0
    np.savez(tmp_path / "bad.npz", x=x)
    for bad, expect in ((np.zeros((2, 5)), "or (batch, 24)"), (np.float64(1.0), "or (batch, 24)"),
                        (np.zeros((0, 24)), "no samples")):
        np.save(tmp_path / "bad.npy", bad)
        assert main(["balance", str(tmp_path / "net.eie"), "--calibrate", str(tmp_path / "bad.npy"),
                     "-o", str(tmp_path / "b2.eie")]) != 0
        err = capsys.readouterr().err
        assert "--calibrate" in err and "calibration" in err and expect in err, err
    assert main(["balance", str(tmp_path / "net.eie"), "--calibrate", str(tmp_path / "bad.npz"),
                 "-o", str(tmp_path / "b2.eie")]) != 0
    assert ".npz" in capsys.readouterr().err and not (tmp_path / "b2.eie").exists()


# -- RTL: bit- and cycle-exact on permuted images ------------------------------------------
def _rtl_vs_golden(image, a):
    from eie.hdl.loader import params_for_image
    from eie.hdl.rtl_sim import run_rtl

    params = params_for_image(image, fifo_depth=4)
    gold = run_image(image, a, params.to_config(), int_input=True, trace=True)
    rtl = run_rtl(image, a, params, trace=True)
    np.testing.assert_array_equal(rtl.outputs, gold.outputs_int)      # run_rtl reads in logical order
    assert rtl.cycles_per_sample == gold.report.cycles_per_sample
    for bt, tr in zip(gold.report.batches, rtl.batches, strict=True):
        assert tr.broadcasts == bt.broadcast.tolist()
        for k in range(params.n_pe):
            assert tr.pops[k] == bt.pop[:, k].tolist()
    return gold


@pytest.mark.sim
def test_rtl_on_balanced_two_layer_image():
    rng = np.random.default_rng(77)
    Ws = [uneven_matrix(rng, 21, 14, 0.4), uneven_matrix(rng, 9, 21, 0.5)]
    a = int_inputs(rng, 2, 14, 0.7)
    plain = encode_network(Ws, 4, acc_depth=2, seed=3)
    image = balance_image(plain, a, int_input=True, options=BalanceOptions(fifo_depth=4))
    assert image.layers[0].row_perm is not None
    gold = _rtl_vs_golden(image, a)
    np.testing.assert_array_equal(gold.outputs_int, run_image(plain, a, int_input=True).outputs_int)


@pytest.mark.sim
def test_rtl_on_explicitly_permuted_image():
    """Random permutations in every layer (not only what balancing picks)."""
    rng = np.random.default_rng(78)
    W0, W1 = sparse_matrix(rng, 11, 9, 0.5), sparse_matrix(rng, 6, 11, 0.6)
    p0, p1 = rng.permutation(11), rng.permutation(6)
    layers = [encode_layer(W0, 3, acc_depth=2, row_perm=p0, name="fc0"),
              encode_layer(W1, 3, acc_depth=2, row_perm=p1, col_perm=p0, relu=False, name="fc1")]
    image = EIEImage(n_pe=3, acc_depth=2, layers=layers).validate()
    plain = EIEImage(n_pe=3, acc_depth=2, layers=[encode_layer(W0, 3, acc_depth=2, name="fc0"),
                                                  encode_layer(W1, 3, acc_depth=2, relu=False, name="fc1")])
    a = int_inputs(rng, 2, 9, 0.8)
    gold = _rtl_vs_golden(image, a)
    np.testing.assert_array_equal(gold.outputs_int, run_image(plain.validate(), a, int_input=True).outputs_int)
