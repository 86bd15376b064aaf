"""`eie bench`: the paper's evaluation reproduced on the cycle model, plus model speeds.

Sections of the JSON (reports/bench/bench.json; docs/benchmarks.md lists every key):
table_iv (the nine Table III layers, synthetic at the stated densities, 64 PEs, queue
depth 8, next to Table IV's µs), table_iv_work_matched (densities scaled to Table IV's
theoretical work), fc8 (the authors' layer next to their simulator's 7,896 cycles),
depth_sweep and pe_sweep (Section VI's design-space sweeps), load balancing (each row's
"balanced": cycles after the row permutation of golden_model/balance.py), speed
(golden model, cycle model, RTL simulation, each against NumPy and scipy baselines) and
throughput (FPGA builds' useful MAC/s projected from routed Fmax and exact cycles, next
to the golden model, scipy and the paper's 64 PEs; eie/throughput.py).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from eie.common import atomic_write_bytes, write_json
from eie.golden_model.fc8 import find_fc8_dir
from eie.jobs import Executor, Job, run_jobs, worker_cache

from .jobs import depth_jobs, fc8_row_job, fc8_spec, layer_name, pe_jobs, table_jobs, table_spec
from .layers import fc8_layer, synthetic_layer
from .markdown import bench_markdown
from .paper import PAPER_FIFO_DEPTH, PAPER_N_PE, TABLE_III
from .plots import write_plots
from .speed import model_speed, rtl_speed
from .sweeps import DEPTHS, PE_COUNTS, depth_entry, pe_entry
from .table import table_layer

__all__ = ["BenchConfig", "run_bench", "write_report", "SCHEMA", "TOP_KEYS"]

SCHEMA = "eie-bench/1"
TOP_KEYS = ("schema", "config", "environment", "table_iv", "table_iv_work_matched", "fc8", "depth_sweep",
            "pe_sweep", "load_balance", "speed", "throughput", "jobs", "summary", "seconds")


@dataclass(frozen=True)
class BenchConfig:
    """What `eie bench` runs. The defaults are the paper's setting; `tiny()` is for tests."""

    n_pe: int = PAPER_N_PE
    fifo_depth: int = PAPER_FIFO_DEPTH
    scale: float = 1.0                       # shrink the Table III shapes (quick runs)
    depths: tuple = DEPTHS
    pe_counts: tuple = PE_COUNTS
    work_matched: bool = True
    balance: bool = True
    rtl: str = "auto"                        # auto (sim/simulator.py) | verilator | icarus | none
    rtl_layer: tuple = (256, 256, 0.1, 0.4)  # n_in, n_out, weight density, activation density
    rtl_n_pe: int = 4
    rtl_samples: int = 4
    repeat: int = 5
    fc8_dir: str | None = None
    sections: tuple = ("table", "fc8", "depth", "pe", "speed", "throughput")
    fpga_reports: tuple = ()                 # `eie fpga` report paths (throughput section)
    fmax: tuple = ()                         # (board, n_pe, MHz): a board preset at a given Fmax
    fpga_report_dir: str | None = "reports/fpga"   # read when neither of the two above is given
    throughput_layer: str = "Alex-8"         # Table III layer whose shape ratio and densities are used

    @classmethod
    def tiny(cls, **kw) -> "BenchConfig":
        base = cls(n_pe=8, scale=1 / 32, depths=(1, 2, 8), pe_counts=(1, 2, 8), rtl_layer=(24, 20, 0.3, 0.5),
                   rtl_n_pe=2, rtl_samples=2, repeat=1, fpga_report_dir=None)
        return replace(base, **kw)

    def as_dict(self) -> dict:
        return asdict(self)


