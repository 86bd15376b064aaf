"""Design-space sweeps as in the paper (Section VI): activation-queue depth and PE count.

Both run the cycle model on the benchmark layers. The PE sweep re-encodes each layer for
every N (rows interleave over N PEs); the activation memories are sized to hold the
layer (the paper scales them with N as well), the accumulator file stays at 64 rows, so
small N needs more output batches, each re-broadcasting the input.
"""

from __future__ import annotations

from tqdm import tqdm

from .layers import BenchLayer
from .table import layer_cycles

__all__ = ["DEPTHS", "PE_COUNTS", "depth_sweep", "pe_sweep"]

DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def depth_sweep(layers: list[BenchLayer], n_pe: int = 64, depths=DEPTHS, progress: bool = True) -> list[dict]:
    """Cycles per layer for each queue depth; speed-up relative to depth 1."""
    out = []
    for L in tqdm(layers, desc=f"queue-depth sweep ({n_pe} PEs)", disable=not progress):
        image = L.image(n_pe)
        pts = [layer_cycles(L, n_pe, d, image) | {"fifo_depth": d} for d in depths]
        base = pts[0]["cycles"]
        for p in pts:
            p["speedup_vs_first"] = base / p["cycles"]
        out.append({"layer": L.name, "n_pe": n_pe, "points": [_slim(p, "fifo_depth") for p in pts]})
    return out


def pe_sweep(layers: list[BenchLayer], fifo_depth: int = 8, pe_counts=PE_COUNTS, progress: bool = True) -> list[dict]:
    """Cycles per layer for each PE count; speed-up relative to the smallest N."""
    out = []
    bar = tqdm(total=len(layers) * len(pe_counts), desc="PE-count sweep", disable=not progress)
    for L in layers:
        pts = []
        for n in pe_counts:
            pts.append(layer_cycles(L, n, fifo_depth) | {"n_pe": n})
            bar.update()
        base = pts[0]["cycles"] * pe_counts[0]
        for p in pts:
            p["speedup_vs_first"] = pts[0]["cycles"] / p["cycles"]
            p["parallel_efficiency"] = base / (p["cycles"] * p["n_pe"])
        out.append({"layer": L.name, "fifo_depth": fifo_depth, "points": [_slim(p, "n_pe") for p in pts]})
    bar.close()
    return out


def _slim(p: dict, key: str) -> dict:
    keep = (key, "cycles", "speedup_vs_first", "parallel_efficiency", "load_balance_efficiency",
            "busiest_pe_entries", "ideal_cycles", "padding_entries", "broadcast_stall_cycles")
    return {k: p[k] for k in keep if k in p}
