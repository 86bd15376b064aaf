"""Method 4: regularisation for pruning: L1 / L2 on the weights, and network slimming.

`weight_penalty("l1"|"l2", lam)` is an `extra_loss` for `train.train`: lam * sum|w| or
lam * sum w^2 over the FC (or all) weights, added to the cross-entropy of each batch.
L1 drives many weights towards zero, so magnitude pruning afterwards removes less
information.

Network slimming (Liu et al., ICCV 2017) is structured: every channel of the conv net
has a batch-norm scale gamma, every hidden neuron of the MLP gets a scaling factor
(`SlimMLP`: h = ReLU(gamma * (W x + b))). Training adds lam * sum|gamma|; then the
channels / neurons with the smallest |gamma| (ranked across layers) are removed. The
removal is done with masks on gamma (and beta) through `torch.nn.utils.prune`, then
`compact` builds the physically smaller network (the factors are folded into the
weights of the MLP), which computes the same function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from .magnitude import is_pruned, target_layers, weight_of
from .models import MLP, ConvNet

__all__ = ["weight_penalty", "weight_stats", "NeuronScale", "SlimMLP", "scale_penalty", "scaling_factors", "slim",
           "slim_to_budget", "compact", "kept_units", "PENALTIES"]

PENALTIES = ("l1", "l2")


def weight_penalty(kind: str, lam: float, layers: str = "fc") -> Callable[[nn.Module], torch.Tensor]:
    """extra_loss(model) = lam * sum |w| (l1) or lam * sum w^2 (l2) over the target layers."""
    if kind not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, not {kind!r}")
    if lam < 0:
        raise ValueError(f"regularisation strength must be >= 0, not {lam!r}")

    def loss(model: nn.Module) -> torch.Tensor:
        # `m.weight` is the masked weight of the current forward pass for pruned layers.
        ws = [m.weight for _, m in target_layers(model, layers)]
        if kind == "l1":
            return lam * sum(w.abs().sum() for w in ws)
        return lam * sum((w * w).sum() for w in ws)

    return loss


def weight_stats(model: nn.Module, layers: str = "fc", small: float = 1e-3) -> dict:
    """Mean |w| and the fraction of weights with |w| < `small` (over the target layers)."""
    ws = torch.cat([weight_of(m).flatten() for _, m in target_layers(model, layers)])
    return {"mean_abs": float(ws.abs().mean()), "l2": float(ws.norm()),
            "frac_below": float((ws.abs() < small).float().mean()), "small": small}


# -- network slimming ----------------------------------------------------------------------
class NeuronScale(nn.Module):
    """y = gamma * x per feature. A module (not a bare Parameter) so that a
    `torch.nn.utils.prune` mask on `weight` is re-applied by its forward pre-hook."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.weight


