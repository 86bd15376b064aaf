"""`eie sim` and `eie regress` from the command line (Icarus)."""

import json
import shutil

import numpy as np
import pytest

from eie.cli import main
from eie.golden_model import encode_network
from eie.golden_model.image_file import save_image
from eie.golden_model.model import run_image

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")]


def test_sim_an_image_file_reports_bit_and_cycle_exact(tmp_path, capsys):
    rng = np.random.default_rng(5)
    W = rng.normal(0, 0.5, (12, 10)) * (rng.random((12, 10)) < 0.4)
    img = save_image(encode_network([W], 2, acc_depth=4), tmp_path / "l.eie")
    x = rng.normal(0, 1, (2, 10))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "res.json"
    assert main(["sim", str(img), "--input", str(tmp_path / "x.npy"), "--fifo-depth", "2", "--json",
                 "-o", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["cycle_exact"] and res["samples"] == 2
    gold = run_image(encode_network([W], 2, acc_depth=4), x,
                     __import__("eie.hdl.loader", fromlist=["x"]).params_for_image(
                         encode_network([W], 2, acc_depth=4), fifo_depth=2).to_config())
    assert res["outputs_int"] == gold.outputs_int.tolist()
    assert res["cycles_rtl"] == gold.report.cycles_per_sample
    assert json.loads(out.read_text())["cycles_rtl"] == res["cycles_rtl"]


def test_sim_default_case_with_waves(tmp_path, capsys):
    vcd = tmp_path / "w.vcd"
    assert main(["sim", "--waves", str(vcd)]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "gtkwave" in text
    assert vcd.stat().st_size > 10_000


def test_sim_rejects_a_wrong_pe_count_and_missing_input(tmp_path, capsys):
    img = save_image(encode_network([np.eye(4)], 2), tmp_path / "e.eie")
    assert main(["sim", str(img), "--n-pe", "4", "--input", "x.npy"]) == 2
    assert "built for 2 PEs" in capsys.readouterr().err
    assert main(["sim", str(img)]) == 2
    assert "--input is required" in capsys.readouterr().err


def test_regress_small_run_summary(tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert main(["regress", "--cases", "6", "--seed", "40", "--builds", "2x1,3x4", "--json", "-o", str(out)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["passed"] == 6 and s["failures"] == [] and s["samples"] >= 6
    assert [b["cases"] for b in s["builds"]] == [3, 3]
    assert json.loads(out.read_text())["passed"] == 6
    assert main(["regress", "--cases", "2", "--builds", "4"]) == 2
