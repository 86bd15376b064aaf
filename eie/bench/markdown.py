"""bench.md: the bench result as tables beside the paper's numbers."""

from __future__ import annotations

__all__ = ["bench_markdown"]


def _t(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _f(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def bench_markdown(res: dict, pngs: list[str]) -> str:
    c = res["config"]
    md = [f"# EIE bench ({c['n_pe']} PEs, queue depth {c['fifo_depth']}, scale {c['scale']:g})\n",
          "Cycle model of this project vs Han et al., ISCA 2016, Tables III and IV (800 MHz).\n"]
    if res["table_iv"]:
        work = {r["layer"]: r for r in res.get("table_iv_work_matched", [])}
        rows = []
        for r in res["table_iv"]:
            w = work.get(r["layer"])
            rows.append([r["layer"], f"{r['shape'][0]}→{r['shape'][1]}", f"{100 * r['weight_density']:.1f}",
                         f"{100 * r['act_density']:.1f}", f"{r['cycles']:,}", _f(r["us_at_800MHz"], 2),
                         r["paper_measured_us"], r["paper_theoretical_us"], _f(r["diff_vs_measured_percent"]),
                         "-" if w is None else _f(w["us_at_800MHz"], 2),
                         "-" if w is None else _f(w["diff_vs_measured_percent"]),
                         _f(r["load_balance_efficiency"] * 100),
                         _f(r["balanced"]["us_at_800MHz"], 2) if "balanced" in r else "-"])
        md.append("## Table IV\n")
        md.append(_t(["layer", "shape", "W %", "A %", "cycles", "µs", "paper µs", "paper theor. µs",
                      "diff %", "µs work-matched", "diff %", "balance eff. %", "µs balanced"], rows))
    f = res.get("fc8")
    if f:
        md.append("## AlexNet FC8 (the authors' data)\n")
        md.append(_t(["cycles", "authors", "diff %", "ideal", "busiest PE", "balanced (weights only)",
                      "balanced (calibrated on act.dat)"],
                     [[f"{f['cycles']:,}", f"{f['authors_cycles']:,}", _f(f["diff_vs_authors_percent"], 2),
                       f"{f['ideal_cycles']:,}", f"{f['busiest_pe_entries']:,}",
                       f"{f['balanced']['cycles']:,}" if "balanced" in f else "-",
                       f"{f['balanced_calibrated']['cycles']:,}" if "balanced_calibrated" in f else "-"]]))
    for key, col, title in (("depth_sweep", "fifo_depth", "Queue-depth sweep (cycles)"),
                            ("pe_sweep", "n_pe", "PE-count sweep (speed-up vs the smallest N)")):
        sw = res.get(key) or []
        if sw:
            xs = [p[col] for p in sw[0]["points"]]
            val = (lambda p: f"{p['cycles']:,}") if key == "depth_sweep" else (lambda p: f"{p['speedup_vs_first']:.1f}")
            md.append(f"## {title}\n")
            md.append(_t(["layer"] + [str(x) for x in xs], [[s["layer"]] + [val(p) for p in s["points"]] for s in sw]))
    sp = res.get("speed") or {}
    if sp.get("models"):
        md.append("## Speed (same run, same layer and input)\n")
        md.append(_t(["layer", "PEs", "golden MAC/s", "cycle model cycles/s", "numpy dense s", "scipy s",
                      "golden / scipy"],
                     [[m["layer"], m["n_pe"], f"{m['golden_useful_macs_per_s']:.3g}",
                       f"{m['cycle_model_cycles_per_s']:.3g}", f"{m['dense_numpy_seconds']:.3g}",
                       f"{m['scipy_sparse_seconds']:.3g}", f"{m['golden_slowdown_vs_scipy_sparse']:.1f}x"]
                      for m in sp["models"]]))
    if sp.get("rtl"):
        r = sp["rtl"]
        md.append(f"RTL ({r['simulator']}, {r['n_pe']} PEs, {r['shape'][0]}→{r['shape'][1]}, {r['samples']} inputs): "
                  f"{'bit- and cycle-exact' if r['ok'] else 'MISMATCH'}, {r['cycles_per_s']:,.0f} simulated cycles/s, "
                  f"{r['rtl_slowdown_vs_scipy_sparse']:.3g}x the time of a scipy SpMV per input.\n")
    tp = res.get("throughput") or {}
    if tp:
        md.append("## Throughput of FPGA builds (useful MAC/s)\n")
        md.append(f"FPGA figures are a {tp['note']}. Golden model, scipy (float64 CSR / CSC mat-vec) and "
                  "NumPy are timed on this machine in this run, on the same layer and input.\n")
        if tp["builds"]:
            md.append(_t(["source", "board", "PEs", "layer (W %, A %)", "cycles", "useful MACs",
                          "Fmax MHz", "FPGA MAC/s", "golden MAC/s", "scipy CSR MAC/s", "scipy CSC MAC/s",
                          "MACs/PE/cycle"],
                         [[b["source"], b["board"], b["n_pe"],
                           f"{b['layer']['name']} ({100 * b['layer']['weight_density']:.1f}, "
                           f"{100 * b['layer']['act_density']:.1f})",
                           f"{b['cycles']:,}", f"{b['useful_macs']:,}", _f(b["fmax_mhz"], 2),
                           f"{b['fpga_useful_macs_per_s']:.3g}",
                           f"{b['this_machine']['golden_model_useful_macs_per_s']:.3g}",
                           f"{b['this_machine']['scipy_csr_useful_macs_per_s']:.3g}",
                           f"{b['this_machine']['scipy_csc_useful_macs_per_s']:.3g}",
                           f"{b['macs_per_pe_cycle']:.3f}"] for b in tp["builds"]]))
        else:
            md.append("No FPGA build given (`eie bench --fpga-report PATH` or `eie bench --fmax BOARD:N:MHZ`; "
                      "`reports/fpga/*.json` are read by default).\n")
        for s in tp.get("skipped", []):
            md.append(f"Skipped {s['source']}: {s['reason']}\n")
        p = tp["paper"]
        L = p["layer"]
        md.append(f"Paper ({p['source']}): {p['n_pe']} PEs at {p['clock_mhz']:g} MHz, peak "
                  f"{p['peak_useful_macs_per_s']:.3g} MAC/s (1 MAC per PE per cycle); {L['layer']} "
                  f"({L['shape'][0]}→{L['shape'][1]}): {L['useful_macs']:,.0f} useful MACs in {L['measured_us']} µs "
                  f"= {L['useful_macs_per_s']:.3g} MAC/s ({L['macs_per_pe_cycle']:.3f} MACs/PE/cycle).\n")
    md += [f"![{p}]({p})\n" for p in pngs]
    return "\n".join(md)
