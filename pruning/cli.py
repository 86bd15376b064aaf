"""`eie prune METHOD`: the pruning methods from the command line (docs/pruning.md).

    eie prune magnitude | sensitivity | iterative | regularize | slimming | share | compare
              | lottery | netadapt | amc

Every method runs once per seed (`--seeds 0,1,2`): the dense model of that seed (cached
under build/prune/cache; bias-free unless `--bias`), the method, then the final model is
evaluated, saved as a checkpoint (.pt) and, for the MLP, exported to an EIE image (.eie)
whose decoded weights are checked against the model's. The output directory (default
reports/prune/<method>/) gets report.json (keys in docs/pruning.md), the checkpoints,
images and PNGs. A network with biases (`--bias`) is exported without them (EIE computes
ReLU(W a)): the report records it and a warning on stderr gives the exported network's
accuracy against the float model's.

Plug-in methods (lottery, netadapt, amc) live in their own modules; each exposes
`add_parser(prune_sub, common)`, where `prune_sub` is the `eie prune` subparsers object
and `common` is a `CommonOptions`: an argparse parent parser carrying the shared options
(use `prune_sub.add_parser(name, parents=[common])`, or call `common(parser)` to add
them to a parser) plus helpers: `common.UserError`,
`common.emit_json`, `common.context(args)` -> pipeline.Context, `common.seeds(args)`,
`common.out_dir(args)`, `common.options(args, *names)`,
`common.run(args, name, method_fn, options, plots_fn, default_seeds)`, which runs
`method_fn(model, splits, ctx, seed, args) -> (final_model, extra_dict)` per seed and
writes everything like the built-in methods (`plots_fn(report, out_dir) -> [png names]`),
and `common.add_method(prune_sub, name, method_fn, plots_fn, help=...)`, which registers
the subcommand to `run` and returns the argument group for the method's own options.

To be included in `eie prune compare`, a module exposes
`compare_entry(model, splits, sparsity, ctx, seed, args) -> nn.Module` and optionally
`COMPARE_NAME` (the table's label), `compare_note(sparsity, args) -> str` (how the
method is brought to the matched sparsity, shown and stored in the report) and
`add_compare_options(group)` (its own options on the `compare` parser; their names must
start with `<module>_`, e.g. `--amc-episodes`, to be stored in the report).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import time
from pathlib import Path

__all__ = ["add_subcommands", "CommonOptions", "PLUGIN_METHODS", "DEFAULT_OUT", "finetune_budget", "warn_bias"]

DEFAULT_OUT = Path("reports/prune")
# Defaults, kept here so that building the `eie` parser does not import torch; they equal
# train.TrainConfig(), finetune.FinetuneConfig().lr_scale and sensitivity.DEFAULT_RATIOS
# (tests/test_pruning_cli.py checks that).
DENSE_EPOCHS, DENSE_LR, DENSE_BATCH = 60, 1e-3, 64
LR_SCALE = 0.1
DEFAULT_RATIOS = tuple(round(0.1 * i, 1) for i in range(10))

# --- methods 5-7 plug in here ------------------------------------------------------------
# Each name is a module eie.pruning.<name> exposing add_parser(prune_sub, common) (and
# optionally compare_entry); it is imported only if it exists.
PLUGIN_METHODS = ("lottery", "netadapt", "amc")
# -----------------------------------------------------------------------------------------


def _plugin_modules():
    """(name, module) of the plug-in methods present. A module that fails to import is
    reported on stderr and skipped, so that one broken method cannot break `eie`."""
    import sys

    mods = []
    for name in PLUGIN_METHODS:
        if importlib.util.find_spec(f"eie.pruning.{name}") is None:
            continue
        try:
            mods.append((name, importlib.import_module(f"eie.pruning.{name}")))
        except Exception as e:  # report, never hide: the method is then missing from `eie prune`
            print(f"eie prune: warning: cannot import eie.pruning.{name} ({type(e).__name__}: {e})", file=sys.stderr)
    return mods


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _number(text: str, cast, ok, bad: str):
    """`cast(text)`, which must satisfy `ok`; `bad` (formatted with the value) otherwise."""
    try:
        x = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if cast is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not ok(x):
        raise argparse.ArgumentTypeError(bad.format(x))
    return x


def _fraction(text: str) -> float:
    return _number(text, float, lambda x: 0 <= x < 1, "expected a fraction in [0, 1), got {}")


def _lr_scale(text: str) -> float:
    return _number(text, float, lambda x: 0 < x <= 1, "lr_scale must be in (0, 1], got {}")


def _positive_int(text: str) -> int:
    return _number(text, int, lambda x: x >= 0, "expected an integer >= 0, got {}")


def _steps(text: str) -> int:
    return _number(text, int, lambda x: x >= 1, "steps must be >= 1, got {}")


class CommonOptions(argparse.ArgumentParser):
    """Parent parser of every `eie prune` method, with the helpers plug-ins need."""

    def __init__(self, UserError, emit_json, add_output):
        super().__init__(add_help=False)
        self.UserError = UserError
        self.emit_json = emit_json
        self.add_output = add_output
        self.define(self)

    def __call__(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """`common(p)`: add the shared options to parser `p` (the other way to use them
        besides `parents=[common]`)."""
        return self.define(parser)

    @staticmethod
    def define(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        g = parser.add_argument_group("data, network and dense training")
        g.add_argument("--dataset", default="digits", choices=["digits", "mnist1d", "mnist"],
                       help="data set (default digits; mnist needs --data-path to its IDX files)")
        g.add_argument("--data-path", help="directory of the MNIST IDX files (nothing is downloaded)")
        g.add_argument("--model", default="mlp", choices=["mlp", "conv"],
                       help="mlp (64-300-100-10 on digits, runs on EIE) or conv (BatchNorm conv net)")
        g.add_argument("--bias", dest="bias", action="store_true", default=False,
                       help="give the network biases; EIE computes ReLU(W a), so the image drops them and "
                            "loses accuracy (measured and reported). Default: no biases, exact end to end")
        g.add_argument("--no-bias", dest="bias", action="store_false",
                       help="no biases (the default; kept for compatibility)")
        g.add_argument("--layers", default="fc", choices=["fc", "all"],
                       help="layers to prune: the FC layers (EIE) or also the convs")
        g.add_argument("--seeds", type=_seeds_arg, default=None,
                       help="comma-separated training seeds; results are reported per seed and as means")
        g.add_argument("--epochs", type=_positive_int, default=DENSE_EPOCHS, help="dense training epochs")
        g.add_argument("--lr", type=float, default=DENSE_LR, help="dense learning rate (Adam)")
        g.add_argument("--batch-size", type=int, default=DENSE_BATCH)
        g.add_argument("--cache-dir", default=str(Path("build/prune/cache")), help="dense checkpoint cache")
        g.add_argument("--no-cache", action="store_true", help="always retrain the dense model")
        g = parser.add_argument_group("export and output")
        g.add_argument("--n-pe", type=int, default=8, help="PEs the EIE image is built for (default 8)")
        g.add_argument("--acc-depth", type=int, default=64, help="accumulators per PE")
        g.add_argument("--calib", type=int, default=256, help="training samples used to calibrate activations")
        g.add_argument("--out", help="output directory (default reports/prune/<method>)")
        g.add_argument("--json", action="store_true", help="print the report JSON on stdout")
        g.add_argument("--quiet", action="store_true", help="no progress bars")
        return parser

    # -- helpers for the methods ------------------------------------------------------------
    def context(self, args):
        from .pipeline import Context
        from .train import TrainConfig

        if args.n_pe < 1 or args.acc_depth < 1:
            raise self.UserError("--n-pe and --acc-depth must be positive")
        if args.batch_size < 1 or args.lr <= 0:
            raise self.UserError("--batch-size must be positive and --lr > 0")
        if args.calib < 1:
            raise self.UserError("--calib must be at least 1 (training samples for the activation formats)")
        return Context(dataset=args.dataset, data_path=args.data_path, model=args.model, bias=args.bias,
                       dense=TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size),
                       layers=args.layers, n_pe=args.n_pe, acc_depth=args.acc_depth, calib=args.calib,
                       cache_dir=None if args.no_cache else Path(args.cache_dir),
                       progress=not (args.json or args.quiet))

    def seeds(self, args, default=(0,)) -> list[int]:
        return list(args.seeds) if args.seeds else list(default)

    def out_dir(self, args) -> Path:
        return Path(args.out) if args.out else DEFAULT_OUT / args.prune_method

    @staticmethod
    def options(args, *names) -> dict:
        """{name: value} of the method's own options, for the report (paths as strings)."""
        return {n: (str(getattr(args, n)) if isinstance(getattr(args, n), Path) else getattr(args, n)) for n in names}

    def add_method(self, prune_sub, name: str, method_fn, plots_fn=None, *, default_seeds=(0,), **parser_kw):
        """Register `eie prune <name>` (the shared options plus a group for the method's
        own, which the caller fills and which the report stores) to `run` `method_fn`.
        Returns that argument group."""
        p = prune_sub.add_parser(name, parents=[self], **parser_kw)
        g = p.add_argument_group(f"{name} options")

        def run(args):  # the group's options as added by the caller (argparse keeps them in _group_actions)
            return self.run(args, name, method_fn, self.options(args, *(x.dest for x in g._group_actions)), plots_fn,
                            default_seeds)

        p.set_defaults(func=run)
        return g

    def run(self, args, name, method_fn, options: dict, plots_fn=None, default_seeds=(0,)) -> int:
        """Run `method_fn` per seed, finalize, write report.json and plots, print.

        `method_fn(model, splits, ctx, seed, args) -> (final model, extra)`: `extra` goes
        into the seed's `runs[]` entry (key `_reference_weights`: see `finalize`)."""
        from .magnitude import clone_model
        from .pipeline import dense_for, evaluate_model, finalize, summarize, write_json

        torch_threads()
        ctx = self.context(args)
        out = self.out_dir(args)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        runs = []
        try:
            for seed in self.seeds(args, default_seeds):
                dense, splits = dense_for(ctx, seed)
                run = {"seed": seed, "dense": evaluate_model(dense, splits)}
                model, extra = method_fn(clone_model(dense), splits, ctx, seed, args)
                ref = extra.pop("_reference_weights", None)
                run.update(extra)
                run["final"] = finalize(model, splits, ctx, out, name, seed, meta={"method": name},
                                        reference_weights=ref)
                warn_bias(f"eie prune {name}: seed {seed}", run["final"])
                runs.append(run)
        except ValueError as e:  # bad option values surface as ValueError from the library
            raise self.UserError(str(e)) from None
        report = {"method": name, "options": options, "context": ctx.describe(), "runs": runs,
                  "summary": summarize(runs), "seconds": round(time.perf_counter() - t0, 1)}
        files = ["report.json"]
        if plots_fn is not None:
            files += plots_fn(report, out)
        if "compression" in runs[0]["final"]:
            from .pipeline import plot_compression

            plot_compression(runs[0]["final"]["compression"], out / "compression.png",
                             title=f"{name}: storage of the FC weights (seed {runs[0]['seed']})")
            files.append("compression.png")
        for r in runs:
            if "checkpoint" in r["final"]:
                files.append(Path(r["final"]["checkpoint"]).name)
            if "path" in r["final"].get("image", {}):
                files.append(Path(r["final"]["image"]["path"]).name)
        report["output_dir"] = str(out)
        report["files"] = files
        write_json(out / "report.json", report)
        if args.json:
            self.emit_json(report)
        else:
            print_report(report)
        return 0


