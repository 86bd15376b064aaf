"""The pruning methods: their names, options and entry points, as data.

`eie prune METHOD` builds one parser per entry of `METHODS` and `eie prune compare` runs
every entry's `compare` rows; neither knows a method by name. The table names functions
as "module:function" and imports a method's module only when it runs, so that building
the `eie` parser imports no PyTorch. A new method is one module plus one entry here.

Entry points (all in the method's own module, none of them parses a command line):
- `run(model, splits, ctx, seed, opts) -> (final model, extra)`: one seed; `opts` holds
  the method's options by name, `extra` goes into the report's `runs[]` entry (key
  `_reference_weights`: FC weights of the original network, for structured methods).
- `plots(report, out_dir) -> [png names]`.
- `resolve(opts)`: fills options whose default depends on other options.
- `seeds(opts) -> seeds`: default seeds that depend on the options.
- compare rows: `run(model, splits, ctx, seed, settings, **kwargs) -> model` and
  `note(settings, **kwargs) -> str` (how the method is brought to `settings.sparsity`);
  `settings` holds the compare options (`COMPARE_OPTIONS` and every method's
  `compare_options`).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from eie.cli_inputs import SEED_MAX, float_in, int_in, list_of

__all__ = ["Option", "CompareRow", "Method", "METHODS", "MODELS", "PRESETS", "preset", "default_model", "COMPARE_OPTIONS",
           "COMMON_DEFAULTS", "ONE_SHOT_BUDGET",
           "DEFAULT_RATIOS", "resolve", "fraction", "fractions", "seeds_list", "epochs", "learning_rate", "a_max_list",
           "EPOCHS_MAX", "SAMPLES_MAX", "SHIFT_MAX", "CENTROID_LR"]


# -- option types (argparse calls them; their messages are the user's error line) ----------
# Every numeric option has a range, checked when the command line is parsed (before the
# dense training); the parsers are eie/cli_inputs.py's. The bounds are generous: they
# catch typos and absurd values, not unusual experiments.
EPOCHS_MAX = 10_000
ROUNDS_MAX = 1_000               # prune -> finetune steps, lottery rounds, NetAdapt iterations
LR_MAX = 10.0
STRENGTH_MAX = 1_000.0           # L1 / L2 penalty strengths
SAMPLES_MAX = 10_000_000
EPISODES_MAX = 1_000_000
SEEDS_MAX = 100                  # seeds in one --seeds list
SHIFT_MAX = 8                    # --shift pixels: beyond that a 28x28 digit leaves the frame
CENTROID_LR = 1e-4               # Adam on the shared centroids (share.centroid_config)
ABSOLUTE_MAX = 1e15              # a budget or cut given as an absolute count (FLOPs, cycles, weights)

fraction = float_in(0, 1, hi_open=True)                       # a sparsity or a share of the weights
open_fraction = float_in(0, 1, lo_open=True, hi_open=True)    # a rate or a ratio that cannot be 0
lr_scale = float_in(0, 1, lo_open=True)
learning_rate = float_in(0, LR_MAX, lo_open=True)
strength = float_in(0, STRENGTH_MAX)
amount = float_in(0, ABSOLUTE_MAX, lo_open=True)              # <= 1: a fraction of dense, else absolute
epochs = int_in(0, EPOCHS_MAX)                                # finetuning epochs: 0 = none
rounds = int_in(1, ROUNDS_MAX)
samples = int_in(1, SAMPLES_MAX)
samples_or_all = int_in(0, SAMPLES_MAX)                       # 0: all of them
fractions = list_of(fraction)
seeds_list = list_of(int_in(0, SEED_MAX), SEEDS_MAX)


def subset_of(choices: tuple):
    """argparse type: a comma-separated subset of `choices`, each at most once (kept as text)."""
    def parse(text: str) -> str:
        vals = [t.strip() for t in text.split(",") if t.strip()]
        if not vals or set(vals) - set(choices) or len(set(vals)) < len(vals):
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(choices)}, "
                                             f"got {text[:60]!r}")
        return ",".join(vals)
    parse.__name__ = "subset"
    return parse


def a_max_list(text: str):
    """AMC's a_max: one value, or comma-separated values, one per pruned layer."""
    vals = tuple(list_of(open_fraction)(text))
    return vals[0] if len(vals) == 1 else vals


