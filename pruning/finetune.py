"""Method 3: finetuning after pruning, and iterative pruning vs one-shot.

Finetuning runs the ordinary training loop at a fraction (1/10 ... 1/100) of the
original learning rate. The masks are `torch.nn.utils.prune` reparametrisations, so
the pruned weights stay exactly zero through every optimiser step (the gradient of
`weight_orig` is masked and the forward pass multiplies by the mask again).

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

from .data import Splits
from .magnitude import kept_fraction, prune_to, sparsity_report
from .train import TrainConfig, accuracy, train

__all__ = ["FinetuneConfig", "finetune", "schedule", "SCHEDULES", "iterative_prune", "one_shot_prune"]

SCHEDULES = ("geometric", "linear")


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


def finetune(model: nn.Module, splits: Splits, cfg: TrainConfig, epochs: int, lr_scale: float = 0.1, *,
             extra_loss=None, progress: bool = False, desc: str = "finetune", seed_offset: int = 0) -> list[dict]:
    """Train `epochs` more at lr * lr_scale; pruning masks (if any) stay in force."""
    if epochs <= 0:
        return []
    fcfg = cfg.with_(lr=cfg.lr * lr_scale, epochs=epochs, seed=cfg.seed + 1000 + seed_offset)
    return train(model, splits, fcfg, extra_loss=extra_loss, progress=progress, desc=desc)


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


def _record(model, splits, step, sparsity, layers) -> dict:
    return {"step": step, "target": sparsity, "kept": kept_fraction(model, layers),
            "val_acc": accuracy(model, splits, "val"),
            "layers": {n: r["sparsity"] for n, r in sparsity_report(model, layers).items()}}


def iterative_prune(model: nn.Module, splits: Splits, target, cfg: TrainConfig, *, steps: int = 5,
                    ft: FinetuneConfig = FinetuneConfig(), scope: str = "global", kind: str = "geometric",
                    layers: str = "fc", progress: bool = False) -> list[dict]:
    """Prune -> finetune `steps` times up to `target`; returns one record per step
    (after its finetuning): target, kept fraction, validation accuracy, per-layer sparsity."""
    from tqdm import tqdm

    history = [_record(model, splits, 0, 0.0, layers)]
    for t, s in enumerate(tqdm(schedule(target, steps, kind), desc="iterative", disable=not progress,
                               leave=False), start=1):
        prune_to(model, s, scope=scope, layers=layers)
        finetune(model, splits, cfg, ft.epochs, ft.lr_scale, progress=progress, desc=f"finetune {t}/{steps}",
                 seed_offset=t)
        history.append(_record(model, splits, t, s, layers))
    if ft.final_epochs:
        finetune(model, splits, cfg, ft.final_epochs, ft.lr_scale, progress=progress, desc="final finetune",
                 seed_offset=steps + 1)
        history.append(_record(model, splits, steps + 1, history[-1]["target"], layers) | {"final": True})
    return history


def one_shot_prune(model: nn.Module, splits: Splits, target, cfg: TrainConfig, *, epochs: int,
                   lr_scale: float = 0.1, scope: str = "global", layers: str = "fc",
                   progress: bool = False) -> list[dict]:
    """Prune to `target` at once, then finetune `epochs` (give it the iterative total)."""
    history = [_record(model, splits, 0, 0.0, layers)]
    prune_to(model, target, scope=scope, layers=layers)
    history.append(_record(model, splits, 1, target, layers) | {"finetuned": False})
    finetune(model, splits, cfg, epochs, lr_scale, progress=progress, desc="finetune (one-shot)", seed_offset=1)
    history.append(_record(model, splits, 2, target, layers) | {"finetuned": True})
    return history
