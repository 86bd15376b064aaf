"""Networks of the pruning pipeline: the MLP (LeNet-300-100 on MNIST; every layer runs on EIE),
LeNet-5 (Caffe variant: its conv layers run in PyTorch and feed its FC layers, which run on
EIE) and a small BatchNorm conv net (network slimming's channel factors)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "ConvNet", "LeNet5", "build_model", "strip_bias", "has_bias", "prunable_layers", "fc_layers",
           "fc_input", "runs_on_eie", "MODELS"]


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


class LeNet5(nn.Module):
    """LeNet-5 as in Caffe's MNIST example (the network of Han et al. 2015): conv 20@5x5,
    max-pool 2, conv 50@5x5, max-pool 2, FC 800-500, ReLU, FC 500-10. No ReLU after the
    convolutions (Caffe's prototxt has none). `features` is what feeds the FC layers
    (and so EIE): the flattened output of the second pooling layer."""

    def __init__(self, image_shape=(28, 28), n_classes=10, channels=(20, 50), hidden=500):
        super().__init__()
        h, w = image_shape
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ValueError(f"LeNet-5 needs images of at least 12x12 (MNIST: 28x28), not {h}x{w}")
        self.image_shape = (h, w)
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * fh * fw, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def features(self, x):
        x = x.view(-1, 1, *self.image_shape)
        return self.pool(self.conv2(self.pool(self.conv1(x)))).flatten(1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(x))))


MODELS = ("mlp", "conv", "lenet300", "lenet5")   # registry.MODELS describes them (no torch import there)


def build_model(name: str, n_features: int, n_classes: int, image_shape=None, hidden=(300, 100), *,
                bias: bool = True) -> nn.Module:
    """A fresh network. `bias=False` builds the same network (the same initial weights for
    the same torch seed) and then removes the biases of its Linear/Conv layers.
    `lenet300` is the MLP n_features-300-100-n_classes (LeNet-300-100 on MNIST)."""
    if name in ("mlp", "lenet300"):
        model = MLP((n_features, *(hidden if name == "mlp" else (300, 100)), n_classes))
    elif name == "lenet5":
        if image_shape is None:
            raise ValueError("LeNet-5 needs image data (MNIST), not 1-D data")
        model = LeNet5(image_shape, n_classes)
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


def runs_on_eie(model: nn.Module) -> bool:
    """Whether the model's FC layers form the ReLU stack EIE runs end to end (exported)."""
    return isinstance(model, (MLP, LeNet5))


@torch.no_grad()
def fc_input(model: nn.Module, x) -> torch.Tensor:
    """The batch that reaches the first FC layer for inputs `x` (the conv features of
    LeNet-5, the flattened input of the MLP): what EIE is fed."""
    first = fc_layers(model)[0][1]
    seen = {}
    h = first.register_forward_pre_hook(lambda mod, inp: seen.setdefault("x", inp[0].detach().clone()))
    was = model.training
    try:
        model.eval()
        model(torch.as_tensor(x))
    finally:
        model.train(was)
        h.remove()
    return seen["x"].flatten(1)
