"""Throughput report (eie/throughput.py): the layer fits the build, the projected MAC/s
formula, the report keys in `eie fpga` and `eie bench`, the Fmax/LUT plot, bad inputs.

No toolchain and no timing assertions: Fmax values are given, the FPGA flow is faked."""

import json

import numpy as np
import pytest

from eie import fpga
from eie import throughput as tp
from eie.bench.paper import CLOCK_MHZ, PAPER_N_PE, layer_by_name
from eie.bench.table import layer_cycles
from eie.cli import main
from eie.golden_model.errors import ConfigError
from eie.hdl.loader import image_writes, place_image
from eie.hdl.params import ArrayParams

PNG = b"\x89PNG\r\n\x1a\n"
BUILD_KEYS = {"note", "layer", "capacity", "n_pe", "fifo_depth", "cycles", "useful_macs", "macs_per_pe_cycle",
              "fmax_mhz", "fpga_useful_macs_per_s", "fpga_us_per_inference", "this_machine", "paper", "ratios"}
MACHINE_KEYS = {"golden_model_useful_macs_per_s", "scipy_csr_useful_macs_per_s", "scipy_csc_useful_macs_per_s",
                "numpy_dense_useful_macs_per_s", "golden_model_seconds", "scipy_csr_seconds", "scipy_csc_seconds"}


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_layer_fits_the_board_preset_and_fills_a_memory(board):
    params = fpga.board_params(fpga.BOARDS[board], 4)
    fit = tp.fitting_layer(params)
    L, image, cap = fit.layer, fit.image, fit.capacity
    place_image(image, params)                      # the loader's capacity check accepts it
    assert image_writes(image, params)              # and it turns into bus writes
    assert image.n_pe == 4 and image.acc_depth <= params.acc_depth
    for key in ("activations", "pointers_per_pe", "entries_per_pe"):
        assert 0 < cap[key]["used"] <= cap[key]["available"], key
    # as large as the memories allow: one of them is (almost) full
    assert max(cap[k]["used"] / cap[k]["available"] for k in ("activations", "entries_per_pe")) > 0.95
    assert L.useful_macs > 0 and fit.seed == tp.DEFAULT_SEED
    assert tp.fitting_layer(params).layer.idx.tobytes() == L.idx.tobytes()     # seeded
    if board == "ulx3s-85f":        # large enough for Table III's densities to show
        P = layer_by_name(tp.DEFAULT_LAYER)
        assert L.weight_density == pytest.approx(P.weight_density, abs=0.02)
        assert L.act_density == pytest.approx(P.act_density, abs=0.05)
        n_out, n_in = L.shape
        assert n_in / n_out == pytest.approx(P.n_in / P.n_out, rel=0.05)


def test_a_bigger_matrix_memory_gets_a_bigger_layer():
    small = ArrayParams(n_pe=2, acc_depth=16, act_depth=64, ptr_depth=256, spmat_depth=32)
    big = ArrayParams(n_pe=2, acc_depth=16, act_depth=64, ptr_depth=256, spmat_depth=128)
    s, b = tp.fitting_layer(small, "Alex-7"), tp.fitting_layer(big, "Alex-7")
    assert b.layer.idx.size > s.layer.idx.size
    with pytest.raises(ConfigError, match="spmat_depth"):        # the big layer does not fit the small build
        place_image(b.image, small)


def test_a_one_by_one_build_gets_a_layer_with_a_useful_mac():
    """1 PE x 1 activation: a seed whose 1 x 1 draw has no useful MAC is passed over."""
    from eie.bench.layers import synthetic_layer

    P = layer_by_name("Alex-8")
    useful = [synthetic_layer("x", 1, 1, P.weight_density, P.act_density, s).useful_macs for s in range(40)]
    empty = useful.index(0)
    smallest = ArrayParams(n_pe=1, acc_depth=1, act_depth=1, ptr_depth=2, spmat_depth=1)
    fit = tp.fitting_layer(smallest, "Alex-8", seed=empty)
    assert fit.layer.shape == (1, 1) and fit.layer.useful_macs == 1
    assert fit.seed == useful.index(1, empty)
    r = tp.build_throughput(smallest, 10.0, seed=empty, repeat=1)
    assert r["useful_macs"] == 1 and r["layer"]["seed"] == fit.seed
    assert r["fpga_useful_macs_per_s"] == pytest.approx(10e6 / r["cycles"])