def warn_bias(where: str, final: dict) -> None:
    """Print the finalize result's bias warning (a network with biases was exported) to stderr."""
    import sys

    msg = final.get("image", {}).get("bias_warning")
    if msg:
        print(f"{where}: warning: {msg}", file=sys.stderr)


def torch_threads() -> None:
    """One thread: the CPU is shared, and the tiny networks gain nothing from more."""
    import torch

    torch.set_num_threads(1)


# -- human output ----------------------------------------------------------------------------
def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _print_table(title, columns, rows):
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in ("seed", "method") else "right", no_wrap=True)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    con = Console()
    if not con.is_terminal:  # pipes and logs: do not cut the table at 80 columns
        con = Console(width=140)
    con.print(t)


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
    _print_table(f"eie prune {report['method']}: {ctx['model']} on {ctx['dataset']}, test accuracy (%)",
                 ["seed", "dense", "pruned", "drop", "kept", "4-bit", "golden"], rows)
    if s.get("ratio_total") is not None:
        print(f"compression vs dense float32 (mean): pruning {s['ratio_pruning']:.1f}x, + 4-bit sharing "
              f"{s['ratio_pruning_sharing']:.1f}x (values only), + CSC index on {ctx['n_pe']} PEs "
              f"{s['ratio_total']:.1f}x")
        print("  4-bit: the image's fixed-point shared weights in PyTorch; golden: the bit-exact EIE model"
              + (" (WITHOUT the network's biases, which the image drops: see the warning)" if s["biases_dropped"]
                 else ""))
    print(f"wrote {report['output_dir']}/: " + ", ".join(report["files"]) + f" ({report['seconds']} s)")


