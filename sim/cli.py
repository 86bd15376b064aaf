"""`eie sim` and `eie regress`: the RTL under Icarus/cocotb from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from eie.golden_model.errors import EIEError, InputError

__all__ = ["add_subcommands", "cmd_sim", "cmd_regress", "DEFAULT_BUILDS"]

DEFAULT_BUILDS = "1x1,2x2,3x8,4x8,8x1,8x8,16x4"   # N x queue depth


def _default_case():
    """The built-in case of `eie sim` without an image: a seeded pruned 64-48-10 MLP."""
    from eie.golden_model import encode_network

    rng = np.random.default_rng(2016)
    Ws = [rng.normal(0, 0.5, (48, 64)) * (rng.random((48, 64)) < 0.15),
          rng.normal(0, 0.5, (10, 48)) * (rng.random((10, 48)) < 0.3)]
    image = encode_network(Ws, 4, acc_depth=8, seed=0, names=["fc1", "fc2"])
    x = rng.integers(-400, 400, (2, 64))
    x[rng.random(x.shape) < 0.5] = 0
    return image, x, "built-in 64-48-10 MLP, 4 PEs"


def cmd_sim(args, UserError, emit_json) -> int:
    from eie.golden_model.functional import check_int_input, quantize_input
    from eie.golden_model.image_file import load_image
    from eie.hdl.loader import params_for_image

    from .cases import Case
    from .runner import run_cases

    if args.fc8:
        from eie.golden_model.fc8 import fc8_image, load_fc8

        ref = load_fc8(None if args.fc8 == "default" else args.fc8)
        image = fc8_image(ref)
        a = quantize_input(image, ref.act[None, :])
        what = f"AlexNet FC8 ({ref.source})"
    elif args.image:
        image = load_image(args.image)
        if args.n_pe is not None and args.n_pe != image.n_pe:
            raise UserError(f"--n-pe {args.n_pe}: {args.image} is built for {image.n_pe} PEs "
                            f"(re-encode it with `eie encode --n-pe {args.n_pe}`)")
        if not args.input:
            raise UserError("--input is required with an IMAGE")
        try:
            x = np.load(args.input, allow_pickle=False)
        except Exception as e:  # numpy raises many kinds for a bad file
            raise UserError(f"--input: {args.input}: not a readable .npy file ({e})") from None
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

    if args.verilator:
        return _sim_verilator(args, image, a, params, what, emit_json)
    if not args.json:
        print(f"eie sim: {what} on a {params.n_pe}-PE array, queue depth {params.fifo_depth}, under Icarus")
    t0 = time.perf_counter()
    run = run_cases([Case("cli", image, a)], params, waves=args.waves, on_result=progress, keep=True)
    from eie.golden_model.model import run_image

    gold = run_image(image, a, params.to_config(), int_input=True)
    result = {
        "image": what, "params": params.as_dict(), "samples": len(run.results),
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
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "waves": run.waves, "log": run.log,
    }
    speed = (f"{run.clock_cycles:,} clock cycles simulated at {run.cycles_per_second:,.0f} cycles/s "
             f"({run.run_cycles_per_second:,.0f} cycles/s while computing)")
    rc = _finish(args, result, params, speed, emit_json)
    if run.waves and not args.json:
        print(f"waves: {run.waves} (open with `gtkwave {run.waves}`)")
    return rc


def _finish(args, result: dict, params, speed: str, emit_json) -> int:
    """Shared end of `eie sim` for both simulators: authors' cycles, JSON file, verdict."""
    if args.fc8:
        from eie.golden_model.fc8 import AUTHORS_CYCLES

        result["authors_cycles"] = AUTHORS_CYCLES.get(params.fifo_depth)
    if args.output:
        from eie.golden_model.image_file import atomic_write_bytes

        atomic_write_bytes(args.output, [json.dumps(result, indent=2).encode()], overwrite=True)
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


def _sim_verilator(args, image, a, params, what, emit_json) -> int:
    from .verilator_run import run_verilator

    if args.waves:
        print("eie sim: --waves is only supported under Icarus; ignoring it with --verilator")
    if not args.json:
        print(f"eie sim: {what} on a {params.n_pe}-PE array, queue depth {params.fifo_depth}, Verilator harness")
    r = run_verilator(image, a, params)
    result = {"image": what, "params": params.as_dict(), "simulator": "verilator", "samples": len(r.cycles_per_sample),
              "bit_exact": r.bit_exact, "cycle_exact": r.cycle_exact, "cycles_rtl": r.cycles_per_sample,
              "cycles_model": r.expected_cycles, "out_frac": image.layers[-1].out_frac,
              "outputs_int": r.outputs.tolist() if r.bit_exact else None,
              "simulated_clock_cycles": r.clock_cycles, "simulator_seconds": round(r.seconds, 3),
              "cycles_per_second": round(r.cycles_per_second, 1), "build_seconds": round(r.build_seconds, 1)}
    return _finish(args, result, params, f"{r.clock_cycles:,} clock cycles at {r.cycles_per_second:,.0f} cycles/s",
                   emit_json)


