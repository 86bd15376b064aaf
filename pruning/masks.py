"""Pruning masks and model copies: the one API every method uses.

Masks live where `torch.nn.utils.prune` puts them: `weight_orig` (a Parameter) and
`weight_mask` (a buffer), with a forward pre-hook that sets `weight = weight_orig *
weight_mask`. Finetuning therefore keeps every pruned weight at exactly zero without any
extra step. `remove_pruning` calls `prune.remove` once per pruned (module, name) and
leaves plain `weight` Parameters (zeros baked in) for export.

Pitfalls handled here (each has a test in tests/test_pruning_magnitude.py):

- `copy.deepcopy` of a pruned model fails ("Only Tensors created explicitly by the
  user ... support the deepcopy protocol": `module.weight` is a non-leaf tensor); use
  `clone_model`.
- The state dict of a pruned model has `weight_orig`/`weight_mask` keys that a fresh
  model cannot load; `plain_state_dict` removes the reparametrisation on a copy and
  `apply_masks_from_zeros` restores masks from the zeros of a plain checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from .models import target_layers

__all__ = ["is_pruned", "weight_of", "get_mask", "set_mask", "masks", "refresh_weights", "clone_model",
           "magnitude_order", "sparsity_report", "sparsity_of", "overall_sparsity", "kept_fraction",
           "remove_pruning", "plain_state_dict", "apply_masks_from_zeros"]


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, f"{name}_mask") and hasattr(module, f"{name}_orig")


def weight_of(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The effective weight (mask applied): a detached copy the caller may change."""
    with torch.no_grad():
        if is_pruned(module, name):
            return (getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")).detach()
        return getattr(module, name).detach().clone()


def get_mask(module: nn.Module) -> torch.Tensor:
    """A copy of the weight's mask (all ones when the layer is not pruned)."""
    if is_pruned(module):
        return module.weight_mask.detach().clone()
    return torch.ones_like(module.weight, dtype=torch.float32)


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Install `mask` (1 = keep) on module.weight with torch.nn.utils.prune (replacing an older one)."""
    mask = mask.to(dtype=torch.float32)
    with torch.no_grad():
        if is_pruned(module):
            module.weight_mask.copy_(mask)
        else:
            prune.custom_from_mask(module, "weight", mask)
        module.weight = module.weight_orig * module.weight_mask  # what the forward pre-hook computes


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{module name: weight_mask} of every pruned module (copies)."""
    return {n: m.weight_mask.detach().clone() for n, m in model.named_modules() if is_pruned(m)}


def refresh_weights(model: nn.Module) -> None:
    """Recompute every pruned module's `weight` from the current `weight_orig` (after an
    optimiser step it still holds the value of the last forward pass)."""
    with torch.no_grad():
        for m in model.modules():
            if is_pruned(m):
                m.weight = m.weight_orig * m.weight_mask


def _pruned_attrs(model) -> Iterable[tuple[nn.Module, str]]:
    for _, m in model.named_modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                yield m, hook._tensor_name


def clone_model(model: nn.Module) -> nn.Module:
    """deepcopy that also works for pruned and parametrised (weight-shared) models.

    - Pruned: `module.weight` is a non-leaf tensor, which deepcopy refuses; it is
      detached for the copy (the forward pre-hook recomputes it anyway). The same for a
      shared bias (sharing.SharedBias).
    - Parametrised: torch's deepcopy gives the copy the *same* dynamically created
      `Parametrized<Cls>` class, so `remove_parametrizations` on the copy would delete
      the property from the original's class too. Each copied module gets its own class.
    """
    saved = []
    for m in model.modules():   # prune's `weight`, sharing's `bias`: tensors computed by a pre-hook
        for name, t in list(vars(m).items()):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                saved.append((m, name, t))
                setattr(m, name, t.detach())
    try:
        out = copy.deepcopy(model)
    finally:
        for m, name, t in saved:
            setattr(m, name, t)
    for m in out.modules():
        if parametrize.is_parametrized(m):
            cls = m.__class__
            ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            m.__class__ = type(cls.__name__, cls.__bases__, ns)
    return out


def magnitude_order(weight: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Flat indices of the surviving weights, smallest |w| first (ties by index: deterministic)."""
    w = np.abs(weight.detach().numpy().ravel())
    alive = np.flatnonzero(mask.detach().numpy().ravel() > 0)
    return alive[np.argsort(w[alive], kind="stable")]


def _zeros(layers) -> dict[str, tuple[int, int]]:
    """{name: (zeros, params)} of the effective weights of (name, module) pairs."""
    out = {}
    for n, m in layers:
        w = weight_of(m)
        out[n] = (int((w == 0).sum()), w.numel())
    return out


def sparsity_report(model: nn.Module, layers: str = "fc") -> dict:
    """{layer: {params, zeros, sparsity}} over the effective weights."""
    return {n: {"params": p, "zeros": z, "sparsity": z / p} for n, (z, p) in _zeros(target_layers(model, layers)).items()}


def sparsity_of(layers) -> dict:
    """Per-layer and overall fraction of zero weights of (name, module) pairs."""
    counts = _zeros(layers)
    zeros, total = sum(z for z, _ in counts.values()), sum(p for _, p in counts.values())
    return {"overall": zeros / max(1, total), "layers": {n: z / p for n, (z, p) in counts.items()}}


def overall_sparsity(model: nn.Module, layers: str = "fc") -> float:
    return sparsity_of(target_layers(model, layers))["overall"]


def kept_fraction(model: nn.Module, layers: str = "fc") -> float:
    return 1.0 - overall_sparsity(model, layers)


def remove_pruning(model: nn.Module) -> nn.Module:
    """`prune.remove` once per pruned (module, name): plain Parameters, zeros baked in."""
    for m, name in list(_pruned_attrs(model)):
        prune.remove(m, name)
    return model


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without weight_orig/weight_mask (pruning removed on a copy)."""
    return remove_pruning(clone_model(model)).state_dict()


def apply_masks_from_zeros(model: nn.Module, layers: str = "fc") -> nn.Module:
    """Re-attach masks (custom_from_mask) at the zeros of a plain pruned model, e.g. a
    loaded checkpoint, so that finetuning keeps them."""
    for _, m in target_layers(model, layers):
        if not is_pruned(m):
            w = m.weight.detach()
            if bool((w == 0).any()):
                prune.custom_from_mask(m, "weight", mask=(w != 0).to(w.dtype))
    return model
