"""A user's model as EIE can run it: a chain of dense layers with ReLU between them.

The importers (torch_import.py, onnx_import.py) walk a model's graph in order and hand
each operation to `ChainBuilder`, which is the one place that knows what the hardware
can run: y = act(W a + b) per layer, ReLU after every layer but (optionally) the last,
nothing else. Anything else ends in one `UnsupportedModel` line naming the first
operation that does not fit. Only NumPy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie.golden_model.encoder import check_bias, check_weights
from eie.golden_model.errors import InputError
from eie.golden_model.files import FileAccessError, open_regular_file

__all__ = ["UnsupportedModel", "DenseLayer", "DenseChain", "ChainBuilder", "as_batch", "open_model_file"]


class UnsupportedModel(InputError):
    """The model holds an operation (or an arrangement of them) EIE cannot run."""


@dataclass(frozen=True, eq=False)
class DenseLayer:
    """y = act(weight @ a + bias): float64 weights exactly as the model holds them."""

    name: str
    weight: np.ndarray          # (n_out, n_in) float64
    bias: np.ndarray | None     # (n_out,) float64, or None
    relu: bool

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class DenseChain:
    """The imported network: what `encode_network` takes, plus a float64 forward pass."""

    layers: tuple[DenseLayer, ...]
    source: str                 # the file or object it came from (prefixes every error)
    kind: str                   # "pytorch module", "state_dict", "TorchScript", "ONNX"

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out

    @property
    def relu_last(self) -> bool:
        return self.layers[-1].relu

    def forward(self, x) -> np.ndarray:
        """The model's outputs in float64, (batch, n_out), for inputs (batch, n_in)."""
        a = as_batch(x, self.n_in, f"{self.source}: input")
        for L in self.layers:
            a = a @ L.weight.T + (0.0 if L.bias is None else L.bias)
            if L.relu:
                a = np.maximum(a, 0.0)
        return a


def open_model_file(path, what: str):
    """A model file opened for reading (a regular file only), or InputError naming it."""
    try:
        return open_regular_file(path, what)[0]
    except FileAccessError as e:
        raise InputError(str(e)) from None


def as_batch(x, n_in: int, what: str) -> np.ndarray:
    """Inputs as float64 (batch, n_in): one sample (n_in,), a batch, or a batch of
    samples of any shape with n_in elements each (flattened as nn.Flatten does)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise InputError(f"{what}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != n_in:
        raise InputError(f"{what}: expected ({n_in},) or (batch, {n_in}) values (or a batch of samples of "
                         f"{n_in} elements each), got shape {np.shape(x)}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what}: expected finite values")
    return a


class ChainBuilder:
    """Collects dense / bias / ReLU operations in graph order and checks that they form
    a chain EIE runs. `supported` (the importer's words) ends every UnsupportedModel."""

    def __init__(self, source: str, kind: str, supported: str):
        self.source, self.kind, self.supported = source, kind, supported
        self._done: list[DenseLayer] = []
        self._cur: dict | None = None          # the layer being built: name, weight, bias, relu, where

    def unsupported(self, what: str, why: str | None = None):
        """Raise the one-line error: `what` (the first operation that does not fit) and why."""
        raise UnsupportedModel(f"{self.source}: {what} is not supported{': ' + why if why else ''}; {self.supported}")

    def dense(self, weight, bias, name: str, where: str) -> None:
        """A Linear / Gemm / MatMul: weight (n_out, n_in), bias (n_out,) or None."""
        W = check_weights(np.asarray(weight), f"{self.source}: {where}: weight")
        b = check_bias(None if bias is None else np.asarray(bias), W.shape[0], f"{self.source}: {where}: bias")
        prev = self._cur
        if prev is not None:
            if not prev["relu"]:
                self.unsupported(where, f"it follows {prev['where']} without a ReLU between them (EIE applies ReLU "
                                        "after every layer but the last)")
            if W.shape[1] != prev["weight"].shape[0]:
                raise UnsupportedModel(f"{self.source}: {where}: takes {W.shape[1]} inputs but {prev['where']} "
                                       f"gives {prev['weight'].shape[0]}")
            self._close()
        self._cur = {"name": name, "weight": W, "bias": b, "relu": False, "where": where}

    def bias(self, bias, where: str) -> None:
        """An Add of a constant vector right after a MatMul: that layer's bias."""
        cur = self._cur
        if cur is None or cur["relu"] or cur["bias"] is not None:
            self.unsupported(where, "an Add that is not the bias of the MatMul right before it")
        b = np.asarray(bias, dtype=np.float64)
        n_out = cur["weight"].shape[0]
        if b.size == n_out and b.ndim <= 2 and max(b.shape, default=1) == n_out:
            b = b.reshape(n_out)
        cur["bias"] = check_bias(b, n_out, f"{self.source}: {where}: bias")

    def relu(self, where: str) -> None:
        if self._cur is None:
            self.unsupported(where, "a ReLU on the network input (EIE applies ReLU to layer outputs)")
        self._cur["relu"] = True                # ReLU(ReLU(y)) = ReLU(y)

    def finish(self) -> DenseChain:
        if self._cur is None:
            self.unsupported("a model without any dense layer")
        self._close()
        return DenseChain(tuple(self._done), self.source, self.kind)

    def _close(self) -> None:
        c = self._cur
        self._done.append(DenseLayer(c["name"], c["weight"], c["bias"], c["relu"]))
        self._cur = None