# -- finetuning options ------------------------------------------------------------------------
def _add_ft(p, *, one_shot_default=None):
    p.add_argument("--lr-scale", type=_lr_scale, default=LR_SCALE,
                   help="finetuning learning rate as a fraction of --lr (default 0.1; 0.01 is the other end)")
    if one_shot_default is not None:
        p.add_argument("--ft-epochs", type=_positive_int, default=one_shot_default,
                       help=f"finetuning epochs after pruning (default {one_shot_default}: the iterative budget)")


def _add_iterative(p):
    p.add_argument("--steps", type=_steps, default=4, help="prune -> finetune rounds (default 4)")
    p.add_argument("--schedule", default="geometric", choices=("geometric", "linear"),
                   help="geometric: each round keeps the same share of what is left")
    p.add_argument("--ft-epochs", type=_positive_int, default=60, help="finetuning epochs per round (default 60)")
    p.add_argument("--final-epochs", type=_positive_int, default=150,
                   help="extra finetuning after the last round (default 150)")


def _ft_cfg(args):
    from .finetune import FinetuneConfig

    return FinetuneConfig(epochs=args.ft_epochs, lr_scale=args.lr_scale, final_epochs=getattr(args, "final_epochs", 0))


def finetune_budget(args) -> int:
    """Finetuning epochs of the iterative schedule (the budget every method gets in compare)."""
    return args.steps * args.ft_epochs + args.final_epochs


ONE_SHOT_BUDGET = 4 * 60 + 150


# -- methods ----------------------------------------------------------------------------------
def _mean_points(histories):
    """Step-wise mean over seeds of [(kept, val_acc), ...] (histories of equal length)."""
    n = min(len(h) for h in histories)
    return [(sum(h[i]["kept"] for h in histories) / len(histories),
             sum(h[i]["val_acc"] for h in histories) / len(histories)) for i in range(n)]


def _seeds_label(report):
    n = len(report["runs"])
    return f"seed {report['runs'][0]['seed']}" if n == 1 else f"mean of {n} seeds"


def _dense_val(report):
    return sum(r["dense"]["val_acc"] for r in report["runs"]) / len(report["runs"])


def m_magnitude(model, splits, ctx, seed, args):
    from .finetune import finetune
    from .magnitude import clone_model, kept_fraction, prune_to
    from .train import accuracy

    sweep = {}
    grid = sorted(set(_floats(args.sweep, "--sweep")) | {args.sparsity})
    for scope in ("layer", "global"):
        pts = []
        for s in grid:
            m = clone_model(model)
            prune_to(m, s, scope=scope, layers=ctx.layers)
            pts.append({"sparsity": s, "kept": kept_fraction(m, ctx.layers), "val_acc": accuracy(m, splits, "val")})
        sweep[scope] = pts
    prune_to(model, args.sparsity, scope=args.scope, layers=ctx.layers)
    before = accuracy(model, splits, "val")
    finetune(model, splits, ctx.dense.with_(seed=seed), args.ft_epochs, args.lr_scale, progress=ctx.progress)
    return model, {"sweep_no_finetune": sweep, "before_finetune": {"val_acc": before}}


def p_magnitude(report, out):
    from .pipeline import plot_history, plot_layer_ratios

    r0 = report["runs"][0]
    curves = {f"{s}, no finetune": [(p["kept"], p["val_acc"]) for p in pts]
              for s, pts in r0["sweep_no_finetune"].items()}
    curves[f"{report['options']['scope']} + finetune"] = [(r0["final"]["pruned"]["kept"],
                                                           r0["final"]["pruned"]["val_acc"])]
    plot_history(curves, out / "accuracy_vs_sparsity.png", "magnitude pruning: per layer vs global",
                 r0["dense"]["val_acc"])
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v["sparsity"] for n, v in r["final"]["pruned"]["layers"].items()}
                       for r in report["runs"]}, out / "layer_ratios.png")
    return ["accuracy_vs_sparsity.png", "layer_ratios.png"]