def _summary(res: dict) -> dict:
    c = res["config"]
    s = {"paper_comparable": c["scale"] == 1.0 and c["n_pe"] == PAPER_N_PE and c["fifo_depth"] == PAPER_FIFO_DEPTH}
    rows = res.get("table_iv") or []
    if rows and s["paper_comparable"]:
        within = [r["layer"] for r in rows if abs(r["diff_vs_measured_percent"]) <= 15.0]
        s["table_iv_within_15_percent_of_measured"] = f"{len(within)}/{len(rows)}"
        s["table_iv_misses"] = {r["layer"]: round(r["diff_vs_measured_percent"], 1)
                                for r in rows if r["layer"] not in within}
    fc8 = res.get("fc8")
    if fc8:
        s["fc8_cycles"] = fc8["cycles"]
        s["fc8_authors_cycles"] = fc8["authors_cycles"]
        s["fc8_diff_vs_authors_percent"] = fc8["diff_vs_authors_percent"]
        if "balanced" in fc8:
            s["fc8_balanced_cycles"] = fc8["balanced"]["cycles"]
        if "balanced_calibrated" in fc8:
            s["fc8_balanced_calibrated_cycles"] = fc8["balanced_calibrated"]["cycles"]
    lb = res.get("load_balance") or []
    if lb:
        s["load_balance_mean_cycles_saved_percent"] = sum(r["cycles_saved_percent"] for r in lb) / len(lb)
    sp = res.get("speed") or {}
    if sp.get("rtl"):
        s["rtl_bit_and_cycle_exact"] = bool(sp["rtl"]["ok"])
    tp = res.get("throughput") or {}
    if tp.get("builds"):
        s["fpga_useful_macs_per_s"] = {b["source"]: b["fpga_useful_macs_per_s"] for b in tp["builds"]}
    return s


def _fc8_dir(cfg: BenchConfig) -> str | None:
    """The FC8 directory as an absolute path (jobs may run elsewhere), or None without the data."""
    d = cfg.fc8_dir or find_fc8_dir()
    return None if d is None else str(Path(d).resolve())


def _cycle_model_sections(res: dict, cfg: BenchConfig, sections: set, fc8_dir, executor: Executor,
                          progress: bool) -> None:
    """Table IV, FC8 and the two sweeps: every cycle-model run is a job (jobs.py), all in
    one run of `executor` (one pool start). A job that fails twice leaves its row or
    point out; `res["jobs"]` lists it."""
    specs = ([fc8_spec(fc8_dir)] if fc8_dir is not None else []) + [table_spec("table", cfg.scale, i)
                                                                      for i in range(len(TABLE_III))]
    parts: list[tuple[str, list]] = []
    if "table" in sections:
        parts.append(("table_iv", table_jobs("table", cfg.scale, cfg.n_pe, cfg.fifo_depth, cfg.balance)))
        if cfg.work_matched:
            parts.append(("table_iv_work_matched", table_jobs("work", cfg.scale, cfg.n_pe, cfg.fifo_depth, False)))
    if "fc8" in sections and fc8_dir is not None:
        parts.append(("fc8", [Job(fc8_row_job, {"fc8_dir": fc8_dir, "fifo_depth": cfg.fifo_depth,
                                                "balance": cfg.balance}, key="FC8 (authors)")]))
    if "depth" in sections:
        parts.append(("depth_sweep", depth_jobs(specs, cfg.n_pe, cfg.depths)))
    if "pe" in sections:
        parts.append(("pe_sweep", pe_jobs(specs, cfg.fifo_depth, cfg.pe_counts)))
    jobs = [j for _, js in parts for j in js]
    out = run_jobs(jobs, executor, progress=progress and bool(jobs), desc=f"cycle model ({executor.describe()})")
    worker_cache().pop("bench_layer", None)   # this process's layer, if it ran jobs itself
    res["jobs"] = {"count": len(jobs), "failures": out.failures, "rerun": out.retried,
                   "interrupted": out.interrupted}
    start = 0
    for name, js in parts:
        got = out.results[start:start + len(js)]
        start += len(js)
        if name in ("table_iv", "table_iv_work_matched"):
            res[name] = [r for r in got if r is not None]
        elif name == "fc8":
            res["fc8"] = got[0]
        elif name == "depth_sweep":
            res[name] = [depth_entry(layer_name(s), cfg.n_pe, pts) for s, pts in zip(specs, got) if pts]
        else:
            k = len(cfg.pe_counts)
            per_layer = (got[i * k:(i + 1) * k] for i in range(len(specs)))
            res[name] = [pe_entry(layer_name(s), cfg.fifo_depth, pts) for s, pts in zip(specs, per_layer)
                         if all(p is not None for p in pts)]


