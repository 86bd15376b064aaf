"""Method 1: fine-grained magnitude pruning on `torch.nn.utils.prune`, per layer or global.

Masks live where `torch.nn.utils.prune` puts them: `weight_orig` (a Parameter) and
`weight_mask` (a buffer), with a forward pre-hook that sets `weight = weight_orig *
weight_mask`. Finetuning therefore keeps every pruned weight at exactly zero without
any extra step. `remove_pruning` calls `prune.remove` once per pruned (module, name)
and leaves plain `weight` Parameters (zeros baked in) for export.

Pitfalls this module handles (each one has a test in tests/test_pruning_magnitude.py):

- `prune.*(amount=...)` on an already pruned tensor prunes that amount *of the weights
  still unpruned* (a PruningContainer combines the masks). `prune_to` therefore asks
  for a target sparsity and converts it to the integer number of extra weights.
- `global_unstructured` ranks raw |w| across layers; already pruned weights are
  excluded by their mask, so repeated global steps reach the requested overall sparsity.
- `copy.deepcopy` of a pruned model fails ("Only Tensors created explicitly by the
  user ... support the deepcopy protocol": `module.weight` is a non-leaf tensor); use
  `clone_model`.
- The state dict of a pruned model has `weight_orig`/`weight_mask` keys that a fresh
  model cannot load; `plain_state_dict` removes the reparametrisation on a copy and
  `apply_masks_from_zeros` restores masks from the zeros of a plain checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .models import fc_layers, prunable_layers

__all__ = ["SCOPES", "target_layers", "is_pruned", "weight_of", "layer_sparsity", "sparsity_report",
           "overall_sparsity", "kept_fraction", "prune_to", "remove_pruning", "clone_model",
           "plain_state_dict", "apply_masks_from_zeros", "masks"]

SCOPES = ("layer", "global")


def target_layers(model: nn.Module, which: str = "fc") -> list[tuple[str, nn.Module]]:
    """Layers a method prunes: `fc` (the Linear layers, what EIE runs) or `all` (also convs)."""
    if which == "fc":
        return fc_layers(model)
    if which == "all":
        return prunable_layers(model)
    raise ValueError(f"layers must be 'fc' or 'all', not {which!r}")


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, f"{name}_mask") and hasattr(module, f"{name}_orig")


def weight_of(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The effective weight (mask applied), detached."""
    with torch.no_grad():
        if is_pruned(module, name):
            return (getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")).detach()
        return getattr(module, name).detach()


def layer_sparsity(module: nn.Module, name: str = "weight") -> float:
    w = weight_of(module, name)
    return float((w == 0).sum()) / w.numel()


def sparsity_report(model: nn.Module, layers: str = "fc") -> dict:
    """{layer: {params, zeros, sparsity}} over the effective weights."""
    out = {}
    for n, m in target_layers(model, layers):
        w = weight_of(m)
        z = int((w == 0).sum())
        out[n] = {"params": w.numel(), "zeros": z, "sparsity": z / w.numel()}
    return out


def overall_sparsity(model: nn.Module, layers: str = "fc") -> float:
    rep = sparsity_report(model, layers)
    return sum(r["zeros"] for r in rep.values()) / max(1, sum(r["params"] for r in rep.values()))


def kept_fraction(model: nn.Module, layers: str = "fc") -> float:
    return 1.0 - overall_sparsity(model, layers)


def _check_fraction(x, what):
    x = float(x)
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{what}: a sparsity must be in [0, 1), not {x!r}")
    return x


def _n_masked(module) -> int:
    """Weights already removed by a mask (exact zeros not yet masked are pruned first,
    being the smallest, so counting the mask keeps `amount` exact)."""
    return int((module.weight_mask == 0).sum()) if is_pruned(module) else 0


def prune_to(model: nn.Module, sparsity: float | Mapping[str, float], *, scope: str = "layer",
             layers: str = "fc") -> dict:
    """Magnitude-prune so that the effective weights reach `sparsity` (fraction of zeros).

    `sparsity` is one number (every layer, or the whole set with scope="global") or a
    {layer name: sparsity} mapping (scope="layer" only; layers not named are untouched).
    Works on already pruned models: only the missing number of weights is pruned, as an
    integer `amount`, so the result is exact. Returns `sparsity_report`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    named = target_layers(model, layers)
    if scope == "global":
        if isinstance(sparsity, Mapping):
            raise ValueError("global pruning takes one overall sparsity, not per-layer ratios")
        s = _check_fraction(sparsity, "global sparsity")
        total = sum(m.weight.numel() for _, m in named)
        extra = round(s * total) - sum(_n_masked(m) for _, m in named)
        if extra > 0:
            prune.global_unstructured([(m, "weight") for _, m in named], pruning_method=prune.L1Unstructured,
                                      amount=int(extra))
        return sparsity_report(model, layers)
    per = dict(sparsity) if isinstance(sparsity, Mapping) else {n: sparsity for n, _ in named}
    names = {n for n, _ in named}
    unknown = sorted(set(per) - names)
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}: expected some of {sorted(names)}")
    for n, m in named:
        if n not in per:
            continue
        s = _check_fraction(per[n], f"sparsity of {n}")
        extra = round(s * m.weight.numel()) - _n_masked(m)
        if extra > 0:
            prune.l1_unstructured(m, "weight", amount=int(extra))
    return sparsity_report(model, layers)


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{module name: weight_mask} of every pruned module (copies)."""
    return {n: m.weight_mask.detach().clone() for n, m in model.named_modules() if is_pruned(m)}


def remove_pruning(model: nn.Module) -> nn.Module:
    """`prune.remove` once per pruned (module, name): plain Parameters, zeros baked in."""
    for _, m in model.named_modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    return model


def _pruned_attrs(model) -> Iterable[tuple[nn.Module, str]]:
    for _, m in model.named_modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                yield m, hook._tensor_name


def clone_model(model: nn.Module) -> nn.Module:
    """deepcopy that also works for pruned and parametrised (weight-shared) models.

    - Pruned: `module.weight` is a non-leaf tensor, which deepcopy refuses; it is
      detached for the copy (the forward pre-hook recomputes it anyway).
    - Parametrised: torch's deepcopy gives the copy the *same* dynamically created
      `Parametrized<Cls>` class, so `remove_parametrizations` on the copy would delete
      the property from the original's class too. Each copied module gets its own class.
    """
    from torch.nn.utils import parametrize

    saved = []
    for m, name in _pruned_attrs(model):
        saved.append((m, name, getattr(m, name)))
        setattr(m, name, getattr(m, name).detach())
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
