"""One call for users: functional outputs and the cycle report of an image on an input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EIEConfig
from .cycle_model import CycleReport, cycle_report
from .functional import check_int_input, quantize_input, run_network
from .image import EIEImage
from .numerics import dequantize

__all__ = ["RunResult", "run_image"]


@dataclass
class RunResult:
    layer_outputs: list[np.ndarray]   # [input, y0, y1, ...] as int64 (batch, n)
    outputs_int: np.ndarray           # last layer, int64 (batch, n_out)
    outputs: np.ndarray               # last layer, dequantised float64
    report: CycleReport


def run_image(image: EIEImage, x, config: EIEConfig | None = None, *, int_input: bool = False,
              trace: bool = False) -> RunResult:
    """Run `image` on x ((n_in,) or (batch, n_in); float unless int_input) bit-exactly."""
    config = config or EIEConfig.for_image(image)
    config.check_image(image)
    a = check_int_input(x, image.layers[0].n_in) if int_input else quantize_input(image, x)
    acts = run_network(image, a, config.acc_bits)
    rep = cycle_report(image, acts, config, trace=trace)
    y = acts[-1]
    return RunResult(acts, y, dequantize(y, image.layers[-1].out_frac), rep)
