"""Method 3: iterative pruning vs one-shot, with finetuning after each step.

Finetuning (`train.finetune`) runs the ordinary training loop at a fraction (1/10 ...
1/100) of the original learning rate. The masks are `torch.nn.utils.prune`
reparametrisations, so the pruned weights stay exactly zero through every optimiser
step (the gradient of `weight_orig` is masked and the forward pass multiplies by the
mask again).

Iterative pruning reaches the target in `steps` prune -> finetune rounds. The default
schedule is geometric in the kept fraction (each round keeps the same share of what is
left: kept_t = kept_final ** (t / steps)); `linear` spaces the sparsities evenly.
One-shot prunes to the target at once and finetunes for the same total number of
epochs, so the two are compared at equal training budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from tqdm import tqdm

from .data import Splits
from .magnitude import one_shot_prune, prune_to, step_record
from .masks import clone_model
from .pipeline import evaluate_model
from .plots import dense_val, mean_points, plot_history, plot_layer_ratios, seeds_label
from .train import TrainConfig, finetune, finetune_budget

__all__ = ["FinetuneConfig", "schedule", "SCHEDULES", "iterative_prune", "ft_config", "run",
           "plots", "compare", "matched_note"]

SCHEDULES = ("geometric", "linear")
ITERATIVE_SCOPES = ("layer", "global", "sensitivity")


@dataclass(frozen=True)
class FinetuneConfig:
    """Finetuning after each pruning step: `epochs` at `lr_scale` x the dense learning rate."""

    epochs: int = 15
    lr_scale: float = 0.1
    final_epochs: int = 0     # extra finetuning after the last iterative step

    def __post_init__(self):
        if self.epochs < 0 or self.final_epochs < 0:
            raise ValueError("finetune epochs must be >= 0")
        if not 0 < self.lr_scale <= 1:
            raise ValueError(f"lr_scale must be in (0, 1], not {self.lr_scale!r}")


def schedule(target: float | Mapping[str, float], steps: int, kind: str = "geometric") -> list:
    """Sparsity after each of `steps` rounds, ending exactly at `target` (a number or a
    {layer: sparsity} mapping, scheduled per layer)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, not {steps!r}")
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {kind!r}")

    def one(s):
        s = float(s)
        if not 0 <= s < 1:
            raise ValueError(f"target sparsity must be in [0, 1), not {s!r}")
        if kind == "linear":
            return [s * t / steps for t in range(1, steps + 1)]
        return [1 - (1 - s) ** (t / steps) for t in range(1, steps + 1)]

    if isinstance(target, Mapping):
        per = {k: one(v) for k, v in target.items()}
        return [{k: v[t] for k, v in per.items()} for t in range(steps)]
    return one(target)


def iterative_prune(model: nn.Module, splits: Splits, target, cfg: TrainConfig, *, steps: int = 5,
                    ft: FinetuneConfig = FinetuneConfig(), scope: str = "global", kind: str = "geometric",
                    layers: str = "fc", progress: bool = False) -> list[dict]:
    """Prune -> finetune `steps` times up to `target`; returns one record per step
    (after its finetuning): target, kept fraction, validation accuracy, per-layer sparsity.

    scope "sensitivity": per-layer ratios that reach the overall `target` from a
    no-finetune sensitivity scan of the model (Han et al. 2015's per-layer thresholds,
    sensitivity.allocate), then per-layer schedules; the first record holds them."""
    ratios = None
    if scope == "sensitivity":
        target, ratios = sensitivity_ratios(model, splits, target, layers, progress)
        scope = "layer"
    history = [step_record(model, splits, 0, 0.0, layers) | ({"ratios": ratios} if ratios else {})]
    for t, s in enumerate(tqdm(schedule(target, steps, kind), desc="iterative", disable=not progress,
                               leave=False), start=1):
        prune_to(model, s, scope=scope, layers=layers)
        finetune(model, splits, cfg, ft.epochs, ft.lr_scale, progress=progress, desc=f"finetune {t}/{steps}",
                 seed_offset=t)
        history.append(step_record(model, splits, t, s, layers))
    if ft.final_epochs:
        finetune(model, splits, cfg, ft.final_epochs, ft.lr_scale, progress=progress, desc="final finetune",
                 seed_offset=steps + 1)
        history.append(step_record(model, splits, steps + 1, history[-1]["target"], layers) | {"final": True})
    return history


