"""The resources NetAdapt and AMC measure a pruned network by.

`EIELatency` is EIE in the loop: the cycles per inference of the FC layers on the golden
cycle model, the pruned weights encoded for a chosen number of PEs and a fixed
calibration batch run through the bit-exact functional model. `WeightCount` (the
non-zero FC weights) has the same interface, so that a method can be brought to a
matched sparsity exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from eie.golden_model import encode_network
from eie.golden_model.config import EIEConfig
from eie.golden_model.cycle_model import cycle_report
from eie.golden_model.functional import quantize_input, run_network

from .masks import weight_of
from .models import fc_input, fc_layers

__all__ = ["EIELatency", "WeightCount", "LatencySettings"]


def _linear_codebook(W: np.ndarray) -> np.ndarray:
    """0 plus 15 evenly spaced values over the non-zero weights' range (no k-means: fast)."""
    nz = W[W != 0]
    cb = np.zeros(16)
    if nz.size:
        c = np.linspace(nz.min(), nz.max(), 15)
        c[c == 0] = np.finfo(np.float64).tiny
        cb[1:] = c
    return cb


@dataclass
class EIELatency:
    """EIE cycles per inference of a model's FC layers, from the golden cycle model.

    `calibration` is a fixed batch of model inputs. The FC weights (after pruning) are
    encoded with `encode_network(weights, n_pe, acc_depth)` (weight sharing: `sharing`
    = "kmeans", as the encoder does by default, or "linear", 15 evenly spaced
    centroids: much faster and, for the cycle count, which depends only on which
    weights and activations are non-zero, nearly the same), the batch is run through
    the bit-exact functional model, and `cycle_report` gives the cycles. The value is
    the mean over the batch. Results are cached by the weights' and inputs' bytes.
    """

    calibration: np.ndarray
    n_pe: int = 8
    acc_depth: int = 64
    fifo_depth: int = 8
    sharing: str = "linear"
    calls: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.sharing not in ("linear", "kmeans"):
            raise ValueError(f"sharing must be 'linear' or 'kmeans', not {self.sharing!r}")
        self.calibration = np.asarray(self.calibration, dtype=np.float32)

    # The FC layers EIE runs and the batch that reaches the first of them.
    def weights(self, model: nn.Module) -> list[np.ndarray]:
        return [weight_of(m).numpy().astype(np.float64) for _, m in fc_layers(model)]

    def fc_input(self, model: nn.Module) -> np.ndarray:
        return fc_input(model, self.calibration).numpy().astype(np.float64)

    def _encode_run(self, weights, fc_in, sharing):
        cbs = [_linear_codebook(W) for W in weights] if sharing == "linear" else None
        image = encode_network(weights, self.n_pe, acc_depth=self.acc_depth, codebooks=cbs, calibration=fc_in)
        cfg = EIEConfig(n_pe=self.n_pe, acc_depth=self.acc_depth, fifo_depth=self.fifo_depth)
        acts = run_network(image, quantize_input(image, fc_in), cfg.acc_bits)
        return cycle_report(image, acts, cfg)

    def of_weights(self, weights, fc_in) -> float:
        """Mean cycles per sample of the FC stack `weights` ((n_out, n_in) arrays) on `fc_in`."""
        h = hashlib.sha1()
        for W in weights:
            h.update(np.ascontiguousarray(W, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(fc_in).tobytes())
        key = h.hexdigest()
        if key not in self._cache:
            self.calls += 1
            rep = self._encode_run(weights, fc_in, self.sharing)
            self._cache[key] = rep.cycles / len(fc_in)
        return self._cache[key]

    def __call__(self, model: nn.Module) -> float:
        return self.of_weights(self.weights(model), self.fc_input(model))

    def report(self, model: nn.Module, sharing: str | None = None) -> dict:
        """Cycles per sample (total and per layer) with the given weight sharing (default: own)."""
        n = len(self.calibration)
        rep = self._encode_run(self.weights(model), self.fc_input(model), sharing or self.sharing)
        return {"cycles_per_sample": rep.cycles / n,
                "layers": {L["name"]: L["cycles"] / n for L in rep.layers},
                "sharing": sharing or self.sharing, "n_pe": self.n_pe, "calibration_samples": n}


class WeightCount:
    """The number of non-zero FC weights, with the interface of `EIELatency` (the
    resource of NetAdapt when it is matched to a sparsity)."""

    calls = 0

    def weights(self, model: nn.Module) -> list[np.ndarray]:
        return [weight_of(m).numpy() for _, m in fc_layers(model)]

    def fc_input(self, model: nn.Module) -> None:
        return None

    def of_weights(self, weights, fc_in=None) -> float:
        return float(sum(np.count_nonzero(W) for W in weights))

    def __call__(self, model: nn.Module) -> float:
        return self.of_weights(self.weights(model))

    def report(self, model: nn.Module) -> dict:
        return {"weights": self(model),
                "layers": {n: int(np.count_nonzero(W)) for (n, _), W in zip(fc_layers(model), self.weights(model))}}


@dataclass(frozen=True)
class LatencySettings:
    """The EIE a latency is measured on; NetAdaptConfig and AMCConfig extend it."""

    n_pe: int = 8
    acc_depth: int = 64
    fifo_depth: int = 8
    sharing: str = "linear"

    def latency(self, calibration) -> EIELatency:
        """The estimator of these settings on the `calibration` batch."""
        return EIELatency(calibration, n_pe=self.n_pe, acc_depth=self.acc_depth, fifo_depth=self.fifo_depth,
                          sharing=self.sharing)