class SlimMLP(nn.Module):
    """An MLP with a trainable scaling factor per hidden neuron (initialised to 1)."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.mlp = mlp
        self.scales = nn.ModuleList(NeuronScale(fc.out_features) for fc in mlp.layers[:-1])

    def forward(self, x):
        x = x.flatten(1)
        n = len(self.mlp.layers)
        for i, fc in enumerate(self.mlp.layers):
            x = fc(x)
            if i < n - 1:
                x = torch.relu(self.scales[i](x))
        return x


def _factor_modules(model) -> list[tuple[str, nn.Module, str]]:
    """(name, module holding the factor, parameter name) per slimmable layer."""
    if isinstance(model, SlimMLP):
        return [(f"hidden{i}", sc, "weight") for i, sc in enumerate(model.scales)]
    if isinstance(model, ConvNet):
        return [("bn1", model.bn1, "weight"), ("bn2", model.bn2, "weight")]
    raise ValueError(f"network slimming needs a SlimMLP or ConvNet, got {type(model).__name__}")


def scaling_factors(model) -> dict[str, torch.Tensor]:
    """{layer: effective scaling factors (masked)} of a SlimMLP or ConvNet."""
    return {n: weight_of(m, p) for n, m, p in _factor_modules(model)}


def scale_penalty(lam: float) -> Callable[[nn.Module], torch.Tensor]:
    """extra_loss: lam * sum |gamma| over the scaling factors (BN scales / neuron scales)."""
    def loss(model):
        return lam * sum(getattr(m, p).abs().sum() for _, m, p in _factor_modules(model))
    return loss


def _mask_units(model, drop: dict[str, torch.Tensor]) -> None:
    """Mask the factors (and the BN shift) of the units in `drop` ({layer: bool mask})."""
    for n, m, p in _factor_modules(model):
        keep = (~drop[n]).float()
        if is_pruned(m, p):
            keep = keep * getattr(m, f"{p}_mask")
        prune.custom_from_mask(m, p, mask=keep)
        if isinstance(m, nn.BatchNorm2d):  # a zero gamma still outputs beta: remove it too
            prune.custom_from_mask(m, "bias", mask=keep)


def slim(model, ratio: float) -> dict[str, int]:
    """Remove the fraction `ratio` of all units with the smallest |factor| (ranked
    across layers; each layer keeps at least one). Returns {layer: units kept}."""
    if not 0 <= ratio < 1:
        raise ValueError(f"slimming ratio must be in [0, 1), not {ratio!r}")
    f = scaling_factors(model)
    allf = torch.cat([v.abs() for v in f.values()])
    n_drop = int(round(ratio * allf.numel()))
    order = torch.argsort(allf, stable=True)
    drop_flat = torch.zeros(allf.numel(), dtype=torch.bool)
    drop_flat[order[:n_drop]] = True
    drop, off = {}, 0
    for n, v in f.items():
        d = drop_flat[off:off + v.numel()].clone()
        off += v.numel()
        if bool(d.all()):
            d[torch.argmax(v.abs())] = False
        drop[n] = d | (v == 0)
    _mask_units(model, drop)
    return kept_units(model)


def kept_units(model) -> dict[str, int]:
    return {n: int((v != 0).sum()) for n, v in scaling_factors(model).items()}


def _mlp_params(sizes) -> int:
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def slim_to_budget(model: SlimMLP, kept_fraction: float) -> dict[str, int]:
    """Remove neurons (smallest |factor| first, across layers) until the compacted MLP has
    at most `kept_fraction` of the original FC weights."""
    sizes = list(model.mlp.sizes)
    budget = kept_fraction * _mlp_params(sizes)
    f = scaling_factors(model)
    cand = sorted(((float(v[j].abs()), li, j) for li, v in enumerate(f.values()) for j in range(v.numel())))
    cur = list(sizes)
    drop = {n: torch.zeros(v.numel(), dtype=torch.bool) for n, v in f.items()}
    names = list(f)
    for _, li, j in cand:
        if _mlp_params(cur) <= budget:
            break
        if cur[li + 1] <= 1:
            continue
        drop[names[li]][j] = True
        cur[li + 1] -= 1
    _mask_units(model, drop)
    return kept_units(model)


@torch.no_grad()
def compact(model) -> nn.Module:
    """The physically smaller network without the removed units (same outputs in eval)."""
    if isinstance(model, SlimMLP):
        return _compact_mlp(model)
    if isinstance(model, ConvNet):
        return _compact_conv(model)
    raise ValueError(f"cannot compact a {type(model).__name__}")


def _compact_mlp(model: SlimMLP) -> MLP:
    f = list(scaling_factors(model).values())
    keeps = [torch.arange(model.mlp.sizes[0])] + [torch.nonzero(v).flatten() for v in f] + \
            [torch.arange(model.mlp.sizes[-1])]
    sizes = [len(k) for k in keeps]
    out = MLP(sizes)
    for i, (src, dst) in enumerate(zip(model.mlp.layers, out.layers)):
        w = weight_of(src)[keeps[i + 1]][:, keeps[i]].clone()
        b = src.bias.detach()[keeps[i + 1]].clone() if src.bias is not None else None
        if i < len(f):  # fold the factor: relu(g * (W x + b)) = relu((g W) x + g b)
            g = f[i][keeps[i + 1]]
            w = w * g[:, None]
            b = b * g if b is not None else None
        dst.weight.copy_(w)
        if b is None:
            dst.register_parameter("bias", None)
        else:
            dst.bias.copy_(b)
    return out.eval()


def _compact_conv(model: ConvNet) -> ConvNet:
    g1, g2 = (v for v in scaling_factors(model).values())
    k1, k2 = torch.nonzero(g1).flatten(), torch.nonzero(g2).flatten()
    out = ConvNet(model.image_shape, model.fc2.out_features, channels=(len(k1), len(k2)),
                  hidden=model.fc1.out_features)

    def copy_bias(src, dst, k=slice(None)):
        if src.bias is None:
            dst.register_parameter("bias", None)
        else:
            dst.bias.copy_(src.bias.detach()[k])

    def copy_conv(src, dst, ko, ki):
        dst.weight.copy_(weight_of(src)[ko][:, ki])
        copy_bias(src, dst, ko)

    def copy_bn(src, dst, k):
        dst.weight.copy_(weight_of(src, "weight")[k])
        dst.bias.copy_(weight_of(src, "bias")[k])
        dst.running_mean.copy_(src.running_mean[k])
        dst.running_var.copy_(src.running_var[k])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)

    copy_conv(model.conv1, out.conv1, k1, torch.arange(model.conv1.in_channels))
    copy_bn(model.bn1, out.bn1, k1)
    copy_conv(model.conv2, out.conv2, k2, k1)
    copy_bn(model.bn2, out.bn2, k2)
    h, w = model.image_shape
    hw = (h // 2) * (w // 2)
    cols = (k2[:, None] * hw + torch.arange(hw)[None, :]).flatten()  # channel-major flatten
    out.fc1.weight.copy_(weight_of(model.fc1)[:, cols])
    copy_bias(model.fc1, out.fc1)
    out.fc2.weight.copy_(weight_of(model.fc2))
    copy_bias(model.fc2, out.fc2)
    return out.eval()
