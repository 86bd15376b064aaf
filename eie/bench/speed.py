"""How fast each model runs, always next to baselines measured in the same run.

Golden model: useful MACs per second of the bit-exact fixed-point run; cycle model:
simulated EIE cycles per second; RTL simulation: simulated clock cycles per second
(cocotb on Verilator or Icarus). The baselines are NumPy dense
`W @ a` and `scipy.sparse` CSR and CSC SpMV (float64) on the same layer and input, so
the figures are also given as ratios (how many times slower than the baseline).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from eie.golden_model.config import EIEConfig
from eie.golden_model.cycle_model import cycle_report
from eie.golden_model.functional import run_network

from .layers import BenchLayer

__all__ = ["best_time", "baselines", "model_speed", "rtl_speed"]


def best_time(fn, repeat: int) -> float:
    """Best of `repeat` timed calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def baselines(layer: BenchLayer, repeat: int) -> dict:
    """Best-of-`repeat` seconds of one float64 mat-vec on the layer's weights and input:
    NumPy dense, scipy.sparse CSR (`scipy_sparse_seconds`) and CSC."""
    W = layer.dense_weights()
    Wr, Wc = sp.csr_matrix(W), sp.csc_matrix(W)
    x = layer.float_input()
    return {"dense_numpy_seconds": best_time(lambda: W @ x, repeat),
            "scipy_sparse_seconds": best_time(lambda: Wr @ x, repeat),
            "scipy_csc_seconds": best_time(lambda: Wc @ x, repeat)}


def model_speed(layer: BenchLayer, n_pe: int, fifo_depth: int = 8, repeat: int = 5, image=None) -> dict:
    """Golden model and cycle model on one layer and input, with the two baselines."""
    image = image if image is not None else layer.image(n_pe)
    a = layer.a[None, :]
    acts = run_network(image, a)
    cfg = EIEConfig.for_image(image, fifo_depth=fifo_depth, act_depth=max(1024, -(-max(layer.shape) // n_pe)))
    t_golden = best_time(lambda: run_network(image, a), repeat)
    t_cycle = best_time(lambda: cycle_report(image, acts, cfg), repeat)
    cycles = cycle_report(image, acts, cfg).cycles
    base = baselines(layer, repeat)
    macs = layer.useful_macs
    return {"layer": layer.name, "shape": [layer.shape[1], layer.shape[0]], "n_pe": n_pe, "useful_macs": macs,
            "golden_seconds": t_golden, "golden_useful_macs_per_s": macs / t_golden,
            "cycle_model_seconds": t_cycle, "simulated_cycles": cycles,
            "cycle_model_cycles_per_s": cycles / t_cycle, **base,
            "golden_slowdown_vs_dense_numpy": t_golden / base["dense_numpy_seconds"],
            "golden_slowdown_vs_scipy_sparse": t_golden / base["scipy_sparse_seconds"],
            "cycle_model_slowdown_vs_scipy_sparse": t_cycle / base["scipy_sparse_seconds"]}


def rtl_speed(layer: BenchLayer, n_pe: int = 4, fifo_depth: int = 8, samples: int = 4, simulator: str = "auto",
              repeat: int = 5, seed: int = 0) -> dict:
    """Run `samples` inputs (the layer's input, then random re-draws of its non-zero pattern)
    through the RTL; checks bit- and cycle-exactness and reports simulated cycles/s."""
    from eie.hdl.loader import params_for_image  # Amaranth and cocotb: deferred to the RTL figure
    from eie.sim.cases import Case

    image = layer.image(n_pe)
    rng = np.random.default_rng(seed)
    a = np.stack([layer.a] + [rng.permutation(layer.a) for _ in range(samples - 1)])
    params = params_for_image(image, fifo_depth=fifo_depth)
    out = {"simulator": simulator, "layer": layer.name, "shape": [layer.shape[1], layer.shape[0]],
           "n_pe": n_pe, "fifo_depth": fifo_depth, "samples": samples}
    from eie.sim.runner import build, run_cases
    from eie.sim.simulator import choose

    out["simulator"] = simulator = choose(None if simulator == "auto" else simulator)
    t0 = time.perf_counter()
    build(params, simulator=simulator)
    out["build_seconds"] = time.perf_counter() - t0
    run = run_cases([Case(f"bench_{layer.name}", image, a)], params, simulator=simulator)
    out |= {"ok": run.ok, "mismatches": len(run.failures), "eie_cycles": run.simulated_cycles,
            "clock_cycles": run.clock_cycles, "sim_seconds": run.sim_seconds,
            "cycles_per_s": run.cycles_per_second, "compute_cycles_per_s": run.run_cycles_per_second}
    base = baselines(layer, repeat)
    per_sample = out["sim_seconds"] / samples
    out |= base | {"rtl_seconds_per_sample": per_sample,
                   "rtl_slowdown_vs_dense_numpy": per_sample / base["dense_numpy_seconds"],
                   "rtl_slowdown_vs_scipy_sparse": per_sample / base["scipy_sparse_seconds"]}
    return out
