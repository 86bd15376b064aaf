"""PNG plots of a bench result (the JSON is the record; these are for reading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eie.golden_model.fc8 import AUTHORS_CYCLES
from eie.plotting import pyplot, save_figure

__all__ = ["write_plots"]


def _table_iv(res: dict, path: Path) -> None:
    plt = pyplot()
    rows = res["table_iv"]
    work = {r["layer"]: r for r in res.get("table_iv_work_matched", [])}
    names = [r["layer"] for r in rows]
    series = [("paper measured", [r["paper_measured_us"] for r in rows], "0.25"),
              ("paper theoretical", [r["paper_theoretical_us"] for r in rows], "0.6"),
              ("ours, Table III densities", [r["us_at_800MHz"] for r in rows], "tab:blue")]
    if work:
        series.append(("ours, work-matched", [work[n]["us_at_800MHz"] for n in names], "tab:orange"))
    if rows and "balanced" in rows[0]:
        series.append(("ours, balanced rows", [r["balanced"]["us_at_800MHz"] for r in rows], "tab:green"))
    x = np.arange(len(names))
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for i, (label, vals, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, vals, w, label=label, color=color)
    ax.set_xticks(x, names)
    ax.set_ylabel("µs at 800 MHz")
    ax.set_title(f"Table IV: {res['config']['n_pe']} PEs, queue depth {res['config']['fifo_depth']}")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _sweep(sweeps: list[dict], key: str, path: Path, title: str, xlabel: str, ideal: bool,
           authors: dict | None = None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in sweeps:
        xs = [p[key] for p in s["points"]]
        ax.plot(xs, [p["speedup_vs_first"] for p in s["points"]], marker="o", ms=3, label=s["layer"])
    if ideal and sweeps:
        xs = [p[key] for p in sweeps[0]["points"]]
        ax.plot(xs, [x / xs[0] for x in xs], "k--", lw=1, label="linear")
        ax.set_yscale("log", base=2)
    if authors:
        d = sorted(authors)
        ax.plot(d, [authors[1] / authors[k] for k in d], "kx", ms=8, label="FC8, authors' simulator")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"speed-up vs {xlabel} = {sweeps[0]['points'][0][key] if sweeps else 1}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def _balance(res: dict, path: Path) -> None:
    plt = pyplot()
    rows = [r for r in ([res["fc8"]] if res.get("fc8") else []) + res["table_iv"] if "balanced" in r]
    if not rows:
        return
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - 0.2, [r["cycles"] for r in rows], 0.4, label="interleaved rows (as encoded)")
    ax.bar(x + 0.2, [r["balanced"]["cycles"] for r in rows], 0.4, label="balanced row permutation")
    ax.plot(x, [r["ideal_cycles"] for r in rows], "k_", ms=20, mew=2, label="ideal (useful MACs / N)")
    ax.set_xticks(x, [r["layer"] for r in rows], fontsize=8)
    ax.set_ylabel("cycles")
    ax.set_title("load balancing: cycles before and after permuting output rows")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write_plots(res: dict, out_dir: Path) -> list[str]:
    out_dir = Path(out_dir)
    paths = []
    if res.get("table_iv"):
        _table_iv(res, out_dir / "table_iv.png")
        paths.append("table_iv.png")
        _balance(res, out_dir / "load_balance.png")
        if (out_dir / "load_balance.png").exists():
            paths.append("load_balance.png")
    if res.get("depth_sweep"):
        auth = AUTHORS_CYCLES if res.get("fc8") else None
        _sweep(res["depth_sweep"], "fifo_depth", out_dir / "depth_sweep.png",
               f"activation-queue depth ({res['config']['n_pe']} PEs)", "queue depth", False, auth)
        paths.append("depth_sweep.png")
    if res.get("pe_sweep"):
        _sweep(res["pe_sweep"], "n_pe", out_dir / "pe_sweep.png",
               f"PE count (queue depth {res['config']['fifo_depth']})", "PEs", True)
        paths.append("pe_sweep.png")
    for board, points in ((res.get("throughput") or {}).get("scaling") or {}).items():
        if points:                      # one PNG per board, from the FPGA reports given
            from eie.throughput import write_scaling_png  # Amaranth: deferred to boards with reports

            write_scaling_png(board, points, out_dir / f"fmax_luts_{board}.png")
            paths.append(f"fmax_luts_{board}.png")
    return paths
