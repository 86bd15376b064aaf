"""The seeded random regression as independent jobs (eie/jobs.py): one job is one chunk of
cases on one build, run in one simulator process; the summary is put together from the
jobs' results in job order, so it is the same whatever executor ran them.

The builds are cached on disk per parameter set (sim/runner.py, one builder per build
directory under a lock) and in each worker process, so a worker's later chunks on the
same build pay neither the compile nor the Verilog generation.
"""

from __future__ import annotations

import json
from pathlib import Path

from eie.jobs import Job

__all__ = ["PARAMETER_RANGES", "TIMING_KEYS", "plan", "chunk_job", "summarize", "save_failure"]

PARAMETER_RANGES = {"layers": [1, 3], "dims": [1, 48], "weight_density": [0.01, 1.0],
                    "activation_density": [0.0, 1.0], "rows_per_batch": [1, 16], "samples_per_case": [1, 3]}
# what differs between two runs of the same regression (wall clock and simulator speed)
TIMING_KEYS = ("wall_seconds", "build_seconds", "run_wall_seconds", "cycles_per_second",
               "compute_cycles_per_second", "job_seconds")


def plan(cases: int, first_seed: int, builds, chunk: int, simulator: str, root, failures) -> list[Job]:
    """Cases round-robin over `builds` (seed, seed+1, ...), cut into chunks of `chunk` per build."""
    seeds = {b: [] for b in builds}
    for i in range(cases):
        seeds[builds[i % len(builds)]].append(first_seed + i)
    jobs = []
    for (n, d), ss in seeds.items():
        for start in range(0, len(ss), chunk):
            part = ss[start:start + chunk]
            jobs.append(Job(chunk_job, {"n_pe": n, "fifo_depth": d, "seeds": part, "simulator": simulator,
                                        "root": str(root), "failures": str(failures)},
                            key=f"seeds {part[0]}-{part[-1]} on {n}x{d}"))
    return jobs


def chunk_job(n_pe: int, fifo_depth: int, seeds: list, simulator: str, root: str, failures: str) -> dict:
    """Run the cases `seeds` on the n_pe x fifo_depth build; failing cases are saved under
    `failures` (save_failure), each to be rerun on its own."""
    import time

    from .cases import random_case, sim_params
    from .runner import build, run_cases

    t0 = time.perf_counter()
    params = sim_params(n_pe, fifo_depth)
    b = build(params, Path(root), simulator)
    chunk = [random_case(s, params) for s in seeds]
    run = run_cases(chunk, params, root=Path(root), simulator=simulator)
    bad = {r["case"] for r in run.failures}
    if run.failed_tests and not bad:          # the test stopped: every case without results
        bad = {c.name for c in chunk} - {r["case"] for r in run.results}
    fails = []
    for c in chunk:
        if c.name in bad:
            res = [r for r in run.results if r["case"] == c.name]
            saved = save_failure(Path(failures), c, params, simulator, res)
            fails.append({"seed": c.seed, "n_pe": n_pe, "fifo_depth": fifo_depth, "info": c.info,
                          "results": res, "saved": str(saved)})
    return {"n_pe": n_pe, "fifo_depth": fifo_depth, "cases": len(seeds), "samples": len(run.results),
            "clock_cycles": run.clock_cycles, "sim_seconds": run.sim_seconds,
            "run_clock_cycles": run.run_clock_cycles, "run_seconds": run.run_seconds,
            "build_seconds": b.seconds, "job_seconds": time.perf_counter() - t0, "failures": fails}


def summarize(jobs: list[Job], results: list, builds) -> dict:
    """The regression's summary from the jobs' results so far (None: not run or failed)."""
    summary = {"builds": [], "failures": [], "samples": 0, "cases_run": 0,
               "parameter_ranges": {"n_pe_x_fifo_depth": [f"{n}x{d}" for n, d in builds]} | PARAMETER_RANGES}
    entries = {}
    for job, res in zip(jobs, results):
        key = (job.args["n_pe"], job.args["fifo_depth"])
        e = entries.setdefault(key, {"n_pe": key[0], "fifo_depth": key[1], "cases": 0, "cases_run": 0,
                                     "build_seconds": 0.0, "clock_cycles": 0, "_s": 0.0, "_rc": 0, "_rs": 0.0,
                                     "run_wall_seconds": 0.0})
        e["cases"] += len(job.args["seeds"])
        if res is None:
            continue
        e["cases_run"] += res["cases"]
        e["build_seconds"] += res["build_seconds"]
        e["clock_cycles"] += res["clock_cycles"]
        e["_s"] += res["sim_seconds"]
        e["_rc"] += res["run_clock_cycles"]
        e["_rs"] += res["run_seconds"]
        e["run_wall_seconds"] += res["job_seconds"]
        summary["samples"] += res["samples"]
        summary["cases_run"] += res["cases"]
        summary["failures"] += res["failures"]
    for e in entries.values():
        s, rc, rs = e.pop("_s"), e.pop("_rc"), e.pop("_rs")
        e |= {"build_seconds": round(e["build_seconds"], 1), "run_wall_seconds": round(e["run_wall_seconds"], 1),
              "cycles_per_second": round(e["clock_cycles"] / s, 1) if s else None,
              "compute_cycles_per_second": round(rc / rs, 1) if rs else None}
        summary["builds"].append(e)
    summary["passed"] = summary["cases_run"] - len(summary["failures"])
    return summary


def save_failure(directory: Path, case, params, sim: str, results) -> Path:
    """One failing case as a directory that can be rerun (`eie regress` replays it): the
    case (image + inputs, sim/cases.py), the build's parameters and what went wrong."""
    from .cases import save_cases

    d = directory / f"seed{case.seed}_{params.n_pe}x{params.fifo_depth}"
    save_cases([case], d)
    (d / "params.json").write_text(json.dumps({"params": params.as_dict(), "simulator": sim,
                                               "results": results}, indent=1))
    return d
