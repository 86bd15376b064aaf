"""Lottery tickets: iterative magnitude pruning with weight reset, rewinding, or random
re-initialisation.

Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks", ICLR 2019: train a network from W(0); prune p % of the remaining weights by
magnitude (per layer; the output layer at half the rate in their fully connected
LeNet experiments); reset the surviving weights to W(0); retrain; repeat for R rounds.
Control: the same masks with a fresh random initialisation ("random reinit").

Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020 (and "Stabilizing the LTH", arXiv:1903.01611): instead of W(0),
*rewind* the survivors to W(k), the weights after k iterations (or epochs) of the
original training run.

Here the three variants run side by side from one dense training run (which records W(0)
and W(k)): `reset` and `rewind` each prune their own trajectory (round r prunes the
network that trajectory trained in round r-1), `random` trains the masks of the chosen
trajectory (`random_masks`) from a fresh random initialisation, different in every round.
Masks are installed with `torch.nn.utils.prune.custom_from_mask`, so retraining leaves
pruned weights at exactly zero. Biases (and batch-norm parameters) are never pruned but
are reset / rewound with the weights. Every retraining uses the same number of epochs and
the same seeded batch order (Adam, constant learning rate: the optimiser state starts
fresh in each round, for every variant).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .data import Splits
from .masks import get_mask, set_mask, weight_of
from .models import build_model, fc_layers, prunable_layers
from .pipeline import progress_log
from .plots import plot_per_seed, pyplot, save_figure, write_result
from .train import TrainConfig, accuracy, set_seed, train

__all__ = ["LotteryConfig", "train_with_snapshots", "next_masks", "make_ticket", "expected_remaining",
           "run_lottery", "summarize_seeds", "plot_lottery", "run", "plots", "compare", "compare_note",
           "compare_schedule", "MODES"]

MODES = ("reset", "rewind", "random")


@dataclass(frozen=True)
class LotteryConfig:
    rounds: int = 10
    rate: float = 0.2                 # fraction of the *remaining* weights pruned per round
    scope: str = "layer"              # "layer": every layer loses `rate`; "global": one ranking over all layers
    output_rate_factor: float = 0.5   # per-layer scope: the output layer is pruned at rate * factor
    rewind: int = 1                   # k of W(k)
    rewind_unit: str = "epoch"        # "epoch" or "iter" (optimiser steps)
    modes: tuple = MODES
    random_masks: str = "auto"        # whose masks random re-init trains: "reset", "rewind", "auto" (reset if run)
    model: str = "mlp"
    layers: str = "all"               # "all": every Linear and Conv2d; "fc": the FC layers only (what EIE runs)
    bias: bool = False                # the default network has no biases (EIE computes ReLU(W a))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if not 0 < self.rate < 1:
            raise ValueError("rate must be in (0, 1)")
        if self.scope not in ("layer", "global"):
            raise ValueError("scope must be 'layer' or 'global'")
        if self.rewind_unit not in ("epoch", "iter"):
            raise ValueError("rewind_unit must be 'epoch' or 'iter'")
        if self.rewind < 0 or self.rounds < 0:
            raise ValueError("rewind and rounds must be >= 0")
        if not 0 <= self.output_rate_factor <= 1 / self.rate:
            raise ValueError("output_rate_factor * rate must be in [0, 1]")
        bad = set(self.modes) - set(MODES)
        if bad or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if self.layers not in ("all", "fc"):
            raise ValueError("layers must be 'all' or 'fc'")
        if self.random_masks not in ("auto", "reset", "rewind"):
            raise ValueError("random_masks must be 'auto', 'reset' or 'rewind'")
        if "random" in self.modes and self.random_source() not in self.modes:
            raise ValueError(f"random re-init needs the {self.random_source()!r} trajectory for its masks")

    def pruned(self, model: nn.Module) -> list:
        return (fc_layers if self.layers == "fc" else prunable_layers)(model)

    def build(self, splits: Splits) -> nn.Module:
        return build_model(self.model, splits.n_features, splits.n_classes, splits.image_shape, bias=self.bias)

    def random_source(self) -> str:
        if self.random_masks != "auto":
            return self.random_masks
        return "reset" if "reset" in self.modes else "rewind"

    def steps_per_epoch(self, n_train: int) -> int:
        return -(-n_train // self.train.batch_size)

    def rewind_iteration(self, n_train: int) -> int:
        return self.rewind * (self.steps_per_epoch(n_train) if self.rewind_unit == "epoch" else 1)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _new_model(cfg: LotteryConfig, splits: Splits, seed: int) -> nn.Module:
    set_seed(seed)
    return cfg.build(splits)


def train_with_snapshots(cfg: LotteryConfig, splits: Splits, progress: bool = False):
    """The original dense run: (trained model, W(0) state, W(k) state, k in iterations).

    W(0) is the initialisation of `build_model` after `set_seed(train.seed)` (the same
    as `dense_model`'s, whose trained network this run reproduces); W(k) is the state
    after k optimiser steps of that run.
    """
    model = _new_model(cfg, splits, cfg.train.seed)
    w0 = _state(model)
    k = cfg.rewind_iteration(len(splits.y_train))
    total = cfg.steps_per_epoch(len(splits.y_train)) * cfg.train.epochs
    if k > total:
        raise ValueError(f"rewind point {k} iterations is after the end of training ({total} iterations)")
    snap = {"wk": w0 if k == 0 else None}
    step = [0]

    def after_step(m):
        step[0] += 1
        if step[0] == k:
            snap["wk"] = _state(m)

    train(model, splits, cfg.train, after_step=after_step, progress=progress, desc="lottery dense")
    return model, w0, snap["wk"], k


def expected_remaining(n: int, rate: float, rounds: int) -> int:
    """Weights left of n after `rounds` rounds that each remove round(rate * remaining)."""
    for _ in range(rounds):
        n -= int(round(rate * n))
    return n


def _layer_rates(cfg: LotteryConfig, names: list[str]) -> dict:
    return {n: cfg.rate * (cfg.output_rate_factor if i == len(names) - 1 else 1.0) for i, n in enumerate(names)}


def next_masks(model: nn.Module, masks: dict, cfg: LotteryConfig) -> dict:
    """One IMP round: remove round(rate * remaining) of the surviving weights with the
    smallest |w| of the trained `model`, per layer or over all layers (global)."""
    layers = dict(cfg.pruned(model))
    names = list(layers)
    new = {n: masks[n].clone() for n in names}
    if cfg.scope == "layer":
        rates = _layer_rates(cfg, names)
        for n in names:
            w = weight_of(layers[n]).abs().ravel().numpy()
            alive = np.flatnonzero(masks[n].ravel().numpy() > 0)
            k = int(round(rates[n] * len(alive)))
            drop = alive[np.argsort(w[alive], kind="stable")[:k]]
            flat = new[n].view(-1)
            flat[torch.as_tensor(drop, dtype=torch.long)] = 0.0
    else:
        mags, owners, idx = [], [], []
        for j, n in enumerate(names):
            w = weight_of(layers[n]).abs().ravel().numpy()
            alive = np.flatnonzero(masks[n].ravel().numpy() > 0)
            mags.append(w[alive])
            owners.append(np.full(len(alive), j))
            idx.append(alive)
        mags, owners, idx = np.concatenate(mags), np.concatenate(owners), np.concatenate(idx)
        k = int(round(cfg.rate * len(mags)))
        pick = np.argsort(mags, kind="stable")[:k]
        for j, n in enumerate(names):
            drop = idx[pick][owners[pick] == j]
            new[n].view(-1)[torch.as_tensor(drop, dtype=torch.long)] = 0.0
    return new


def make_ticket(cfg: LotteryConfig, splits: Splits, state: dict, masks: dict) -> nn.Module:
    """A fresh network holding `state` (all parameters and buffers) with `masks` installed."""
    model = cfg.build(splits)
    model.load_state_dict(state)
    for n, m in cfg.pruned(model):
        set_mask(m, masks[n])
    return model


def _sparsity(masks: dict) -> dict:
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return {"overall": 1 - kept / total, "remaining_weights": kept, "total_weights": total,
            "layers": {n: 1 - float(m.mean()) for n, m in masks.items()}}


def run_lottery(splits: Splits, cfg: LotteryConfig = LotteryConfig(), *, out_dir=None, progress: bool = False,
                log=None, on_ticket: Callable | None = None) -> dict:
    """R rounds of IMP for every mode in cfg.modes; returns (and writes) the result dict.

    `on_ticket(mode, round, model, masks, source_state)` is called with each ticket
    just before it is retrained (source_state: W(0), W(k) or the random init).
    `tickets` (not written to JSON) holds the trained ticket of the last round of every
    mode. Writes lottery.json and lottery.png to `out_dir` when given.
    """
    t0 = time.time()
    say = log or (lambda *a: None)
    dense, w0, wk, k_iter = train_with_snapshots(cfg, splits, progress)
    names = [n for n, _ in cfg.pruned(dense)]
    full = {n: get_mask(m) for n, m in cfg.pruned(dense)}
    dense_res = {"test_acc": accuracy(dense, splits, "test"), "val_acc": accuracy(dense, splits, "val")}
    say(f"lottery: dense test acc {dense_res['test_acc']:.4f}; rewind point W(k), k = {k_iter} iterations")
    traj = [m for m in ("reset", "rewind") if m in cfg.modes]
    trained = {m: dense for m in traj}
    tickets = dict(trained)
    masks = {m: full for m in traj}
    src_state = {"reset": w0, "rewind": wk}
    rounds = [{"round": 0, "sparsity": 0.0, "remaining": 1.0, **{m: dict(dense_res) for m in traj}}]
    for r in range(1, cfg.rounds + 1):
        row = {"round": r}
        for mode in traj:
            masks[mode] = next_masks(trained[mode], masks[mode], cfg)
        for mode in cfg.modes:
            if mode == "random":
                mk = masks[cfg.random_source()]
                state = _state(_new_model(cfg, splits, cfg.train.seed + 1000 + r))
            else:
                mk = masks[mode]
                state = src_state[mode]
            ticket = make_ticket(cfg, splits, state, mk)
            if on_ticket is not None:
                on_ticket(mode, r, ticket, mk, state)
            train(ticket, splits, cfg.train, progress=progress, desc=f"lottery {mode} r{r}")
            tickets[mode] = ticket
            sp = _sparsity(mk)
            row[mode] = {"test_acc": accuracy(ticket, splits, "test"), "val_acc": accuracy(ticket, splits, "val"),
                         "sparsity": sp["overall"], "layer_sparsity": sp["layers"],
                         "remaining_weights": sp["remaining_weights"]}
            if mode != "random":
                trained[mode] = ticket
        first = row[traj[0]]
        row["sparsity"] = first["sparsity"]
        row["remaining"] = 1 - first["sparsity"]
        rounds.append(row)
        say("lottery: round {:>2}  {:5.1f}% left  ".format(r, 100 * row["remaining"]) +
            "  ".join(f"{m} {row[m]['test_acc']:.4f}" for m in cfg.modes))
    cfg_d = asdict(cfg)
    cfg_d["modes"] = list(cfg.modes)
    result = {"method": "lottery", "papers": ["Frankle & Carbin, ICLR 2019", "Frankle et al., ICML 2020 (rewinding)"],
              "config": cfg_d, "dataset": splits.name, "layers": names, "rewind_iteration": k_iter,
              "random_masks_from": cfg.random_source() if "random" in cfg.modes else None,
              "dense": dense_res, "rounds": rounds, "seconds": time.time() - t0}
    if out_dir is not None:
        write_result(result, out_dir, "lottery", plot_lottery)
    result["tickets"] = tickets
    return result


def summarize_seeds(results: list, out_dir=None) -> dict:
    """Per-round mean / min / max test accuracy of every mode over runs with different
    seeds (same rounds and rate); with `out_dir`, also lottery_mean.png there."""
    modes = results[0]["config"]["modes"]
    rows = []
    for i, r0 in enumerate(results[0]["rounds"]):
        row = {"round": r0["round"], "remaining": r0["remaining"]}
        for m in modes:
            v = [res["rounds"][i][m]["test_acc"] for res in results if m in res["rounds"][i]]
            if v:
                row[m] = {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}
        rows.append(row)
    dense = [res["dense"]["test_acc"] for res in results]
    agg = {"dense_test_acc_mean": float(np.mean(dense)), "rounds_mean": rows}
    if out_dir is not None:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        style = {"reset": ("o-", "reset to W(0)"), "rewind": ("s-", "rewind to W(k)"),
                 "random": ("^--", "random re-init (same masks)")}
        for m in modes:
            pts = [(100 * r["remaining"], r[m]) for r in rows if m in r]
            x = [p[0] for p in pts]
            ax.plot(x, [100 * p[1]["mean"] for p in pts], style[m][0], label=style[m][1])
            ax.fill_between(x, [100 * p[1]["min"] for p in pts], [100 * p[1]["max"] for p in pts], alpha=0.15)
        ax.axhline(100 * agg["dense_test_acc_mean"], color="gray", ls=":", label="dense")
        ax.set_xscale("log")
        lowest = min(100 * r["remaining"] for r in rows)
        ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= 0.9 * lowest]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel("test accuracy (%): mean, band = min..max")
        ax.set_title(f"Lottery tickets, {len(results)} seeds "
                     f"({results[0]['config']['model']} on {results[0]['dataset']})")
        ax.legend()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_figure(fig, Path(out_dir) / "lottery_mean.png")
    return agg


def plot_lottery(result: dict, path) -> None:
    """Test accuracy vs weights remaining of every mode, one run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"reset": ("o-", "reset to W(0)"), "rewind": ("s-", f"rewind to W(k), k = {result['rewind_iteration']} it"),
             "random": ("^--", "random re-init (same masks)")}
    for mode in result["config"]["modes"]:
        pts = [(100 * r["remaining"], 100 * r[mode]["test_acc"]) for r in result["rounds"] if mode in r]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, style[mode][0], label=style[mode][1])
    ax.axhline(100 * result["dense"]["test_acc"], color="gray", ls=":", label="dense")
    ax.set_xscale("log")
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1)
             if t >= 0.9 * min(100 * r["remaining"] for r in result["rounds"])]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    c = result["config"]
    ax.set_title(f"Lottery tickets: {c['model']} on {result['dataset']}, "
                 f"{c['scope']} pruning {100 * c['rate']:.0f}%/round")
    ax.legend()
    save_figure(fig, path)


