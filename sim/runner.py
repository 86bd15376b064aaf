"""Builds the `eie_array` Verilog for Icarus and runs cases under cocotb (sim/tb_eie.py).

One Icarus build per parameter set (cached under build/sim/<key>/, rebuilt only when
the generated Verilog changes); one simulator process runs a whole list of cases, so a
regression of thousands of cases costs a handful of process starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import Icarus

from eie.golden_model.errors import EIEError
from eie.hdl.params import ArrayParams
from eie.hdl.synth import ToolMissing
from eie.hdl.verilog_out import DEFAULT_TOP, generate_verilog

from .cases import save_cases

__all__ = ["SIM_ROOT", "SimBuild", "SimRun", "build", "run_cases", "find_icarus"]

SIM_ROOT = Path(os.environ.get("EIE_SIM_ROOT", "build/sim"))
TB_MODULE = "eie.sim.tb_eie"


# Wave dumping, Verilog-2005 so the whole build can be compiled with -g2005 (see build()).
_WAVES_V = """module eie_waves;
  reg [8*1024-1:0] path;
  initial if ($value$plusargs("dumpfile_path=%s", path)) begin
    $dumpfile(path);
    $dumpvars(0, eie_array);
  end
endmodule
"""


class _IcarusRunner(Icarus):
    """cocotb's Icarus runner, with the wave format chosen per run (vcd, fst or none)."""

    wave_format: str | None = None

    def _test_command(self):
        cmds = super()._test_command()
        cmd = [a for a in cmds[0] if a not in ("-none", "-fst")]
        cmd.append(f"-{self.wave_format}" if self.wave_format else "-none")
        return [cmd]


def find_icarus() -> str:
    exe = shutil.which("iverilog")
    if exe is None or shutil.which("vvp") is None:
        raise ToolMissing("Icarus Verilog not found: `apt-get update && apt-get install -y iverilog` "
                          "(.ci/run does this)")
    return exe


@dataclass
class SimBuild:
    params: ArrayParams
    directory: Path
    verilog: Path
    top: str = DEFAULT_TOP
    seconds: float = 0.0
    runner: object = None       # the cocotb runner that built it (runs need its state)


