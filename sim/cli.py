"""`eie sim` and `eie regress`: the RTL under cocotb (Verilator or Icarus) from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


from eie.cli_inputs import (FIFO_MAX, RTL_MAX_N_PE, SEED_MAX, check_output, check_output_dir, int_in, list_of,
                            load_input)
from eie.common import UserError, emit_json, write_json
from eie.golden_model import encode_network
from eie.golden_model.errors import InputError
from eie.golden_model.fc8 import AUTHORS_CYCLES, fc8_image, load_fc8
from eie.golden_model.functional import check_int_input, quantize_input
from eie.golden_model.image_file import load_image
from eie.golden_model.model import run_image
from eie.golden_model.numerics import MAX_ACC_BITS, MIN_ACC_BITS
from eie.jobs import add_executor_options, executor_from_args, run_jobs

from .simulator import ENV_VAR, SIMULATORS, choose
from .verilator_env import require

__all__ = ["add_subcommands", "cmd_sim", "cmd_regress", "DEFAULT_BUILDS"]

# N x queue depth: N from 1 to 64 (3: not a power of two), depths 1 to 16
DEFAULT_BUILDS = "1x1,2x16,3x8,4x2,8x1,16x16,64x8"
DEFAULT_FAILURES = "reports/regress/failures"
CASES_MAX = 10_000_000
N_PE = int_in(1, RTL_MAX_N_PE)
FIFO_DEPTH = int_in(1, FIFO_MAX)


def _default_case():
    """The built-in case of `eie sim` without an image: a seeded pruned 64-48-10 MLP."""

    rng = np.random.default_rng(2016)
    Ws = [rng.normal(0, 0.5, (48, 64)) * (rng.random((48, 64)) < 0.15),
          rng.normal(0, 0.5, (10, 48)) * (rng.random((10, 48)) < 0.3)]
    image = encode_network(Ws, 4, acc_depth=8, seed=0, names=["fc1", "fc2"])
    x = rng.integers(-400, 400, (2, 64))
    x[rng.random(x.shape) < 0.5] = 0
    return image, x, "built-in 64-48-10 MLP, 4 PEs"


def cmd_sim(args) -> int:
    if args.bias and not args.fc8:
        raise UserError("--bias: only with --fc8 (an image file says itself which layers have a bias)")
    if args.output:
        check_output(args.output, "-o", args.force)
    if args.waves:
        check_output(args.waves, "--waves", force=True)   # rewritten by every run, as a report directory
    from eie.hdl.loader import params_for_image  # Amaranth and cocotb: deferred until an RTL run

    from .cases import Case
    from .runner import build, run_cases

    if args.fc8:

        ref = load_fc8(None if args.fc8 == "default" else args.fc8)
        image = fc8_image(ref, bias=args.bias)
        a = quantize_input(image, ref.act[None, :])
        what = f"AlexNet FC8 ({ref.source}{', with its bias column' if args.bias else ''})"
    elif args.image:
        image = load_image(args.image)
        if args.n_pe is not None and args.n_pe != image.n_pe:
            raise UserError(f"--n-pe {args.n_pe}: {args.image} is built for {image.n_pe} PEs "
                            f"(re-encode it with `eie encode --n-pe {args.n_pe}`)")
        if not args.input:
            raise UserError("--input is required with an IMAGE")
        x = load_input(args.input, args.int_input)
        try:
            a = check_int_input(x, image.layers[0].n_in) if args.int_input else quantize_input(image, x)
        except InputError as e:
            raise UserError(f"--input {args.input}: {e}") from None
        a = np.atleast_2d(a)
        what = str(args.image)
    else:
        image, a, what = _default_case()
    if args.n_pe is not None and args.n_pe != image.n_pe:
        raise UserError(f"--n-pe {args.n_pe}: {what} is built for {image.n_pe} PEs")
    params = params_for_image(image, fifo_depth=args.fifo_depth, acc_bits=args.acc_bits)
    done = []

    def progress(res):
        done.append(res)
        if not args.json:
            print(f"  sample {res['sample']}: {res['cycles_rtl']:,} cycles (model {res['cycles_model']:,}), "
                  f"outputs {'bit-exact' if res['outputs_match'] else 'MISMATCH'}", flush=True)

    sim = choose(args.simulator)
    if not args.json:
        print(f"eie sim: {what} on a {params.n_pe}-PE array, queue depth {params.fifo_depth}, cocotb on {sim}")
    t0 = time.perf_counter()
    b = build(params, simulator=sim, waves=args.waves)
    if not args.json and b.seconds:
        print(f"  built in {b.seconds:.1f} s (cached under {b.directory})")
    run = run_cases([Case("cli", image, a)], params, waves=args.waves, on_result=progress, keep=True, simulator=sim)

    gold = run_image(image, a, params.to_config(), int_input=True)
    result = {
        "image": what, "simulator": sim, "params": params.as_dict(), "samples": len(run.results),
        "bit_exact": bool(run.results) and all(r["outputs_match"] for r in run.results),
        "cycle_exact": bool(run.results) and all(r["cycles_rtl"] == r["cycles_model"] == r["cycles_monitor"]
                                                 for r in run.results),
        "cycles_rtl": [r["cycles_rtl"] for r in run.results],
        "cycles_model": [r["cycles_model"] for r in run.results],
        "outputs_int": gold.outputs_int.tolist() if all(r["outputs_match"] for r in run.results) else None,
        "out_frac": image.layers[-1].out_frac,
        "mismatches": run.failures,
        "simulated_clock_cycles": run.clock_cycles, "simulator_seconds": round(run.sim_seconds, 2),
        "cycles_per_second": round(run.cycles_per_second, 1),
        "compute_cycles_per_second": round(run.run_cycles_per_second, 1),
        "build_seconds": round(b.seconds, 1),
        "wall_seconds": round(time.perf_counter() - t0, 2),    # build (if not cached) + load + run + read
        "waves": run.waves, "log": run.log,
    }
    speed = (f"{run.clock_cycles:,} clock cycles simulated at {run.cycles_per_second:,.0f} cycles/s "
             f"({run.run_cycles_per_second:,.0f} cycles/s while computing); total {result['wall_seconds']:,.1f} s "
             f"(build {b.seconds:.1f} s)")
    rc = _finish(args, result, params, speed)
    if run.waves and not args.json:
        print(f"waves: {run.waves} (open with `gtkwave {run.waves}`)")
    return rc


def _finish(args, result: dict, params, speed: str) -> int:
    """Shared end of `eie sim` for both simulators: authors' cycles, JSON file, verdict."""
    if args.fc8:

        result["authors_cycles"] = AUTHORS_CYCLES.get(params.fifo_depth)
    if args.output:
        write_json(args.output, result, overwrite=args.force)
    ok = result["bit_exact"] and result["cycle_exact"]
    if args.json:
        emit_json(result)
    else:
        print(f"{'PASS' if ok else 'FAIL'}: outputs {'bit-exact' if result['bit_exact'] else 'differ'}, cycles "
              f"{'equal to' if result['cycle_exact'] else 'differ from'} the cycle model "
              f"({sum(result['cycles_rtl']):,} total"
              + (f"; authors' simulator {result['authors_cycles']:,}" if result.get("authors_cycles") else "")
              + f"); {speed}")
    return 0 if ok else 1