def sensitivity_ratios(model, splits, target: float, layers: str = "fc", progress: bool = False):
    """(per-layer ratios, the same): `target` overall, allocated from the layers' sensitivity
    curves (ratios 0 ... 0.99, validation split, no finetuning)."""
    from .sensitivity import DEFAULT_RATIOS, allocate, scan  # sensitivity.py builds on this module

    res = scan(model, splits, list(DEFAULT_RATIOS) + [0.95, 0.98, 0.99], layers=layers, progress=progress)
    ratios, _ = allocate(res, float(target))
    return ratios, ratios


def ft_config(opts) -> FinetuneConfig:
    """The FinetuneConfig of a method's options (ft_epochs, lr_scale, final_epochs)."""
    return FinetuneConfig(epochs=opts.ft_epochs, lr_scale=opts.lr_scale, final_epochs=getattr(opts, "final_epochs", 0))


# -- `eie prune iterative` (pruning/registry.py) ------------------------------------------------
def run(model, splits, ctx, seed, opts):
    """Iterative pruning to `opts.sparsity`, and (unless no_one_shot) one-shot at the same budget."""
    cfg = ctx.dense.with_(seed=seed)
    extra = {}
    budget = finetune_budget(opts)
    target, scope = opts.sparsity, opts.scope
    if scope == "sensitivity":   # one scan of the dense model for both runs
        target, extra["sensitivity_ratios"] = sensitivity_ratios(model, splits, target, ctx.layers, ctx.progress)
        scope = "layer"
    if not opts.no_one_shot:
        m1 = clone_model(model)
        h1 = one_shot_prune(m1, splits, target, cfg, epochs=budget, lr_scale=opts.lr_scale,
                            scope=scope, layers=ctx.layers, progress=ctx.progress)
        extra["one_shot"] = {"history": h1, "final": evaluate_model(m1, splits), "epochs": budget}
    hist = iterative_prune(model, splits, target, cfg, steps=opts.steps, ft=ft_config(opts), scope=scope,
                           kind=opts.schedule, layers=ctx.layers, progress=ctx.progress)
    return model, {"history": hist, **extra}


def plots(report, out):
    lab = seeds_label(report)
    curves = {f"iterative: after each round ({lab})": mean_points([r["history"] for r in report["runs"]])}
    shots = [r["one_shot"]["history"] for r in report["runs"] if "one_shot" in r]
    if shots:
        pts = mean_points(shots)
        curves[f"one-shot + finetuning ({lab}; {100 * pts[1][1]:.1f} % before finetuning)"] = [pts[2]]
    plot_history(curves, out / "accuracy_vs_sparsity.png",
                 f"iterative ({report['options']['steps']} rounds) vs one-shot, equal finetuning budget",
                 dense_val(report))
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v["sparsity"] for n, v in r["final"]["pruned"]["layers"].items()}
                       for r in report["runs"]}, out / "layer_ratios.png")
    return ["accuracy_vs_sparsity.png", "layer_ratios.png"]


def compare(model, splits, ctx, seed, settings, scope):
    """Iterative pruning to the compared sparsity with the compare's schedule."""
    iterative_prune(model, splits, settings.sparsity, ctx.dense.with_(seed=seed), steps=settings.steps,
                    ft=ft_config(settings), scope=scope, kind=settings.schedule, layers=ctx.layers,
                    progress=ctx.progress)
    return model


def matched_note(settings, **_) -> str:
    """How the magnitude-based methods meet the compared sparsity (exactly, equal finetuning)."""
    budget = finetune_budget(settings)
    return (f"pruned to exactly {100 * (1 - settings.sparsity):g} % kept; {budget} finetuning epochs at "
            f"lr x {settings.lr_scale:g}")
