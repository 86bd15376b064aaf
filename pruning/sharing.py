"""Method 8: weight sharing (Deep Compression) with trained centroids.

Per layer, the non-zero weights are clustered by k-means into 15 centroids (the
golden model's `kmeans_codebook`: linear initialisation, entry 0 reserved for the exact
zero), so that every weight becomes a 4-bit index into a 16-entry codebook. The pruned
weights get index 0 and stay exactly 0.

Centroid finetuning: the layer's weight becomes a `torch.nn.utils.parametrize`
parametrisation `weight = [0, c_1 ... c_15][idx]` whose stored tensor (`original`) is the
15 centroids. Autograd through the indexing gives dL/dc_k = sum of dL/dW_ij over the
weights with idx_ij = k, the Deep Compression rule, and the optimiser updates the
centroids only: the index matrix (so the sharing and the zeros) cannot change.
`unshare` removes the parametrisation and leaves plain weights equal to the codebook
lookup.

Biases share the layer's codebook. EIE stores a layer's bias as one more CSC column whose
activation is always 1.0 (as the authors' FC8 data does), so the hardware's bias of row i
is a codebook entry like any weight. k-means therefore runs over the kept weights and
the biases together, and the bias becomes `bias = [0, c_1 ... c_15][bias_idx]` on the
same trainable centroids (a forward pre-hook, `SharedBias`, recomputes it, as
torch.nn.utils.prune does for masked weights): centroid finetuning gets the biases'
gradients too, and the float model computes what EIE computes. A bias that snaps to the
zero entry is exactly 0 (it stores no entry).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from eie.golden_model.codebook import assign_indices, kmeans_codebook

from .masks import is_pruned, remove_pruning, weight_of
from .models import target_layers

__all__ = ["SharedWeight", "SharedBias", "share_layer", "share_weights", "is_shared", "codebook_of", "codebooks",
           "unshare", "shared_bias", "has_shared_bias", "distinct_nonzero", "CODEBOOK_SIZE"]

CODEBOOK_SIZE = 16


class SharedWeight(nn.Module):
    """Parametrisation: 15 trainable centroids -> weight = [0, centroids][idx]."""

    def __init__(self, idx: torch.Tensor, codebook: torch.Tensor):
        super().__init__()
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.min() < 0 or idx.max() >= CODEBOOK_SIZE:
            raise ValueError("codebook indices must be in 0..15")
        codebook = torch.as_tensor(codebook)
        if codebook.shape != (CODEBOOK_SIZE,) or float(codebook[0]) != 0.0:
            raise ValueError("expected a 16-entry codebook whose entry 0 is 0.0")
        self.register_buffer("idx", idx)
        self._init = codebook[1:].clone()  # consumed by right_inverse at registration

    def forward(self, centroids: torch.Tensor) -> torch.Tensor:
        return torch.cat([centroids.new_zeros(1), centroids])[self.idx]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        if self._init is not None:
            c, self._init = self._init.to(weight.dtype), None
            return c
        # Assigning a new weight later: each centroid becomes the mean of its members.
        w = weight.detach().double().flatten()
        i = self.idx.flatten()
        s = torch.zeros(CODEBOOK_SIZE, dtype=torch.float64).index_add_(0, i, w)
        n = torch.zeros(CODEBOOK_SIZE, dtype=torch.float64).index_add_(0, i, torch.ones_like(w))
        return (s / n.clamp(min=1))[1:].to(weight.dtype)


class SharedBias:
    """Forward pre-hook: module.bias = [0, centroids][module.bias_idx], the centroids being
    those of the weight's SharedWeight parametrisation (a hook object, like
    torch.nn.utils.prune's, so that model copies carry it)."""

    def __call__(self, module: nn.Module, inputs) -> None:
        module.bias = shared_bias_value(module)


def shared_bias_value(module: nn.Module) -> torch.Tensor:
    c = module.parametrizations.weight.original
    return torch.cat([c.new_zeros(1), c])[module.bias_idx]