@pytest.mark.parametrize("board,fmax", [("icebreaker", 19.62), ("ulx3s-85f", 38.75)])
def test_effective_macs_are_useful_macs_times_fmax_over_cycles(board, fmax):
    params = fpga.board_params(fpga.BOARDS[board], 4)
    r = tp.build_throughput(params, fmax, repeat=1)
    assert BUILD_KEYS <= set(r) and MACHINE_KEYS <= set(r["this_machine"])
    # independently: useful MACs from the index matrix and input, cycles through bench's path
    fit = tp.fitting_layer(params)
    L, image = fit.layer, fit.image
    useful = int(np.count_nonzero(L.idx[:, L.a != 0]))
    cycles = layer_cycles(L, params.n_pe, params.fifo_depth, image)["cycles"]
    assert (r["useful_macs"], r["cycles"]) == (useful, cycles)
    assert r["fpga_useful_macs_per_s"] == pytest.approx(useful * fmax * 1e6 / cycles, rel=1e-12)
    assert r["fpga_us_per_inference"] == pytest.approx(cycles / fmax)
    assert r["macs_per_pe_cycle"] == pytest.approx(useful / (cycles * 4))
    assert r["layer"]["shape"] == [L.shape[1], L.shape[0]] and "projection" in r["note"]
    m = r["this_machine"]
    assert m["golden_model_useful_macs_per_s"] == pytest.approx(useful / m["golden_model_seconds"])
    assert r["ratios"]["fpga_over_scipy_csr"] == pytest.approx(
        r["fpga_useful_macs_per_s"] / m["scipy_csr_useful_macs_per_s"])
    assert tp.build_throughput(params, None, repeat=1)["fpga_useful_macs_per_s"] is None
    with pytest.raises(ValueError, match="cycles"):
        tp.effective_macs_per_s(10, 100.0, 0)


def test_paper_figure_comes_from_table_iv():
    p = tp.paper_throughput("Alex-8")
    assert p["peak_useful_macs_per_s"] == PAPER_N_PE * CLOCK_MHZ * 1e6 == 51.2e9
    L = p["layer"]
    # Table IV: FC8 theoretical 8.9 µs, measured 9.9 µs on 64 PEs at 800 MHz
    assert L["useful_macs"] == pytest.approx(8.9 * 800 * 64)
    assert L["useful_macs_per_s"] == pytest.approx(8.9 * 800e6 * 64 / 9.9)
    assert len(p["layers"]) == 9 and all(r["useful_macs_per_s"] < p["peak_useful_macs_per_s"] for r in p["layers"])
    assert "ISCA 2016" in p["source"]


def _fake_report(board="ulx3s-85f", n_pe=4, fmax=38.75, tried=None):
    params = fpga.board_params(fpga.BOARDS[board], n_pe)
    rep = {"board": board, "device": fpga.BOARDS[board].device, "n_pe": n_pe, "params": params.as_dict(),
           "fits": True, "synthesis": {"lut4_equivalent": 6500, "ff": 2000, "bram": 29, "dsp": 4},
           "pnr": ({"ran": True, "fits": True, "fmax_mhz": fmax, "utilisation": {"lut": {"used": 6233,
                                                                                     "available": 83640}}}
                   if fmax else {"ran": False}),
           "seconds": {"total": 1}}
    if tried is not None:
        rep["largest_n"] = {"n": max(int(n) for n, t in tried.items() if t["fits"]), "method": "synth",
                            "tried": tried}
    return rep


TRIALS = {"4": {"fits": True, "by": "synthesis", "lut_or_lc": 6500, "fmax_mhz": None},
          "8": {"fits": True, "by": "synthesis", "lut_or_lc": 11000, "fmax_mhz": None},
          "16": {"fits": True, "by": "place-and-route", "lut_or_lc": 20000, "fmax_mhz": 31.5},
          "24": {"fits": False, "by": "synthesis", "lut_or_lc": 30000, "fmax_mhz": None},
          "32": {"fits": False, "by": "configuration", "reason": "too big"}}