def build_spec(text: str) -> tuple[int, int]:
    """argparse type of one --builds entry: NxD, N PEs and queue depth D, both in range."""
    expected = f"expected NxD (PEs x queue depth, e.g. 4x8) with N in 1..{RTL_MAX_N_PE} and D in 1..{FIFO_MAX}"
    n, x, d = text.lower().partition("x")
    try:
        if x:
            return N_PE(n), FIFO_DEPTH(d)
    except argparse.ArgumentTypeError:
        pass
    raise argparse.ArgumentTypeError(f"{expected}, got {text[:40]!r}")


def _replay(args) -> int:
    from eie.hdl.params import ArrayParams  # Amaranth and cocotb: deferred (see cmd_sim)

    from .cases import load_cases
    from .runner import run_cases

    d = Path(args.replay)
    if not (d / "manifest.json").exists() or not (d / "params.json").exists():
        raise UserError(f"--replay {d}: expected a saved failing case (manifest.json and params.json)")
    saved = json.loads((d / "params.json").read_text())
    params = ArrayParams(**saved["params"])
    sim = choose(args.simulator or saved.get("simulator"))
    run = run_cases(load_cases(d / "manifest.json"), params, simulator=sim, keep=True)
    out = {"replay": str(d), "simulator": sim, "ok": run.ok, "results": run.results, "log": run.log}
    if args.json:
        emit_json(out)
    else:
        for r in run.results:
            print(f"  {r['case']} sample {r['sample']}: outputs {'ok' if r['outputs_match'] else 'MISMATCH'}, "
                  f"cycles rtl {r['cycles_rtl']} / model {r['cycles_model']}")
        print(f"{'PASS' if run.ok else 'FAIL'}: {d} on {params.n_pe}x{params.fifo_depth} under {sim}"
              + ("" if run.ok else f" (log: {run.log})"))
    return 0 if run.ok else 1