def m_sensitivity(model, splits, ctx, seed, args):
    from .finetune import iterative_prune
    from .sensitivity import overall_of, pick_ratios, scan

    res = scan(model, splits, _floats(args.ratios, "--ratios"), layers=ctx.layers, progress=ctx.progress)
    picked = pick_ratios(res, args.threshold)
    hist = iterative_prune(model, splits, picked, ctx.dense.with_(seed=seed), steps=args.steps, ft=_ft_cfg(args),
                           scope="layer", kind=args.schedule, layers=ctx.layers, progress=ctx.progress)
    return model, {"scan": res, "picked": picked, "picked_overall_sparsity": overall_of(picked, res["sizes"]),
                   "history": hist}


def p_sensitivity(report, out):
    from .pipeline import plot_history, plot_layer_ratios
    from .sensitivity import plot_scan

    r0 = report["runs"][0]
    plot_scan(r0["scan"], out / "sensitivity.png", report["options"]["threshold"], r0["picked"])
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v for n, v in r["picked"].items()} for r in report["runs"]},
                      out / "layer_ratios.png", "weights kept per layer (picked under T)")
    plot_history({f"after each round ({_seeds_label(report)})": _mean_points([r["history"] for r in report["runs"]])},
                 out / "accuracy_vs_sparsity.png", "sensitivity-guided pruning + finetuning", _dense_val(report))
    return ["sensitivity.png", "layer_ratios.png", "accuracy_vs_sparsity.png"]


def m_iterative(model, splits, ctx, seed, args):
    from .finetune import iterative_prune, one_shot_prune
    from .magnitude import clone_model

    cfg = ctx.dense.with_(seed=seed)
    extra = {}
    if not args.no_one_shot:
        m1 = clone_model(model)
        h1 = one_shot_prune(m1, splits, args.sparsity, cfg, epochs=finetune_budget(args), lr_scale=args.lr_scale,
                            scope=args.scope, layers=ctx.layers, progress=ctx.progress)
        from .pipeline import evaluate_model

        extra["one_shot"] = {"history": h1, "final": evaluate_model(m1, splits), "epochs": finetune_budget(args)}
    hist = iterative_prune(model, splits, args.sparsity, cfg, steps=args.steps, ft=_ft_cfg(args), scope=args.scope,
                           kind=args.schedule, layers=ctx.layers, progress=ctx.progress)
    return model, {"history": hist, **extra}


def p_iterative(report, out):
    from .pipeline import plot_history, plot_layer_ratios

    lab = _seeds_label(report)
    curves = {f"iterative: after each round ({lab})": _mean_points([r["history"] for r in report["runs"]])}
    shots = [r["one_shot"]["history"] for r in report["runs"] if "one_shot" in r]
    if shots:
        pts = _mean_points(shots)
        curves[f"one-shot + finetuning ({lab}; {100 * pts[1][1]:.1f} % before finetuning)"] = [pts[2]]
    plot_history(curves, out / "accuracy_vs_sparsity.png",
                 f"iterative ({report['options']['steps']} rounds) vs one-shot, equal finetuning budget",
                 _dense_val(report))
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v["sparsity"] for n, v in r["final"]["pruned"]["layers"].items()}
                       for r in report["runs"]}, out / "layer_ratios.png")
    return ["accuracy_vs_sparsity.png", "layer_ratios.png"]


def m_regularize(model, splits, ctx, seed, args):
    from .finetune import finetune
    from .magnitude import clone_model, kept_fraction, prune_to
    from .regularize import weight_penalty, weight_stats
    from .train import accuracy, train

    grid = sorted(set(_floats(args.sweep, "--sweep")) | {args.sparsity})

    def sweep(m):
        out = []
        for s in grid:
            c = clone_model(m)
            prune_to(c, s, scope=args.scope, layers=ctx.layers)
            out.append({"sparsity": s, "kept": kept_fraction(c, ctx.layers), "val_acc": accuracy(c, splits, "val")})
        return out

    before = weight_stats(model, ctx.layers)
    sweep_plain = sweep(model)
    # Same number of extra epochs without the penalty: the control for the comparison.
    control = clone_model(model)
    train(control, splits, ctx.dense.with_(epochs=args.reg_epochs, seed=seed + 2000), progress=ctx.progress,
          desc="control (no penalty)")
    train(model, splits, ctx.dense.with_(epochs=args.reg_epochs, seed=seed + 2000),
          extra_loss=weight_penalty(args.penalty, args.lam, ctx.layers), progress=ctx.progress,
          desc=f"{args.penalty} training")
    after = weight_stats(model, ctx.layers)
    res = {"weights_before": before, "weights_after": after, "weights_control": weight_stats(control, ctx.layers),
           "regularised": {"val_acc": accuracy(model, splits, "val")},
           "sweep_no_finetune": {"dense": sweep_plain, "control": sweep(control), args.penalty: sweep(model)},
           "histograms": {k: _hist([m]) for k, m in (("control", control), (args.penalty, model))}}
    prune_to(model, args.sparsity, scope=args.scope, layers=ctx.layers)
    res["before_finetune"] = {"val_acc": accuracy(model, splits, "val")}
    finetune(model, splits, ctx.dense.with_(seed=seed), args.ft_epochs, args.lr_scale, progress=ctx.progress)
    return model, res


