"""Method 4: regularisation for pruning: L1 / L2 on the weights (network slimming, the
structured variant, is slimming.py).

`weight_penalty("l1"|"l2", lam)` is an `extra_loss` for `train.train`: lam * sum|w| or
lam * sum w^2 over the FC (or all) weights, added to the cross-entropy of each batch.
L1 drives many weights towards zero, so magnitude pruning afterwards removes less
information.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .magnitude import no_finetune_sweep, prune_to
from .masks import clone_model, weight_of
from .models import target_layers
from .plots import plot_history, plot_layer_ratios, pyplot, save_figure
from .train import accuracy, finetune, finetune_budget, train

__all__ = ["weight_penalty", "weight_stats", "PENALTIES", "DEFAULT_LAM", "resolve_options", "run", "plots",
           "compare"]

PENALTIES = ("l1", "l2")
DEFAULT_LAM = {"l1": 1e-4, "l2": 1e-3}


def weight_penalty(kind: str, lam: float, layers: str = "fc") -> Callable[[nn.Module], torch.Tensor]:
    """extra_loss(model) = lam * sum |w| (l1) or lam * sum w^2 (l2) over the target layers."""
    if kind not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, not {kind!r}")
    if lam < 0:
        raise ValueError(f"regularisation strength must be >= 0, not {lam!r}")

    def loss(model: nn.Module) -> torch.Tensor:
        # `m.weight` is the masked weight of the current forward pass for pruned layers.
        ws = [m.weight for _, m in target_layers(model, layers)]
        if kind == "l1":
            return lam * sum(w.abs().sum() for w in ws)
        return lam * sum((w * w).sum() for w in ws)

    return loss


def weight_stats(model: nn.Module, layers: str = "fc", small: float = 1e-3) -> dict:
    """Mean |w| and the fraction of weights with |w| < `small` (over the target layers)."""
    ws = torch.cat([weight_of(m).flatten() for _, m in target_layers(model, layers)])
    return {"mean_abs": float(ws.abs().mean()), "l2": float(ws.norm()),
            "frac_below": float((ws.abs() < small).float().mean()), "small": small}


def _histogram(model, bins=60) -> dict:
    w = torch.cat([weight_of(m).flatten() for _, m in target_layers(model, "fc")]).numpy()
    lim = float(np.abs(w).max()) or 1.0
    counts, edges = np.histogram(w, bins=bins, range=(-lim, lim))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


# -- `eie prune regularize` (pruning/registry.py) -----------------------------------------------
def resolve_options(opts):
    """The strength's default depends on the penalty."""
    if opts.lam is None:
        opts.lam = DEFAULT_LAM[opts.penalty]
    return opts


def run(model, splits, ctx, seed, opts):
    """Regularised training (against a control with the same epochs and no penalty), then
    one-shot magnitude pruning and finetuning; sweeps without finetuning for the plot."""
    grid = sorted(set(opts.sweep) | {opts.sparsity})

    def sweep(m):
        return no_finetune_sweep(m, splits, grid, opts.scope, ctx.layers)

    before = weight_stats(model, ctx.layers)
    sweep_plain = sweep(model)
    control = clone_model(model)   # the same number of extra epochs without the penalty
    train(control, splits, ctx.dense.with_(epochs=opts.reg_epochs, seed=seed + 2000), progress=ctx.progress,
          desc="control (no penalty)")
    train(model, splits, ctx.dense.with_(epochs=opts.reg_epochs, seed=seed + 2000),
          extra_loss=weight_penalty(opts.penalty, opts.lam, ctx.layers), progress=ctx.progress,
          desc=f"{opts.penalty} training")
    res = {"weights_before": before, "weights_after": weight_stats(model, ctx.layers),
           "weights_control": weight_stats(control, ctx.layers),
           "regularised": {"val_acc": accuracy(model, splits, "val")},
           "sweep_no_finetune": {"dense": sweep_plain, "control": sweep(control), opts.penalty: sweep(model)},
           "histograms": {"control": _histogram(control), opts.penalty: _histogram(model)}}
    prune_to(model, opts.sparsity, scope=opts.scope, layers=ctx.layers)
    res["before_finetune"] = {"val_acc": accuracy(model, splits, "val")}
    finetune(model, splits, ctx.dense.with_(seed=seed), opts.ft_epochs, opts.lr_scale, progress=ctx.progress)
    return model, res


def plots(report, out):
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


def compare(model, splits, ctx, seed, settings, kind):
    """`kind` training (strength settings.l1 / settings.l2), global one-shot pruning, finetuning."""
    lam = getattr(settings, kind)
    train(model, splits, ctx.dense.with_(epochs=settings.reg_epochs, seed=seed + 2000),
          extra_loss=weight_penalty(kind, lam, ctx.layers), progress=ctx.progress, desc=kind)
    prune_to(model, settings.sparsity, scope="global", layers=ctx.layers)
    finetune(model, splits, ctx.dense.with_(seed=seed),
             finetune_budget(settings), settings.lr_scale,
             progress=ctx.progress)
    return model
