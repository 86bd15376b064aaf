"""`eie import`: a user's PyTorch or ONNX model -> an EIE image, with the import report.

The work is eie.api's; this module only checks the options (before any work), names the
file or option in every error and prints the report. PyTorch and ONNX load only when the
command runs.
"""

from __future__ import annotations

from eie.boundary import report
from eie.cli_inputs import check_output, int_in, load_calibration, load_codebooks
from eie.common import UserError, emit_json, print_table
from eie.golden_model.csc import DEFAULT_ACC_DEPTH
from eie.golden_model.encoder import DEFAULT_ACT_FRAC, MAX_SEED
from eie.golden_model.errors import InputError
from eie.golden_model.image import MAX_ACC_DEPTH, MAX_N_PE
from eie.golden_model.numerics import MAX_FRAC, MIN_FRAC

__all__ = ["add_subcommands", "cmd_import"]


def cmd_import(args) -> int:
    check_output(args.output, "-o", args.force)   # before the (possibly long) import
    from eie import api
    from eie.dense_chain import as_batch
    from eie.golden_model.image_file import save_image

    net = api.import_model(args.model, trust_pickle=args.trust_pickle)
    calib = None
    if args.calibrate:
        try:
            calib = as_batch(load_calibration(args.calibrate), net.n_in, f"--calibrate {args.calibrate}")
        except InputError as e:
            raise UserError(str(e)) from None
    codebooks = load_codebooks(args.codebook, len(net.layers)) if args.codebook else None
    image = api.compile(net, args.n_pe, calibration=calib, balance=args.balance, codebooks=codebooks,
                        acc_depth=args.acc_depth, act_frac=args.act_frac, seed=args.seed,
                        act_frac_name="--act-frac", calibration_name=f"--calibrate {args.calibrate}")
    save_image(image, args.output, overwrite=args.force)
    rep = image.meta["import"]
    for L in rep["layers"]:
        if L["decoded_to_zero"]:
            report("import", f"{args.model}: layer '{L['name']}': {L['decoded_to_zero']} non-zero weights decode to 0 "
                             "(a codebook entry of 0.0, or below one step of the 16-bit format)", "warning")
    if args.json:
        emit_json({"output": str(args.output), **image.summary(), "import": rep})
    else:
        _print_report(rep, str(args.output))
    return 0


def _print_report(rep: dict, output: str) -> None:
    print_table(f"wrote {output}: {rep['source']} ({rep['kind']}), {rep['n_pe']} PEs, {rep['codebook']} codebooks",
                ["name", "in→out", "bias", "ReLU", "density %", "w_frac", "compression"],
                [[L["name"], f"{L['n_in']}→{L['n_out']}", "yes" if L["bias"] else "no", "yes" if L["relu"] else "no",
                  f"{100 * L['density']:.2f}", L["w_frac"], f"{L['compression']:.1f}x"] for L in rep["layers"]])
    c = rep["compression"]
    print(f"  density {100 * rep['density']:.2f} %; compression vs dense float32: {c['ratio_pruning']:.1f}x pruning, "
          f"{c['ratio_pruning_sharing']:.1f}x with 4-bit sharing, {c['ratio_total']:.1f}x as stored")
    cal = rep["calibration"]
    if cal is None:
        print("  no --calibrate inputs: activation formats from --act-frac, error against the model not measured")
        return
    print(f"  golden model vs the float model on {cal['samples']} --calibrate inputs: max |error| "
          f"{cal['max_abs_error']:.3g} (outputs up to {cal['max_abs_output']:.3g}), bound {cal['max_error_bound']:.3g}: "
          f"{'within' if cal['within_bound'] else 'OUTSIDE'}; arg-max agreement {100 * cal['argmax_agreement']:.1f} %")


def add_subcommands(sub) -> None:
    p = sub.add_parser("import", help="a PyTorch (.pt/.pth) or ONNX (.onnx) model -> an EIE image, keeping its zeros")
    p.add_argument("model", help=".pt/.pth (TorchScript, a state_dict of Linear layers, or a whole pickled model "
                                 "with --trust-pickle) or .onnx: a chain of Linear/Gemm/MatMul and ReLU layers")
    p.add_argument("--n-pe", type=int_in(1, MAX_N_PE), required=True, help="number of PEs the image is built for")
    p.add_argument("--calibrate", help=".npy model inputs: activation formats, and the error against the float model")
    p.add_argument("--codebook", help=".npy of 16 floats (entry 0 = 0), or one row per layer; default: k-means")
    p.add_argument("--acc-depth", type=int_in(1, MAX_ACC_DEPTH), default=DEFAULT_ACC_DEPTH,
                   help="accumulators per PE (rows per output batch)")
    p.add_argument("--act-frac", type=int_in(MIN_FRAC, MAX_FRAC), default=DEFAULT_ACT_FRAC,
                   help="activation fractional bits without --calibrate")
    p.add_argument("--balance", action="store_true",
                   help="permute output rows across PEs to balance their work (uses --calibrate if given)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="k-means seed")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a whole model pickled with torch.save (runs code from the file: only for files you trust)")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)
