"""`eie bench`'s cycle-model work as independent jobs (eie/jobs.py): one Table IV row, one
layer's queue-depth sweep, one (layer, PE count) point of the PE sweep.

A job names its layer by a JSON-able spec, not by the matrix: a synthetic Table III
layer is regenerated from its seed on the worker (`{"kind": "table", "mode", "scale",
"index"}`), FC8 is read from its directory (`{"kind": "fc8", "dir"}`). A worker keeps
the last layer it made (jobs come in layer order, so its next job usually needs the
same one) and the images it encoded of it.
"""

from __future__ import annotations

from eie.common import cache_key
from eie.jobs import Job, worker_cache

from .layers import BenchLayer, fc8_layer
from .paper import TABLE_III
from .table import fc8_row, layer_cycles, table_layer, table_row

__all__ = ["table_spec", "fc8_spec", "layer_from_spec", "layer_name", "table_row_job", "fc8_row_job",
           "depth_job", "pe_point_job", "table_jobs", "depth_jobs", "pe_jobs"]


def table_spec(mode: str, scale: float, index: int) -> dict:
    return {"kind": "table", "mode": mode, "scale": scale, "index": index}


def fc8_spec(fc8_dir: str) -> dict:
    return {"kind": "fc8", "dir": fc8_dir}


def layer_name(spec: dict) -> str:
    return "FC8 (authors)" if spec["kind"] == "fc8" else TABLE_III[spec["index"]].name


def _build(spec: dict) -> BenchLayer:
    if spec["kind"] == "fc8":
        return fc8_layer(spec["dir"])
    return table_layer(spec["index"], spec["mode"], spec["scale"])


def _cached(spec: dict) -> tuple[BenchLayer, dict]:
    """The layer of `spec` and its images by PE count, kept in this process until a job
    asks for another layer."""
    cache = worker_cache().setdefault("bench_layer", {})
    key = cache_key(spec)
    if key not in cache:
        cache.clear()
        cache[key] = (_build(spec), {})
    return cache[key]


def layer_from_spec(spec: dict) -> BenchLayer:
    """The layer of `spec` (cached, see `_cached`)."""
    return _cached(spec)[0]


def _image(spec: dict, n_pe: int):
    layer, images = _cached(spec)
    if n_pe not in images:
        images[n_pe] = layer.image(n_pe)
    return images[n_pe]


# -- the jobs (top-level functions: a pool pickles them by reference) ---------------------------
def table_row_job(mode: str, scale: float, index: int, n_pe: int, fifo_depth: int, balance: bool) -> dict:
    spec = table_spec(mode, scale, index)
    return table_row(TABLE_III[index], layer_from_spec(spec), n_pe, fifo_depth, balance) | {"mode": mode}


def fc8_row_job(fc8_dir: str, fifo_depth: int, balance: bool) -> dict | None:
    return fc8_row(fc8_dir, fifo_depth, balance, layer=layer_from_spec(fc8_spec(fc8_dir)))


def depth_job(layer: dict, n_pe: int, depths: list) -> list[dict]:
    """One layer at every queue depth (one image, encoded once)."""
    image = _image(layer, n_pe)
    L = layer_from_spec(layer)
    return [layer_cycles(L, n_pe, d, image) | {"fifo_depth": d} for d in depths]


def pe_point_job(layer: dict, n_pe: int, fifo_depth: int) -> dict:
    return layer_cycles(layer_from_spec(layer), n_pe, fifo_depth) | {"n_pe": n_pe}


# -- the plans (what run_bench hands to run_jobs) -----------------------------------------------
def table_jobs(mode: str, scale: float, n_pe: int, fifo_depth: int, balance: bool) -> list[Job]:
    return [Job(table_row_job, {"mode": mode, "scale": scale, "index": i, "n_pe": n_pe, "fifo_depth": fifo_depth,
                                "balance": balance}, key=f"{P.name} ({mode} densities)")
            for i, P in enumerate(TABLE_III)]


def depth_jobs(specs: list[dict], n_pe: int, depths) -> list[Job]:
    return [Job(depth_job, {"layer": s, "n_pe": n_pe, "depths": list(depths)}, key=f"{layer_name(s)} depth sweep")
            for s in specs]


def pe_jobs(specs: list[dict], fifo_depth: int, pe_counts) -> list[Job]:
    return [Job(pe_point_job, {"layer": s, "n_pe": n, "fifo_depth": fifo_depth}, key=f"{layer_name(s)} on {n} PEs")
            for s in specs for n in pe_counts]
