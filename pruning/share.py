"""Method 8 as `eie prune share`: a pruned network (iterative pruning, or another method's
checkpoint) weight-shared with k-means and its centroids finetuned (sharing.py)."""

from __future__ import annotations

from .iterative import ft_config, iterative_prune
from .masks import apply_masks_from_zeros, kept_fraction
from .models import target_layers
from .pipeline import evaluate_model, load_checkpoint
from .plots import dense_val, mean_points, plot_bars, plot_history, seeds_label
from .sharing import distinct_nonzero, share_weights
from .train import finetune

__all__ = ["run", "plots", "default_seeds", "centroid_config"]


def default_seeds(opts) -> tuple[int, ...]:
    """From a checkpoint: its own seed (so that its dense baseline is the right one)."""
    if opts.from_checkpoint is None:
        return (0, 1, 2)
    return (int(load_checkpoint(opts.from_checkpoint)[1].get("meta", {}).get("seed", 0)),)


def centroid_config(cfg, lr: float):
    """Centroid finetuning: Adam at `lr`, no weight decay, the run's LR schedule. A
    centroid's gradient is the sum over the hundreds to thousands of weights that share
    it, so plain SGD at the weights' learning rate diverges (LeNet-300-100: 88.7 % test
    error after 5 epochs at 0.05), and weight decay would shrink every weight of the
    cluster; Adam's per-parameter step does not depend on the cluster's size."""
    return cfg.with_(optimizer="adam", lr=lr, weight_decay=0.0)


def run(model, splits, ctx, seed, opts):
    res = {}
    if opts.from_checkpoint:
        model, obj = load_checkpoint(opts.from_checkpoint)
        apply_masks_from_zeros(model, ctx.layers)
        res["source"] = {"checkpoint": str(opts.from_checkpoint), "meta": obj.get("meta", {})}
    else:
        res["history"] = iterative_prune(model, splits, opts.sparsity, ctx.dense.with_(seed=seed), steps=opts.steps,
                                         ft=ft_config(opts), scope=opts.scope, kind=opts.schedule, layers=ctx.layers,
                                         progress=ctx.progress)
    zeros = {n: (m.weight.detach() == 0).clone() for n, m in target_layers(model, ctx.layers)}
    res["pruned"] = evaluate_model(model, splits) | {"kept": kept_fraction(model, ctx.layers)}
    share_weights(model, ctx.layers, seed=seed)
    res["kmeans"] = evaluate_model(model, splits)
    finetune(model, splits, centroid_config(ctx.dense.with_(seed=seed), opts.centroid_lr), opts.centroid_epochs, 1.0,
             progress=ctx.progress, desc="centroid finetuning", seed_offset=500)
    res["centroid_finetuned"] = evaluate_model(model, splits)
    res["sharing_kept"] = all(distinct_nonzero(m) <= 15 and bool(((m.weight.detach() == 0) == zeros[n]).all())
                              for n, m in target_layers(model, ctx.layers))
    return model, res


def plots(report, out):
    runs = report["runs"]
    r0 = runs[0]

    def mean(get):
        return sum(get(r) for r in runs) / len(runs)

    stages = {"pruned (float)": mean(lambda r: r["pruned"]["test_acc"]),
              "k-means 4-bit": mean(lambda r: r["kmeans"]["test_acc"]),
              "centroid finetuned": mean(lambda r: r["centroid_finetuned"]["test_acc"])}
    if "image" in r0["final"]:
        stages["image weights (16-bit fixed)"] = mean(lambda r: r["final"]["image"]["quantised"]["test_acc"])
        stages["golden model"] = mean(lambda r: r["final"]["image"]["golden_test"]["accuracy"])
    plot_bars(stages, out / "accuracy_stages.png", f"pruning + weight sharing ({seeds_label(report)})",
              "test accuracy (%)", mean(lambda r: r["dense"]["test_acc"]))
    files = ["accuracy_stages.png"]
    if "history" in r0:
        plot_history({f"after each round ({seeds_label(report)})": mean_points([r["history"] for r in runs])},
                     out / "accuracy_vs_sparsity.png", "iterative pruning before weight sharing", dense_val(report))
        files.append("accuracy_vs_sparsity.png")
    return files
