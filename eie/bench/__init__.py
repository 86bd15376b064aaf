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

from .layers import fc8_layer, synthetic_layer
from .markdown import bench_markdown
from .paper import PAPER_FIFO_DEPTH, PAPER_N_PE
from .plots import write_plots
from .speed import model_speed, rtl_speed
from .sweeps import DEPTHS, PE_COUNTS, depth_sweep, pe_sweep
from .table import bench_layers, fc8_row, table_iv

__all__ = ["BenchConfig", "run_bench", "write_report", "SCHEMA", "TOP_KEYS"]

SCHEMA = "eie-bench/1"
TOP_KEYS = ("schema", "config", "environment", "table_iv", "table_iv_work_matched", "fc8", "depth_sweep",
            "pe_sweep", "load_balance", "speed", "throughput", "summary", "seconds")


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


def run_bench(cfg: BenchConfig = BenchConfig(), progress: bool = True) -> dict:
    """Run the selected sections; returns the JSON-ready result (see TOP_KEYS)."""
    t0 = time.perf_counter()
    sections = set(cfg.sections)
    if "throughput" in sections:         # bad report paths end the run before anything is computed
        from .throughput import throughput_sources  # the FPGA flow (Amaranth): deferred to this section

        tp_sources = throughput_sources(cfg)
    res: dict = {"schema": SCHEMA, "config": cfg.as_dict(),
                 "environment": {"python": platform.python_version(), "machine": platform.machine(),
                                 "processor": platform.processor() or None},
                 "table_iv": [], "table_iv_work_matched": [], "fc8": None, "depth_sweep": [], "pe_sweep": [],
                 "load_balance": [], "speed": {}, "throughput": {}}
    pairs = bench_layers("table", cfg.scale) if {"table", "depth", "pe", "speed"} & sections else []
    fc8 = fc8_layer(cfg.fc8_dir) if {"fc8", "depth", "pe", "speed"} & sections else None
    if "table" in sections:
        res["table_iv"] = table_iv(pairs, "table", cfg.n_pe, cfg.fifo_depth, cfg.balance, progress)
        if cfg.work_matched:
            res["table_iv_work_matched"] = table_iv(bench_layers("work", cfg.scale), "work", cfg.n_pe,
                                                    cfg.fifo_depth, False, progress)
    if "fc8" in sections:
        res["fc8"] = fc8_row(cfg.fc8_dir, cfg.fifo_depth, cfg.balance, layer=fc8)
    sweep_layers = ([fc8] if fc8 is not None else []) + [L for _, L in pairs]
    if "depth" in sections:
        res["depth_sweep"] = depth_sweep(sweep_layers, cfg.n_pe, cfg.depths, progress)
    if "pe" in sections:
        res["pe_sweep"] = pe_sweep(sweep_layers, cfg.fifo_depth, cfg.pe_counts, progress)
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
        big = fc8 if fc8 is not None and cfg.scale == 1.0 else pairs[2][1]      # Alex-8: FC8's shape
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
