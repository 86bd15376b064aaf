"""How a Verilator simulation build is made (sim/runner.py, sim/verilator_env.py): only the
top's ports public, the hot C++ at -O1. The cocotb tests prove such builds run the RTL
bit- and cycle-exact; these check the build is made that way and nothing else gets it."""

from pathlib import Path

from eie.hdl.params import ArrayParams
from eie.hdl.verilog_out import DEFAULT_TOP
from eie.sim import verilator_env
from eie.sim.runner import SimBuild


def test_a_simulation_build_compiles_at_o1_with_the_pch_fix():
    env = verilator_env.environment({"PATH": "/usr/bin", "MAKEFLAGS": "-s"}, build=True)
    flags = env["MAKEFLAGS"].split()
    assert flags[0] == "-s" and "OPT_FAST=-O1" in flags
    assert "CFG_CXXFLAGS_PCH_I=-include" in flags and "PYTHON3=python3" in flags


def test_lint_and_other_commands_keep_verilators_own_optimisation():
    env = verilator_env.environment({"PATH": "/usr/bin"})
    assert "OPT_FAST" not in env["MAKEFLAGS"]
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]


def test_make_flags_are_not_added_twice():
    once = verilator_env.environment({"PATH": "/usr/bin"}, build=True)
    twice = verilator_env.environment(once, build=True)
    assert twice["MAKEFLAGS"] == once["MAKEFLAGS"]


def test_the_control_file_makes_only_the_top_public():
    text = verilator_env.control_file("eie_array")
    lines = text.splitlines()
    assert lines[0] == "`verilator_config"
    assert lines[1:] == ['public_flat_rw -module "eie_array" -var "*"']


def test_the_verilator_command_has_the_control_file_and_not_public_flat_rw(tmp_path):
    b = SimBuild(ArrayParams(n_pe=2, fifo_depth=2), tmp_path, tmp_path / "eie.v", "verilator")
    r = b.runner()
    r.hdl_toplevel, r.build_dir, r.waves, r.timescale = DEFAULT_TOP, tmp_path, False, None
    r._build_args, r.defines, r.includes, r.parameters = [], {}, [], {}
    verilate = r._build_command()[0]
    assert "--public-flat-rw" not in verilate
    assert str(tmp_path / "public.vlt") in verilate and str(tmp_path / "eie.v") in verilate
    assert "--vpi" in verilate and verilate[verilate.index("--top-module") + 1] == DEFAULT_TOP


def test_an_icarus_build_has_no_control_file(tmp_path):
    b = SimBuild(ArrayParams(n_pe=2, fifo_depth=2), tmp_path, tmp_path / "eie.v", "icarus")
    assert [Path(s).name for s in b.sources] == ["eie.v", "eie_waves.v"]
