"""Method 2: sensitivity analysis (per-layer pruning ratios from accuracy drop curves).

Each layer is magnitude-pruned alone at r in {0, 0.1, ..., 0.9} (no finetuning) and the
validation accuracy is measured; the drop against the unpruned model is the layer's
sensitivity curve. `pick_ratios` gives every layer the largest r reached before its
curve first exceeds the degradation threshold T (first crossing: a later noisy dip back
under T is not trusted). `allocate` turns the curves into per-layer ratios for a given
overall sparsity instead (threshold found by bisection on linearly interpolated
curves), which is how the method is compared at matched sparsity.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from eie.jobs import Executor, Job, run_jobs

from .data import Splits
from .handoff import handed_splits, model_from_text, model_to_text, splits_from
from .iterative import ft_config, iterative_prune
from .magnitude import prune_to
from .masks import clone_model
from .models import target_layers
from .plots import dense_val, mean_points, plot_history, plot_layer_ratios, pyplot, save_figure, seeds_label
from .train import accuracy, torch_threads

__all__ = ["DEFAULT_RATIOS", "scan", "scan_job", "pick_ratios", "allocate", "overall_of", "plot_scan", "run", "plots",
           "compare"]

DEFAULT_RATIOS = tuple(round(0.1 * i, 1) for i in range(10))


def scan(model: nn.Module, splits: Splits, ratios: Sequence[float] = DEFAULT_RATIOS, *, layers: str = "fc",
         part: str = "val", progress: bool = False, executor: Executor = Executor()) -> dict:
    """{"base": accuracy, "part", "ratios", "sizes": {layer: params},
    "layers": {layer: [{"ratio", "acc", "drop"}, ...]}}; the model is not modified.
    One job per layer (all its ratios) on `executor`; the result does not depend on it."""
    ratios = sorted({float(r) for r in ratios})
    if not ratios or ratios[0] < 0 or ratios[-1] >= 1:
        raise ValueError(f"ratios must lie in [0, 1), got {ratios}")
    named = target_layers(model, layers)
    text = model_to_text(model)
    with handed_splits(splits, executor) as data:
        jobs = [Job(scan_job, {"model": text, "splits": data, "layer": n, "ratios": [] if n is None else ratios,
                               "layers": layers, "part": part}, key=f"sensitivity of {n or 'the unpruned model'}")
                for n in [None] + [n for n, _ in named]]
        got = run_jobs(jobs, executor, progress=progress, desc=f"sensitivity ({executor.describe()})")
    got.raise_if_incomplete()
    base = got.results[0][0]["acc"]
    return {"base": base, "part": part, "ratios": ratios, "sizes": {n: m.weight.numel() for n, m in named},
            "layers": {n: [p | {"drop": base - p["acc"]} for p in points]
                       for (n, _), points in zip(named, got.results[1:])}}


def scan_job(model: str, splits: dict, layer: str | None, ratios: list, layers: str, part: str) -> list[dict]:
    """Accuracy on `part` with `layer` alone magnitude-pruned at each ratio (no layer: the
    model as it is, one point at ratio 0)."""
    with torch_threads(1):
        m0, sp = model_from_text(model), splits_from(splits)
        if layer is None:
            return [{"ratio": 0.0, "acc": accuracy(m0, sp, part)}]
        points = []
        for r in ratios:
            m = clone_model(m0)
            prune_to(m, {layer: r}, layers=layers)
            points.append({"ratio": r, "acc": accuracy(m, sp, part)})
        return points


def _first_crossing(curve, threshold) -> float:
    best = 0.0
    for p in sorted(curve, key=lambda p: p["ratio"]):
        if p["drop"] > threshold:
            break
        best = p["ratio"]
    return best


def pick_ratios(result: dict, threshold: float) -> dict[str, float]:
    """Largest ratio per layer before the accuracy drop first exceeds `threshold`."""
    return {n: _first_crossing(c, threshold) for n, c in result["layers"].items()}


def overall_of(ratios: dict[str, float], sizes: dict[str, int]) -> float:
    """Overall sparsity of per-layer ratios weighted by layer size."""
    return sum(ratios[n] * sizes[n] for n in ratios) / sum(sizes[n] for n in ratios)


def _interp_ratio(curve, threshold) -> float:
    """Largest ratio (linear interpolation between grid points) before drop > threshold."""
    pts = sorted(curve, key=lambda p: p["ratio"])
    prev = None
    for p in pts:
        if p["drop"] > threshold:
            if prev is None:
                return 0.0
            r0, d0, r1, d1 = prev["ratio"], prev["drop"], p["ratio"], p["drop"]
            return r0 + (r1 - r0) * (threshold - d0) / (d1 - d0) if d1 > d0 else r0
        prev = p
    return pts[-1]["ratio"]


def allocate(result: dict, target: float, iters: int = 60) -> tuple[dict[str, float], float]:
    """Per-layer ratios reaching overall sparsity `target`, from the sensitivity curves:
    the threshold T is bisected so that the interpolated first-crossing ratios sum to
    the target. Returns (ratios, T). Raises if the grid's largest ratio cannot reach it."""
    sizes = result["sizes"]
    top = {n: max(p["ratio"] for p in c) for n, c in result["layers"].items()}
    if overall_of(top, sizes) < target - 1e-12:
        raise ValueError(f"the scanned ratios (max {max(top.values())}) cannot reach overall sparsity {target}; "
                         "scan larger ratios")
    lo, hi = -1e-9, max(p["drop"] for c in result["layers"].values() for p in c) + 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        s = overall_of({n: _interp_ratio(c, mid) for n, c in result["layers"].items()}, sizes)
        lo, hi = (mid, hi) if s < target else (lo, mid)
    ratios = {n: _interp_ratio(c, hi) for n, c in result["layers"].items()}
    # Land exactly on the target: scale the pruned fractions (never past the grid top).
    s = overall_of(ratios, sizes)
    if s > 0:
        ratios = {n: float(min(top[n], r * target / s)) for n, r in ratios.items()}
    return ratios, float(hi)