# -- the table's types -----------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One option: `--name-with-dashes` (or `flag`) on the command line, `name` in the report."""

    name: str
    default: Any = None
    help: str = ""
    type: Callable | None = None
    choices: tuple | None = None
    switch: bool = False          # a store_true flag
    flag: str | None = None       # the command-line spelling when it is not --<name>

    @property
    def cli(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class CompareRow:
    """One row of `eie prune compare`."""

    label: str
    run: str
    note: str
    kwargs: tuple = ()            # (name, value) pairs passed to run and note
    mlp_only: bool = False


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    run: str
    options: tuple[Option, ...]
    plots: str | None = None
    default_seeds: tuple[int, ...] = (0,)
    resolve: str | None = None
    seeds: str | None = None
    compare: tuple[CompareRow, ...] = ()
    compare_options: tuple[Option, ...] = field(default_factory=tuple)
    description: str | None = None
    jobs: bool = False            # `run` takes an executor= for its inner jobs: the command gets --workers/--ray


def resolve(ref: str) -> Callable:
    """The function a "module:function" reference names (modules of eie.pruning)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(f"eie.pruning.{module}"), name)


# -- networks and their defaults -----------------------------------------------------------------
# models.MODELS builds them; the descriptions are here so that the parser imports no torch.
MODELS = {
    "mlp": "n_in-300-100-10 MLP, no biases by default (64-300-100-10 on digits); every layer on EIE",
    "conv": "small BatchNorm conv net (network slimming's channels); not exported",
    "lenet300": "LeNet-300-100 of Han et al. 2015 (784-300-100-10 on MNIST), with biases; every layer on EIE",
    "lenet5": "LeNet-5, Caffe variant (conv 20@5x5, pool, conv 50@5x5, pool, FC 800-500-10), with biases; "
              "the FC layers on EIE, fed by the convs in PyTorch",
}
PAPER_MODELS = ("lenet300", "lenet5")   # biases by default, MNIST schedules below


def default_model(dataset: str) -> str:
    """The network a data set gets without --model: LeNet-300-100 on MNIST, else the MLP."""
    return "lenet300" if dataset == "mnist" else "mlp"


# The papers' networks train on 55,000 MNIST images (LeNet-5: ~12 s per epoch on the
# 2-core machine), not on 1,077 digits: shorter schedules, SGD with momentum and weight
# decay as Caffe's LeNet solvers (Adam overfits LeNet-300-100: 2.1 % test error after
# pruning vs 1.64 % with SGD), cosine decay per run, finetuning at the dense LR.
# LeNet-300-100 trains on images moved by up to 1 pixel (--shift 1; dense validation error
# 1.96 % without, 1.22 % with 1 pixel, 1.30 % with 2, seed 0, 30 epochs).
# {model: {"*": common options, method: that method's options}}; an option the user
# gives on the command line wins. Chosen on the validation split (docs/pruning.md).
_SGD = {"batch_size": 128, "lr_schedule": "cosine", "optimizer": "sgd", "weight_decay": 5e-4, "lr_scale": 1.0}
PRESETS: dict[str, dict[str, dict]] = {
    "lenet300": {
        "*": _SGD | {"epochs": 30, "lr": 0.05, "steps": 4, "ft_epochs": 6, "final_epochs": 30,
                     "centroid_epochs": 5, "reg_epochs": 10, "shift": 1},
        "magnitude": {"ft_epochs": 54},
        "regularize": {"ft_epochs": 54},
        "slimming": {"reg_epochs": 10, "ft_epochs": 54},
        "lottery": {"rounds": 8},
        "netadapt": {"long_epochs": 20, "latency_samples": 32},
        "amc": {"finetune_epochs": 20, "val_samples": 1000},
        "compare": {"amc_val_samples": 1000},
    },
    "lenet5": {
        "*": _SGD | {"epochs": 8, "lr": 0.02, "steps": 2, "ft_epochs": 2, "final_epochs": 4, "centroid_epochs": 1,
                     "reg_epochs": 3, "layers": "all"},
        "magnitude": {"ft_epochs": 8},
        "regularize": {"ft_epochs": 8},
        "slimming": {"reg_epochs": 3, "ft_epochs": 8},
        "lottery": {"rounds": 5},
        "netadapt": {"long_epochs": 6, "short_epochs": 1, "latency_samples": 16},
        "amc": {"finetune_epochs": 6, "val_samples": 1000, "baselines": 300},
        "compare": {"amc_val_samples": 1000},
    },
}


def preset(model: str, method: str | None, name: str):
    """The papers' networks' default of option `name` for `method` (None: none)."""
    table = PRESETS.get(model, {})
    for key in (method, "*"):
        if key is not None and name in table.get(key, {}):
            return table[key][name]
    return None


# -- shared options ----------------------------------------------------------------------------
# Equal to train.TrainConfig(), finetune.FinetuneConfig().lr_scale and sensitivity.DEFAULT_RATIOS
# (tests/test_pruning_cli.py checks that); kept here so that the parser imports no torch.
COMMON_DEFAULTS = {"epochs": 60, "lr": 1e-3, "batch_size": 64, "lr_scale": 0.1}
DEFAULT_RATIOS = tuple(round(0.1 * i, 1) for i in range(10))
ONE_SHOT_BUDGET = 4 * 60 + 150    # the iterative schedule's default finetuning epochs

LR_SCALE = Option("lr_scale", COMMON_DEFAULTS["lr_scale"], type=lr_scale,
                  help="finetuning learning rate as a fraction of --lr (default 0.1; 0.01 is the other end)")
ONE_SHOT_FT = Option("ft_epochs", ONE_SHOT_BUDGET, type=epochs,
                     help=f"finetuning epochs after pruning (default {ONE_SHOT_BUDGET}: the iterative budget)")
ITERATIVE = (Option("steps", 4, type=rounds, help="prune -> finetune rounds (default 4)"),
             Option("schedule", "geometric", choices=("geometric", "linear"),
                    help="geometric: each round keeps the same share of what is left"),
             Option("ft_epochs", 60, type=epochs, help="finetuning epochs per round (default 60)"),
             Option("final_epochs", 150, type=epochs,
                    help="extra finetuning after the last round (default 150)"),
             LR_SCALE)
SPARSITY = Option("sparsity", 0.92, type=fraction, help="fraction of the weights to remove (default 0.92: 8 %% kept)")
SCOPE = Option("scope", "global", choices=("layer", "global"),
               help="the same ratio in every layer, or one |w| threshold across layers")
ITER_SCOPE = Option("scope", "global", choices=("layer", "global", "sensitivity"),
                    help="the same ratio in every layer, one |w| threshold across layers, or per-layer ratios "
                         "from a sensitivity scan that reach --sparsity overall (Han et al. 2015)")
SWEEP = Option("sweep", "0.5,0.7,0.8,0.9,0.95", type=fractions, help="sparsities of the no-finetune sweep (plot)")

# The options of `eie prune compare` itself (the methods add their compare_options).
COMPARE_OPTIONS = (SPARSITY, Option("reg_epochs", 40, type=epochs, help="regularised training epochs"),
                   *ITERATIVE)
MATCHED = "iterative:matched_note"

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("magnitude", "one-shot fine-grained magnitude pruning + finetune", "magnitude:run",
           (SPARSITY, SCOPE, SWEEP, LR_SCALE, ONE_SHOT_FT), plots="magnitude:plots",
           compare=(CompareRow("magnitude one-shot (per layer)", "magnitude:compare", MATCHED, (("scope", "layer"),)),
                    CompareRow("magnitude one-shot (global)", "magnitude:compare", MATCHED, (("scope", "global"),)))),
    Method("iterative", "iterative prune -> finetune to the target, vs one-shot at equal budget", "iterative:run",
           (SPARSITY, ITER_SCOPE, Option("no_one_shot", False, "skip the one-shot comparison", switch=True),
            *ITERATIVE),
           plots="iterative:plots", default_seeds=(0, 1, 2),
           compare=(CompareRow("iterative (per layer)", "iterative:compare", MATCHED, (("scope", "layer"),)),
                    CompareRow("iterative (global)", "iterative:compare", MATCHED, (("scope", "global"),)))),
    Method("sensitivity", "per-layer sensitivity scan, ratios under a threshold, iterative finetune",
           "sensitivity:run",
           (Option("ratios", ",".join(f"{r:g}" for r in DEFAULT_RATIOS), type=fractions,
                   help="pruning ratios of the scan (default 0,0.1,...,0.9)"),
            Option("threshold", 0.02, type=float_in(0, 1),
                   help="degradation threshold T: largest accuracy drop allowed per layer (default 0.02)"),
            *ITERATIVE), plots="sensitivity:plots",
           compare=(CompareRow("sensitivity-guided iterative", "sensitivity:compare", MATCHED),), jobs=True),
    Method("regularize", "L1 / L2 weight regularisation, then magnitude pruning + finetune", "regularize:run",
           (Option("penalty", "l1", choices=("l1", "l2")),
            Option("lam", None, type=strength, help="strength (default 1e-4 for l1, 1e-3 for l2)"),
            Option("reg_epochs", 40, type=epochs,
                   help="regularised training epochs, starting from the dense model"),
            SPARSITY, SCOPE, SWEEP, LR_SCALE, ONE_SHOT_FT),
           plots="regularize:plots", resolve="regularize:resolve_options",
           compare=(CompareRow("L1 + one-shot global", "regularize:compare", MATCHED, (("kind", "l1"),)),
                    CompareRow("L2 + one-shot global", "regularize:compare", MATCHED, (("kind", "l2"),))),
           compare_options=(Option("l1", 1e-4, type=strength, help="L1 strength"),
                            Option("l2", 1e-3, type=strength, help="L2 strength"))),
    Method("slimming", "network slimming: L1 on per-neuron / BatchNorm scales, remove the smallest", "slimming:run",
           (Option("lam", 1e-2, type=strength, help="L1 strength on the scaling factors (default 1e-2)"),
            Option("reg_epochs", 60, type=epochs, help="training epochs with the L1 term"),
            Option("kept", 0.08, type=fraction,
                   help="MLP: keep neurons until at most this fraction of the FC weights remains (default 0.08)"),
            Option("ratio", None, type=fraction,
                   help="remove this fraction of all neurons / channels instead (conv default 0.5)"),
            LR_SCALE, ONE_SHOT_FT), plots="slimming:plots",
           compare=(CompareRow("network slimming (structured)", "slimming:compare", "slimming:compare_note",
                               mlp_only=True),),
           compare_options=(Option("slim_lam", 1e-2, type=strength, help="slimming L1 strength"),)),
    Method("share", "weight sharing (k-means, 16 entries, trained centroids) + EIE export", "share:run",
           (Option("from_checkpoint", None, type=Path, flag="--from",
                   help="start from this pruned checkpoint (.pt of another method) instead of iterative pruning"),
            Option("sparsity", 0.92, type=fraction, help="iterative target without --from"), ITER_SCOPE,
            Option("centroid_epochs", 30, type=epochs, help="centroid finetuning epochs"),
            Option("centroid_lr", CENTROID_LR, type=learning_rate,
                   help="centroid finetuning learning rate (always Adam, no weight decay; default 1e-4)"),
            *ITERATIVE),
           plots="share:plots", default_seeds=(0, 1, 2), seeds="share:default_seeds"),
    Method("lottery", "lottery tickets: IMP with reset / rewind / random re-init", "lottery:run",
           (Option("rounds", 10, type=rounds, help="pruning rounds R"),
            Option("rate", 0.2, type=open_fraction, help="fraction of the remaining weights pruned per round"),
            Option("scope", "layer", choices=("layer", "global")),
            Option("output_rate_factor", 0.5, type=float_in(0, 100), help="per-layer scope: output layer rate factor"),
            Option("rewind", 1, type=int_in(0, SAMPLES_MAX), help="k of W(k)"),
            Option("rewind_unit", "epoch", choices=("epoch", "iter")),
            Option("modes", "reset,rewind,random", type=subset_of(("reset", "rewind", "random")),
                   help="comma-separated subset of reset,rewind,random"),
            Option("export", None, choices=("reset", "rewind", "random"),
                   help="whose last-round ticket is exported (default: rewind if run, else the first mode)")),
           plots="lottery:plots", resolve="lottery:resolve_options", description="Lottery tickets: iterative magnitude pruning with weight reset, "
                                              "rewinding, or random re-initialisation.",
           compare=(CompareRow("lottery ticket (global IMP, rewind)", "lottery:compare", "lottery:compare_note"),),
           compare_options=(
               Option("lottery_rate", 0.2, type=open_fraction,
                      help="lottery: about this fraction of the remaining weights per round (default 0.2)"),
               Option("lottery_rewind", 1, type=int_in(0, EPOCHS_MAX), help="lottery: rewind to W(k), k epochs (default 1)"))),
    Method("netadapt", "NetAdapt (Yang et al. 2018) with EIE cycles as the latency", "netadapt:run",
           (Option("resource", "cycles", choices=("cycles", "weights"),
                   help="cycles: EIE cycles per inference (default); weights: non-zero FC weights"),
            Option("delta", 0.1, type=amount, help="cut per iteration: < 1 fraction of dense, else absolute"),
            Option("delta_decay", 1.0, type=float_in(0, 1, lo_open=True),
                   help="delta shrinks by this factor each iteration (default 1: constant)"),
            Option("budget", 0.3, type=amount, help="stop at this: <= 1 fraction of dense, else absolute"),
            Option("iterations", 10, type=rounds, help="maximum NetAdapt iterations"),
            Option("short_epochs", 3, type=epochs, help="short-term finetune epochs per candidate"),
            Option("long_epochs", 20, type=epochs, help="long-term finetune epochs at the end"),
            Option("latency_samples", 32, type=samples, help="training samples the cycle model runs"),
            Option("sharing", "linear", choices=("linear", "kmeans"),
                   help="weight sharing inside the latency estimator"),
            Option("adapt_delta", False, switch=True,
                   help="when no layer alone can make the cut, cut as deep as one layer can instead of stopping")),
           plots="netadapt:plots", jobs=True,
           description="NetAdapt on the EIE cycle model (Yang et al., ECCV 2018, Algorithm 1).",
           compare=(CompareRow("NetAdapt (weights as resource)", "netadapt:compare", "netadapt:compare_note"),),
           compare_options=(
               Option("netadapt_delta", 0.1, type=amount,
                      help="NetAdapt: weights removed per iteration, fraction of the dense count (default 0.1)"),
               Option("netadapt_short_epochs", 3, type=epochs,
                      help="NetAdapt: short-term finetune epochs per candidate (default 3)"))),
    Method("amc", "AMC (He et al. 2018): DDPG agent picks per-layer pruning ratios", "amc:run",
           (Option("constraint", "flops", choices=("flops", "cycles"),
                   help="resource: FLOPs or EIE cycles per inference (default flops)"),
            Option("budget", 0.2, type=amount, help="<= 1: fraction of dense, else absolute FLOPs / cycles (default 0.2)"),
            Option("reward", "error", choices=("error", "error_log"),
                   help="-Error or -Error * log(resource) (default error)"),
            Option("episodes", 300, type=int_in(1, EPISODES_MAX), help="search episodes (default 300)"),
            Option("warmup", 100, type=int_in(0, EPISODES_MAX), help="episodes of uniform random actions first (default 100)"),
            Option("a_max", 0.98, type=a_max_list,
                   help="largest pruning ratio of a layer (AMC's action_max) for every layer but the output layer, "
                        "or comma-separated, one per layer (default 0.98)"),
            Option("a_max_last", 0.8, type=open_fraction,
                   help="largest pruning ratio of the output layer when --a-max is one value (default 0.8: it "
                        "keeps at least 20 %% of its weights)"),
            Option("reward_batches", 0, type=int_in(0, SAMPLES_MAX),
                   help="finetuning batches before the reward's accuracy is measured (default 0: accuracy "
                        "without finetuning, as in AMC)"),
            Option("reward_lr", 1e-3, type=learning_rate, help="learning rate (Adam) of those batches (default 0.001)"),
            Option("finetune_epochs", 30, type=epochs, help="finetuning of the best policy (default 30)"),
            Option("latency_samples", 16, type=samples, help="training samples the cycle model runs (default 16)"),
            Option("val_samples", 0, type=samples_or_all, help="validation samples per search episode (0: all)"),
            Option("baselines", 0, type=int_in(0, EPISODES_MAX),
                   help="also score the uniform-ratio policy and this many random policies at the same budget, "
                        "before finetuning, against the agent's (does it learn?; default 0: off)")),
           plots="amc:plots", description="AMC: AutoML for Model Compression (He et al., ECCV 2018).",
           compare=(CompareRow("AMC (DDPG, FLOPs budget)", "amc:compare", "amc:compare_note"),),
           compare_options=(
               Option("amc_episodes", 300, type=int_in(1, EPISODES_MAX), help="AMC: search episodes (default 300)"),
               Option("amc_warmup", 100, type=int_in(0, EPISODES_MAX), help="AMC: random warm-up episodes (default 100)"),
               Option("amc_a_max_last", 0.8, type=open_fraction,
                      help="AMC: largest pruning ratio of the output layer (default 0.8; the hidden layers' is 0.98)"),
               Option("amc_reward_batches", 0, type=int_in(0, SAMPLES_MAX),
                      help="AMC: finetuning batches before each episode's reward is measured (default 0: accuracy "
                           "without finetuning)"),
               Option("amc_val_samples", 0, type=samples_or_all,
                      help="AMC: validation samples per search episode (default 0: all)"))),
)}