def _hist(models, bins=60):
    import numpy as np
    import torch

    from .magnitude import target_layers, weight_of

    w = torch.cat([weight_of(m).flatten() for model in models for _, m in target_layers(model, "fc")]).numpy()
    lim = float(np.abs(w).max()) or 1.0
    counts, edges = np.histogram(w, bins=bins, range=(-lim, lim))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def p_regularize(report, out):
    from .pipeline import plot_history, plot_layer_ratios, pyplot, save_figure

    r0 = report["runs"][0]
    pen = report["options"]["penalty"]
    plot_history({f"{k}, no finetune": [(p["kept"], p["val_acc"]) for p in v]
                  for k, v in r0["sweep_no_finetune"].items()}
                 | {f"{pen} + prune + finetune": [(r0["final"]["pruned"]["kept"], r0["final"]["pruned"]["val_acc"])]},
                 out / "accuracy_vs_sparsity.png", f"{pen} regularisation before magnitude pruning",
                 r0["dense"]["val_acc"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, h in r0["histograms"].items():
        ax.stairs(h["counts"], h["edges"], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("weight value (FC layers)")
    ax.set_ylabel("count")
    ax.set_title(f"weights after {report['options']['reg_epochs']} epochs with / without {pen}")
    ax.legend(fontsize=8)
    save_figure(fig, out / "weights_hist.png")
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v["sparsity"] for n, v in r["final"]["pruned"]["layers"].items()}
                       for r in report["runs"]}, out / "layer_ratios.png")
    return ["accuracy_vs_sparsity.png", "weights_hist.png", "layer_ratios.png"]


def m_slimming(model, splits, ctx, seed, args):
    from .finetune import finetune
    from .magnitude import target_layers
    from .models import MLP
    from .regularize import SlimMLP, compact, scale_penalty, scaling_factors, slim, slim_to_budget
    from .train import accuracy, train

    original = sum(m.weight.numel() for _, m in target_layers(model, ctx.layers))
    net = SlimMLP(model) if isinstance(model, MLP) else model
    train(net, splits, ctx.dense.with_(epochs=args.reg_epochs, seed=seed + 3000), extra_loss=scale_penalty(args.lam),
          progress=ctx.progress, desc="slimming (L1 on scales)")
    factors = {n: v.tolist() for n, v in scaling_factors(net).items()}
    units_before = {n: len(v) for n, v in factors.items()}
    acc_reg = accuracy(net, splits, "val")
    if isinstance(model, MLP) and args.ratio is None:
        kept = slim_to_budget(net, args.kept)
    else:
        kept = slim(net, 0.5 if args.ratio is None else args.ratio)
    acc_slim = accuracy(net, splits, "val")
    small = compact(net)
    finetune(small, splits, ctx.dense.with_(seed=seed), args.ft_epochs, args.lr_scale, progress=ctx.progress)
    arch = list(small.sizes) if isinstance(small, MLP) else [small.conv1.out_channels, small.conv2.out_channels]
    return small, {"factors": factors, "units_before": units_before, "units_kept": kept, "compact_arch": arch,
                   "params_before": sum(p.numel() for p in model.parameters()),
                   "params_after": sum(p.numel() for p in small.parameters()),
                   "after_l1": {"val_acc": acc_reg}, "after_slimming": {"val_acc": acc_slim},
                   "_reference_weights": original}