def plot_scan(result: dict, path, threshold: float | None = None, picked: dict | None = None) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for n, c in result["layers"].items():
        r = [p["ratio"] for p in c]
        a = [100 * p["acc"] for p in c]
        line, = ax.plot(r, a, marker="o", label=f"{n} ({result['sizes'][n]:,} w)")
        if picked and n in picked:
            ax.axvline(picked[n], color=line.get_color(), ls=":", lw=1)
    if threshold is not None:
        ax.axhline(100 * (result["base"] - threshold), color="k", ls="--", lw=1,
                   label=f"T = {100 * threshold:.1f} % drop")
    ax.set_xlabel("pruning ratio of one layer (others dense)")
    ax.set_ylabel(f"{result['part']} accuracy (%)")
    ax.set_title("sensitivity analysis")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


# -- `eie prune sensitivity` (pruning/registry.py) ----------------------------------------------
def run(model, splits, ctx, seed, opts, executor: Executor = Executor()):
    """Scan (one job per layer on `executor`), ratios under the threshold, iterative
    pruning to them (per layer)."""
    res = scan(model, splits, opts.ratios, layers=ctx.layers, progress=ctx.progress, executor=executor)
    picked = pick_ratios(res, opts.threshold)
    hist = iterative_prune(model, splits, picked, ctx.dense.with_(seed=seed), steps=opts.steps, ft=ft_config(opts),
                           scope="layer", kind=opts.schedule, layers=ctx.layers, progress=ctx.progress)
    return model, {"scan": res, "picked": picked, "picked_overall_sparsity": overall_of(picked, res["sizes"]),
                   "history": hist}


def plots(report, out):
    r0 = report["runs"][0]
    plot_scan(r0["scan"], out / "sensitivity.png", report["options"]["threshold"], r0["picked"])
    plot_layer_ratios({f"seed {r['seed']}": {n: 1 - v for n, v in r["picked"].items()} for r in report["runs"]},
                      out / "layer_ratios.png", "weights kept per layer (picked under T)")
    plot_history({f"after each round ({seeds_label(report)})": mean_points([r["history"] for r in report["runs"]])},
                 out / "accuracy_vs_sparsity.png", "sensitivity-guided pruning + finetuning", dense_val(report))
    return ["sensitivity.png", "layer_ratios.png", "accuracy_vs_sparsity.png"]


def compare(model, splits, ctx, seed, settings):
    """Ratios allocated from the scan to the compared sparsity, then iterative pruning to them."""
    res = scan(model, splits, list(DEFAULT_RATIOS) + [0.95, 0.98, 0.99], layers=ctx.layers, progress=ctx.progress)
    ratios, _ = allocate(res, settings.sparsity)
    iterative_prune(model, splits, ratios, ctx.dense.with_(seed=seed), steps=settings.steps, ft=ft_config(settings),
                    scope="layer", kind=settings.schedule, layers=ctx.layers, progress=ctx.progress)
    return model
