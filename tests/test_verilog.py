"""`eie verilog`: one synthesizable Verilog file; Yosys finds no latches; Verilator lint."""

import json

import pytest

from eie.cli import main
from eie.golden_model.errors import EIEError
from eie.hdl.params import ArrayParams
from eie.hdl.synth import synthesize, verilator_lint
from eie.hdl.verilog_out import DEFAULT_TOP, write_verilog

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def default_verilog(tmp_path_factory):
    """The 4-PE default build, written once for the module."""
    out = tmp_path_factory.mktemp("verilog") / "eie.v"
    assert main(["verilog", "-o", str(out)]) == 0
    return out


def test_cli_writes_verilog_and_sidecar(default_verilog):
    text = default_verilog.read_text()
    assert f"module {DEFAULT_TOP}(" in text
    for port in ("clk", "rst", "bus__addr", "bus__w_data", "bus__w_en", "bus__r_en", "bus__r_data", "bus__r_valid"):
        assert port in text
    desc = json.loads(default_verilog.with_suffix(".json").read_text())
    assert desc["params"] == ArrayParams().as_dict()
    assert desc["ports"]["bus__w_data"] == {"dir": "in", "width": 64}
    assert desc["ports"]["bus__r_data"] == {"dir": "out", "width": 64}


def test_cli_refuses_to_overwrite_and_names_bad_parameters(default_verilog, capsys):
    before = default_verilog.read_bytes()
    assert main(["verilog", "-o", str(default_verilog)]) == 2
    assert "exists" in capsys.readouterr().err
    assert default_verilog.read_bytes() == before
    assert main(["verilog", "-o", str(default_verilog.with_name("x.v")), "--act-depth", "100"]) == 2
    assert "act_depth must be a power of two" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:         # out of range: refused by the parser
        main(["verilog", "-o", str(default_verilog.with_name("x.v")), "--n-pe", "0"])
    assert e.value.code == 2 and "argument --n-pe: expected an integer in 1..256, got 0" in capsys.readouterr().err


def test_parameters_reach_the_verilog(tmp_path):
    desc = write_verilog(ArrayParams(n_pe=2, fifo_depth=3, act_depth=16, ptr_depth=64, spmat_depth=16), tmp_path / "a.v")
    text = (tmp_path / "a.v").read_text()
    assert "module \\eie_array.pe1 " in text and "eie_array.pe2 " not in text
    assert "$" not in text.split("module \\eie_array.pe0.column_issue")[1].split("(")[0]   # no renamed clash
    assert desc["params"]["fifo_depth"] == 3


@pytest.mark.slow   # Yosys on the whole 4-PE array: more than a minute
def test_yosys_synthesis_of_the_default_has_no_latches(default_verilog):
    """The issue's check: `synth` on the 4-PE default, errors and latches fail the test."""
    rep = synthesize(default_verilog, DEFAULT_TOP)
    assert rep["latches"] == 0
    assert rep["memories"] == 8 * 4            # 8 memories per PE stay memories (LNZD buffers are registers)
    assert rep["flip_flops"] > 1000 and rep["logic_cells"] > 1000
    assert not any("LATCH" in t.upper() for t in rep["cell_types"])


def test_synthesis_check_catches_a_latch(tmp_path):
    v = tmp_path / "latch.v"
    v.write_text("module latchy(input en, input d, output reg q);\n"
                 "  always @* if (en) q = d;\nendmodule\n")
    with pytest.raises(EIEError, match="(?i)latch"):
        synthesize(v, "latchy")


def test_verilator_lint_is_clean(default_verilog):
    clean, msg = verilator_lint(default_verilog, DEFAULT_TOP)
    assert clean, msg


def test_verilator_lint_reports_real_problems(tmp_path):
    v = tmp_path / "bad.v"
    v.write_text("module bad(input a, output b);\n  assign b = a;\n  assign b = ~a;\nendmodule\n")
    clean, msg = verilator_lint(v, "bad")
    assert not clean and "%Warning-MULTIDRIVEN" in msg

