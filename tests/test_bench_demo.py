"""The benchmark and the demo run and produce their documented outputs (not timed)."""

import json
import shutil

import numpy as np
import pytest

from eie.bench import TOP_KEYS, BenchConfig, run_bench, write_report
from eie.bench.layers import fc8_layer, synthetic_layer
from eie.bench.paper import TABLE_III, layer_by_name
from eie.bench.table import bench_layers, fc8_row, layer_cycles
from eie.cli import main
from eie.demo import DemoConfig, run_demo
from eie.golden_model.fc8 import AUTHORS_CYCLES, AUTHORS_CYCLES_WITH_BIAS
from eie.golden_model.image_file import load_image

HAVE_ICARUS = shutil.which("iverilog") is not None
PNG = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"layer", "shape", "weight_density", "act_density", "cycles", "us_at_800MHz", "ideal_cycles",
            "busiest_pe_entries", "balanced_bound", "load_balance_efficiency", "paper_measured_us",
            "paper_theoretical_us", "diff_vs_measured_percent", "diff_vs_theoretical_percent"}
SPEED_KEYS = {"golden_useful_macs_per_s", "cycle_model_cycles_per_s", "dense_numpy_seconds", "scipy_sparse_seconds",
              "golden_slowdown_vs_dense_numpy", "golden_slowdown_vs_scipy_sparse"}


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    cfg = BenchConfig.tiny(rtl="icarus" if HAVE_ICARUS else "verilator")
    res = run_bench(cfg, progress=False)
    out = tmp_path_factory.mktemp("bench")
    return res, write_report(res, out), out


