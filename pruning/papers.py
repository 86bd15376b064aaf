"""The papers' published figures the pipeline is set beside (data only, no torch).

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NIPS 2015 (Tables 2 and 3: weights kept per layer after pruning), and Han, Mao
& Dally, "Deep Compression", ICLR 2016 (Table 1: test error, compression).
"""

from __future__ import annotations

__all__ = ["PAPER_DENSITY", "PAPER_RESULTS", "paper_density"]

# Fraction of each layer's weights kept (Han et al. 2015), by our layer names.
PAPER_DENSITY = {
    "lenet300": {"layers.0": 0.08, "layers.1": 0.09, "layers.2": 0.26},
    "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
}

# Deep Compression, Table 1 (error in %, compression with 4-bit sharing... and Huffman coding).
PAPER_RESULTS = {
    "lenet300": {"dense_error": 1.64, "error": 1.58, "kept": 0.08, "compression": 40},
    "lenet5": {"dense_error": 0.80, "error": 0.74, "kept": 0.08, "compression": 39},
}


def paper_density(model: str, layers) -> dict | None:
    """{layer: the paper's kept fraction} for `layers` of `model`, None when the paper has none."""
    table = PAPER_DENSITY.get(model)
    if table is None:
        return None
    return {n: table.get(n) for n in layers}
