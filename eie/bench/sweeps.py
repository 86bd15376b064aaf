"""Design-space sweeps as in the paper (Section VI): activation-queue depth and PE count.

Both run the cycle model on the benchmark layers, one job per layer (depth) or per
(layer, N) point (PE count; eie/bench/jobs.py); the functions here merge the jobs'
points into the report's entries. The PE sweep re-encodes each layer for every N (rows
interleave over N PEs); the activation memories are sized to hold the layer (the paper
scales them with N as well), the accumulator file stays at 64 rows, so small N needs
more output batches, each re-broadcasting the input.
"""

from __future__ import annotations

__all__ = ["DEPTHS", "PE_COUNTS", "depth_entry", "pe_entry"]

DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def depth_entry(layer: str, n_pe: int, points: list[dict]) -> dict:
    """One layer's cycles per queue depth; speed-up relative to the first depth."""
    base = points[0]["cycles"]
    pts = [p | {"speedup_vs_first": base / p["cycles"]} for p in points]
    return {"layer": layer, "n_pe": n_pe, "points": [_slim(p, "fifo_depth") for p in pts]}


def pe_entry(layer: str, fifo_depth: int, points: list[dict]) -> dict:
    """One layer's cycles per PE count; speed-up and parallel efficiency relative to the
    first (smallest) N."""
    first = points[0]
    work = first["cycles"] * first["n_pe"]
    pts = [p | {"speedup_vs_first": first["cycles"] / p["cycles"],
                "parallel_efficiency": work / (p["cycles"] * p["n_pe"])} for p in points]
    return {"layer": layer, "fifo_depth": fifo_depth, "points": [_slim(p, "n_pe") for p in pts]}


def _slim(p: dict, key: str) -> dict:
    keep = (key, "cycles", "speedup_vs_first", "parallel_efficiency", "load_balance_efficiency",
            "busiest_pe_entries", "ideal_cycles", "padding_entries", "broadcast_stall_cycles")
    return {k: p[k] for k in keep if k in p}
