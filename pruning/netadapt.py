"""NetAdapt on the EIE cycle model (Yang et al., "NetAdapt: Platform-Aware Neural Network
Adaptation for Mobile Applications", ECCV 2018, Algorithm 1).

NetAdapt shrinks a pretrained network step by step under a *measured* resource: in
iteration i the latency target is Res_{i-1} - dR_i; for every layer k a candidate is
made by pruning layer k alone just until the target is met, each candidate gets a
short-term finetune and is scored on held-out data, and the most accurate one becomes
the network of iteration i. When the budget is reached (or no layer can reach the
target) the result gets a long-term finetune.

Here the platform is EIE: the latency of a network is the number of cycles per
inference of its fully connected layers, from the golden cycle model
(`eie.golden_model.cycle_model.cycle_report`) run on a fixed calibration batch, after
encoding the current pruned weights with `encode_network` for a chosen number of PEs
(`latency.EIELatency`, used as the look-up / estimator). Pruning is fine-grained (EIE
skips zero weights): a candidate of layer k removes the smallest-magnitude surviving
weights of that layer, through `torch.nn.utils.prune.custom_from_mask`. The number of
weights to remove is found by bisection on the cycle model; the chosen count is always
one whose latency was measured to meet the target, so every step's target holds even
where the cycle count is not monotonic in the number of weights.

Because EIE also skips zero *activations*, the cycles depend on the weight values (the
ReLU pattern), not only on the mask, so a short-term finetune can move the latency. The
latency is therefore measured again after the finetune; if it is above the target the
layer is pruned further (without another finetune) until it is met again. The
long-term finetune at the end can move the latency the same way; the report gives the
latency after it and, unless disabled (enforce_final), the most accurate single-layer
cut back to the last target when the finetune pushed the latency above it. The EIE image
holds the weight matrices only (the golden model has no bias), so the estimator's
activation sparsity is that of the bias-free pass.

NetAdapt does not depend on the resource being latency (Yang et al. also use energy):
`resource="weights"` counts the non-zero FC weights instead (`WeightCount`). That is how
`eie prune compare` brings NetAdapt to the matched sparsity exactly: the budget is the
matched number of weights, and the last iteration's target is clamped to it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from eie.jobs import Executor, Job, kept, run_jobs

from .data import Splits
from .handoff import handed_splits, model_from_text, model_to_text, splits_from
from .latency import EIELatency, LatencySettings, WeightCount
from .masks import clone_model, get_mask, magnitude_order, refresh_weights, set_mask, sparsity_of, weight_of
from .models import fc_layers
from .pipeline import progress_log
from .plots import plot_per_seed, pyplot, save_figure, write_result
from .train import TrainConfig, accuracy, finetune_budget, torch_threads, train

__all__ = ["NetAdaptConfig", "RESOURCES", "run_netadapt", "candidate_job", "plot_netadapt", "run", "plots", "compare",
           "compare_note"]

RESOURCES = {"cycles": "EIE cycles per inference (FC layers)", "weights": "non-zero FC weights"}


# --------------------------------------------------------------------------- NetAdapt

@dataclass(frozen=True)
class NetAdaptConfig(LatencySettings):
    """NetAdapt settings.

    resource: "cycles" (EIE cycles per inference, the default) or "weights" (non-zero FC
             weights); "latency" below means the resource.
    delta:   latency reduction per iteration dR; < 1: fraction of the dense latency,
             >= 1: cycles. It is multiplied by `delta_decay` after every iteration.
    budget:  stop when the latency is at most this; <= 1: fraction of the dense
             latency, > 1: cycles. The last target is clamped to the budget.
    lr:      learning rate of the short-term finetunes (and of the long-term one unless
             `long_lr` is given).
    """

    resource: str = "cycles"
    delta: float = 0.1
    delta_decay: float = 1.0
    budget: float = 0.3
    max_iterations: int = 10
    short_epochs: int = 3
    long_epochs: int = 20
    lr: float = 1e-3
    long_lr: float | None = None
    batch_size: int = 64
    n_calibration: int = 32
    min_density: float = 0.01   # a layer keeps at least this fraction of its weights
    adapt_delta: bool = False   # no layer alone can cut delta: cut as deep as one layer can instead of stopping
    enforce_final: bool = True  # after the long-term finetune, prune back to the last target if it moved up
    optimizer: str = "adam"     # the finetunes' optimiser, weight decay and LR schedule (train.TrainConfig)
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    shift: int = 0              # translation augmentation of the finetunes (train.TrainConfig.shift)
    seed: int = 0

    def __post_init__(self):
        if self.resource not in RESOURCES:
            raise ValueError(f"resource must be one of {tuple(RESOURCES)}, not {self.resource!r}")
        if self.delta <= 0 or self.budget <= 0:
            raise ValueError("delta and budget must be positive")
        if not 0 < self.delta_decay <= 1:
            raise ValueError("delta_decay must be in (0, 1]")
        if self.max_iterations < 0 or self.short_epochs < 0 or self.long_epochs < 0:
            raise ValueError("iterations and epochs must be >= 0")
        if not 0 <= self.min_density < 1:
            raise ValueError("min_density must be in [0, 1)")


def _absolute(value: float, dense: float) -> float:
    """A budget: <= 1 a fraction of the dense value, else the value itself."""
    return value * dense if value <= 1 else float(value)


def _layer_cuts(model: nn.Module, k: int, est: EIELatency, min_density: float):
    """(lat, max_prune, order) of layer k: lat(m) is the measured latency with the m
    smallest surviving weights of layer k removed (the model is not changed), max_prune
    the most that min_density allows, order the surviving weights, smallest |w| first."""
    layer = fc_layers(model)[k][1]
    W = weight_of(layer)
    order = magnitude_order(W, get_mask(layer))
    max_prune = len(order) - max(1, int(np.ceil(min_density * W.numel())))
    fc_in = est.fc_input(model)
    base = est.weights(model)
    flat_W = base[k].ravel()

    def lat(m):
        Wk = flat_W.copy()
        Wk[order[:m]] = 0.0
        ws = list(base)
        ws[k] = Wk.reshape(base[k].shape)
        return est.of_weights(ws, fc_in)

    return lat, max_prune, order


def _prune_layer_to_target(model: nn.Module, k: int, target: float, est: EIELatency,
                           min_density: float) -> dict | None:
    """Prune layer k (smallest surviving |w| first) just until est(model) <= target.

    Bisection on the number of removed weights; the count kept is always one whose
    latency was measured <= target. Returns None (model untouched) if even the most
    pruning allowed (min_density) misses the target.
    """
    lat, max_prune, order = _layer_cuts(model, k, est, min_density)
    start = lat(0)
    if start <= target:
        return {"pruned": 0, "latency": start}
    if max_prune <= 0 or lat(max_prune) > target:
        return None
    lo, hi = 0, max_prune          # lat(lo) > target, lat(hi) <= target (both measured)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if lat(mid) <= target:
            hi = mid
        else:
            lo = mid
    layer = fc_layers(model)[k][1]
    new = get_mask(layer).ravel()
    new[torch.as_tensor(order[:hi])] = 0.0
    set_mask(layer, new.view_as(layer.weight))
    return {"pruned": int(hi), "latency": lat(hi)}


def _deepest_cut(model: nn.Module, est: EIELatency, min_density: float) -> float:
    """The lowest latency one layer alone can reach (each at its min_density)."""
    out = []
    for k in range(len(fc_layers(model))):
        lat, max_prune, _ = _layer_cuts(model, k, est, min_density)
        out.append(lat(max(0, max_prune)))
    return min(out)


def _finetune(model, splits, cfg: NetAdaptConfig, epochs: int, seed: int, lr: float | None = None):
    if epochs > 0:
        train(model, splits, TrainConfig(epochs=epochs, lr=lr or cfg.lr, batch_size=cfg.batch_size, seed=seed,
                                         optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                                         lr_schedule=cfg.lr_schedule, shift=cfg.shift))
    model.eval()
    refresh_weights(model)


def _candidates(cur, splits_arg: dict, cfg: NetAdaptConfig, names, target: float, i: int, executor: Executor):
    """NetAdapt's candidates of iteration i, one job per layer (`candidate_job`) on
    `executor`. Returns (records, [(record, model)] of the feasible ones, estimator calls)."""
    text, c = model_to_text(cur), asdict(cfg)
    jobs = [Job(candidate_job, {"model": text, "splits": splits_arg, "cfg": c, "k": k, "target": target, "i": i},
                key=f"iteration {i}, layer {name}") for k, name in enumerate(names)]
    out = run_jobs(jobs, executor, desc=f"netadapt iteration {i}")
    out.raise_if_incomplete()
    records = [r["record"] for r in out.results]
    feasible = [(r["record"], model_from_text(r["model"])) for r in out.results if r["model"] is not None]
    return records, feasible, sum(r["estimator_calls"] for r in out.results)


def candidate_job(model: str, splits: dict, cfg: dict, k: int, target: float, i: int) -> dict:
    """NetAdapt's candidate of layer k in iteration i: prune it alone to `target`,
    short-term finetune, prune on if the finetune moved the latency above the target.
    One torch thread (train.torch_threads); its own estimator (its calls are returned)."""
    with torch_threads(1):
        cfg = NetAdaptConfig(**cfg)
        sp = splits_from(splits)
        cand = model_from_text(model)
        est = _estimator(cfg, sp)
        name = fc_layers(cand)[k][0]
        rec = _candidate(cand, sp, cfg, est, k, name, target, i)
        return {"record": rec, "model": model_to_text(cand) if rec["feasible"] else None, "estimator_calls": est.calls}


def _candidate(cand, splits, cfg: NetAdaptConfig, est, k: int, name: str, target: float, i: int) -> dict:
    first = _prune_layer_to_target(cand, k, target, est, cfg.min_density)
    if first is None:
        return {"layer": name, "feasible": False}
    _finetune(cand, splits, cfg, cfg.short_epochs, cfg.seed + i)
    lat_ft = est(cand)
    repruned = 0
    if lat_ft > target:       # the finetune changed the ReLU pattern: prune on until met
        again = _prune_layer_to_target(cand, k, target, est, cfg.min_density)
        if again is None:
            return {"layer": name, "feasible": False, "latency_after_finetune": lat_ft}
        repruned = again["pruned"]
    c_lat = est(cand)
    assert c_lat <= target
    return {"layer": name, "feasible": True, "pruned": first["pruned"] + repruned,
            "repruned_after_finetune": repruned, "latency": c_lat, "val_acc": accuracy(cand, splits, "val")}


def _estimator(cfg: NetAdaptConfig, splits: Splits):
    """The resource of `cfg`: EIE cycles on the first training images, or the weight count."""
    return cfg.latency(splits.x_train[:cfg.n_calibration]) if cfg.resource == "cycles" else WeightCount()


def run_netadapt(model: nn.Module, splits: Splits, cfg: NetAdaptConfig = NetAdaptConfig(), *,
                 out_dir=None, log=None, keep_models: bool = False, executor: Executor = Executor()) -> dict:
    """NetAdapt on a trained model (left unchanged); returns the result dict.

    The dict holds `iterations` (per iteration: target, per-layer candidates with their
    latency and validation accuracy, the chosen layer, the latency and the accuracy),
    `final` (after the long-term finetune; for cycles with the k-means-shared latency as well) and
    `model` (the adapted torch model, not written to JSON; with keep_models also
    `iteration_models`, the network of every iteration). With `out_dir`, writes
    netadapt.json and netadapt.png there. Each iteration's per-layer candidates are jobs
    on `executor` (one per layer); the result does not depend on it.
    """
    with handed_splits(splits, executor) as splits_arg, kept(executor):   # one pool for every iteration
        return _netadapt(model, splits, splits_arg, cfg, out_dir, log, keep_models, executor)


def _netadapt(model, splits, splits_arg, cfg: NetAdaptConfig, out_dir, log, keep_models, executor) -> dict:
    t0 = time.time()
    say = log or (lambda *a: None)
    est = _estimator(cfg, splits)
    job_calls = 0
    unit = "cycles" if cfg.resource == "cycles" else "weights"
    cur = clone_model(model)
    cur.eval()
    names = [n for n, _ in fc_layers(cur)]
    dense_lat = est(cur)
    budget = _absolute(cfg.budget, dense_lat)
    delta = _absolute(cfg.delta, dense_lat) if cfg.delta < 1 else float(cfg.delta)
    lat = dense_lat
    iterations = [{"iteration": 0, "target": None, "latency": lat, "chosen": None,
                   "val_acc": accuracy(cur, splits, "val"), "test_acc": accuracy(cur, splits, "test"),
                   "sparsity": sparsity_of(fc_layers(cur)), "candidates": []}]
    models = [clone_model(cur)]
    say(f"netadapt: dense {lat:.1f} {unit}, budget {budget:.1f}, val acc {iterations[0]['val_acc']:.4f}")
    stop = "max_iterations"
    for i in range(1, cfg.max_iterations + 1):
        if lat <= budget:
            stop = "budget reached"
            break
        target = max(lat - delta, budget)
        candidates, cand_models, calls = _candidates(cur, splits_arg, cfg, names, target, i, executor)
        job_calls += calls
        reduced_from = None
        if not cand_models and cfg.adapt_delta:
            deepest = _deepest_cut(cur, est, cfg.min_density)
            if target < deepest < lat:    # no layer alone can cut delta: cut as deep as one layer can
                reduced_from, target = target, deepest
                candidates, cand_models, calls = _candidates(cur, splits_arg, cfg, names, target, i, executor)
                job_calls += calls
        if not cand_models:
            stop = "no layer can meet the target"
            iterations.append({"iteration": i, "target": target, "latency": lat, "chosen": None,
                               "candidates": candidates})
            break
        best_c, best_m = max(cand_models, key=lambda cm: (cm[0]["val_acc"], -cm[0]["latency"]))
        cur, lat = best_m, best_c["latency"]
        if keep_models:
            models.append(clone_model(cur))
        iterations.append({"iteration": i, "target": target, "target_reduced_from": reduced_from,
                           "delta": delta, "latency": lat, "chosen": best_c["layer"], "val_acc": best_c["val_acc"],
                           "test_acc": accuracy(cur, splits, "test"), "sparsity": sparsity_of(fc_layers(cur)),
                           "candidates": candidates})
        say(f"netadapt: iter {i}: target {target:.1f} -> {lat:.1f} {unit} ({best_c['layer']}), "
            f"val acc {best_c['val_acc']:.4f}")
        delta *= cfg.delta_decay
    else:
        if lat <= budget:
            stop = "budget reached"
    before_long = {"latency": lat, "val_acc": accuracy(cur, splits, "val"), "test_acc": accuracy(cur, splits, "test")}
    _finetune(cur, splits, cfg, cfg.long_epochs, cfg.seed + 10_000, cfg.long_lr)
    after_long = {"latency": est(cur), "val_acc": accuracy(cur, splits, "val"),
                  "test_acc": accuracy(cur, splits, "test")}
    done = [r for r in iterations if r.get("chosen")]
    final_target = done[-1]["target"] if done else None
    enforced = None
    if cfg.enforce_final and final_target is not None and after_long["latency"] > final_target:
        # the long-term finetune moved the ReLU pattern: the most accurate single-layer cut back to the target
        best = None
        for k, name in enumerate(names):
            cand = clone_model(cur)
            r = _prune_layer_to_target(cand, k, final_target, est, cfg.min_density)
            if r is not None:
                acc = accuracy(cand, splits, "val")
                if best is None or acc > best[0]:
                    best = (acc, cand, {"layer": name, "pruned": r["pruned"], "latency": r["latency"]})
        if best is not None:
            cur, enforced = best[1], best[2]
    final = {"latency": est(cur), "target": final_target,
             "val_acc": accuracy(cur, splits, "val"), "test_acc": accuracy(cur, splits, "test"),
             "sparsity": sparsity_of(fc_layers(cur)), "before_long_finetune": before_long,
             "after_long_finetune": after_long, "repruned_after_long_finetune": enforced}
    dense = {"latency": dense_lat, "val_acc": iterations[0]["val_acc"], "test_acc": iterations[0]["test_acc"]}
    if cfg.resource == "cycles":
        final |= {"latency_kmeans": est.report(cur, "kmeans")["cycles_per_sample"],
                  "layers_cycles": est.report(cur)["layers"]}
        dense["latency_kmeans"] = est.report(model, "kmeans")["cycles_per_sample"]
    else:
        final["layers_weights"] = est.report(cur)["layers"]
    result = {"method": "netadapt", "paper": "Yang et al., NetAdapt, ECCV 2018",
              "config": asdict(cfg), "dataset": splits.name, "resource": RESOURCES[cfg.resource],
              "budget": budget,
              "dense": dense, "iterations": iterations, "stop_reason": stop,
              "final": final, "estimator_calls": est.calls + job_calls, "seconds": time.time() - t0}
    say(f"netadapt: final {final['latency']:.1f} {unit}, test acc {final['test_acc']:.4f}")
    if out_dir is not None:
        write_result(result, out_dir, "netadapt", plot_netadapt)
    result["model"] = cur
    if keep_models:
        result["iteration_models"] = models
    return result


def plot_netadapt(result: dict, path) -> None:
    """Latency (resource) and target per iteration; accuracy vs latency."""
    plt = pyplot()
    unit = "EIE cycles / inference" if result["config"]["resource"] == "cycles" else "non-zero FC weights"
    its = [r for r in result["iterations"] if r.get("chosen") is not None or r["iteration"] == 0]
    x = [r["iteration"] for r in its]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(x, [r["latency"] for r in its], "o-", label=result["config"]["resource"])
    tx = [r["iteration"] for r in its if r["target"] is not None]
    a1.plot(tx, [r["target"] for r in its if r["target"] is not None], "x--", label="target")
    a1.axhline(result["budget"], color="gray", ls=":", label="budget")
    a1.set_xlabel("iteration")
    a1.set_ylabel(unit)
    a1.legend()
    a2.plot([r["latency"] for r in its], [100 * r["val_acc"] for r in its], "o-", label="val (short-term finetuned)")
    a2.plot([result["final"]["latency"]], [100 * result["final"]["test_acc"]], "r*", ms=12,
            label="final test (long-term finetuned)")
    a2.invert_xaxis()
    a2.set_xlabel(unit)
    a2.set_ylabel("accuracy (%)")
    a2.legend()
    fig.suptitle(f"NetAdapt on EIE ({result['config']['n_pe']} PEs, {result['dataset']})")
    save_figure(fig, path)


# --------------------------------------------------------------------------- `eie prune netadapt`

def run(model, splits, ctx, seed, opts, executor: Executor = Executor()):
    """One seed (pruning/registry.py): the adapted model and the result; the candidates
    run as jobs on `executor`."""
    cfg = NetAdaptConfig(resource=opts.resource, delta=opts.delta, delta_decay=opts.delta_decay, budget=opts.budget,
                         max_iterations=opts.iterations, short_epochs=opts.short_epochs,
                         long_epochs=opts.long_epochs, lr=ctx.dense.lr, batch_size=ctx.dense.batch_size,
                         n_pe=ctx.n_pe, acc_depth=ctx.acc_depth, n_calibration=opts.latency_samples,
                         sharing=opts.sharing, adapt_delta=opts.adapt_delta, seed=seed, **_optim(ctx))
    res = run_netadapt(model, splits, cfg, log=progress_log(ctx), executor=executor)
    return res.pop("model"), {"netadapt": res}


def plots(report, out):
    return plot_per_seed(report, out, "netadapt", plot_netadapt)


def _optim(ctx) -> dict:
    """The dense training's optimiser settings, for the finetunes."""
    return {"optimizer": ctx.dense.optimizer, "weight_decay": ctx.dense.weight_decay,
            "lr_schedule": ctx.dense.lr_schedule, "shift": ctx.dense.shift}