def _builds(text: str, UserError):
    out = []
    for part in text.split(","):
        try:
            n, d = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise UserError(f"--builds: {part!r} is not NxD (PEs x queue depth), e.g. 4x8") from None
        out.append((n, d))
    return out


def cmd_regress(args, UserError, emit_json) -> int:
    from tqdm import tqdm

    from .cases import random_case, sim_params
    from .runner import run_cases

    if args.cases < 1:
        raise UserError(f"--cases must be positive, not {args.cases}")
    builds = _builds(args.builds, UserError)
    plan = {b: [] for b in builds}
    for i in range(args.cases):
        plan[builds[i % len(builds)]].append(args.seed + i)
    t0 = time.perf_counter()
    summary = {"cases": args.cases, "first_seed": args.seed, "builds": [], "failures": [], "samples": 0,
               "parameter_ranges": {"n_pe_x_fifo_depth": [f"{n}x{d}" for n, d in builds],
                                    "layers": [1, 3], "dims": [1, 48], "weight_density": [0.01, 1.0],
                                    "activation_density": [0.0, 1.0], "rows_per_batch": [1, 16],
                                    "samples_per_case": [1, 3]}}
    bar = tqdm(total=args.cases, unit="case", disable=args.json, desc="regression")
    for (n, d), seeds in plan.items():
        params = sim_params(n, d)
        cycles = secs = 0
        for start in range(0, len(seeds), args.chunk):
            chunk = [random_case(s, params) for s in seeds[start:start + args.chunk]]
            counted = set()

            def tick(res):
                if res["case"] not in counted:
                    counted.add(res["case"])
                    bar.update(1)

            run = run_cases(chunk, params, on_result=tick)
            bar.update(len(chunk) - len(counted))
            summary["samples"] += len(run.results)
            cycles += run.clock_cycles
            secs += run.sim_seconds
            bad_cases = {r["case"] for r in run.failures}
            if run.failed_tests and not bad_cases:
                bad_cases = {c.name for c in chunk} - {r["case"] for r in run.results}
            for c in chunk:
                if c.name in bad_cases:
                    summary["failures"].append({"seed": c.seed, "n_pe": n, "fifo_depth": d, "info": c.info,
                                                "results": [r for r in run.results if r["case"] == c.name]})
        summary["builds"].append({"n_pe": n, "fifo_depth": d, "cases": len(seeds), "clock_cycles": cycles,
                                  "cycles_per_second": round(cycles / secs, 1) if secs else None})
    bar.close()
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["passed"] = args.cases - len(summary["failures"])
    if args.output:
        from eie.golden_model.image_file import atomic_write_bytes

        atomic_write_bytes(args.output, [json.dumps(summary, indent=2).encode()], overwrite=True)
    if args.json:
        emit_json(summary)
    else:
        print(f"{summary['passed']} / {args.cases} cases passed ({summary['samples']} samples) in "
              f"{summary['wall_seconds']} s over builds {args.builds}")
        for f in summary["failures"]:
            print(f"  FAIL seed {f['seed']} on {f['n_pe']}x{f['fifo_depth']}: {f['info']}")
        if summary["failures"]:
            print(f"reproduce: eie regress --cases 1 --seed SEED --builds NxD")
    return 1 if summary["failures"] else 0


def add_subcommands(sub, add_output, UserError, emit_json):
    """Register `sim` and `regress` on the `eie` parser."""
    p = sub.add_parser("sim", help="run an image on the RTL under Icarus (cocotb); bit- and cycle-exact check")
    p.add_argument("image", nargs="?", help="EIE image (default: a built-in two-layer MLP)")
    p.add_argument("--input", help=".npy input, (n_in,) or (batch, n_in), float unless --int-input")
    p.add_argument("--int-input", action="store_true", help="the input is already int16 fixed point")
    p.add_argument("--fc8", nargs="?", const="default", help="run the authors' AlexNet FC8 layer on 64 PEs "
                   "(optionally its directory)")
    p.add_argument("--n-pe", type=int, help="PEs (must match the image)")
    p.add_argument("--fifo-depth", type=int, default=8, help="activation queue depth")
    p.add_argument("--acc-bits", type=int, default=None, help="accumulator width (default 48)")
    p.add_argument("--waves", help="dump waves to this .vcd or .fst (open with GTKWave)")
    p.add_argument("--verilator", action="store_true",
                   help="run the Verilog in the Verilator C++ harness instead (much faster, no waves)")
    p.add_argument("-o", "--output", help="also write the JSON result here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: cmd_sim(a, UserError, emit_json))

    p = sub.add_parser("regress", help="random regression on the RTL under Icarus, pass/fail summary")
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (cases use seed, seed+1, ...)")
    p.add_argument("--builds", default=DEFAULT_BUILDS, help="comma-separated NxD builds (PEs x queue depth)")
    p.add_argument("--chunk", type=int, default=200, help="cases per simulator process")
    p.add_argument("-o", "--output", help="also write the JSON summary here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda a: cmd_regress(a, UserError, emit_json))