def run_bench(cfg: BenchConfig = BenchConfig(), progress: bool = True, executor: Executor = Executor()) -> dict:
    """Run the selected sections; returns the JSON-ready result (see TOP_KEYS). The
    cycle-model sections run as jobs on `executor`; the result does not depend on it
    (only `environment.executor` and the timings do)."""
    t0 = time.perf_counter()
    sections = set(cfg.sections)
    if "throughput" in sections:         # bad report paths end the run before anything is computed
        from .throughput import throughput_sources  # the FPGA flow (Amaranth): deferred to this section

        tp_sources = throughput_sources(cfg)
    res: dict = {"schema": SCHEMA, "config": cfg.as_dict(),
                 "environment": {"python": platform.python_version(), "machine": platform.machine(),
                                 "processor": platform.processor() or None, "executor": executor.describe()},
                 "table_iv": [], "table_iv_work_matched": [], "fc8": None, "depth_sweep": [], "pe_sweep": [],
                 "load_balance": [], "speed": {}, "throughput": {}}
    fc8_dir = _fc8_dir(cfg) if {"fc8", "depth", "pe", "speed"} & sections else None
    _cycle_model_sections(res, cfg, sections, fc8_dir, executor, progress)
    if res["jobs"]["interrupted"]:       # Ctrl-C: report what finished, run nothing more
        sections -= {"speed", "throughput"}
    for r in ([res["fc8"]] if res["fc8"] else []) + res["table_iv"]:
        if "balanced" in r:
            res["load_balance"].append({"layer": r["layer"], "cycles": r["cycles"],
                                        "balanced_cycles": r["balanced"]["cycles"],
                                        "busiest_pe_entries": r["busiest_pe_entries"],
                                        "balanced_busiest_pe_entries": r["balanced"]["busiest_pe_entries"],
                                        "ideal_cycles": r["ideal_cycles"],
                                        "cycles_saved_percent": r["balanced"]["cycles_saved_percent"]})
    if "speed" in sections:
        n_in, n_out, w, a = cfg.rtl_layer
        small = synthetic_layer("rtl-layer", n_in, n_out, w, a, seed=7)
        big = fc8_layer(fc8_dir) if fc8_dir is not None and cfg.scale == 1.0 else table_layer(2, "table", cfg.scale)
        # (table layer 2 is Alex-8: FC8's shape)
        res["speed"]["models"] = [model_speed(big, cfg.n_pe, cfg.fifo_depth, cfg.repeat),
                                  model_speed(small, cfg.rtl_n_pe, cfg.fifo_depth, cfg.repeat)]
        if cfg.rtl != "none":
            res["speed"]["rtl"] = rtl_speed(small, cfg.rtl_n_pe, cfg.fifo_depth, cfg.rtl_samples, cfg.rtl,
                                            cfg.repeat)
    if "throughput" in sections:
        from .throughput import throughput_section  # (see throughput_sources above)

        res["throughput"] = throughput_section(cfg, tp_sources, progress)
    res["summary"] = _summary(res)
    res["seconds"] = time.perf_counter() - t0
    return res


def write_report(res: dict, out_dir) -> list[Path]:
    """bench.json, bench.md and the PNG plots; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out_dir / "bench.json", res)]
    pngs = write_plots(res, out_dir)
    paths.append(atomic_write_bytes(out_dir / "bench.md", [bench_markdown(res, pngs).encode()], overwrite=True))
    return paths + [out_dir / p for p in pngs]