def _compare_config(model, ctx, seed, settings) -> NetAdaptConfig:
    total = sum(m.weight.numel() for _, m in fc_layers(model))
    sparsity = settings.sparsity
    return NetAdaptConfig(resource="weights", delta=settings.netadapt_delta,
                          budget=float(total - round(sparsity * total)),  # absolute: as prune_to rounds
                          max_iterations=2 * int(np.ceil(sparsity / settings.netadapt_delta)) + 5,
                          short_epochs=settings.netadapt_short_epochs, long_epochs=finetune_budget(settings),
                          lr=ctx.dense.lr, long_lr=ctx.dense.lr * settings.lr_scale, batch_size=ctx.dense.batch_size,
                          n_pe=ctx.n_pe, acc_depth=ctx.acc_depth, adapt_delta=True, seed=seed, **_optim(ctx))


def compare_note(settings) -> str:
    return (f"resource = non-zero FC weights, steps of {100 * settings.netadapt_delta:g} % of the dense count, budget "
            f"{100 * (1 - settings.sparsity):g} % (the last target is clamped to it: lands exactly there; a step no "
            f"single layer can make is shortened to the deepest single-layer cut); short-term "
            f"{settings.netadapt_short_epochs} epochs at the dense LR, long-term {finetune_budget(settings)} epochs at "
            f"lr x {settings.lr_scale:g}")


def compare(model, splits, ctx, seed, settings) -> nn.Module:
    """NetAdapt in `eie prune compare`: the non-zero FC weights are the resource, so the
    budget `1 - sparsity` is met exactly (see `compare_note`)."""
    cfg = _compare_config(model, ctx, seed, settings)
    return run_netadapt(model, splits, cfg, log=progress_log(ctx))["model"]