def cmd_regress(args) -> int:
    if args.output:
        check_output(args.output, "-o", args.force)
    if args.replay:
        return _replay(args)
    if args.seed + args.cases - 1 > SEED_MAX:
        raise UserError(f"--seed {args.seed} --cases {args.cases}: the last case's seed would be "
                        f"{args.seed + args.cases - 1:,}; expected at most {SEED_MAX:,}")
    check_output_dir(args.failures, "--failures", DEFAULT_FAILURES)
    from .regress import TIMING_KEYS, plan, summarize  # Amaranth and cocotb: deferred (see cmd_sim)
    from .runner import SIM_ROOT

    builds = args.builds
    executor = executor_from_args(args)
    sim = choose(args.simulator)
    if sim == "verilator":                  # a missing tool is one line, before the progress bar
        require()
    # absolute paths: a worker (a Ray one above all) need not share this process's directory
    jobs = plan(args.cases, args.seed, builds, args.chunk, sim, SIM_ROOT.resolve(), Path(args.failures).resolve())
    head = {"cases": args.cases, "first_seed": args.seed, "simulator": sim, "executor": executor.describe(),
            "timing_keys": list(TIMING_KEYS)}
    t0 = time.perf_counter()
    results = [None] * len(jobs)

    def write(done: bool, outcome=None):
        summary = head | summarize(jobs, results, builds)
        summary |= {"complete": done, "wall_seconds": round(time.perf_counter() - t0, 1)}
        if outcome is not None:
            summary |= {"interrupted": outcome.interrupted, "job_failures": outcome.failures,
                        "jobs_rerun": outcome.retried}
        if args.output:  # rewritten after every job: the file is this run's own (checked with --force at the start)
            write_json(args.output, summary, overwrite=True)
        return summary

    def progress(i, res):
        results[i] = res
        write(done=False)

    outcome = run_jobs(jobs, executor, progress=not args.json, desc=f"regression ({sim}, {executor.describe()})",
                       on_result=progress)
    summary = write(done=outcome.ok, outcome=outcome)
    if args.json:
        emit_json(summary)
    else:
        print(f"{summary['passed']} / {args.cases} cases passed ({summary['samples']} samples) in "
              f"{summary['wall_seconds']} s over builds {','.join(f'{n}x{d}' for n, d in builds)} under {sim}, {executor.describe()}")
        for f in summary["failures"]:
            print(f"  FAIL seed {f['seed']} on {f['n_pe']}x{f['fifo_depth']}: {f['info']}; "
                  f"replay: eie regress --replay {f['saved']}")
        for f in outcome.failures:
            print(f"  NOT RUN {f['key']}: {f['error']} (failed twice)")
        if outcome.interrupted:
            print(f"  interrupted: {summary['cases_run']} of {args.cases} cases ran; the summary keeps them")
    if outcome.interrupted:
        return 130
    return 1 if summary["failures"] or outcome.failures else 0


def _add_simulator(p):

    p.add_argument("--simulator", choices=SIMULATORS,
                   help=f"cocotb's simulator (default ${ENV_VAR}, else Icarus if installed, else Verilator)")


def add_subcommands(sub):
    """Register `sim` and `regress` on the `eie` parser."""
    p = sub.add_parser("sim", help="run an image on the RTL under cocotb (Verilator or Icarus); bit- and cycle-exact check")
    p.add_argument("image", nargs="?", help="EIE image (default: a built-in two-layer MLP)")
    p.add_argument("--input", help=".npy input, (n_in,) or (batch, n_in), float unless --int-input")
    p.add_argument("--int-input", action="store_true", help="the input is already int16 fixed point")
    p.add_argument("--fc8", nargs="?", const="default", help="run the authors' AlexNet FC8 layer on 64 PEs "
                   "(optionally its directory)")
    p.add_argument("--bias", action="store_true", help="with --fc8: include the authors' bias column (4,097 columns)")
    p.add_argument("--n-pe", type=N_PE, help="PEs (must match the image)")
    p.add_argument("--fifo-depth", type=FIFO_DEPTH, default=8, help="activation queue depth")
    p.add_argument("--acc-bits", type=int_in(MIN_ACC_BITS, MAX_ACC_BITS), default=None,
                   help="accumulator width (default 48)")
    p.add_argument("--waves", help="dump waves to this .vcd or .fst (open with GTKWave; replaced by every run; "
                                   "its directory must exist)")
    _add_simulator(p)
    p.add_argument("-o", "--output", help="also write the JSON result here")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("regress", help="seeded random regression on the RTL under cocotb, pass/fail summary")
    p.add_argument("--cases", type=int_in(1, CASES_MAX), default=2000)
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0,
                   help="seed of the first case (cases use seed, seed+1, ...)")
    p.add_argument("--builds", type=list_of(build_spec, 100), default=DEFAULT_BUILDS,
                   help="comma-separated NxD builds (PEs x queue depth)")
    p.add_argument("--chunk", type=int_in(1, CASES_MAX), default=200, help="cases per simulator process (one job)")
    p.add_argument("--failures", default=DEFAULT_FAILURES,
                   help="save each failing case here, replayable with --replay")
    p.add_argument("--replay", metavar="DIR", help="rerun the cases saved in DIR (by a failing regression)")
    _add_simulator(p)
    add_executor_options(p)
    p.add_argument("-o", "--output", help="also write the JSON summary here")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_regress)
