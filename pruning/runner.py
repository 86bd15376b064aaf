"""Running a method of registry.py per seed, and `compare`: the dense model of each seed,
the method, the final export (pipeline.finalize), the report and its plots.

Both return the report dict and write it (report.json / compare.json) with the PNGs into
the output directory; printing is the CLI's.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from eie.common import cache_key, write_json
from eie.jobs import Executor, Job, Outcome, run_jobs, worker_cache

from .masks import clone_model
from .models import target_layers
from .papers import paper_density
from .pipeline import Context, dense_for, evaluate_model, finalize, summarize
from .plots import plot_bars, plot_compression
from .registry import METHODS, Method, resolve
from .train import finetune_budget, set_threads, torch_threads

__all__ = ["run_method", "compare_rows", "select_rows", "run_compare", "dense_job", "compare_job"]


def run_method(method: Method, opts: SimpleNamespace, ctx: Context, seeds, out: Path, *,
               executor: Executor | None = None) -> dict:
    """`method` once per seed; writes the checkpoints, images, report.json and PNGs to `out`.
    A method with inner jobs (`Method.jobs`) runs them on `executor` (default serial)."""
    set_threads()
    out.mkdir(parents=True, exist_ok=True)
    run_fn = resolve(method.run)
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        dense, splits = dense_for(ctx, seed)
        run = {"seed": seed, "dense": evaluate_model(dense, splits)}
        jobs = {"executor": executor or Executor()} if method.jobs else {}
        model, extra = run_fn(clone_model(dense), splits, ctx, seed, opts, **jobs)
        ref = extra.pop("_reference_weights", None)
        run.update(extra)
        run["final"] = finalize(model, splits, ctx, out, method.name, seed, meta={"method": method.name},
                                reference_weights=ref)
        runs.append(run)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    report = {"method": method.name, "options": options, "context": ctx.describe(), "runs": runs,
              "summary": summarize(runs), "seconds": round(time.perf_counter() - t0, 1)}
    files = ["report.json"]
    if method.plots is not None:
        files += resolve(method.plots)(report, out)
    if "compression" in runs[0]["final"]:
        plot_compression(runs[0]["final"]["compression"], out / "compression.png",
                         title=f"{method.name}: storage of the FC weights (seed {runs[0]['seed']})")
        files.append("compression.png")
    for r in runs:
        if "checkpoint" in r["final"]:
            files.append(Path(r["final"]["checkpoint"]).name)
        if "path" in r["final"].get("image", {}):
            files.append(Path(r["final"]["image"]["path"]).name)
    report["output_dir"] = str(out)
    report["files"] = files
    write_json(out / "report.json", report)
    return report


def compare_rows(model_kind: str) -> list[tuple[Method, object]]:
    """(method, row) of every compare row of the registry that applies to the model."""
    return [(m, row) for m in METHODS.values() for row in m.compare if model_kind != "conv" or not row.mlp_only]


def select_rows(rows, wanted: list[str] | None):
    """The rows whose label contains one of `wanted` (case-insensitive); all without it."""
    if not wanted:
        return rows
    labels = [row.label for _, row in rows]
    unknown = [w for w in wanted if not any(w.lower() in lab.lower() for lab in labels)]
    if unknown:
        raise ValueError(f"unknown {unknown}; available: {labels}")
    return [(m, row) for m, row in rows if any(w.lower() in row.label.lower() for w in wanted)]


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _context_args(ctx: Context) -> dict:
    """The context as a job's JSON-able argument (progress off: the jobs' bar counts)."""
    return ctx.describe() | {"progress": False}


def _context_from(d: dict) -> Context:
    from .train import TrainConfig

    return Context(**(d | {"dense": TrainConfig(**d["dense"]),
                           "cache_dir": None if d["cache_dir"] is None else Path(d["cache_dir"])}))


def _dense(ctx_args: dict, seed: int):
    """The dense model of a seed and its splits, kept in the worker for its next jobs."""
    cache = worker_cache().setdefault("dense_models", {})
    key = cache_key(ctx_args, seed)
    if key not in cache:
        cache[key] = dense_for(_context_from(ctx_args), seed)
    return cache[key]


def dense_job(ctx: dict, seed: int) -> dict:
    """Train (or load from the cache) the dense model of `seed`; its accuracies."""
    with torch_threads(1):
        dense, splits = _dense(ctx, seed)
        return {"seed": seed} | evaluate_model(dense, splits)


def compare_job(ctx: dict, settings: dict, run: str, kwargs: dict, seed: int, out: str) -> dict:
    """One compare row (`run`, `kwargs`) on the dense model of one seed."""
    with torch_threads(1):
        return _compare_row(ctx, settings, run, kwargs, seed, out)


def _compare_row(ctx: dict, settings: dict, run: str, kwargs: dict, seed: int, out: str) -> dict:
    from .train import set_seed

    t1 = time.perf_counter()
    c = _context_from(ctx)
    dense, splits = _dense(ctx, seed)
    set_seed(seed)          # the same start whatever this worker ran before
    original = sum(m.weight.numel() for _, m in target_layers(dense, c.layers))
    model = resolve(run)(clone_model(dense), splits, c, seed, SimpleNamespace(**settings), **kwargs)
    fin = finalize(model, splits, c, Path(out), "compare", seed, write=False, reference_weights=original)
    golden = fin.get("image", {}).get("golden_test", {})
    return {"seed": seed, "val_acc": fin["pruned"]["val_acc"], "test_acc": fin["pruned"]["test_acc"],
            "kept": fin["pruned"]["kept"], "golden_test_acc": golden.get("accuracy"),
            "density": {n: 1 - r["sparsity"] for n, r in fin["pruned"]["layers"].items()},
            "quantised_test_acc": fin.get("image", {}).get("quantised", {}).get("test_acc"),
            "cycles_per_input": golden.get("cycles_per_input"),
            "ratio_total": fin.get("compression", {}).get("ratio_total"),
            "ratio_one_csc": fin.get("compression_one_csc", {}).get("ratio_total"),
            "ratio_one_csc_huffman": fin.get("compression_one_csc", {}).get("ratio_huffman"),
            "seconds": round(time.perf_counter() - t1, 1)}


def run_compare(settings: SimpleNamespace, ctx: Context, seeds, out: Path, rows, *,
                executor: Executor = Executor()) -> dict:
    """Every row at `settings.sparsity`, per seed, exported like a method's final network
    (nothing written but compare.json and compare.png). The dense models (one job per seed),
    then one job per (row, seed) on `executor`; the report does not depend on it."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    c = _context_args(ctx)
    if c["cache_dir"] is not None:
        c["cache_dir"] = str(Path(c["cache_dir"]).resolve())
    progress = ctx.progress
    dense_out = run_jobs([Job(dense_job, {"ctx": c, "seed": s}, key=f"dense seed {s}")
                          for s in seeds],
                         executor, progress=progress, desc="dense models")
    dense_rows = [r for r in dense_out.results if r is not None]
    opts = vars(settings).copy()
    jobs = [Job(compare_job, {"ctx": c, "settings": opts, "run": row.run, "kwargs": dict(row.kwargs), "seed": s,
                              "out": str(out.resolve())}, key=f"{row.label}, seed {s}")
            for _, row in rows for s in seeds]
    outcome = (run_jobs(jobs, executor, progress=progress, desc=f"compare ({executor.describe()})")
               if not dense_out.interrupted else Outcome([None] * len(jobs), interrupted=True))
    n = len(seeds)
    results = {row.label: [r for r in outcome.results[k * n:(k + 1) * n] if r is not None]
               for k, (_, row) in enumerate(rows)}
    dense_test = _mean(r["test_acc"] for r in dense_rows)
    table = []
    for _, row in rows:
        rs = results[row.label]
        t = {"method": row.label, "matching": resolve(row.note)(settings, **dict(row.kwargs))}
        t |= {k: _mean(r[k] for r in rs) for k in ("kept", "val_acc", "test_acc", "quantised_test_acc",
                                                   "golden_test_acc", "cycles_per_input", "ratio_total",
                                                   "ratio_one_csc", "ratio_one_csc_huffman")}
        t["density"] = {n: _mean(r["density"].get(n) for r in rs) for n in rs[0]["density"]} if rs else {}
        drop = None if dense_test is None or t["test_acc"] is None else dense_test - t["test_acc"]
        table.append(t | {"test_acc_drop": drop, "runs": rs})
    report = {"method": "compare", "sparsity": settings.sparsity, "context": ctx.describe(),
              "options": vars(settings).copy(),
              "finetune_budget_epochs": finetune_budget(settings),
              "dense": dense_rows, "dense_test_acc": dense_test, "dense_val_acc": _mean(r["val_acc"] for r in dense_rows),
              "table": table,
              "paper_density": paper_density(ctx.model, table[0]["density"]) if table and table[0]["runs"] else None,
              "seconds": round(time.perf_counter() - t0, 1), "output_dir": str(out),
              "executor": executor.describe(), "interrupted": outcome.interrupted,
              "job_failures": dense_out.failures + outcome.failures, "jobs_rerun": dense_out.retried + outcome.retried,
              "files": ["compare.json", "compare.png"]}
    write_json(out / "compare.json", report)
    plot_bars({f"{t['method']}\n({100 * t['kept']:.1f} % kept)": t["test_acc"] for t in table if t["runs"]},
              out / "compare.png",
              f"methods at {100 * (1 - settings.sparsity):.0f} % of the FC weights kept "
              f"(mean of {len(dense_rows)} seed(s))", "test accuracy (%)", dense_test)
    return report
