"""Models and data splits handed to jobs (eie/jobs.py), which take JSON-able arguments and
may run on another machine.

- A model travels as text: base64 of `torch.save` of its architecture, its state dict
  and the names of its pruned modules. The state dict of a pruned module holds its
  mask and the weights under it (`weight_orig`), so the worker's copy computes exactly
  what the original does, and so does the copy a job sends back. (A checkpoint,
  pipeline.save_checkpoint, bakes the zeros in instead.) Weight-shared models are
  refused: a sharing parametrisation does not travel.
- Splits travel as the arguments that load them again (`Splits.source`, set by
  `data.load_splits`); a worker loads them once and keeps them for its later jobs. This
  process gets the object itself (`handed_splits`), so serial jobs load nothing; splits
  made by hand (no source) can therefore run serially only.
"""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from eie.common import cache_key
from eie.jobs import Executor, worker_cache

from .data import Splits, load_splits
from .masks import is_pruned, refresh_weights
from .pipeline import arch_of, build_from_arch

__all__ = ["model_to_text", "model_from_text", "handed_splits", "splits_from"]


def model_to_text(model: nn.Module) -> str:
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError("a weight-shared model cannot be handed to a job (its parametrisation does not travel)")
    obj = {"arch": arch_of(model), "pruned": [n for n, m in model.named_modules() if is_pruned(m)],
           "state": model.state_dict(), "training": model.training}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def model_from_text(text: str) -> nn.Module:
    obj = torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)
    model = build_from_arch(obj["arch"])
    modules = dict(model.named_modules())
    for name in obj["pruned"]:                 # the reparametrisation first, so that the keys match
        prune.identity(modules[name], "weight")
    model.load_state_dict(obj["state"])
    refresh_weights(model)
    return model.train(obj["training"])


def _splits_key(source: dict) -> str:
    return "splits-" + cache_key(source)


@contextmanager
def handed_splits(splits: Splits, executor: Executor):
    """The jobs' argument for `splits`; this process finds the object itself under it
    while the block runs (its serial jobs load nothing)."""
    if splits.source is None:
        if executor.ray or executor.workers > 1:
            raise ValueError("these splits were not made by data.load_splits (no `source`), so other processes "
                             "cannot load them: run the jobs serially (one worker)")
        arg = {"key": f"local-{id(splits)}", "source": None}
    else:
        arg = {"key": _splits_key(splits.source), "source": splits.source}
    cache = worker_cache().setdefault("splits", {})
    had = arg["key"] in cache
    cache[arg["key"]] = splits
    try:
        yield arg
    finally:
        if not had:
            cache.pop(arg["key"], None)


def splits_from(arg: dict) -> Splits:
    """The splits of a `handed_splits` argument: this process's object, or loaded once."""
    cache = worker_cache().setdefault("splits", {})
    if arg["key"] not in cache:
        if arg["source"] is None:
            raise RuntimeError("splits without a source reached another process")
        cache[arg["key"]] = load_splits(**arg["source"])
    return cache[arg["key"]]
