"""Network slimming (Liu et al., ICCV 2017): structured pruning of whole neurons / channels.

Every channel of the conv net has a batch-norm scale gamma, every hidden neuron of the
MLP gets a scaling factor (`SlimMLP`: h = ReLU(gamma * (W x + b))). Training adds
lam * sum|gamma|; then the channels / neurons with the smallest |gamma| (ranked across
layers) are removed. The removal is done with masks on gamma (and beta) through
`torch.nn.utils.prune`, then `compact` builds the physically smaller network (the
factors are folded into the weights of the MLP), which computes the same function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from .masks import is_pruned, weight_of
from .models import MLP, ConvNet, LeNet5, target_layers
from .plots import plot_layer_ratios, pyplot, save_figure
from .train import accuracy, finetune, finetune_budget, train

__all__ = ["NeuronScale", "SlimMLP", "SlimLeNet5", "slimmable", "scale_penalty", "scaling_factors", "slim", "slim_to_budget", "compact",
           "kept_units", "run", "plots", "compare", "compare_note"]


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


class SlimLeNet5(nn.Module):
    """LeNet-5 with a trainable factor per channel of both conv layers (after pooling) and
    per hidden FC neuron (h = ReLU(gamma * (W x + b))). LeNet-5 has no BatchNorm, and the
    max-pool after a conv commutes only with positive factors, so the conv factors are
    folded into the *next* layer's input weights, which is exact for either sign."""

    def __init__(self, net: LeNet5):
        super().__init__()
        self.net = net
        self.s1 = NeuronScale(net.conv1.out_channels)
        self.s2 = NeuronScale(net.conv2.out_channels)
        self.s3 = NeuronScale(net.fc1.out_features)

    def forward(self, x):
        n = self.net
        x = x.view(-1, 1, *n.image_shape)
        h = self.s1(n.pool(n.conv1(x)).transpose(1, 3)).transpose(1, 3)
        h = self.s2(n.pool(n.conv2(h)).transpose(1, 3)).transpose(1, 3).flatten(1)
        return n.fc2(torch.relu(self.s3(n.fc1(h))))


def slimmable(model: nn.Module) -> nn.Module:
    """The model with scaling factors to train (SlimMLP / SlimLeNet5; ConvNet has its BN scales)."""
    if isinstance(model, MLP):
        return SlimMLP(model)
    if isinstance(model, LeNet5):
        return SlimLeNet5(model)
    return model


def _factor_modules(model) -> list[tuple[str, nn.Module, str]]:
    """(name, module holding the factor, parameter name) per slimmable layer."""
    if isinstance(model, SlimMLP):
        return [(f"hidden{i}", sc, "weight") for i, sc in enumerate(model.scales)]
    if isinstance(model, SlimLeNet5):
        return [("conv1", model.s1, "weight"), ("conv2", model.s2, "weight"), ("fc1", model.s3, "weight")]
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


def _weights_of(model, units: list[int], layers: str) -> int:
    """Weights of the target layers of the compacted network with `units` per factor layer."""
    if isinstance(model, SlimMLP):
        return _mlp_params([model.mlp.sizes[0], *units, model.mlp.sizes[-1]])
    n = model.net
    c1, c2, h = units
    k = n.conv1.kernel_size[0] * n.conv1.kernel_size[1]
    hw = n.fc1.in_features // n.conv2.out_channels
    fc = c2 * hw * h + h * n.fc2.out_features
    return fc if layers == "fc" else fc + c1 * k + c2 * c1 * k


def slim_to_budget(model, kept_fraction: float, layers: str = "fc") -> dict[str, int]:
    """Remove units (smallest |factor| first, across layers) until the compacted network
    (SlimMLP or SlimLeNet5) has at most `kept_fraction` of the original weights of the
    target layers (`layers`: fc, or all with the convs)."""
    f = scaling_factors(model)
    cur = [v.numel() for v in f.values()]
    budget = kept_fraction * _weights_of(model, cur, layers)
    cand = sorted(((float(v[j].abs()), li, j) for li, v in enumerate(f.values()) for j in range(v.numel())))
    drop = {n: torch.zeros(v.numel(), dtype=torch.bool) for n, v in f.items()}
    names = list(f)
    for _, li, j in cand:
        if _weights_of(model, cur, layers) <= budget:
            break
        if cur[li] <= 1:
            continue
        drop[names[li]][j] = True
        cur[li] -= 1
    _mask_units(model, drop)
    return kept_units(model)


@torch.no_grad()
def compact(model) -> nn.Module:
    """The physically smaller network without the removed units (same outputs in eval)."""
    if isinstance(model, SlimMLP):
        return _compact_mlp(model)
    if isinstance(model, SlimLeNet5):
        return _compact_lenet5(model)
    if isinstance(model, ConvNet):
        return _compact_conv(model)
    raise ValueError(f"cannot compact a {type(model).__name__}")