def build(params: ArrayParams, root: Path = SIM_ROOT) -> SimBuild:
    """Generate the Verilog and compile it with Icarus (cached per parameter set)."""
    find_icarus()
    key = hashlib.sha1(json.dumps(params.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
    d = (Path(root) / f"n{params.n_pe}_d{params.fifo_depth}_{key}").resolve()
    d.mkdir(parents=True, exist_ok=True)
    text, desc = generate_verilog(params)
    v = d / "eie.v"
    if not v.exists() or v.read_text() != text:        # keep the timestamp: no needless rebuild
        v.write_text(text)
        (d / "eie.json").write_text(json.dumps(desc, indent=2))
    waves_v = d / "eie_waves.v"
    if not waves_v.exists():
        waves_v.write_text(_WAVES_V)
    t0 = time.perf_counter()
    r = _IcarusRunner()
    # -g2005 after cocotb's -g2012: Amaranth's Verilog starts every `always @*` block with a
    # `reg ... = 0` initialiser; Icarus only turns that into a time-0 event in Verilog-2005
    # mode, without it combinational outputs of idle logic stay 'x'.
    r.build(sources=[v, waves_v], hdl_toplevel=DEFAULT_TOP, build_dir=d, timescale=("1ns", "1ps"),
            build_args=["-g2005", "-s", "eie_waves"], log_file=d / "build.log")
    return SimBuild(params, d, v, seconds=time.perf_counter() - t0, runner=r)


@dataclass
class SimRun:
    """What one simulator process did: per-sample results (see sim/scoreboard.py)."""

    results: list = field(default_factory=list)
    tests: int = 0
    failed_tests: int = 0
    wall_seconds: float = 0.0
    waves: str | None = None
    log: str | None = None
    clock_cycles: int = 0          # every simulated clock cycle (loading, running, reading)
    sim_seconds: float = 0.0       # wall time inside the simulator
    run_clock_cycles: int = 0      # cycles while the array computed (no per-cycle Python)
    run_seconds: float = 0.0

    @property
    def run_cycles_per_second(self) -> float:
        return self.run_clock_cycles / self.run_seconds if self.run_seconds else 0.0

    @property
    def cycles_per_second(self) -> float:
        return self.clock_cycles / self.sim_seconds if self.sim_seconds else 0.0

    @property
    def failures(self) -> list:
        return [r for r in self.results if not r["ok"]]

    @property
    def ok(self) -> bool:
        return self.tests > 0 and self.failed_tests == 0 and not self.failures and bool(self.results)

    @property
    def simulated_cycles(self) -> int:
        return sum(r["cycles_rtl"] for r in self.results)


def run_cases(cases, params: ArrayParams, *, root: Path = SIM_ROOT, waves: str | None = None,
              on_result=None, keep: bool = False, timeout: float | None = None,
              model_overrides: dict | None = None) -> SimRun:
    """Run `cases` in one Icarus process; `on_result(dict)` is called as samples finish.

    `waves`: a .vcd or .fst path to dump the whole run to (slower).
    `model_overrides`: change the scoreboard's model config (tests of the checker only).
    """
    b = build(params, root)
    work = Path(tempfile.mkdtemp(prefix="run_", dir=b.directory))
    manifest = save_cases(list(cases), work / "cases")
    results_path = work / "results.jsonl"
    results_path.touch()
    plusargs = []
    runner = b.runner
    runner.wave_format = None
    if waves:
        wp = Path(waves).resolve()
        wp.parent.mkdir(parents=True, exist_ok=True)
        runner.wave_format = "fst" if wp.suffix == ".fst" else "vcd"
        plusargs.append(f"+dumpfile_path={wp}")
    env = {"EIE_SIM_MANIFEST": str(manifest), "EIE_SIM_RESULTS": str(results_path),
           "EIE_SIM_PARAMS": json.dumps(params.as_dict()), "COCOTB_RANDOM_SEED": "1",
           "EIE_SIM_SUMMARY": str(work / "summary.json")}
    if model_overrides:
        env["EIE_SIM_MODEL"] = json.dumps(model_overrides)
    xml = work / "results.xml"
    log = work / "sim.log"
    error: list = []

    def go():
        try:
            runner.test(test_module=TB_MODULE, hdl_toplevel=DEFAULT_TOP, build_dir=b.directory, test_dir=work,
                        extra_env=env, plusargs=plusargs, results_xml=str(xml), log_file=log)
        except SystemExit as e:             # cocotb exits under pytest when a test fails
            error.append(e)
        except Exception as e:  # noqa: BLE001 - reported below with the log
            error.append(e)

    t0 = time.perf_counter()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    seen = 0
    while True:
        alive = th.is_alive()
        lines = results_path.read_text().splitlines()
        for line in lines[seen:]:
            if on_result:
                on_result(json.loads(line))
        seen = len(lines)
        if not alive:
            break
        if timeout and time.perf_counter() - t0 > timeout:
            raise EIEError(f"simulation did not finish within {timeout} s (log: {log})")
        th.join(0.2)
    run = SimRun([json.loads(x) for x in results_path.read_text().splitlines()],
                 wall_seconds=time.perf_counter() - t0, waves=str(waves) if waves else None, log=str(log))
    if xml.exists():
        run.tests, run.failed_tests = get_results(xml)
    if (work / "summary.json").exists():
        summ = json.loads((work / "summary.json").read_text())
        run.clock_cycles, run.sim_seconds = summ["clock_cycles"], summ["wall_seconds"]
        run.run_clock_cycles, run.run_seconds = summ["run_clock_cycles"], summ["run_wall_seconds"]
    if error and not xml.exists():
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        raise EIEError(f"the simulator failed ({error[0]!r}); last lines of {log}:\n" + "\n".join(tail))
    if not keep and run.ok:
        shutil.rmtree(work, ignore_errors=True)
        run.log = None
    return run
