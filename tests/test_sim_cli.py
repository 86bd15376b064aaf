"""`eie sim` and `eie regress` from the command line, on Verilator and Icarus."""

import json
import os

import numpy as np
import pytest

from eie.cli import main
from eie.golden_model import encode_network
from eie.golden_model.image_file import save_image
from eie.golden_model.model import run_image
from eie.hdl.loader import params_for_image
from eie.sim.cases import random_case, sim_params
from eie.sim.regress import save_failure
from eie.sim.simulator import choose

from .cocotb_sims import SIMS, sim_param

pytestmark = [pytest.mark.sim]


@pytest.fixture
def no_icarus_path(tmp_path, monkeypatch):
    """PATH as on a machine without Icarus: every program of PATH but iverilog/vvp
    (symlinked into one directory), so nothing else changes."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith(("iverilog", "vvp")) or (farm / name).exists():
                continue
            src = os.path.join(d, name)
            if os.path.isfile(src) and os.access(src, os.X_OK):
                (farm / name).symlink_to(src)
    monkeypatch.setenv("PATH", str(farm))
    monkeypatch.delenv("EIE_SIMULATOR", raising=False)
    return farm


@pytest.mark.parametrize("sim", SIMS)
def test_sim_an_image_file_reports_bit_and_cycle_exact(tmp_path, capsys, sim):
    rng = np.random.default_rng(5)
    W = rng.normal(0, 0.5, (12, 10)) * (rng.random((12, 10)) < 0.4)
    img = save_image(encode_network([W], 2, acc_depth=4), tmp_path / "l.eie")
    x = rng.normal(0, 1, (2, 10))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "res.json"
    assert main(["sim", str(img), "--input", str(tmp_path / "x.npy"), "--fifo-depth", "2", "--json",
                 "--simulator", sim, "-o", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["simulator"] == sim
    assert res["bit_exact"] and res["cycle_exact"] and res["samples"] == 2
    image = encode_network([W], 2, acc_depth=4)
    gold = run_image(image, x, params_for_image(image, fifo_depth=2).to_config())
    assert res["outputs_int"] == gold.outputs_int.tolist()
    assert res["cycles_rtl"] == gold.report.cycles_per_sample
    assert res["wall_seconds"] >= res["build_seconds"] >= 0
    assert json.loads(out.read_text())["cycles_rtl"] == res["cycles_rtl"]


@pytest.mark.parametrize("sim", [sim_param("icarus")])
def test_sim_default_case_with_waves(tmp_path, capsys, sim):
    """On Icarus; waves on Verilator: tests/test_cocotb.py::test_waves_are_written, the
    default case on Verilator: test_without_icarus_the_default_is_verilator."""
    vcd = tmp_path / "w.vcd"
    assert main(["sim", "--waves", str(vcd), "--simulator", "icarus"]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "gtkwave" in text and "on icarus" in text
    assert vcd.stat().st_size > 10_000


def test_without_icarus_the_default_is_verilator(no_icarus_path, capsys):
    """A machine without Icarus (PATH hides iverilog): `eie sim` runs on Verilator, and
    asking for Icarus is a one-line error naming it."""
    assert choose() == "verilator"
    assert main(["sim", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["simulator"] == "verilator" and res["bit_exact"] and res["cycle_exact"]
    assert main(["sim", "--simulator", "icarus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Icarus Verilog not found" in err and "apt-get install -y iverilog" in err and "\n" not in err
    assert "or use --simulator verilator" in err     # the library's `simulator="verilator"`, as the option


def test_simulator_errors_are_one_line(monkeypatch, capsys):
    monkeypatch.setenv("EIE_SIMULATOR", "modelsim")
    assert main(["sim"]) == 2
    err = capsys.readouterr().err.strip()
    assert "$EIE_SIMULATOR" in err and "verilator, icarus" in err and "\n" not in err
    monkeypatch.setenv("PATH", "/nonexistent")          # no g++, make or perl
    assert main(["regress", "--cases", "1", "--simulator", "verilator"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing: g++, make, perl" in err and "\n" not in err


def test_sim_rejects_a_wrong_pe_count_and_missing_input(tmp_path, capsys):
    img = save_image(encode_network([np.eye(4)], 2), tmp_path / "e.eie")
    assert main(["sim", str(img), "--n-pe", "4", "--input", "x.npy"]) == 2
    assert "built for 2 PEs" in capsys.readouterr().err
    assert main(["sim", str(img)]) == 2
    assert "--input is required" in capsys.readouterr().err


@pytest.mark.parametrize("sim", SIMS)
def test_regress_small_run_summary(tmp_path, capsys, sim):
    out = tmp_path / "summary.json"
    assert main(["regress", "--cases", "6", "--seed", "40", "--builds", "1x1,3x8", "--json", "--simulator", sim,
                 "-o", str(out), "--failures", str(tmp_path / "fail")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["simulator"] == sim and s["passed"] == 6 and s["failures"] == [] and s["samples"] >= 6
    assert [b["cases"] for b in s["builds"]] == [3, 3]
    assert all(b["cycles_per_second"] > 0 for b in s["builds"])
    saved = json.loads(out.read_text())
    assert saved["passed"] == saved["cases_run"] == 6 and saved["complete"]
    assert not (tmp_path / "fail").exists()
    with pytest.raises(SystemExit) as e:         # a build that is not NxD: refused by the parser
        main(["regress", "--cases", "2", "--builds", "4"])
    assert e.value.code == 2 and "argument --builds: expected comma-separated values, each NxD" in \
        capsys.readouterr().err


@pytest.mark.parametrize("sim", SIMS)
def test_a_saved_case_replays(tmp_path, capsys, sim):
    """What a failing regression saves can be rerun: here a saved (passing) case."""
    params = sim_params(8, 1)
    saved = save_failure(tmp_path, random_case(77, params), params, sim, [])
    assert saved.name == "seed77_8x1"
    assert main(["regress", "--replay", str(saved)]) == 0
    assert f"PASS: {saved} on 8x1 under {sim}" in capsys.readouterr().out
    assert main(["regress", "--replay", str(tmp_path)]) == 2
    assert "expected a saved failing case" in capsys.readouterr().err


@pytest.mark.slow
def test_long_regression_over_the_default_builds(tmp_path, capsys):
    """700 cases over the default builds (N 1-64, depths 1-16) on Verilator: `make test-slow`."""
    assert main(["regress", "--cases", "700", "--simulator", "verilator", "--json",
                 "--failures", str(tmp_path / "fail")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["passed"] == 700 and not s["failures"]
    assert {(b["n_pe"], b["fifo_depth"]) for b in s["builds"]} >= {(1, 1), (16, 16), (64, 8)}


@pytest.mark.parametrize("argv", [["sim"], ["regress", "--cases", "1"], ["verilog", "--synth"]])
def test_existing_reports_are_kept_without_force(tmp_path, capsys, argv):
    """`-o` of sim and regress, and the `--synth` report beside `eie verilog -o`, are
    refused before any work when they exist (README: never replaced without --force)."""
    if argv[0] == "verilog":
        kept, out = tmp_path / "eie.synth.json", tmp_path / "eie.v"
    else:
        kept = out = tmp_path / "report.json"
    kept.write_text("keep me")
    rc = main([*argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert kept.read_text() == "keep me" and (kept == out or not out.exists())
