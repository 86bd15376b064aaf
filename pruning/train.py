"""Training, evaluation and cached dense checkpoints (CPU, seeded, minutes at most)."""

from __future__ import annotations

import math
import os
import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from eie.common import cache_key

from .data import Splits, load_splits
from .models import build_model
from .registry import SHIFT_MAX

__all__ = ["TrainConfig", "set_seed", "train", "evaluate", "accuracy", "dense_model", "CACHE_DIR", "finetune",
           "finetune_budget", "set_threads", "torch_threads", "random_shift", "LR_SCHEDULES"]

CACHE_DIR = Path("build/prune/cache")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    lr_schedule: str = "constant"   # or "cosine": lr decays to 0 over the run (per step)
    optimizer: str = "adam"         # or "sgd": momentum 0.9 (with weight_decay: Caffe's LeNet solvers)
    shift: int = 0                  # training images moved by up to this many pixels (image data only)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}")
        if not 0 <= self.shift <= SHIFT_MAX:
            raise ValueError(f"shift must be 0 to {SHIFT_MAX} pixels, not {self.shift!r}")

    def with_(self, **kw) -> "TrainConfig":
        return replace(self, **kw)


def set_threads() -> int:
    """Torch threads = the machine's cores (2 here): LeNet-5's convolutions gain from both.
    $EIE_TORCH_THREADS overrides it (1 on a machine that other jobs keep busy: busy OpenMP
    threads then wait on each other)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("EIE_TORCH_THREADS", "").isdigit():
        n = int(os.environ["EIE_TORCH_THREADS"])
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int):
    """Run the block with `n` torch threads, then restore the count. Jobs use one thread
    whoever runs them: the count changes the order of float sums, so a job gives the same
    numbers serially, on a pool or on Ray only with the same count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, x, y, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1]."""
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


def accuracy(model: nn.Module, splits: Splits, part: str = "test") -> float:
    return evaluate(model, getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}"))


def random_shift(x: torch.Tensor, image_shape, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image of the batch `x` (flattened, (batch, H*W)) moved by its own random
    whole-pixel offset of -shift..shift rows and columns, zeros shifted in: the
    translation augmentation of MNIST training, which the network's weights never see
    at inference."""
    h, w = image_shape
    b, pw = x.shape[0], w + 2 * shift
    padded = nn.functional.pad(x.reshape(b, h, w), (shift, shift, shift, shift)).reshape(b, -1)
    dy = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen)
    window = (torch.arange(h).view(h, 1) * pw + torch.arange(w).view(1, w)).reshape(1, -1)
    return padded.gather(1, window + dy * pw + dx).reshape(x.shape)   # one flat gather: 2.5x faster than 3-D indexing


def train(model: nn.Module, splits: Splits, cfg: TrainConfig, *,
          extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
          after_step: Callable[[nn.Module], None] | None = None,
          progress: bool = False, desc: str = "train") -> list[dict]:
    """Adam (or SGD with momentum) on cross-entropy (+ `extra_loss(model)`, e.g. L1); `after_step` runs after each
    optimiser step (e.g. re-applying masks); `cfg.shift` moves every training image at random
    (image data only). Returns the per-epoch history."""
    set_seed(cfg.seed)
    if cfg.shift and splits.image_shape is None:
        raise ValueError(f"shift needs image data, and {splits.name} is 1-D")
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = torch.as_tensor(splits.x_train)
    y = torch.as_tensor(splits.y_train)
    gen = torch.Generator().manual_seed(cfg.seed)
    shifts = torch.Generator().manual_seed(cfg.seed + 1)   # its own stream: shift 0 keeps the batches as they were
    history = []
    per_epoch = -(-len(y) // cfg.batch_size)
    total_steps, step = max(1, cfg.epochs * per_epoch), 0
    for epoch in tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), cfg.batch_size):
            if cfg.lr_schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            step += 1
            idx = perm[i:i + cfg.batch_size]
            xb = x[idx] if not cfg.shift else random_shift(x[idx], splits.image_shape, cfg.shift, shifts)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
        history.append({"epoch": epoch, "loss": total / len(y)})
    model.eval()
    return history


def dense_model(model_name: str = "mlp", dataset: str = "digits", cfg: TrainConfig = TrainConfig(), *,
                bias: bool = False, data_path=None, cache_dir: Path | None = CACHE_DIR, progress: bool = False,
                subset_size: int | None = None):
    """(trained dense model, splits): trained once per (model, bias, data, config), then
    loaded from `cache_dir` (None: no cache). The default network has no biases (EIE
    computes ReLU(W a)); with and without biases the files differ
    (`<model>-<dataset>-<key>.pt` and `<model>-nobias-<dataset>-<key>.pt`). `subset_size`:
    the first that many training images and a fifth as many validation and test images
    (quick runs and tests)."""
    splits = load_splits(dataset, data_path, cache_dir, subset_size)
    set_seed(cfg.seed)
    model = build_model(model_name, splits.n_features, splits.n_classes, splits.image_shape, bias=bias)
    path = None
    if cache_dir is not None:
        config = {k: v for k, v in asdict(cfg).items()            # the defaults added later keep the old keys
                  if (k, v) not in (("lr_schedule", "constant"), ("optimizer", "adam"), ("shift", 0))}
        parts = ((model_name, dataset, str(data_path), config) + (() if bias else ("no-bias",))
                 + (() if subset_size is None else (("subset", subset_size),)))
        path = Path(cache_dir) / f"{model_name}{'' if bias else '-nobias'}-{dataset}-{cache_key(*parts)}.pt"
        if path.is_file():
            model.load_state_dict(torch.load(path, weights_only=True))
            model.eval()
            return model, splits
    train(model, splits, cfg, progress=progress, desc=f"dense {model_name}{'' if bias else ' (no bias)'}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return model, splits


def finetune(model: nn.Module, splits: Splits, cfg: TrainConfig, epochs: int, lr_scale: float = 0.1, *,
             extra_loss=None, progress: bool = False, desc: str = "finetune", seed_offset: int = 0) -> list[dict]:
    """Train `epochs` more at lr * lr_scale; pruning masks (if any) stay in force."""
    if epochs <= 0:
        return []
    fcfg = cfg.with_(lr=cfg.lr * lr_scale, epochs=epochs, seed=cfg.seed + 1000 + seed_offset)
    return train(model, splits, fcfg, extra_loss=extra_loss, progress=progress, desc=desc)


def finetune_budget(schedule) -> int:
    """Finetuning epochs of an iterative schedule (`steps` rounds of `ft_epochs`, then
    `final_epochs`; any object with those attributes): the budget every method gets in
    compare."""
    return schedule.steps * schedule.ft_epochs + schedule.final_epochs
