"""Networks of the pruning pipeline: LeNet-300-100-style MLP (every layer runs on EIE) and a small conv net."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "ConvNet", "build_model", "strip_bias", "has_bias", "prunable_layers", "fc_layers", "MODELS"]


class MLP(nn.Module):
    """Fully connected ReLU network, e.g. 64-300-100-10 (LeNet-300-100 on 8x8 digits)."""

    def __init__(self, sizes=(64, 300, 100, 10)):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def forward(self, x):
        x = x.flatten(1)
        for i, fc in enumerate(self.layers):
            x = fc(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class ConvNet(nn.Module):
    """Two 3x3 conv layers (with batch norm, whose scales network slimming uses) and an FC head."""

    def __init__(self, image_shape=(8, 8), n_classes=10, channels=(8, 16), hidden=64):
        super().__init__()
        h, w = image_shape
        self.image_shape = (h, w)
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * (h // 2) * (w // 2), hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        x = x.view(-1, 1, *self.image_shape)
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


MODELS = ("mlp", "conv")


def build_model(name: str, n_features: int, n_classes: int, image_shape=None, hidden=(300, 100), *,
                bias: bool = True) -> nn.Module:
    """A fresh network. `bias=False` builds the same network (the same initial weights for
    the same torch seed) and then removes the biases of its Linear/Conv layers."""
    if name == "mlp":
        model = MLP((n_features, *hidden, n_classes))
    elif name == "conv":
        if image_shape is None:
            raise ValueError("the conv net needs image data (digits or MNIST), not 1-D data")
        model = ConvNet(image_shape, n_classes)
    else:
        raise ValueError(f"unknown model {name!r}: expected one of {MODELS}")
    return model if bias else strip_bias(model)


def strip_bias(model: nn.Module) -> nn.Module:
    """Remove the bias of every Linear/Conv layer (EIE computes ReLU(W a): no bias)."""
    for _, m in prunable_layers(model):
        if m.bias is not None:
            m.register_parameter("bias", None)
    return model


def has_bias(model: nn.Module) -> bool:
    """Whether any fully connected layer (what EIE runs) has a bias."""
    return any(m.bias is not None for _, m in fc_layers(model))


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear and Conv2d layer, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def fc_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The fully connected layers: the part of the network EIE executes."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def target_layers(model: nn.Module, which: str = "fc") -> list[tuple[str, nn.Module]]:
    """Layers a method prunes: `fc` (the Linear layers, what EIE runs) or `all` (also convs)."""
    if which == "fc":
        return fc_layers(model)
    if which == "all":
        return prunable_layers(model)
    raise ValueError(f"layers must be 'fc' or 'all', not {which!r}")
