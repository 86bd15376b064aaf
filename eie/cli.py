"""`eie` command line: one subcommand per job (encode, balance, import, decode, info, run, bench, demo,
verilog, fpga, prune, sim, regress).

Human tables by default, JSON on stdout with --json. Errors in user input end with a
one-line message naming the file/field (exit 2), never a traceback (eie/boundary.py).
PyTorch and Amaranth are imported only by the commands that need them (`eie --help`,
`run`, `encode`, `decode` and `info` load neither).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from eie.boundary import report, run_command, signal_handlers
from eie.cli_inputs import (DEPTH_MAX, FIFO_MAX, RTL_MAX_N_PE, SEED_MAX, as_options, check_output,
                            check_output_dir, float_in, int_in, load_calibration, load_codebooks, load_input,
                            load_weights)
from eie.common import UserError, atomic_write_bytes, emit_json, print_table, write_json
from eie.fpga_boards import BOARDS
from eie.fpga_logs import summary_row
from eie.golden_model import encode_network
from eie.golden_model.balance import BalanceOptions, balance_image
from eie.golden_model.config import DEFAULT_ACT_DEPTH, DEFAULT_FIFO_DEPTH, EIEConfig
from eie.golden_model.csc import DEFAULT_ACC_DEPTH
from eie.golden_model.decoder import decode_image
from eie.golden_model.encoder import DEFAULT_ACT_FRAC, FAR_CODEBOOK_REL_RMS
from eie.golden_model.errors import InputError
from eie.golden_model.fc8 import fc8_image, load_fc8
from eie.golden_model.image import MAX_ACC_DEPTH, MAX_N_PE
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.model import run_image
from eie.golden_model.numerics import ACT_BITS, MAX_ACC_BITS, MAX_FRAC, MIN_ACC_BITS, MIN_FRAC
from eie.golden_model.reference import saturation_counts
from eie.jobs import add_executor_options, executor_from_args
from eie.import_cli import add_subcommands as add_import_subcommands
from eie.pruning.cli import add_subcommands as add_prune_subcommands
from eie.sim.cli import add_subcommands as add_sim_subcommands

__all__ = ["main", "build_parser", "UserError"]

BENCH_OUT, DEMO_OUT, FPGA_OUT, FPGA_BUILD = "reports/bench", "reports/demo", "reports/fpga", "build/fpga"
LEAF_SLICE_HELP = ("a register slice between each PE's non-zero list and its LNZD leaf (one more cycle of "
                   "list latency, docs/rtl.md)")


def _add_output(p, help_text):
    p.add_argument("-o", "--output", required=True, help=help_text)
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")


def cmd_encode(args) -> int:
    check_output(args.output, "-o", args.force)  # before the (possibly long) encode

    weights, names, biases = load_weights(args.weights)
    codebooks = load_codebooks(args.codebook, len(weights)) if args.codebook else None
    calib = load_calibration(args.calibrate) if args.calibrate else None
    image = encode_network(weights, args.n_pe, acc_depth=args.acc_depth, codebooks=codebooks,
                           calibration=calib, act_frac=args.act_frac, relu_last=args.relu_last,
                           names=names, seed=args.seed, meta={"weights": str(args.weights)},
                           calibration_name=f"--calibrate {args.calibrate}", act_frac_name="--act-frac",
                           balance=args.balance,
                           source=f"WEIGHTS {args.weights}",
                           biases=biases if any(b is not None for b in biases) else None)
    save_image(image, args.output, overwrite=args.force)
    quant = image.meta["quantisation"]
    for q, L in zip(quant, image.layers):
        if q["decoded_to_zero"]:
            report("encode", f"WEIGHTS {args.weights}[{q['layer']}]: {q['decoded_to_zero']} non-zero weights "
                             f"decode to 0 (below one step 2^{-q['w_frac']}, or a codebook entry of 0.0)", "warning")
        if args.codebook and q["rel_rms_error"] > FAR_CODEBOOK_REL_RMS:
            report("encode", f"--codebook {args.codebook}: layer {q['layer']} decodes with a relative RMS error of "
                             f"{100 * q['rel_rms_error']:.0f} % (warned above {100 * FAR_CODEBOOK_REL_RMS:.0f} %): "
                             f"is the codebook of this layer's scale?", "warning")
        if "out_frac_raised_from" in q:
            report("encode", f"WEIGHTS {args.weights}[{q['layer']}]: its outputs would all round to 0 at out_frac "
                             f"{q['out_frac_raised_from']} (products at in_frac + w_frac = {L.in_frac + L.w_frac}); "
                             f"out_frac raised to {L.out_frac}: pass --calibrate so that the activation formats "
                             f"follow the activations", "warning")
    summary = image.summary() | {"quantisation": quant, "output": str(args.output)}
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary, f"wrote {args.output}")
        for q in quant:
            print(f"  {q['layer']}: weights w_frac {q['w_frac']} (step 2^{-q['w_frac']}), largest error {q['max_abs_error']:.3g}, "
                  f"relative RMS error {100 * q['rel_rms_error']:.2f} %")
    return 0


def cmd_balance(args) -> int:
    check_output(args.output, "-o", args.force)


    if args.fc8:

        ref = load_fc8(None if args.fc8 == "default" else args.fc8)
        image, what, x = fc8_image(ref), f"AlexNet FC8 ({ref.source})", ref.act[None, :]
    elif args.image:
        image, what, x = load_image(args.image), str(args.image), None
    else:
        raise UserError("balance: give an IMAGE or --fc8")
    calib = load_calibration(args.calibrate) if args.calibrate else None
    try:
        balanced = balance_image(image, calibration=calib, options=BalanceOptions(fifo_depth=args.fifo_depth))
    except InputError as e:
        raise UserError(f"--calibrate {args.calibrate}: {e}" if calib is not None else str(e)) from None
    save_image(balanced, args.output, overwrite=args.force)
    measure = x if calib is None else calib
    info = {"image": what, "output": str(args.output)}
    if measure is not None:
        cfg = EIEConfig.for_image(image, fifo_depth=args.fifo_depth)
        before, after = run_image(image, measure, cfg), run_image(balanced, measure, cfg)
        info |= {"measured_on": "--calibrate" if calib is not None else "the FC8 input act.dat",
                 "cycles_before": before.report.cycles, "cycles_after": after.report.cycles,
                 "busiest_pe_entries_before": before.report.busiest_pe_entries,
                 "busiest_pe_entries_after": after.report.busiest_pe_entries,
                 "outputs_identical": bool((before.outputs_int == after.outputs_int).all())}
    if args.json:
        emit_json(info)
    else:
        moved = sum(L.row_perm is not None for L in balanced.layers)
        print(f"wrote {args.output}: {what}, output rows permuted across {image.n_pe} PEs in {moved} of "
              f"{len(balanced.layers)} layers (the others were already balanced)")
        if "cycles_before" in info:
            print(f"  cycles on {info['measured_on']} at queue depth {args.fifo_depth}: {info['cycles_before']:,} -> "
                  f"{info['cycles_after']:,}; busiest PE {info['busiest_pe_entries_before']:,} -> "
                  f"{info['busiest_pe_entries_after']:,} entries; outputs "
                  f"{'identical' if info['outputs_identical'] else 'DIFFER'}")
    return 0


def cmd_decode(args) -> int:
    check_output(args.output, "-o", args.force)


    image = load_image(args.image)
    mats = decode_image(image)
    buf = io.BytesIO()
    if args.output.endswith(".npz"):
        np.savez(buf, **{f"W{i}": m for i, m in enumerate(mats)})
    elif len(mats) == 1:
        np.save(buf, mats[0])
    else:
        raise UserError(f"-o {args.output}: the image has {len(mats)} layers; write them to a .npz")
    atomic_write_bytes(args.output, [buf.getvalue()], overwrite=args.force)
    info = {"output": args.output, "shapes": [list(m.shape) for m in mats]}
    if args.json:
        emit_json(info)
    else:
        print(f"wrote {args.output}: " + ", ".join("x".join(map(str, s)) for s in info["shapes"]))
    return 0


def cmd_info(args) -> int:

    image = load_image(args.image)
    fmt = image.file_format
    summary = image.summary() | {"file": fmt}
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary, str(args.image))
        print(f"format {fmt['version']}: " + ("header and arrays protected by CRC-32" if fmt["header"] == "crc32"
              else "arrays protected by CRC-32, header unprotected (written before format 1.2; "
                   "`eie balance` or a re-encode writes the current format)"))
    return 0


def _config(args, image):

    return EIEConfig.for_image(image, fifo_depth=args.fifo_depth, acc_bits=args.acc_bits,
                               act_depth=args.act_depth)


def cmd_run(args) -> int:
    if args.output:
        check_output(args.output, "--output", args.force)


    image = load_image(args.image)
    x = load_input(args.input, args.int_input)
    try:
        result = run_image(image, x, _config(args, image), int_input=args.int_input)
    except InputError as e:
        raise UserError(f"--input {args.input}: {e}") from None
    squeeze = np.asarray(x).ndim == 1
    outputs = result.outputs[0] if squeeze else result.outputs
    saturated = saturation_counts(result.layer_outputs)
    for L, k, y in zip(image.layers, saturated, result.layer_outputs[1:]):
        if k:
            limit = 2.0 ** (ACT_BITS - 1 - L.out_frac)
            report("run", f"{args.image}: layer {L.name}: {k:,} of {y.size:,} outputs clipped at the limit "
                          f"±{limit:g} of its format (out_frac {L.out_frac}): encode with --calibrate on "
                          f"inputs like these, or a smaller --act-frac", "warning")
    if args.output:
        buf = io.BytesIO()
        np.save(buf, outputs)
        atomic_write_bytes(args.output, [buf.getvalue()], overwrite=args.force)
    rep = result.report.as_dict()
    if args.json:
        outs_int = result.outputs_int[0] if squeeze else result.outputs_int
        emit_json({"outputs": outputs.tolist(), "outputs_int": outs_int.tolist(),
                    "out_frac": image.layers[-1].out_frac, "saturated_outputs": saturated, **rep})
    else:
        _print_report(rep, image)
        if args.output:
            print(f"outputs written to {args.output}")
    return 0


def cmd_bench(args) -> int:
    from eie.bench import BenchConfig, run_bench, write_report  # the RTL speed figure needs Amaranth: deferred

    kw = {"balance": not args.no_balance, "rtl": args.simulator, "fc8_dir": args.fc8}
    if args.repeat is not None:
        kw["repeat"] = args.repeat
    if args.sections:
        kw["sections"] = tuple(args.sections)
    if args.fpga_report:
        kw["fpga_reports"] = tuple(args.fpga_report)
    if args.fmax:
        kw["fmax"] = tuple(_parse_fmax(f) for f in args.fmax)
    if args.throughput_layer:
        from eie.bench.paper import layer_by_name  # with eie.bench, above

        try:
            kw["throughput_layer"] = layer_by_name(args.throughput_layer).name
        except KeyError as e:
            raise UserError(f"--throughput-layer: {e.args[0]}") from None
    cfg = BenchConfig.tiny(**kw) if args.tiny else BenchConfig(**kw)
    executor = executor_from_args(args)
    check_output_dir(args.out, "--out", BENCH_OUT)
    out = Path(args.out)
    result = run_bench(cfg, progress=not args.json, executor=executor)
    paths = write_report(result, out)
    if args.json:
        emit_json(result)
    else:
        _print_bench(result)
        print("wrote " + ", ".join(str(p) for p in paths))
    jobs = result["jobs"]
    for f in jobs["failures"]:
        print(f"eie bench: job {f['key']} failed twice ({f['error']}); its row is left out", file=sys.stderr)
    return 130 if jobs["interrupted"] else 1 if jobs["failures"] else 0


def _parse_fmax(text: str) -> tuple[str, int, float]:
    """--fmax BOARD:N:MHZ -> (board, n_pe, MHz)."""
    parts = text.rsplit(":", 2)
    try:
        board, n, mhz = parts
        return board, int(n), float(mhz)
    except ValueError:
        raise UserError(f"--fmax {text}: expected BOARD:N:MHZ, e.g. ulx3s-85f:4:38.75") from None


def cmd_demo(args) -> int:
    from eie.demo import DemoConfig, run_demo  # PyTorch and Amaranth: deferred to the commands that need them

    kw = {k: getattr(args, k) for k in ("n_pe", "seed", "rtl_samples") if getattr(args, k) is not None}
    if args.simulator is not None:
        kw["rtl"] = args.simulator
    if args.no_waves:
        kw["waves"] = False
    if args.quick:
        cfg = DemoConfig.quick(dataset=args.dataset, **kw)
    else:
        cfg = DemoConfig.mnist(**kw) if args.dataset == "mnist" else DemoConfig(**kw)
    check_output_dir(args.out, "--out", DEMO_OUT)
    result = run_demo(out_dir=Path(args.out), cfg=cfg, progress=not args.json)
    if args.json:
        emit_json({k: v for k, v in result.items() if k != "pruning_history"})
    if result["checks_failed"]:
        print("eie demo: check failed: " + "; ".join(result["checks_failed"]), file=sys.stderr)
        return 1
    return 0


def _array_params(args):
    from eie.hdl.params import ArrayParams  # Amaranth: deferred (see cmd_demo)

    kw = {k: getattr(args, k) for k in ("n_pe", "fifo_depth", "acc_depth", "act_depth", "ptr_depth",
                                        "spmat_depth", "max_layers", "acc_bits", "leaf_slice")}
    return ArrayParams(**{k: v for k, v in kw.items() if v is not None})


def cmd_verilog(args) -> int:
    check_output(args.output, "-o", args.force)
    if args.synth:
        check_output(Path(args.output).with_suffix(".synth.json"), "-o (the --synth report beside it)", args.force)
    from eie.hdl.params import memory_bits  # Amaranth: deferred (see cmd_demo)
    from eie.hdl.synth import synthesize, verilator_lint
    from eie.hdl.verilog_out import write_verilog

    params = _array_params(args)
    out = Path(args.output)
    desc = write_verilog(params, out, top=args.top, overwrite=args.force)
    desc["memory_bits_per_pe"] = memory_bits(params)
    if args.lint:
        clean, msg = verilator_lint(out, args.top)
        desc["verilator_lint"] = {"clean": clean, "messages": msg}
        if not clean:
            raise UserError(f"Verilator lint of {out} failed:\n{msg}")
    if args.synth:
        desc["synthesis"] = synthesize(out, args.top)
        write_json(out.with_suffix(".synth.json"), desc, overwrite=args.force)
    if args.json:
        emit_json(desc)
    else:
        p = desc["params"]
        print(f"wrote {out} ({desc['lines']:,} lines, top `{args.top}`): {p['n_pe']} PEs, queue depth "
              f"{p['fifo_depth']}, {p['acc_depth']} accumulators x {p['acc_bits']} bits, {p['act_depth']} "
              f"activations/bank, {p['ptr_depth']} pointers, {p['spmat_depth']} matrix rows per PE")
        if "synthesis" in desc:
            s = desc["synthesis"]
            print(f"Yosys ({s['tool']}, {s['seconds']} s): {s['cells']:,} cells = {s['logic_cells']:,} logic + "
                  f"{s['flip_flops']:,} flip-flops + {s['memories']} memories; no latches "
                  f"(details in {out.with_suffix('.synth.json')})")
        if args.lint:
            print("Verilator lint: clean")
    return 0


def _throughput_text(t: dict | None, long: bool = False) -> str:
    if not t:
        return "- (no place and route)"
    if "error" in t:
        return t["error"]
    if not long:
        return f"{t['fpga_useful_macs_per_s'] / 1e6:.4g} M (projection, {t['cycles']:,} cycles)"
    L, m = t["layer"], t["this_machine"]
    return (f"throughput ({t['note'].split(':')[0]}: useful MACs x Fmax / cycles): "
            f"{t['fpga_useful_macs_per_s'] / 1e6:.4g} M useful MAC/s on {L['name']} (W {100 * L['weight_density']:.1f} %, "
            f"A {100 * L['act_density']:.1f} %, {t['useful_macs']:,} useful MACs, {t['cycles']:,} cycles at "
            f"{t['fmax_mhz']:g} MHz); this machine: golden model {m['golden_model_useful_macs_per_s'] / 1e6:.4g} M, "
            f"scipy CSR {m['scipy_csr_useful_macs_per_s'] / 1e6:.4g} M, CSC {m['scipy_csc_useful_macs_per_s'] / 1e6:.4g} M; "
            f"paper ({t['paper']['n_pe']} PEs, {t['paper']['clock_mhz']:g} MHz, {t['paper']['layer']}) "
            f"{t['paper']['useful_macs_per_s'] / 1e9:.3g} G")


def _gate_sim_text(g: dict) -> str:
    if not g["ran"]:
        return f"not run: {g['reason']}"
    if g["passed"]:
        return f"passed (first pass at cycle {g['first_pass_cycle']:,}, no failure in {g['cycles_simulated']:,})"
    return "FAILED" if g["failed"] else "no pass within the simulated cycles"


def cmd_fpga(args) -> int:
    from eie.fpga import run_fpga  # Amaranth: deferred (see cmd_demo)

    overrides = {k: getattr(args, k) for k in ("fifo_depth", "acc_depth", "act_depth", "ptr_depth",
                                               "spmat_depth", "max_layers", "acc_bits", "leaf_slice")}

    def log(n, t):
        if not args.json:
            how = t.get("reason", "")[:100] if not t["fits"] else ", ".join(
                f"{k} {t[k]:,}" for k in ("lut_or_lc", "bram", "dsp") if t.get(k) is not None)
            print(f"  N = {n}: {'fits' if t['fits'] else 'does not fit'} ({t['by']}{': ' + how if how else ''})", flush=True)

    search = "none" if args.no_search else args.search
    check_output_dir(args.out, "--out", FPGA_OUT)
    check_output_dir(args.build_dir, "--build-dir", FPGA_BUILD)
    res, path = run_fpga(args.board, args.n_pe, search=search, out_dir=args.out, build_dir=args.build_dir,
                         pnr=not args.synth_only, max_n=args.max_n, progress=not args.json, log=log,
                         gate_sim=args.gate_sim, target_mhz=args.target_mhz, **overrides)
    if args.json:
        emit_json(res | {"report": str(path)})
        return 0
    row = summary_row(res)
    print_table(f"{res['board']} ({res['device']}): {res['n_pe']} PEs", ["key", "value"], [
        ["fits", "yes" if row["fits"] else f"no: {res['pnr'].get('reason', '')}"],
        ["LCs / LUTs", f"{row['lut_or_lc']:,}" + (f" of {row['lut_available']:,}" if row["lut_available"] else "")],
        ["flip-flops", row["ff"]], ["block RAMs", row["bram"]], ["DSP blocks", row["dsp"]],
        ["Fmax (MHz)", row["fmax_mhz"] if row["fmax_mhz"] is not None else "- (no place and route)"],
        ["memories not in block RAM", len(res["memories"]["not_in_block_ram"])],
        ["multipliers", res["multipliers"]["note"]],
        ["useful MAC/s", _throughput_text(res.get("throughput"))],
        ["largest N", f"{res['largest_n']['n']} ({res['largest_n']['method'].split(' (')[0]})" if "largest_n" in res else "-"],
        ["build time (s)", res["seconds"]["with_search"]],
    ] + ([["gate-level self-test", _gate_sim_text(res["gate_level_selftest"])]]
         if "gate_level_selftest" in res else []))
    if res.get("throughput") and "error" not in res["throughput"]:
        print(_throughput_text(res["throughput"], long=True))
    print(f"report: {path}" + (f"; bitstream: {res['bitstream']}" if res.get("bitstream") else "")
          + (f"; Fmax and LUTs against N: {res['fmax_luts_png']}" if res.get("fmax_luts_png") else ""))
    return 0


# -- human output -----------------------------------------------------------------------
def _print_summary(s, title):
    print_table(f"{title}: {s['n_pe']} PEs, {s['acc_depth']} accumulators/PE",
           ["name", "in→out", "ReLU", "bias", "Q in/w/out", "blocks", "entries", "pad", "W %", "max/PE"],
           [[L["name"], f"{L['n_in']}→{L['n_out']}", "yes" if L["relu"] else "no", "yes" if L["bias"] else "no",
             f"{L['formats']['in_frac']}/{L['formats']['w_frac']}/{L['formats']['out_frac']}",
             L["blocks"], L["entries"], L["padding_entries"], f"{100 * L['weight_density']:.1f}",
             L["max_pe_entries"]]
            for L in s["layers"]])


def _print_report(rep, image):
    keys = ["cycles", "useful_macs", "entries_processed", "padding_entries", "busiest_pe_entries",
            "balanced_bound", "load_balance_efficiency", "broadcasts", "broadcast_stall_cycles"]
    print_table(f"cycle model: {rep['config']['n_pe']} PEs, queue depth {rep['config']['fifo_depth']}",
           ["key", "value"], [[k, rep[k]] for k in keys])
    print_table("per layer", ["layer", "cycles", "batches", "broadcasts", "entries"],
           [[L["name"], L["cycles"], L["batches"], L["broadcasts"], L["entries_processed"]] for L in rep["layers"]])


def _print_bench(res):
    rows = res["table_iv"]
    if rows:
        print_table(f"Table IV on {res['config']['n_pe']} PEs, queue depth {res['config']['fifo_depth']} (µs at 800 MHz)",
               ["layer", "cycles", "µs", "paper µs", "diff %", "balanced µs"],
               [[r["layer"], r["cycles"], f"{r['us_at_800MHz']:.2f}", r["paper_measured_us"],
                 f"{r['diff_vs_measured_percent']:+.1f}",
                 f"{r['balanced']['us_at_800MHz']:.2f}" if "balanced" in r else "-"] for r in rows])
    f = res.get("fc8")
    if f:
        print_table("AlexNet FC8 (authors' data)", ["cycles", "authors", "diff %", "ideal", "balanced",
                                               "balanced, calibrated"],
               [[f["cycles"], f["authors_cycles"], f"{f['diff_vs_authors_percent']:+.2f}", f["ideal_cycles"],
                 f["balanced"]["cycles"] if "balanced" in f else "-",
                 f["balanced_calibrated"]["cycles"] if "balanced_calibrated" in f else "-"]])
    tp = res.get("throughput") or {}
    if tp.get("builds"):
        def m(x):
            return f"{x / 1e6:.4g}"

        print_table("M useful MAC/s: FPGA projection (routed Fmax x exact cycles), this machine",
               ["build", "in→out", "cycles", "MHz", "FPGA", "golden", "CSR", "CSC"],
               [[f"{b['board']} {b['n_pe']} PE", "→".join(map(str, b["layer"]["shape"])), b["cycles"],
                 f"{b['fmax_mhz']:g}", m(b["fpga_useful_macs_per_s"]),
                 m(b["this_machine"]["golden_model_useful_macs_per_s"]),
                 m(b["this_machine"]["scipy_csr_useful_macs_per_s"]),
                 m(b["this_machine"]["scipy_csc_useful_macs_per_s"])] for b in tp["builds"]])
    if tp:
        p = tp["paper"]
        print(f"paper ({p['n_pe']} PEs, {p['clock_mhz']:g} MHz): {p['layer']['layer']} "
              f"{p['layer']['useful_macs_per_s']:.3g} useful MAC/s, peak {p['peak_useful_macs_per_s']:.3g}")
    print_table("summary", ["key", "value"], [[k, v] for k, v in res["summary"].items()
                                         if k != "fpga_useful_macs_per_s"])


# -- parser -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (`eie encode: error: argument --n-pe: ...`)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:

    n_pe, acc_depth = int_in(1, MAX_N_PE), int_in(1, MAX_ACC_DEPTH)
    depth, fifo, seed = int_in(1, DEPTH_MAX), int_in(1, FIFO_MAX), int_in(0, SEED_MAX)
    acc_bits = int_in(MIN_ACC_BITS, MAX_ACC_BITS)
    rtl_n_pe = int_in(1, RTL_MAX_N_PE)
    ap = _Parser(prog="eie", description="EIE reference implementation (Han et al., ISCA 2016)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="weight-share and encode dense layers into an EIE image")
    p.add_argument("weights", help=".npy (one layer, n_out x n_in) or .npz of W0, W1, ... (a stack) with optional "
                                    "biases b0, b1, ... (n_out each; stored as a column whose input is 1.0)")
    p.add_argument("--n-pe", type=n_pe, required=True, help="number of PEs the image is built for")
    p.add_argument("--acc-depth", type=acc_depth, default=DEFAULT_ACC_DEPTH, help="accumulators per PE (rows per output batch)")
    p.add_argument("--codebook", help=".npy of 16 floats (entry 0 = 0), or one row per layer; default: k-means")
    p.add_argument("--calibrate", help=".npy input sample(s) used to choose activation formats")
    p.add_argument("--act-frac", type=int_in(MIN_FRAC, MAX_FRAC), default=DEFAULT_ACT_FRAC, help="activation fractional bits without --calibrate")
    p.add_argument("--relu-last", action="store_true", help="apply ReLU after the last layer too")
    p.add_argument("--balance", action="store_true",
                   help="permute output rows across PEs to balance their work (uses --calibrate if given); "
                        "outputs stay in the original order")
    p.add_argument("--seed", type=seed, default=0)
    _add_output(p, "image file to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("balance", help="re-encode an image with output rows permuted to balance the PEs")
    p.add_argument("image", nargs="?", help="EIE image to balance")
    p.add_argument("--fc8", nargs="?", const="default", help="balance the authors' AlexNet FC8 instead")
    p.add_argument("--calibrate", help=".npy input sample(s): weight each column by how often it is non-zero")
    p.add_argument("--fifo-depth", type=fifo, default=DEFAULT_FIFO_DEPTH,
                   help="queue depth the permutation is chosen for and the before/after cycles are measured at")
    _add_output(p, "balanced image file to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("decode", help="EIE image -> dense quantised weights (float)")
    p.add_argument("image")
    _add_output(p, ".npy (one layer) or .npz (W0, W1, ...)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="validate an image and summarise it")
    p.add_argument("image")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="golden model + cycle model of an image on an input")
    p.add_argument("image")
    p.add_argument("--input", required=True, help=".npy input, (n_in,) or (batch, n_in), float")
    p.add_argument("--int-input", action="store_true", help="the input is already int16 fixed point")
    p.add_argument("--fifo-depth", type=fifo, default=DEFAULT_FIFO_DEPTH, help="activation queue depth")
    p.add_argument("--acc-bits", type=acc_bits, default=None, help="accumulator width (default 48)")
    p.add_argument("--act-depth", type=depth, default=DEFAULT_ACT_DEPTH, help="activations per PE per bank")
    p.add_argument("--output", "-o", help="write the (dequantised) outputs to this .npy")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="Table IV, FC8, queue/PE sweeps, load balance and model speeds (JSON + plots)")
    p.add_argument("--out", default=BENCH_OUT, help="report directory (bench.json, bench.md, PNGs)")
    p.add_argument("--tiny", action="store_true", help="shrunken layers and sweeps (seconds; for tests)")
    p.add_argument("--sections", nargs="+", choices=["table", "fc8", "depth", "pe", "speed", "throughput"],
                   help="run only these sections (default: all)")
    p.add_argument("--simulator", "--rtl", choices=["verilator", "icarus", "none"], default="auto",
                   help="cocotb's simulator for the RTL speed figure, or none (default $EIE_SIMULATOR, else Icarus "
                        "if installed, else Verilator)")
    p.add_argument("--no-balance", action="store_true", help="skip the load-balanced re-encodings")
    p.add_argument("--fc8", help="FC8 reference directory (default: ../shared/data/eie-alexnet-fc8)")
    p.add_argument("--repeat", type=int_in(1, 1000), help="timing repeats (best of)")
    p.add_argument("--fpga-report", action="append", metavar="PATH",
                   help="`eie fpga` report for the throughput section (repeatable; default: reports/fpga/*.json "
                        "unless --fmax is given)")
    p.add_argument("--fmax", action="append", metavar="BOARD:N:MHZ",
                   help="throughput of the board's preset with N PEs at this Fmax (repeatable)")
    p.add_argument("--throughput-layer", help="Table III layer whose shape ratio and densities the throughput "
                                              "layer uses (default Alex-8)")
    p.add_argument("--json", action="store_true", help="print the JSON result")
    add_executor_options(p)
    p.set_defaults(func=cmd_bench)

    # verilog and fpga check their array parameters in hdl.params.ArrayParams
    p = sub.add_parser("demo", help="end to end: train, prune, share, encode, golden model, RTL (reports/demo)")
    p.add_argument("--out", default=DEMO_OUT, help="report directory")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                   help="digits: the 64-300-100-10 MLP on scikit-learn's 8x8 digits (about a minute); mnist: "
                        "LeNet-300-100 on real MNIST with biases (about 4 minutes; default digits)")
    p.add_argument("--n-pe", type=int_in(1, RTL_MAX_N_PE), help="PEs of the image and the RTL (default 8)")
    p.add_argument("--seed", type=seed, help="training/pruning seed (default 0)")
    p.add_argument("--simulator", "--rtl", choices=["verilator", "icarus", "none"],
                   help="cocotb's simulator for the RTL step, or none to skip it (default $EIE_SIMULATOR, else "
                        "Icarus if installed, else Verilator)")
    p.add_argument("--rtl-samples", type=int_in(1, 100_000), help="test inputs run on the RTL (default 32; at most "
                                                                   "the test set)")
    p.add_argument("--no-waves", action="store_true", help="do not write the RTL waveform (FST)")
    p.add_argument("--quick", action="store_true", help="short training and finetuning (seconds; for tests)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("verilog", help="emit the EIE array as one synthesizable Verilog file")
    p.add_argument("--n-pe", type=rtl_n_pe, help="processing elements (default 4)")
    p.add_argument("--fifo-depth", type=fifo, help="activation queue depth (default 8)")
    p.add_argument("--acc-depth", type=depth, help="accumulators per PE (default 64)")
    p.add_argument("--act-depth", type=depth, help="activations per PE per bank (default 1024)")
    p.add_argument("--ptr-depth", type=depth, help="column pointers per PE (default 4096)")
    p.add_argument("--spmat-depth", type=depth, help="64-bit sparse-matrix rows per PE (default 2048)")
    p.add_argument("--max-layers", type=depth, help="layer descriptors/codebooks on chip (default 8)")
    p.add_argument("--acc-bits", type=acc_bits, help="accumulator width (default 48)")
    p.add_argument("--leaf-slice", action="store_true", default=None, help=LEAF_SLICE_HELP)
    p.add_argument("--top", default="eie_array", help="top module name")
    p.add_argument("--synth", action="store_true", help="also run Yosys synthesis and report cells")
    p.add_argument("--lint", action="store_true", help="also lint with Verilator (must be installed)")
    _add_output(p, "Verilog file to write (a .json with parameters and ports goes beside it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("fpga", help="build the array with a self-test for an FPGA board; resources, Fmax, largest N")
    p.add_argument("--board", required=True, choices=list(BOARDS), help="amaranth-boards platform (docs/fpga.md)")
    p.add_argument("--n-pe", type=rtl_n_pe, default=4, help="processing elements (default 4)")
    p.add_argument("--fifo-depth", type=fifo, help="activation queue depth (default: the board's preset)")
    for name, what in (("acc-depth", "accumulators per PE"), ("act-depth", "activations per PE per bank"),
                       ("ptr-depth", "column pointers per PE"), ("spmat-depth", "64-bit matrix rows per PE"),
                       ("max-layers", "layers on chip"), ("acc-bits", "accumulator width")):
        p.add_argument(f"--{name}", type=acc_bits if name == "acc-bits" else depth,
                       help=f"{what} (default: the board's preset)")
    p.add_argument("--leaf-slice", action="store_true", default=None, help=LEAF_SLICE_HELP)
    p.add_argument("--search", choices=["auto", "pnr", "synth", "none"], default="auto",
                   help="how to find the largest N that fits: place and route every trial, a synthesis "
                        "utilisation check, or not at all (auto: pnr on iCE40, synth on ECP5)")
    p.add_argument("--no-search", action="store_true", help="same as --search none")
    p.add_argument("--max-n", type=rtl_n_pe, default=RTL_MAX_N_PE, help="upper bound of the search")
    p.add_argument("--synth-only", action="store_true", help="stop after synthesis (no place and route)")
    p.add_argument("--target-mhz", type=float_in(0, 1000, lo_open=True), default=None,
                   help="clock nextpnr is asked for (default: the board's target, docs/fpga.md); the "
                        "bitstream runs from the board's oscillator"),
    p.add_argument("--gate-sim", action="store_true",
                   help="also simulate the synthesised netlist's self-test (iCE40, needs Icarus Verilog)")
    p.add_argument("--out", default=FPGA_OUT, help="report directory (<board>-<N>pe.json)")
    p.add_argument("--build-dir", default=FPGA_BUILD, help="build products and tool logs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fpga)

    add_import_subcommands(sub)
    add_prune_subcommands(sub)
    add_sim_subcommands(sub)
    return ap


def main(argv=None) -> int:
    """Parse and run one command; every failure ends as one line on stderr (eie/boundary.py)."""
    with signal_handlers():
        try:
            args = build_parser().parse_args(argv)
        except KeyboardInterrupt:  # (a usage error raises SystemExit(2) after its one line)
            report("", "interrupted", "")
            return 130
        return run_command(args.command, lambda: args.func(args), wording=lambda text: as_options(text, args))


if __name__ == "__main__":
    sys.exit(main())