def has_shared_bias(module: nn.Module) -> bool:
    return any(isinstance(h, SharedBias) for h in module._forward_pre_hooks.values())


def _share_bias(module: nn.Module, bias_idx: np.ndarray) -> None:
    del module._parameters["bias"]
    module.register_buffer("bias_idx", torch.from_numpy(bias_idx.astype(np.int64)))
    module.register_forward_pre_hook(SharedBias())
    module.bias = shared_bias_value(module)


def _unshare_bias(module: nn.Module) -> None:
    value = shared_bias_value(module).detach().clone()
    for k, h in list(module._forward_pre_hooks.items()):
        if isinstance(h, SharedBias):
            del module._forward_pre_hooks[k]
    del module.bias_idx
    if "bias" in module.__dict__:
        del module.__dict__["bias"]
    module.bias = nn.Parameter(value)


def is_shared(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") and any(
        isinstance(p, SharedWeight) for p in module.parametrizations.weight)


def _to_float32_codebook(cb) -> np.ndarray:
    cb = np.asarray(cb, dtype=np.float64).astype(np.float32)
    return cb


def share_layer(module: nn.Module, codebook=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cluster one layer's (pruned) weights, and its bias if it has one, and register the
    shared parametrisation (and the shared bias).

    Returns (codebook float32 (16,), idx uint8 of the weight's shape); the bias's indices
    are `module.bias_idx`. Removes the layer's pruning mask first (the zeros are baked in
    and become index 0).
    """
    if is_shared(module):
        raise ValueError("layer is already weight-shared")
    if is_pruned(module):
        remove_pruning(module)
    w = weight_of(module).double().numpy()
    flat = w.reshape(w.shape[0], -1)
    b = module.bias.detach().double().numpy() if module.bias is not None else None
    values = flat if b is None else np.concatenate([flat.ravel(), b])
    cb = _to_float32_codebook(kmeans_codebook(values, seed=seed) if codebook is None else codebook)
    idx = assign_indices(flat, cb.astype(np.float64)).reshape(w.shape)
    dtype = module.weight.dtype
    parametrize.register_parametrization(
        module, "weight", SharedWeight(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(cb).to(dtype)),
        unsafe=True)
    if b is not None:
        _share_bias(module, assign_indices(b, cb.astype(np.float64)))
    return cb, idx


def share_weights(model: nn.Module, layers: str = "fc", seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """k-means weight sharing of every target layer: {name: (codebook, idx)}."""
    return {n: share_layer(m, seed=seed) for n, m in target_layers(model, layers)}


def codebook_of(module: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(codebook float32 (16,) with entry 0 = 0, idx uint8) of a shared layer."""
    if not is_shared(module):
        raise ValueError("layer is not weight-shared")
    par = next(p for p in module.parametrizations.weight if isinstance(p, SharedWeight))
    c = module.parametrizations.weight.original.detach().float().numpy()
    cb = np.concatenate([[0.0], c]).astype(np.float32)
    return cb, par.idx.numpy().astype(np.uint8)


def codebooks(model: nn.Module, layers: str = "fc") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {n: codebook_of(m) for n, m in target_layers(model, layers) if is_shared(m)}


def shared_bias(module: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """(bias float32 = codebook[bias_idx], bias_idx uint8) of a layer whose bias is shared, else None."""
    if not has_shared_bias(module):
        return None
    return shared_bias_value(module).detach().float().numpy(), module.bias_idx.numpy().astype(np.uint8)


def unshare(model: nn.Module) -> nn.Module:
    """Replace every shared parametrisation by its current plain weight (and bias)."""
    for _, m in model.named_modules():
        if is_shared(m):
            if has_shared_bias(m):
                _unshare_bias(m)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def distinct_nonzero(module: nn.Module) -> int:
    """Number of distinct non-zero weight values of a layer (<= 15 when shared)."""
    w = module.weight.detach()
    return int(torch.unique(w[w != 0]).numel())