def _compact_lenet5(model: SlimLeNet5) -> LeNet5:
    n = model.net
    g1, g2, g3 = scaling_factors(model).values()
    k1, k2, k3 = (torch.nonzero(g).flatten() for g in (g1, g2, g3))
    out = LeNet5(n.image_shape, n.fc2.out_features, channels=(len(k1), len(k2)), hidden=len(k3))
    hw = n.fc1.in_features // n.conv2.out_channels
    cols = (k2[:, None] * hw + torch.arange(hw)[None, :]).flatten()     # channel-major flatten
    g2cols = g2[k2].repeat_interleave(hw)

    def put(dst, w, b):
        dst.weight.copy_(w)
        if b is None:
            dst.register_parameter("bias", None)
        else:
            dst.bias.copy_(b)

    def bias(src, k):
        return None if src.bias is None else src.bias.detach()[k]

    put(out.conv1, weight_of(n.conv1)[k1], bias(n.conv1, k1))
    put(out.conv2, weight_of(n.conv2)[k2][:, k1] * g1[k1][None, :, None, None], bias(n.conv2, k2))   # fold g1
    w1 = weight_of(n.fc1)[k3][:, cols] * g2cols[None, :]                                           # fold g2
    b1 = bias(n.fc1, k3)
    put(out.fc1, w1 * g3[k3][:, None], None if b1 is None else b1 * g3[k3])                      # fold g3
    put(out.fc2, weight_of(n.fc2)[:, k3], bias(n.fc2, slice(None)))
    return out.eval()


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


# -- `eie prune slimming` (pruning/registry.py) -------------------------------------------------
def run(model, splits, ctx, seed, opts):
    """L1 on the scaling factors, removal of the smallest (to a weight budget for the MLP,
    else a ratio of the units), compaction, finetuning."""
    original = sum(m.weight.numel() for _, m in target_layers(model, ctx.layers))
    net = slimmable(model)
    train(net, splits, ctx.dense.with_(epochs=opts.reg_epochs, seed=seed + 3000), extra_loss=scale_penalty(opts.lam),
          progress=ctx.progress, desc="slimming (L1 on scales)")
    factors = {n: v.tolist() for n, v in scaling_factors(net).items()}
    acc_reg = accuracy(net, splits, "val")
    if isinstance(net, (SlimMLP, SlimLeNet5)) and opts.ratio is None:
        kept = slim_to_budget(net, opts.kept, ctx.layers)
    else:
        kept = slim(net, 0.5 if opts.ratio is None else opts.ratio)
    acc_slim = accuracy(net, splits, "val")
    small = compact(net)
    finetune(small, splits, ctx.dense.with_(seed=seed), opts.ft_epochs, opts.lr_scale, progress=ctx.progress)
    arch = (list(small.sizes) if isinstance(small, MLP) else
            [small.conv1.out_channels, small.conv2.out_channels] + ([small.fc1.out_features]
                                                                     if isinstance(small, LeNet5) else []))
    return small, {"factors": factors, "units_before": {n: len(v) for n, v in factors.items()}, "units_kept": kept,
                   "compact_arch": arch, "params_before": sum(p.numel() for p in model.parameters()),
                   "params_after": sum(p.numel() for p in small.parameters()),
                   "after_l1": {"val_acc": acc_reg}, "after_slimming": {"val_acc": acc_slim},
                   "_reference_weights": original}


def plots(report, out):
    plt = pyplot()
    r0 = report["runs"][0]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for n, v in r0["factors"].items():
        ax.plot(sorted(abs(x) for x in v), marker=".", ms=3, lw=1,
                label=f"{n}: {r0['units_kept'][n]} of {len(v)} kept")
    ax.set_xlabel("unit (sorted by |scaling factor|)")
    ax.set_ylabel("|scaling factor|")
    ax.set_title("network slimming: scaling factors after L1 training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "scaling_factors.png")
    plot_layer_ratios({f"seed {r['seed']}": {n: r["units_kept"][n] / r["units_before"][n] for n in r["units_kept"]}
                       for r in report["runs"]}, out / "layer_ratios.png", "units (neurons / channels) kept")
    return ["scaling_factors.png", "layer_ratios.png"]


def compare(model, splits, ctx, seed, settings):
    """Slimming until at most 1 - sparsity of the target layers' weights remain, finetuned."""
    net = slimmable(model)
    train(net, splits, ctx.dense.with_(epochs=settings.reg_epochs, seed=seed + 3000),
          extra_loss=scale_penalty(settings.slim_lam), progress=ctx.progress, desc="slimming")
    slim_to_budget(net, 1 - settings.sparsity, ctx.layers)
    small = compact(net)
    finetune(small, splits, ctx.dense.with_(seed=seed),
             finetune_budget(settings), settings.lr_scale,
             progress=ctx.progress)
    return small


def compare_note(settings) -> str:
    budget = finetune_budget(settings)
    return (f"whole neurons removed until at most {100 * (1 - settings.sparsity):g} % of the FC weights remain; "
            f"{budget} finetuning epochs")