def p_slimming(report, out):
    from .pipeline import plot_layer_ratios, pyplot, save_figure

    plt = pyplot()
    r0 = report["runs"][0]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for n, v in r0["factors"].items():
        ax.plot(sorted(abs(x) for x in v), marker=".", ms=3, lw=1,
                label=f"{n}: {r0['units_kept'][n]} of {len(v)} kept")
    ax.set_xlabel("unit (sorted by |scaling factor|)")
    ax.set_ylabel("|scaling factor|")
    ax.set_title("network slimming: scaling factors after L1 training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "scaling_factors.png")
    plot_layer_ratios({f"seed {r['seed']}": {n: r["units_kept"][n] / r["units_before"][n] for n in r["units_kept"]}
                       for r in report["runs"]}, out / "layer_ratios.png", "units (neurons / channels) kept")
    return ["scaling_factors.png", "layer_ratios.png"]


def m_share(model, splits, ctx, seed, args):
    from .finetune import finetune, iterative_prune
    from .magnitude import apply_masks_from_zeros, kept_fraction, target_layers
    from .pipeline import evaluate_model, load_checkpoint
    from .share import distinct_nonzero, share_weights

    res = {}
    if args.from_checkpoint:
        model, obj = load_checkpoint(args.from_checkpoint)
        apply_masks_from_zeros(model, ctx.layers)
        res["source"] = {"checkpoint": str(args.from_checkpoint), "meta": obj.get("meta", {})}
    else:
        res["history"] = iterative_prune(model, splits, args.sparsity, ctx.dense.with_(seed=seed), steps=args.steps,
                                         ft=_ft_cfg(args), scope=args.scope, kind=args.schedule, layers=ctx.layers,
                                         progress=ctx.progress)
    zeros = {n: (m.weight.detach() == 0).clone() for n, m in target_layers(model, ctx.layers)}
    res["pruned"] = evaluate_model(model, splits) | {"kept": kept_fraction(model, ctx.layers)}
    share_weights(model, ctx.layers, seed=seed)
    res["kmeans"] = evaluate_model(model, splits)
    finetune(model, splits, ctx.dense.with_(seed=seed), args.centroid_epochs, args.lr_scale, progress=ctx.progress,
             desc="centroid finetuning", seed_offset=500)
    res["centroid_finetuned"] = evaluate_model(model, splits)
    res["sharing_kept"] = all(distinct_nonzero(m) <= 15 and bool(((m.weight.detach() == 0) == zeros[n]).all())
                              for n, m in target_layers(model, ctx.layers))
    return model, res


def p_share(report, out):
    from .pipeline import plot_bars, plot_history

    runs = report["runs"]
    r0 = runs[0]

    def mean(get):
        return sum(get(r) for r in runs) / len(runs)

    stages = {"pruned (float)": mean(lambda r: r["pruned"]["test_acc"]),
              "k-means 4-bit": mean(lambda r: r["kmeans"]["test_acc"]),
              "centroid finetuned": mean(lambda r: r["centroid_finetuned"]["test_acc"])}
    if "image" in r0["final"]:
        stages["image weights (16-bit fixed)"] = mean(lambda r: r["final"]["image"]["quantised"]["test_acc"])
        stages["golden model (no bias)" if r0["final"]["image"]["biases_dropped"] else "golden model"] = \
            mean(lambda r: r["final"]["image"]["golden_test"]["accuracy"])
    plot_bars(stages, out / "accuracy_stages.png", f"pruning + weight sharing ({_seeds_label(report)})",
              "test accuracy (%)", mean(lambda r: r["dense"]["test_acc"]))
    files = ["accuracy_stages.png"]
    if "history" in r0:
        plot_history({f"after each round ({_seeds_label(report)})": _mean_points([r["history"] for r in runs])},
                     out / "accuracy_vs_sparsity.png", "iterative pruning before weight sharing", _dense_val(report))
        files.append("accuracy_vs_sparsity.png")
    return files


# -- compare ----------------------------------------------------------------------------------
def _compare_methods(args, ctx):
    """({name: fn(model, splits, seed) -> pruned model}, {name: how the sparsity is matched}):
    the built-in methods at args.sparsity with equal finetuning, and the plug-ins'."""
    from .finetune import FinetuneConfig, finetune, iterative_prune, one_shot_prune
    from .magnitude import prune_to
    from .regularize import SlimMLP, compact, scale_penalty, slim_to_budget, weight_penalty
    from .sensitivity import DEFAULT_RATIOS, allocate, scan
    from .train import train

    s, budget = args.sparsity, finetune_budget(args)
    ft = FinetuneConfig(args.ft_epochs, args.lr_scale, args.final_epochs)

    def cfg(seed):
        return ctx.dense.with_(seed=seed)

    def one_shot(scope):
        def f(m, sp, seed):
            one_shot_prune(m, sp, s, cfg(seed), epochs=budget, lr_scale=args.lr_scale, scope=scope,
                           layers=ctx.layers, progress=ctx.progress)
            return m
        return f

    def iterative(scope):
        def f(m, sp, seed):
            iterative_prune(m, sp, s, cfg(seed), steps=args.steps, ft=ft, scope=scope, layers=ctx.layers,
                            progress=ctx.progress)
            return m
        return f

    def sensitivity(m, sp, seed):
        res = scan(m, sp, list(DEFAULT_RATIOS) + [0.95, 0.98, 0.99], layers=ctx.layers, progress=ctx.progress)
        ratios, _ = allocate(res, s)
        iterative_prune(m, sp, ratios, cfg(seed), steps=args.steps, ft=ft, scope="layer", layers=ctx.layers,
                        progress=ctx.progress)
        return m

    def regularised(kind, lam):
        def f(m, sp, seed):
            train(m, sp, cfg(seed + 2000).with_(epochs=args.reg_epochs),
                  extra_loss=weight_penalty(kind, lam, ctx.layers), progress=ctx.progress, desc=kind)
            prune_to(m, s, scope="global", layers=ctx.layers)
            finetune(m, sp, cfg(seed), budget, args.lr_scale, progress=ctx.progress)
            return m
        return f

    def slimming(m, sp, seed):
        net = SlimMLP(m)
        train(net, sp, cfg(seed + 3000).with_(epochs=args.reg_epochs), extra_loss=scale_penalty(args.slim_lam),
              progress=ctx.progress, desc="slimming")
        slim_to_budget(net, 1 - s)
        small = compact(net)
        finetune(small, sp, cfg(seed), budget, args.lr_scale, progress=ctx.progress)
        return small

    methods = {
        "magnitude one-shot (per layer)": one_shot("layer"),
        "magnitude one-shot (global)": one_shot("global"),
        "iterative (per layer)": iterative("layer"),
        "iterative (global)": iterative("global"),
        "sensitivity-guided iterative": sensitivity,
        "L1 + one-shot global": regularised("l1", args.l1),
        "L2 + one-shot global": regularised("l2", args.l2),
    }
    if ctx.model == "mlp":
        methods["network slimming (structured)"] = slimming
    notes = {k: f"pruned to exactly {100 * (1 - s):g} % kept; {budget} finetuning epochs at lr x {args.lr_scale:g}"
             for k in methods}
    if "network slimming (structured)" in methods:
        notes["network slimming (structured)"] = (f"whole neurons removed until at most {100 * (1 - s):g} % of the FC "
                                                  f"weights remain; {budget} finetuning epochs")
    for name, mod in _plugin_modules():
        entry = getattr(mod, "compare_entry", None)
        if entry is not None:
            label = getattr(mod, "COMPARE_NAME", name)
            methods[label] = (lambda e: lambda m, sp, seed: e(m, sp, s, ctx, seed, args))(entry)
            note = getattr(mod, "compare_note", None)
            notes[label] = note(s, args) if note is not None else ""
    return methods, notes


def cmd_compare(args, common) -> int:
    from .magnitude import clone_model, target_layers
    from .pipeline import dense_for, evaluate_model, finalize, plot_bars, write_json

    torch_threads()
    ctx = common.context(args)
    out = common.out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    methods, notes = _compare_methods(args, ctx)
    if args.methods:
        want = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [w for w in want if not any(w.lower() in k.lower() for k in methods)]
        if unknown:
            raise common.UserError(f"--methods: unknown {unknown}; available: {list(methods)}")
        methods = {k: v for k, v in methods.items() if any(w.lower() in k.lower() for w in want)}
    rows = {k: [] for k in methods}
    dense_rows = []
    try:
        for seed in common.seeds(args, (0, 1, 2)):
            dense, splits = dense_for(ctx, seed)
            original = sum(m.weight.numel() for _, m in target_layers(dense, ctx.layers))
            dense_rows.append({"seed": seed} | evaluate_model(dense, splits))
            for name, fn in methods.items():
                t1 = time.perf_counter()
                model = fn(clone_model(dense), splits, seed)
                fin = finalize(model, splits, ctx, out, "compare", seed, write=False, reference_weights=original)
                img = fin.get("image", {})
                rows[name].append({"seed": seed, "val_acc": fin["pruned"]["val_acc"],
                                   "test_acc": fin["pruned"]["test_acc"], "kept": fin["pruned"]["kept"],
                                   "golden_test_acc": img.get("golden_test", {}).get("accuracy"),
                                   "cycles_per_input": img.get("golden_test", {}).get("cycles_per_input"),
                                   "biases_dropped": img.get("biases_dropped"),
                                   "ratio_total": fin.get("compression", {}).get("ratio_total"),
                                   "seconds": round(time.perf_counter() - t1, 1)})
    except ValueError as e:
        raise common.UserError(str(e)) from None

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    dense_test = mean(r["test_acc"] for r in dense_rows)
    table = []
    for name, rs in rows.items():
        t = {"method": name, "matching": notes[name]}
        t |= {k: mean(r[k] for r in rs) for k in ("kept", "val_acc", "test_acc", "golden_test_acc",
                                                  "cycles_per_input", "ratio_total")}
        table.append(t | {"test_acc_drop": dense_test - t["test_acc"], "runs": rs})
        if any(r["biases_dropped"] for r in rs):
            from .pipeline import bias_warning

            warn_bias(f"eie prune compare: {name} (mean of {len(rs)} seed(s))",
                      {"image": {"bias_warning": bias_warning(t["test_acc"], t["golden_test_acc"])}})
    plugin_opts = tuple(k for k in vars(args) if k.startswith(tuple(f"{n}_" for n in PLUGIN_METHODS)))
    report = {"method": "compare", "sparsity": args.sparsity, "context": ctx.describe(),
              "options": common.options(args, "sparsity", "steps", "ft_epochs", "final_epochs", "lr_scale",
                                        "reg_epochs", "l1", "l2", "slim_lam", *plugin_opts),
              "finetune_budget_epochs": finetune_budget(args), "dense": dense_rows,
              "dense_test_acc": dense_test, "dense_val_acc": mean(r["val_acc"] for r in dense_rows),
              "table": table, "seconds": round(time.perf_counter() - t0, 1), "output_dir": str(out),
              "files": ["compare.json", "compare.png"]}
    write_json(out / "compare.json", report)
    plot_bars({f"{t['method']}\n({100 * t['kept']:.1f} % kept)": t["test_acc"] for t in table}, out / "compare.png",
              f"methods at {100 * (1 - args.sparsity):.0f} % of the FC weights kept "
              f"(mean of {len(dense_rows)} seed(s))", "test accuracy (%)", dense_test)
    if args.json:
        common.emit_json(report)
    else:
        _print_table(f"eie prune compare: {100 * (1 - args.sparsity):.1f} % of FC weights kept, "
                     f"{ctx.model} on {ctx.dataset}, seeds {[r['seed'] for r in dense_rows]}",
                     ["method", "kept %", "val %", "test %", "drop", "golden %", f"cycles ({ctx.n_pe} PEs)",
                      f"ratio ({ctx.n_pe} PEs)"],
                     [["dense", "100.00", _pct(report["dense_val_acc"]), _pct(dense_test), "-", "-", "-", "1.0x"]] +
                     [[t["method"], _pct(t["kept"]), _pct(t["val_acc"]), _pct(t["test_acc"]), _pct(t["test_acc_drop"]),
                       _pct(t["golden_test_acc"]),
                       "-" if t["cycles_per_input"] is None else f"{t['cycles_per_input']:.0f}",
                       "-" if t["ratio_total"] is None else f"{t['ratio_total']:.1f}x"] for t in table])
        for t in table:
            if t["matching"]:
                print(f"  {t['method']}: {t['matching']}")
        print(f"wrote {out}/compare.json, compare.png ({report['seconds']} s)")
    return 0


# -- registration -----------------------------------------------------------------------------
def add_subcommands(sub, add_output, UserError, emit_json):
    """Register `eie prune` and its methods on the `eie` parser."""
    common = CommonOptions(UserError, emit_json, add_output)
    p = sub.add_parser("prune", help="prune / weight-share a network and export it to an EIE image")
    prune_sub = p.add_subparsers(dest="prune_method", required=True, metavar="METHOD")

    opts = common.options

    q = prune_sub.add_parser("magnitude", parents=[common], help="one-shot fine-grained magnitude pruning + finetune")
    q.add_argument("--sparsity", type=_fraction, default=0.92, help="fraction of the weights to remove (default 0.92)")
    q.add_argument("--scope", choices=["layer", "global"], default="global",
                   help="the same ratio in every layer, or one |w| threshold across layers")
    q.add_argument("--sweep", default="0.5,0.7,0.8,0.9,0.95", help="sparsities of the no-finetune sweep (plot)")
    _add_ft(q, one_shot_default=ONE_SHOT_BUDGET)
    q.set_defaults(func=lambda a: common.run(a, "magnitude", m_magnitude,
                                             opts(a, "sparsity", "scope", "sweep", "ft_epochs", "lr_scale"),
                                             p_magnitude))

    q = prune_sub.add_parser("sensitivity", parents=[common],
                             help="per-layer sensitivity scan, ratios under a threshold, iterative finetune")
    q.add_argument("--ratios", default=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
                   help="pruning ratios of the scan (default 0,0.1,...,0.9)")
    q.add_argument("--threshold", type=float, default=0.02,
                   help="degradation threshold T: largest accuracy drop allowed per layer (default 0.02)")
    _add_iterative(q)
    _add_ft(q)
    q.set_defaults(func=lambda a: common.run(a, "sensitivity", m_sensitivity,
                                             opts(a, "ratios", "threshold", "steps", "schedule", "ft_epochs",
                                                  "final_epochs", "lr_scale"), p_sensitivity))

    q = prune_sub.add_parser("iterative", parents=[common],
                             help="iterative prune -> finetune to the target, vs one-shot at equal budget")
    q.add_argument("--sparsity", type=_fraction, default=0.92, help="target sparsity (default 0.92: 8 %% kept)")
    q.add_argument("--scope", choices=["layer", "global"], default="global")
    q.add_argument("--no-one-shot", action="store_true", help="skip the one-shot comparison")
    _add_iterative(q)
    _add_ft(q)
    q.set_defaults(func=lambda a: common.run(a, "iterative", m_iterative,
                                             opts(a, "sparsity", "scope", "steps", "schedule", "ft_epochs",
                                                  "final_epochs", "lr_scale", "no_one_shot"), p_iterative,
                                             default_seeds=(0, 1, 2)))

    q = prune_sub.add_parser("regularize", parents=[common],
                             help="L1 / L2 weight regularisation, then magnitude pruning + finetune")
    q.add_argument("--penalty", choices=["l1", "l2"], default="l1")
    q.add_argument("--lam", type=float, default=None, help="strength (default 1e-4 for l1, 1e-3 for l2)")
    q.add_argument("--reg-epochs", type=_positive_int, default=40,
                   help="regularised training epochs, starting from the dense model")
    q.add_argument("--sparsity", type=_fraction, default=0.92)
    q.add_argument("--scope", choices=["layer", "global"], default="global")
    q.add_argument("--sweep", default="0.5,0.7,0.8,0.9,0.95", help="sparsities of the no-finetune sweep (plot)")
    _add_ft(q, one_shot_default=ONE_SHOT_BUDGET)

    def run_reg(a):
        if a.lam is None:
            a.lam = 1e-4 if a.penalty == "l1" else 1e-3
        return common.run(a, "regularize", m_regularize,
                          opts(a, "penalty", "lam", "reg_epochs", "sparsity", "scope", "ft_epochs", "lr_scale"),
                          p_regularize)

    q.set_defaults(func=run_reg)

    q = prune_sub.add_parser("slimming", parents=[common],
                             help="network slimming: L1 on per-neuron / BatchNorm scales, remove the smallest")
    q.add_argument("--lam", type=float, default=1e-2, help="L1 strength on the scaling factors (default 1e-2)")
    q.add_argument("--reg-epochs", type=_positive_int, default=60, help="training epochs with the L1 term")
    q.add_argument("--kept", type=_fraction, default=0.08,
                   help="MLP: keep neurons until at most this fraction of the FC weights remains (default 0.08)")
    q.add_argument("--ratio", type=_fraction, default=None,
                   help="remove this fraction of all neurons / channels instead (conv default 0.5)")
    _add_ft(q, one_shot_default=ONE_SHOT_BUDGET)
    q.set_defaults(func=lambda a: common.run(a, "slimming", m_slimming,
                                             opts(a, "lam", "reg_epochs", "kept", "ratio", "ft_epochs", "lr_scale"),
                                             p_slimming))

    q = prune_sub.add_parser("share", parents=[common],
                             help="weight sharing (k-means, 16 entries, trained centroids) + EIE export")
    q.add_argument("--from", dest="from_checkpoint", type=Path,
                   help="start from this pruned checkpoint (.pt of another method) instead of iterative pruning")
    q.add_argument("--sparsity", type=_fraction, default=0.92, help="iterative target without --from")
    q.add_argument("--scope", choices=["layer", "global"], default="global")
    q.add_argument("--centroid-epochs", type=_positive_int, default=30, help="centroid finetuning epochs")
    _add_iterative(q)
    _add_ft(q)
    def run_share(a):
        seeds = (0, 1, 2)
        if a.from_checkpoint and not a.seeds:  # the checkpoint's own seed (its dense baseline)
            from .pipeline import load_checkpoint

            try:
                seeds = (int(load_checkpoint(a.from_checkpoint)[1].get("meta", {}).get("seed", 0)),)
            except ValueError as e:
                raise common.UserError(str(e)) from None
        return common.run(a, "share", m_share,
                          opts(a, "from_checkpoint", "sparsity", "scope", "centroid_epochs", "steps", "schedule",
                               "ft_epochs", "final_epochs", "lr_scale"), p_share, default_seeds=seeds)

    q.set_defaults(func=run_share)

    q = prune_sub.add_parser("compare", parents=[common],
                             help="all methods at matched sparsity (default seeds 0,1,2): table, JSON, PNG")
    q.add_argument("--sparsity", type=_fraction, default=0.92)
    q.add_argument("--methods", help="comma-separated substrings of method names to run (default: all)")
    q.add_argument("--reg-epochs", type=_positive_int, default=40, help="regularised training epochs")
    q.add_argument("--l1", type=float, default=1e-4, help="L1 strength")
    q.add_argument("--l2", type=float, default=1e-3, help="L2 strength")
    q.add_argument("--slim-lam", type=float, default=1e-2, help="slimming L1 strength")
    _add_iterative(q)
    _add_ft(q)
    q.set_defaults(func=lambda a: cmd_compare(a, common))

    # --- methods 5-7: plug-in parsers and their options in `compare` (see PLUGIN_METHODS) ---
    for _, mod in _plugin_modules():
        mod.add_parser(prune_sub, common)
        if hasattr(mod, "add_compare_options"):
            mod.add_compare_options(q.add_argument_group(f"{mod.__name__.rsplit('.', 1)[-1]} in the comparison"))
    return p
