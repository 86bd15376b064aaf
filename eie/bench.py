"""`eie bench`: speed of the golden and cycle models and FC8 cycles, as JSON.

Speeds are measured in the same run as baselines on the same layer (NumPy dense
W @ a and scipy.sparse SpMV, both float64), so the figures are also given as ratios.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from eie.golden_model.config import EIEConfig
from eie.golden_model.cycle_model import cycle_report
from eie.golden_model.encoder import encode_network
from eie.golden_model.fc8 import AUTHORS_CYCLES, FC8_N_IN, FC8_N_OUT, FC8_N_PE, fc8_image, find_fc8_dir, load_fc8
from eie.golden_model.functional import int_matrix, quantize_input, run_network
from eie.golden_model.reference import float_weights

__all__ = ["golden_bench", "synthetic_fc8"]

DEPTHS = (1, 2, 4, 8, 16, 32, 64)


def synthetic_fc8(seed: int = 0):
    """An FC8-shaped stand-in (25.7 % weights, 42.9 % activations) when the data is absent."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.02, (FC8_N_OUT, FC8_N_IN)) * (rng.random((FC8_N_OUT, FC8_N_IN)) < 0.257)
    x = np.maximum(rng.normal(0, 2, FC8_N_IN), 0) * (rng.random(FC8_N_IN) < 0.858)
    return encode_network([W], FC8_N_PE, calibration=x), x


def _best_time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def golden_bench(fc8_dir=None, repeat: int = 5, progress: bool = True) -> dict:
    d = fc8_dir or find_fc8_dir()
    if d is not None:
        ref = load_fc8(d)
        image, x, source = fc8_image(ref), ref.act, str(d)
    else:
        (image, x), source = synthetic_fc8(), "synthetic (FC8 reference data not found)"
    layer = image.layers[0]
    a = quantize_input(image, x)
    acts = run_network(image, a)
    t_golden = _best_time(lambda: run_network(image, a), repeat)
    Wf = float_weights(layer)
    xf = np.asarray(x, dtype=np.float64)
    Ws = int_matrix(layer)
    t_dense = _best_time(lambda: Wf @ xf, repeat)
    t_sparse = _best_time(lambda: Ws @ xf, repeat)
    sweep = []
    cycle_times = []
    for depth in tqdm(DEPTHS, desc="FC8 queue-depth sweep", disable=not progress):
        cfg = EIEConfig.for_image(image, fifo_depth=depth)
        t0 = time.perf_counter()
        rep = cycle_report(image, acts, cfg)
        cycle_times.append((rep.cycles, time.perf_counter() - t0))
        auth = AUTHORS_CYCLES.get(depth) if d is not None else None
        sweep.append({"fifo_depth": depth, "cycles": rep.cycles, "authors_cycles": auth,
                      "diff_percent": None if auth is None else 100.0 * (rep.cycles - auth) / auth,
                      "busiest_pe_entries": rep.busiest_pe_entries, "balanced_bound": rep.balanced_bound})
    rep8 = cycle_report(image, acts, EIEConfig.for_image(image, fifo_depth=8))
    macs = rep8.useful_macs
    sim_cycles = sum(c for c, _ in cycle_times)
    sim_time = sum(t for _, t in cycle_times)
    return {
        "layer": source,
        "shape": [layer.n_out, layer.n_in],
        "n_pe": image.n_pe,
        "useful_macs": macs,
        "golden_seconds": t_golden,
        "golden_useful_macs_per_s": macs / t_golden,
        "dense_numpy_seconds": t_dense,
        "scipy_sparse_seconds": t_sparse,
        "golden_vs_dense_numpy": t_dense / t_golden,
        "golden_vs_scipy_sparse": t_sparse / t_golden,
        "cycle_model_cycles_per_s": sim_cycles / sim_time,
        "fc8_cycles_depth8": rep8.cycles,
        "fc8_authors_cycles_depth8": AUTHORS_CYCLES[8] if d is not None else None,
        "busiest_pe_entries": rep8.busiest_pe_entries,
        "balanced_bound": rep8.balanced_bound,
        "microseconds_at_800MHz": rep8.cycles / 800.0,
        "fc8_depth_sweep": sweep,
    }
