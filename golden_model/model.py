"""One call for users: functional outputs and the cycle report of an image on an input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EIEConfig
from .cycle_model import CycleReport, cycle_report
from .functional import check_int_input, logical_outputs, quantize_input, run_network
from .image import EIEImage
from .numerics import dequantize

__all__ = ["RunResult", "run_image"]


@dataclass
class RunResult:
    """Outputs in the original (logical) order; `hw_*` in the hardware order.

    For a load-balanced image (EncodedLayer.row_perm) the PE array computes and stores
    every layer's outputs in hardware row order; `layer_outputs`, `outputs_int` and
    `outputs` are un-permuted back to the order of the encoder's weights. The RTL
    contract (what the activation memories hold, hdl/loader.output_reads without a
    permutation) is `hw_layer_outputs` / `hw_outputs_int`. Unpermuted images: both equal.
    """

    layer_outputs: list[np.ndarray]   # [input, y0, y1, ...] as int64 (batch, n), logical order
    outputs_int: np.ndarray           # last layer, int64 (batch, n_out), logical order
    outputs: np.ndarray               # last layer, dequantised float64, logical order
    report: CycleReport
    hw_layer_outputs: list[np.ndarray]  # as the hardware stores them

    @property
    def hw_outputs_int(self) -> np.ndarray:
        """Last layer's outputs in hardware row order (what the RTL's activation memory holds)."""
        return self.hw_layer_outputs[-1]


def run_image(image: EIEImage, x, config: EIEConfig | None = None, *, int_input: bool = False,
              trace: bool = False) -> RunResult:
    """Run `image` on x ((n_in,) or (batch, n_in); float unless int_input) bit-exactly."""
    config = config or EIEConfig.for_image(image)
    config.check_image(image)
    a = check_int_input(x, image.layers[0].n_in) if int_input else quantize_input(image, x)
    acts = run_network(image, a, config.acc_bits)       # hardware order (the input is never permuted)
    rep = cycle_report(image, acts, config, trace=trace)
    logical = logical_outputs(image, acts)
    y = logical[-1]
    return RunResult(logical, y, dequantize(y, image.layers[-1].out_frac), rep, acts)