# --------------------------------------------------------------------------- `eie prune lottery`

def _modes(opts) -> tuple:
    return tuple(m.strip() for m in opts.modes.split(",") if m.strip())


def _config(opts, **kw) -> LotteryConfig:
    return LotteryConfig(rounds=opts.rounds, rate=opts.rate, scope=opts.scope,
                         output_rate_factor=opts.output_rate_factor, rewind=opts.rewind,
                         rewind_unit=opts.rewind_unit, modes=_modes(opts), **kw)


def resolve_options(opts):
    """The exported ticket's default (rewind if run, else the first mode), and every check
    of LotteryConfig that combines options, before any training."""
    modes = _modes(opts)
    opts.export = opts.export or ("rewind" if "rewind" in modes else modes[0])
    if opts.export not in modes:
        raise ValueError(f"export {opts.export!r}: not among the modes run ({', '.join(modes)})")
    _config(opts)
    return opts


def run(model, splits, ctx, seed, opts):
    """One seed (pruning/registry.py). The dense run is redone from W(0) (the seeded
    initialisation of the cached dense `model`) to record W(k); the exported network is
    the last round's ticket of `opts.export` (filled in by `resolve_options`)."""
    cfg = _config(opts, model=ctx.model, layers=ctx.layers, bias=ctx.bias, train=ctx.dense.with_(seed=seed))
    res = run_lottery(splits, cfg, progress=ctx.progress, log=progress_log(ctx))
    return res.pop("tickets")[opts.export], {"lottery": res, "exported_ticket": opts.export}