def test_scaling_points_and_png_from_trial_dicts(tmp_path):
    pts = tp.scaling_points([_fake_report(tried=TRIALS), _fake_report("icebreaker", 2, 20.0)])
    assert set(pts) == {"ulx3s-85f", "icebreaker"}
    u = pts["ulx3s-85f"]
    assert [p["n_pe"] for p in u] == [4, 8, 16, 24]               # the configuration failure has no LUTs
    assert u[0] == {"n_pe": 4, "lut_or_lc": 6233, "fmax_mhz": 38.75, "fits": True, "by": "place-and-route"}
    assert u[2]["fmax_mhz"] == 31.5 and u[3]["fits"] is False
    path = tp.write_scaling_png("ulx3s-85f", u, tmp_path / "x" / "s.png")
    assert path.read_bytes()[:8] == PNG
    synth_only = [p for p in u if p["by"] == "synthesis"]        # no routed point: still a plot
    assert tp.write_scaling_png("ulx3s-85f", synth_only, tmp_path / "t.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="no build"):
        tp.write_scaling_png("ulx3s-85f", [], tmp_path / "e.png")


def test_report_throughput_needs_a_routed_fmax():
    r = tp.report_throughput(_fake_report("icebreaker", 4, 19.62), repeat=1)
    assert r["board"] == "icebreaker" and r["fmax_mhz"] == 19.62 and BUILD_KEYS <= set(r)
    with pytest.raises(ConfigError, match="no routed Fmax.*place and route did not run"):
        tp.report_throughput(_fake_report(fmax=None), source="x.json")


def test_run_fpga_adds_throughput_and_the_png(tmp_path, monkeypatch):
    """The flow with builds faked: a routed 4-PE build and a synthesis search."""
    def fake_build(board, n, pnr=True, **kw):
        rep = _fake_report(board.name, n, 40.0 - n if pnr else None)
        rep["fits"] = n <= 11
        rep["synthesis"] = {"lut4_equivalent": 1500 * n, "lut4": 1400 * n, "ff": 500 * n, "bram": 7 * n, "dsp": n,
                            "over_capacity": [] if n <= 11 else ["bram"]}
        return rep

    monkeypatch.setattr(fpga, "build_board", fake_build)
    res, path = fpga.run_fpga("ulx3s-85f", 4, search="synth", out_dir=tmp_path, build_dir=tmp_path / "b")
    on_disk = json.loads(path.read_text())
    t = on_disk["throughput"]
    assert t["fmax_mhz"] == 36.0 and t["board"] == "ulx3s-85f" and BUILD_KEYS <= set(t)
    assert t["fpga_useful_macs_per_s"] == pytest.approx(t["useful_macs"] * 36e6 / t["cycles"])
    assert on_disk["largest_n"]["n"] == 11
    png = tmp_path / "ulx3s-85f-4pe-fmax-luts.png"
    assert on_disk["fmax_luts_png"] == str(png) and png.read_bytes()[:8] == PNG
    # no place and route, no search: neither a throughput section nor a plot
    res, path = fpga.run_fpga("ulx3s-85f", 2, search="none", pnr=False, out_dir=tmp_path / "s",
                              build_dir=tmp_path / "b")
    assert "throughput" not in res and "fmax_luts_png" not in res and not list((tmp_path / "s").glob("*.png"))


def test_bench_throughput_section_from_reports_and_fmax(tmp_path, capsys):
    rep = tmp_path / "ulx3s-85f-4pe.json"
    rep.write_text(json.dumps(_fake_report(tried=TRIALS)))
    synth_only = tmp_path / "ulx3s-85f-2pe.json"
    synth_only.write_text(json.dumps(_fake_report(n_pe=2, fmax=None)))
    out = tmp_path / "bench"
    assert main(["bench", "--sections", "throughput", "--fpga-report", str(rep), "--fpga-report", str(synth_only),
                 "--fmax", "icebreaker:4:19.62", "--repeat", "1", "--out", str(out)]) == 0
    assert "FPGA projection" in capsys.readouterr().out
    res = json.loads((out / "bench.json").read_text())
    t = res["throughput"]
    assert [b["source"] for b in t["builds"]] == [str(rep), "fmax icebreaker:4:19.62"]
    assert all(BUILD_KEYS <= set(b) for b in t["builds"])
    assert t["skipped"][0]["source"] == str(synth_only) and "no routed Fmax" in t["skipped"][0]["reason"]
    assert t["paper"]["layer"]["layer"] == "Alex-8" and "projection" in t["note"]
    assert [p["n_pe"] for p in t["scaling"]["ulx3s-85f"]] == [2, 4, 8, 16, 24]
    assert set(res["summary"]["fpga_useful_macs_per_s"]) == {str(rep), "fmax icebreaker:4:19.62"}
    assert (out / "fmax_luts_ulx3s-85f.png").read_bytes()[:8] == PNG
    md = (out / "bench.md").read_text()
    assert "## Throughput of FPGA builds" in md and "fmax_luts_ulx3s-85f.png" in md


def test_bench_reads_the_report_directory_when_nothing_is_named(tmp_path, monkeypatch):
    from eie.bench import BenchConfig, run_bench

    d = tmp_path / "reports" / "fpga"
    d.mkdir(parents=True)
    (d / "icebreaker-4pe.json").write_text(json.dumps(_fake_report("icebreaker", 4, 19.62)))
    (d / "notes.json").write_text("[1, 2]")
    res = run_bench(BenchConfig(sections=("throughput",), repeat=1, fpga_report_dir=str(d)), progress=False)
    t = res["throughput"]
    assert [b["board"] for b in t["builds"]] == ["icebreaker"]
    reason = t["skipped"][0]["reason"]
    assert t["skipped"][0]["source"].endswith("notes.json") and "not an `eie fpga` report" in reason
    assert "--fpga-report" not in reason          # found in the directory, not named by that option


@pytest.mark.parametrize("content,args,message", [
    (None, ["--fpga-report", "{d}/missing.json"], "missing.json: no such file"),
    ("{not json", ["--fpga-report", "{d}/bad.json"], "bad.json: not a JSON file"),
    ('{"board": "x"}', ["--fpga-report", "{d}/bad.json"], "not an `eie fpga` report (no n_pe, params, pnr)"),
    (None, ["--fmax", "ulx3s-85f:4"], "expected BOARD:N:MHZ"),
    (None, ["--fmax", "nosuch:4:30"], "unknown board"),
    (None, ["--throughput-layer", "VGG-9"], "unknown Table III layer"),
])
def test_bench_bad_throughput_inputs_are_one_line_exit_2(tmp_path, capsys, content, args, message):
    if content is not None:
        (tmp_path / "bad.json").write_text(content)
    args = [a.format(d=tmp_path) for a in args]
    rc = main(["bench", "--sections", "throughput", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("eie bench: error: ") and message in err
    assert not (tmp_path / "out").exists()
