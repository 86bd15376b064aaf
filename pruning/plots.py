"""The pruning reports' plots (PNG files) and the helpers their captions share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eie.common import write_json
from eie.plotting import pyplot, save_figure

from .export import CODEBOOK_BITS, INDEX_BITS, PTR_BITS, ZRUN_BITS

__all__ = ["write_result", "plot_per_seed", "plot_history", "plot_layer_ratios", "plot_compression", "plot_bars",
           "mean_points", "seeds_label", "dense_val", "pyplot", "save_figure"]


def mean_points(histories):
    """Step-wise mean over seeds of [(kept, val_acc), ...] (histories of equal length)."""
    n = min(len(h) for h in histories)
    return [(sum(h[i]["kept"] for h in histories) / len(histories),
             sum(h[i]["val_acc"] for h in histories) / len(histories)) for i in range(n)]


def seeds_label(report):
    n = len(report["runs"])
    return f"seed {report['runs'][0]['seed']}" if n == 1 else f"mean of {n} seeds"


def dense_val(report):
    return sum(r["dense"]["val_acc"] for r in report["runs"]) / len(report["runs"])


def write_result(result: dict, out_dir, name: str, plot) -> None:
    """<name>.json (the result) and <name>.png (`plot(result, path)`) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")


def plot_per_seed(report: dict, out, key: str, plot) -> list[str]:
    """`plot(run[key], path)` for every seed of a report: <key>.png for one seed, else
    <key>-seed<S>.png. Returns the file names."""
    runs = report["runs"]
    files = []
    for r in runs:
        name = f"{key}.png" if len(runs) == 1 else f"{key}-seed{r['seed']}.png"
        plot(r[key], Path(out) / name)
        files.append(name)
    return files


def plot_history(curves: dict[str, list[tuple[float, float]]], path, title: str, dense_acc: float | None = None,
                 xlabel: str = "FC weights kept (%)", ylabel: str = "validation accuracy (%)") -> None:
    """Accuracy vs kept fraction: {label: [(kept, acc), ...]} (fractions, plotted in %)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in curves.items():
        if pts:
            k, a = zip(*pts)
            ax.plot([100 * x for x in k], [100 * y for y in a], marker="o", ms=3, label=label)
    if dense_acc is not None:
        ax.axhline(100 * dense_acc, color="k", ls="--", lw=1, label="dense")
    ax.set_xscale("log")
    ticks = [t for t in (100, 50, 30, 20, 10, 5, 3, 2, 1, 0.5) if t >= 100 * min(
        (x for pts in curves.values() for x, _ in pts), default=1) * 0.7]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_layer_ratios(per_layer: dict[str, dict[str, float]], path, title: str = "per-layer weights kept") -> None:
    """Grouped bars: {series: {layer: kept fraction}}."""
    plt = pyplot()
    series = list(per_layer)
    layers = list(dict.fromkeys(n for s in series for n in per_layer[s]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    w = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        vals = [100 * per_layer[s].get(n, float("nan")) for n in layers]
        bars = ax.bar([j + i * w for j in range(len(layers))], vals, width=w, label=s)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([j + w * (len(series) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylabel("weights kept (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def plot_compression(comp: dict, path, title: str = "storage of the FC weights") -> None:
    """Left: total bits per stage (dense, pruning, +4-bit sharing, +CSC index); right: per
    layer, the stored image's bits split into values, zero runs, padding, pointers, codebook."""
    plt = pyplot()
    t = comp["total"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    stages = [("dense\n32-bit", t["dense_bits"]), ("pruned\n32-bit values", t["pruned_bits"]),
              ("+ 4-bit\nsharing", t["shared_bits"]), (f"+ CSC index\n({comp['n_pe']} PEs)", t["csc_bits"])]
    bars = a1.bar([s for s, _ in stages], [b / 8 / 1024 for _, b in stages], color=["grey", "C0", "C1", "C2"])
    a1.bar_label(bars, labels=[f"{t['dense_bits'] / b:.1f}x" for _, b in stages], fontsize=8)
    a1.set_yscale("log")
    a1.set_ylabel("KiB")
    a1.set_title(title)
    names = [L["name"] for L in comp["layers"]]
    parts = {
        "v (4-bit index)": [INDEX_BITS * L["nonzero"] for L in comp["layers"]],
        "z (4-bit run)": [ZRUN_BITS * L["nonzero"] for L in comp["layers"]],
        "padding entries": [(INDEX_BITS + ZRUN_BITS) * L["padding_entries"] for L in comp["layers"]],
        "pointers (16-bit)": [PTR_BITS * L["pointers"] for L in comp["layers"]],
        "codebook": [CODEBOOK_BITS for _ in comp["layers"]],
    }
    bottom = np.zeros(len(names))
    for label, vals in parts.items():
        v = np.array(vals) / 8 / 1024
        a2.bar(names, v, bottom=bottom, label=label)
        bottom += v
    a2.set_ylabel("KiB")
    a2.set_title("stored image per layer")
    a2.legend(fontsize=8)
    save_figure(fig, path)


def plot_bars(values: dict[str, float], path, title: str, ylabel: str, ref: float | None = None,
              ref_label: str = "dense") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(values)), 4.2))
    bars = ax.bar(list(values), [100 * v for v in values.values()], color="C0")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    if ref is not None:
        ax.axhline(100 * ref, color="k", ls="--", lw=1, label=ref_label)
        ax.legend(fontsize=8)
    lo = min(100 * v for v in values.values())
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    save_figure(fig, path)