def test_bench_json_has_the_documented_keys(tiny_bench):
    res, paths, out = tiny_bench
    assert set(TOP_KEYS) <= set(res)
    on_disk = json.loads((out / "bench.json").read_text())
    assert set(on_disk) == set(res)
    assert len(res["table_iv"]) == len(res["table_iv_work_matched"]) == len(TABLE_III)
    for row in res["table_iv"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["cycles"] >= row["busiest_pe_entries"] >= row["ideal_cycles"] > 0
    for m in res["speed"]["models"]:
        assert SPEED_KEYS <= set(m) and m["golden_useful_macs_per_s"] > 0
    assert not res["summary"]["paper_comparable"]      # shrunken layers are not compared with the paper
    # --tiny reads no FPGA reports: the throughput section has the paper's figure only
    assert res["throughput"]["builds"] == [] and res["throughput"]["paper"]["n_pe"] == 64
    assert res["throughput"]["paper"]["layer"]["measured_us"] == 9.9
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
    assert {"table_iv.png", "depth_sweep.png", "pe_sweep.png"} <= {p.name for p in paths}
    assert all(p.read_bytes()[:8] == PNG for p in paths if p.suffix == ".png")
    assert "| Alex-6 |" in (out / "bench.md").read_text()


def test_bench_sweeps_are_monotone_where_the_model_says_so(tiny_bench):
    res, _, _ = tiny_bench
    for s in res["depth_sweep"]:        # a deeper queue never costs cycles
        cycles = [p["cycles"] for p in s["points"]]
        assert cycles == sorted(cycles, reverse=True), s["layer"]
    for s in res["pe_sweep"]:
        first = s["points"][0]
        assert first["speedup_vs_first"] == 1.0
        for p in s["points"]:
            # the busiest PE issues one entry per cycle: no PE count beats it or the ideal split
            assert p["cycles"] >= max(p["busiest_pe_entries"], p["ideal_cycles"]), (s["layer"], p["n_pe"])
            assert p["speedup_vs_first"] == pytest.approx(first["cycles"] / p["cycles"])
            # not bounded by 1: with more PEs a layer may need fewer output batches, and every
            # batch broadcasts the whole input again (NT-LSTM: 361 cycles on 1 PE, 169 on 2)
            assert p["parallel_efficiency"] == pytest.approx(p["speedup_vs_first"] * first["n_pe"] / p["n_pe"])


def test_bench_rtl_speed_is_checked_bit_and_cycle_exact(tiny_bench):
    rtl = tiny_bench[0]["speed"]["rtl"]
    assert rtl["ok"] and rtl["mismatches"] == 0 and rtl["cycles_per_s"] > 0
    assert rtl["rtl_slowdown_vs_scipy_sparse"] > 0 and tiny_bench[0]["summary"]["rtl_bit_and_cycle_exact"]


def test_synthetic_layers_have_the_stated_densities():
    for P, L in bench_layers("table", scale=1 / 8):
        assert L.weight_density == pytest.approx(P.weight_density, rel=0.05, abs=0.003), P.name
        assert L.act_density == pytest.approx(P.act_density, abs=0.05), P.name
    a = bench_layers("table", scale=1 / 8)[3][1]
    b = bench_layers("table", scale=1 / 8)[3][1]
    assert np.array_equal(a.idx, b.idx) and np.array_equal(a.a, b.a)     # fixed seeds


def test_work_matched_densities_give_the_theoretical_work():
    for P in TABLE_III:
        w, a = P.work_matched_densities()
        assert 0 < w <= 1 and 0 < a <= 1
        assert P.n_in * P.n_out * w * a == pytest.approx(P.theoretical_macs, rel=1e-9)
    with pytest.raises(KeyError, match="known: Alex-6"):
        layer_by_name("VGG-9")


def test_synthetic_layer_rejects_bad_density():
    with pytest.raises(ValueError, match="weight_density"):
        synthetic_layer("x", 8, 8, 1.5, 0.5, seed=0)


def test_reencoding_fc8_reproduces_the_authors_entries(fc8_dir):
    """The bench re-encodes FC8 for other PE counts: at 64 PEs it must equal the authors' layout."""
    from eie.golden_model.fc8 import fc8_image, load_fc8

    L = fc8_layer(fc8_dir)
    ours, theirs = L.image(64).layers[0], fc8_image(load_fc8(fc8_dir)).layers[0]
    assert np.array_equal(ours.ptr, theirs.ptr) and np.array_equal(ours.v, theirs.v)
    assert np.array_equal(ours.z, theirs.z)
    assert layer_cycles(L, 64, 8)["cycles"] == fc8_row(fc8_dir, balance=False)["cycles"]


def test_fc8_row_is_within_1_percent_of_the_authors(fc8_dir):
    for depth in (8, 16):
        row = fc8_row(fc8_dir, fifo_depth=depth, balance=False)
        assert abs(row["cycles"] - AUTHORS_CYCLES[depth]) <= 0.01 * AUTHORS_CYCLES[depth]
        assert row["diff_vs_authors_percent"] == pytest.approx(100 * (row["cycles"] / AUTHORS_CYCLES[depth] - 1))
        assert row["cycles"] >= row["lower_bound_busiest_pe"] >= row["lower_bound_ideal"]
        b = row["with_bias"]   # the bias column: one more broadcast, as in the authors' published figures
        assert row["cycles"] < b["cycles"] and abs(b["cycles"] - AUTHORS_CYCLES_WITH_BIAS[depth]) <= \
            0.01 * AUTHORS_CYCLES_WITH_BIAS[depth]
        assert b["authors_cycles"] == AUTHORS_CYCLES_WITH_BIAS[depth]


def test_bench_cli_writes_the_report(tmp_path, capsys):
    assert main(["bench", "--tiny", "--rtl", "none", "--sections", "table", "--no-balance", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert len(res["table_iv"]) == 9 and res["fc8"] is None and res["depth_sweep"] == []
    assert "Table IV" in capsys.readouterr().out


def test_demo_end_to_end_quick(tmp_path):
    cfg = DemoConfig.quick(n_pe=4, rtl="icarus" if HAVE_ICARUS else "verilator")
    s = run_demo(out_dir=tmp_path, cfg=cfg, progress=False)
    assert s["checks_failed"] == []
    from eie.pruning.data import load_digits_splits

    assert s["golden"]["within_bound"] and s["golden"]["samples"] == len(load_digits_splits().y_test)
    assert s["kept"] == pytest.approx(cfg.kept, abs=0.002)
    # the hardware computes the network it was given: arg-max agrees with the float image almost always
    assert abs(s["accuracy"]["hardware_golden"] - s["golden"]["float_image_accuracy"]) <= 0.02
    assert s["image"]["decode_matches"]
    assert s["load_balance"]["outputs_identical"]     # rows permuted on chip, un-permuted on read-back
    assert s["rtl"]["ok"] and s["rtl"]["bit_exact"] and s["rtl"]["cycle_exact"]
    assert s["rtl"]["cycles_rtl"] == s["rtl"]["cycles_model"] and len(s["rtl"]["cycles_rtl"]) == cfg.rtl_samples
    rb = s["rtl"]["demo_balanced"]
    assert rb["samples"] >= 1 and rb["bit_exact"] and rb["cycle_exact"]
    on_disk = json.loads((tmp_path / "demo.json").read_text())
    assert on_disk["accuracy"] == s["accuracy"]
    for png in ("accuracy.png", "pruning.png", "per_pe.png", "compression.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG
    assert "EIE golden model" in (tmp_path / "demo.md").read_text()
    assert load_image(s["image"]["path"]).n_pe == 4


def test_demo_on_mnist_runs_lenet300_with_its_biases(tmp_path):
    """`eie demo --dataset mnist`: LeNet-300-100 with biases on real MNIST (here on the first
    2,000 training images, 400 test images, short schedule), biases carried by the image."""
    cfg = DemoConfig.quick(dataset="mnist", subset=2000, n_pe=4, rtl="none")
    s = run_demo(out_dir=tmp_path, cfg=cfg, progress=False)
    assert s["checks_failed"] == [] and s["dataset"].startswith("MNIST")
    assert s["network"] == [784, 300, 100, 10] and s["golden"]["samples"] == 400
    image = load_image(s["image"]["path"])
    assert all(L.bias for L in image.layers) and s["image"]["check"]["biases_carried"]
    assert s["golden"]["within_bound"] and s["accuracy"]["dense_float"] > 0.8
    assert abs(s["accuracy"]["hardware_golden"] - s["golden"]["float_image_accuracy"]) <= 0.01
    assert s["kept"] == pytest.approx(cfg.kept, abs=0.002)
    with pytest.raises(ValueError, match="dataset must be one of"):
        DemoConfig(dataset="cifar")


def test_demo_cli_rejects_bad_arguments(capsys):
    for bad in ("0", str(10 ** 30)):          # refused by the parser: no training starts
        with pytest.raises(SystemExit) as e:
            main(["demo", "--quick", "--n-pe", bad, "--rtl", "none"])
        assert e.value.code == 2
        assert f"argument --n-pe: expected an integer in 1..256, got {bad}" in capsys.readouterr().err
