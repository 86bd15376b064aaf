"""`eie bench`'s throughput section: projected useful MAC/s of FPGA builds (eie/throughput.py).

The builds come from `eie fpga` reports (`BenchConfig.fpga_reports`, or every report in
`fpga_report_dir` when none is named) and from `BenchConfig.fmax` entries (board, N,
MHz: the board's preset with N PEs at a given Fmax). Each gets a layer that fits its memories, its exact cycles,
the FPGA projection and the golden model's and scipy's MAC/s timed in this run; the
paper's 64-PE figures are always there. `scaling` (Fmax and LUTs against N per board,
from the reports and their search trials) is what bench's fmax_luts_<board>.png shows.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from eie.fpga import board_params
from eie.fpga_boards import BOARDS
from eie.golden_model.errors import ConfigError, EIEError
from eie.throughput import (PROJECTION_NOTE, build_throughput, load_fpga_report, paper_throughput,
                            report_throughput, scaling_points)

__all__ = ["throughput_sources", "throughput_section"]


def throughput_sources(cfg) -> dict:
    """Load and check every source before anything is run: {"reports": [(path, report)],
    "fmax": [(board, n_pe, mhz)], "skipped": [...]}. InputError / ConfigError (one line)
    for a named report that is missing or not a report, or an unknown board."""

    out = {"reports": [], "fmax": [], "skipped": []}
    for path in cfg.fpga_reports:
        out["reports"].append((str(path), load_fpga_report(path)))
    for board, n_pe, mhz in cfg.fmax:
        if board not in BOARDS:
            raise ConfigError(f"`fmax` {board}:{n_pe}:{mhz}: unknown board; choose from {', '.join(BOARDS)}")
        if not (isinstance(n_pe, int) and n_pe >= 1 and mhz > 0):
            raise ConfigError(f"`fmax` {board}:{n_pe}:{mhz}: N must be a positive integer and MHz positive")
        out["fmax"].append((board, n_pe, float(mhz)))
    if not cfg.fpga_reports and not cfg.fmax and cfg.fpga_report_dir:
        for p in sorted(Path(cfg.fpga_report_dir).glob("*.json")):
            try:
                out["reports"].append((str(p), load_fpga_report(p)))
            except EIEError as e:           # not an `eie fpga` report: noted, not fatal
                out["skipped"].append({"source": str(p), "reason": str(e)})
    return out


def throughput_section(cfg, sources: dict, progress: bool = False) -> dict:

    kw = dict(layer=cfg.throughput_layer, repeat=cfg.repeat)
    builds, skipped = [], list(sources["skipped"])
    jobs = [("report", p, r) for p, r in sources["reports"]] + [("fmax", None, f) for f in sources["fmax"]]
    for kind, path, item in tqdm(jobs, desc="throughput of FPGA builds", disable=not progress):
        if kind == "report":
            try:
                builds.append({"source": path, **report_throughput(item, source=path, **kw)})
            except ConfigError as e:       # no routed Fmax, or no layer fits
                skipped.append({"source": path, "reason": str(e)})
        else:
            board, n_pe, mhz = item
            params = board_params(BOARDS[board], n_pe)
            builds.append({"source": f"fmax {board}:{n_pe}:{mhz:g}", "board": board,
                           "device": BOARDS[board].device, **build_throughput(params, mhz, **kw)})
    return {"note": PROJECTION_NOTE, "layer_choice": cfg.throughput_layer, "builds": builds, "skipped": skipped,
            "scaling": scaling_points([r for _, r in sources["reports"]]),
            "paper": paper_throughput(cfg.throughput_layer)}