def plots(report, out) -> list[str]:
    files = plot_per_seed(report, out, "lottery", plot_lottery)
    if len(report["runs"]) > 1:
        summarize_seeds([r["lottery"] for r in report["runs"]], out)
        files.append("lottery_mean.png")
    return files


def compare_schedule(kept: float, rate: float) -> tuple[int, float]:
    """(rounds, rate): the fewest rounds of at most `rate` that reach `kept`, and the
    rate that lands on it (kept = (1 - rate) ** rounds)."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), not {rate!r}")
    if kept >= 1:
        return 0, rate
    rounds = int(np.ceil(np.log(kept) / np.log(1 - rate) - 1e-9))
    return rounds, 1 - kept ** (1 / rounds)


def compare_note(settings) -> str:
    rounds, rate = compare_schedule(1 - settings.sparsity, settings.lottery_rate)
    return (f"{rounds} rounds of global IMP at {100 * rate:.1f} % of the remaining weights (lands on "
            f"{100 * (1 - settings.sparsity):g} % up to rounding), survivors rewound to W({settings.lottery_rewind} "
            f"epoch), each round retrains the dense schedule (no finetuning budget)")


def compare(model, splits, ctx, seed, settings) -> nn.Module:
    """The rewound ticket after global IMP to the compared sparsity (see `compare_note`);
    `model` (the dense network of `seed`) is reproduced from W(0) to record W(k)."""
    rounds, rate = compare_schedule(1 - settings.sparsity, settings.lottery_rate)
    if rounds == 0:
        return model
    cfg = LotteryConfig(rounds=rounds, rate=rate, scope="global", rewind=settings.lottery_rewind, modes=("rewind",),
                        model=ctx.model, layers=ctx.layers, bias=ctx.bias, train=ctx.dense.with_(seed=seed))
    return run_lottery(splits, cfg, progress=ctx.progress, log=progress_log(ctx))["tickets"]["rewind"]
