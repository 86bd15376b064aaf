"""Method 1: fine-grained magnitude pruning on `torch.nn.utils.prune`, per layer or global
(the masks and model copies are masks.py's).

Pitfalls this module handles (each one has a test in tests/test_pruning_magnitude.py):

- `prune.*(amount=...)` on an already pruned tensor prunes that amount *of the weights
  still unpruned* (a PruningContainer combines the masks). `prune_to` therefore asks
  for a target sparsity and converts it to the integer number of extra weights.
- `global_unstructured` ranks raw |w| across layers; already pruned weights are
  excluded by their mask, so repeated global steps reach the requested overall sparsity.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn
from torch.nn.utils import prune

from .data import Splits
from .masks import clone_model, is_pruned, kept_fraction, sparsity_report
from .models import target_layers
from .plots import plot_history, plot_layer_ratios
from .train import TrainConfig, accuracy, finetune, finetune_budget

__all__ = ["SCOPES", "prune_to", "one_shot_prune", "step_record", "no_finetune_sweep", "run", "plots", "compare"]

SCOPES = ("layer", "global")


def _check_fraction(x, what):
    x = float(x)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{what}: a sparsity must be in [0, 1), not {x!r}")
    return x


def _n_masked(module) -> int:
    """Weights already removed by a mask (exact zeros not yet masked are pruned first,
    being the smallest, so counting the mask keeps `amount` exact)."""
    return int((module.weight_mask == 0).sum()) if is_pruned(module) else 0


def prune_to(model: nn.Module, sparsity: float | Mapping[str, float], *, scope: str = "layer",
             layers: str = "fc") -> dict:
    """Magnitude-prune so that the effective weights reach `sparsity` (fraction of zeros).

    `sparsity` is one number (every layer, or the whole set with scope="global") or a
    {layer name: sparsity} mapping (scope="layer" only; layers not named are untouched).
    Works on already pruned models: only the missing number of weights is pruned, as an
    integer `amount`, so the result is exact. Returns `sparsity_report`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    named = target_layers(model, layers)
    if scope == "global":
        if isinstance(sparsity, Mapping):
            raise ValueError("global pruning takes one overall sparsity, not per-layer ratios")
        s = _check_fraction(sparsity, "global sparsity")
        total = sum(m.weight.numel() for _, m in named)
        extra = round(s * total) - sum(_n_masked(m) for _, m in named)
        if extra > 0:
            prune.global_unstructured([(m, "weight") for _, m in named], pruning_method=prune.L1Unstructured,
                                      amount=int(extra))
        return sparsity_report(model, layers)
    per = dict(sparsity) if isinstance(sparsity, Mapping) else {n: sparsity for n, _ in named}
    names = {n for n, _ in named}
    unknown = sorted(set(per) - names)
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}: expected some of {sorted(names)}")
    for n, m in named:
        if n not in per:
            continue
        s = _check_fraction(per[n], f"sparsity of {n}")
        extra = round(s * m.weight.numel()) - _n_masked(m)
        if extra > 0:
            prune.l1_unstructured(m, "weight", amount=int(extra))
    return sparsity_report(model, layers)


def step_record(model, splits, step, sparsity, layers) -> dict:
    """Validation accuracy, kept fraction and per-layer sparsity after a pruning step."""
    return {"step": step, "target": sparsity, "kept": kept_fraction(model, layers),
            "val_acc": accuracy(model, splits, "val"),
            "layers": {n: r["sparsity"] for n, r in sparsity_report(model, layers).items()}}


def one_shot_prune(model: nn.Module, splits: Splits, target, cfg: TrainConfig, *, epochs: int,
                   lr_scale: float = 0.1, scope: str = "global", layers: str = "fc",
                   progress: bool = False) -> list[dict]:
    """Prune to `target` at once, then finetune `epochs` (give it the iterative total)."""
    history = [step_record(model, splits, 0, 0.0, layers)]
    prune_to(model, target, scope=scope, layers=layers)
    history.append(step_record(model, splits, 1, target, layers) | {"finetuned": False})
    finetune(model, splits, cfg, epochs, lr_scale, progress=progress, desc="finetune (one-shot)", seed_offset=1)
    history.append(step_record(model, splits, 2, target, layers) | {"finetuned": True})
    return history


# -- `eie prune magnitude` (pruning/registry.py) ------------------------------------------------
def no_finetune_sweep(model: nn.Module, splits, sparsities, scope: str, layers: str) -> list[dict]:
    """Validation accuracy of copies of `model` pruned to each sparsity, without finetuning."""
    out = []
    for s in sparsities:
        m = clone_model(model)
        prune_to(m, s, scope=scope, layers=layers)
        out.append({"sparsity": s, "kept": kept_fraction(m, layers), "val_acc": accuracy(m, splits, "val")})
    return out


def run(model, splits, ctx, seed, opts):
    """One-shot pruning to `opts.sparsity` and finetuning, plus the no-finetune sweep of both scopes."""
    grid = sorted(set(opts.sweep) | {opts.sparsity})
    sweep = {scope: no_finetune_sweep(model, splits, grid, scope, ctx.layers) for scope in SCOPES}
    prune_to(model, opts.sparsity, scope=opts.scope, layers=ctx.layers)
    before = accuracy(model, splits, "val")
    finetune(model, splits, ctx.dense.with_(seed=seed), opts.ft_epochs, opts.lr_scale, progress=ctx.progress)
    return model, {"sweep_no_finetune": sweep, "before_finetune": {"val_acc": before}}


def plots(report, out):
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


def compare(model, splits, ctx, seed, settings, scope):
    """One-shot pruning to the compared sparsity, finetuned for the iterative budget."""
    one_shot_prune(model, splits, settings.sparsity, ctx.dense.with_(seed=seed),
                   epochs=finetune_budget(settings),
                   lr_scale=settings.lr_scale, scope=scope, layers=ctx.layers, progress=ctx.progress)
    return model
