"""The demo's report: demo.json (everything), demo.md (for reading) and PNG plots."""

from __future__ import annotations

from pathlib import Path

from eie.common import atomic_write_bytes, write_json
from eie.plotting import pyplot, save_figure
from eie.pruning.plots import plot_compression

__all__ = ["write_demo_report", "plot_per_pe"]


def _accuracy_plot(s: dict, path: Path) -> None:
    plt = pyplot()
    acc = s["accuracy"]
    labels = ["dense\nfloat", "pruned\nfloat", "4-bit shared\nfloat", "image weights\nfloat", "EIE golden\n(fixed point)"]
    vals = [acc["dense_float"], acc["pruned_float"], acc["shared_float"], acc["image_weights_float"],
            acc["hardware_golden"]]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(labels, [100 * v for v in vals], color=["0.5", "tab:blue", "tab:blue", "tab:blue", "tab:green"])
    for b, v in zip(bars, vals):
        ax.annotate(f"{100 * v:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_ylim(min(100 * min(vals) - 5, 90), 100.5)
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"{'-'.join(map(str, s['network']))} MLP on {s['config']['dataset']}, {100 * s['kept']:.1f} % of "
                 f"weights kept, {s['config']['n_pe']} PEs")
    save_figure(fig, path)


def _history_plot(s: dict, path: Path) -> None:
    plt = pyplot()
    h = s["pruning_history"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([100 * r["kept"] for r in h], [100 * r["val_acc"] for r in h], "o-")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights kept % (log)")
    ax.set_ylabel("validation accuracy %")
    ax.set_title("iterative pruning: after each prune + finetune round")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_per_pe(per_pe: list, samples: int, efficiency: float, path) -> None:
    """Busy and idle cycles of every PE (a cycle report's `per_pe`) over `samples` inputs."""
    plt = pyplot()
    busy = [p["busy_cycles"] for p in per_pe]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([p["pe"] for p in per_pe], busy, label="busy")
    ax.bar([p["pe"] for p in per_pe], [p["idle_cycles"] for p in per_pe], bottom=busy, label="idle (starved)",
           color="0.8")
    ax.set_xlabel("PE")
    ax.set_ylabel(f"cycles over {samples} inputs")
    ax.set_title(f"per-PE load, efficiency {efficiency:.1%}")
    ax.legend()
    save_figure(fig, path)


def _per_pe_plot(s: dict, path: Path) -> None:
    g = s["golden"]
    plot_per_pe(g["per_pe"], g["samples"], g["load_balance_efficiency"], path)


def _markdown(s: dict, pngs: list[str]) -> str:
    a, g, r, c = s["accuracy"], s["golden"], s["rtl"], s["compression"]
    lines = [f"# EIE demo: {'-'.join(map(str, s['network']))} MLP on {s['dataset']}\n",
             "| stage | test accuracy |", "|---|---|",
             f"| dense float | {a['dense_float']:.2%} |",
             f"| pruned ({s['kept']:.2%} kept), float | {a['pruned_float']:.2%} |",
             f"| + 4-bit weight sharing, float | {a['shared_float']:.2%} |",
             f"| image weights (16-bit fixed point), float activations | {a['image_weights_float']:.2%} |",
             f"| **EIE golden model (bit-exact hardware arithmetic)** | **{a['hardware_golden']:.2%}** |\n",
             f"Golden vs float reference of the image: max |error| {g['max_abs_error_vs_float']:.3g}, bound "
             f"{g['max_error_bound']:.3g} ({'within' if g['within_bound'] else 'OUTSIDE'}); arg-max agreement with "
             f"the PyTorch model {g['argmax_agreement_with_float_model']:.2%}.\n",
             f"Compression vs dense float32: {c['ratio_pruning']:.1f}x by pruning, {c['ratio_pruning_sharing']:.1f}x "
             f"with 4-bit sharing, {c['ratio_total']:.1f}x as stored with the CSC index on {c['n_pe']} PEs.\n",
             f"Cycle model: {g['cycles_per_input']:.1f} cycles per input (min {g['cycles_per_input_min']}, max "
             f"{g['cycles_per_input_max']}), {g['us_per_input_at_800MHz']:.3f} µs at 800 MHz, load-balance "
             f"efficiency {g['load_balance_efficiency']:.1%}.\n"]
    b = s["load_balance"]
    lines.append(f"Load balancing (output rows permuted across PEs, tuned on training inputs): "
                 f"{b['cycles_before_per_input']:.1f} → {b['cycles_per_input']:.1f} cycles per input on the test set "
                 f"({b['cycles_saved_percent']:+.1f} %), outputs {'identical' if b['outputs_identical'] else 'DIFFERENT'}.\n")
    if "skipped" in r:
        lines.append(f"RTL: skipped ({r['skipped']}).\n")
    else:
        cyc = r["cycles_rtl"]
        lines.append(f"RTL ({r['simulator']}, {s['config']['n_pe']} PEs): {r['samples']} test inputs, outputs "
                     f"{'bit-exact' if r['bit_exact'] else 'MISMATCH'}, cycles per input "
                     f"{'equal to' if r['cycle_exact'] else 'DIFFERENT from'} the cycle model for every input "
                     f"({min(cyc)}…{max(cyc)}, {sum(cyc):,} in all); {r['sim_cycles_per_s']:,.0f} simulated cycles/s."
                     + (f" Waves: `{r['waves']}`." if r.get("waves") else "") + "\n")
        rb = r.get("demo_balanced")
        if rb:
            lines.append(f"RTL on the balanced image ({rb['samples']} inputs, rows permuted across the PEs, outputs "
                         f"compared in hardware order): outputs {'bit-exact' if rb['bit_exact'] else 'MISMATCH'}, cycles "
                         f"{'equal to' if rb['cycle_exact'] else 'DIFFERENT from'} the cycle model "
                         f"({sum(rb['cycles_rtl']):,} vs {sum(r['cycles_rtl'][:rb['samples']]):,} unbalanced).\n")
    t = s["seconds"]
    lines.append("Time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()) + "\n")
    lines += [f"![{p}]({p})\n" for p in pngs]
    return "\n".join(lines)


def write_demo_report(summary: dict, out_dir: Path) -> list[str]:
    out_dir = Path(out_dir)
    pngs = ["accuracy.png", "pruning.png", "per_pe.png", "compression.png"]
    _accuracy_plot(summary, out_dir / pngs[0])
    _history_plot(summary, out_dir / pngs[1])
    _per_pe_plot(summary, out_dir / pngs[2])
    plot_compression(summary["compression"], out_dir / pngs[3])
    write_json(out_dir / "demo.json", summary)
    atomic_write_bytes(out_dir / "demo.md", [_markdown(summary, pngs).encode()], overwrite=True)
    return ["demo.json", "demo.md"] + pngs
