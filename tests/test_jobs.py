"""eie/jobs.py: the same jobs give the same results serially, on a 2-process pool and on a
local Ray instance; a job that raises and a worker that dies are reported with their seed,
run once more, and do not cost the other jobs' results."""

import os

import pytest

from eie.jobs import Executor, Job, run_jobs, worker_cache

POOL = Executor(workers=2)
SERIAL = Executor(workers=1)


# -- jobs (top level, so that workers import them by name) ---------------------------------
def square_sum(seed: int, n: int) -> dict:
    import numpy as np

    x = np.random.default_rng(seed).integers(0, 100, n)
    return {"seed": seed, "sum": int((x * x).sum()), "first": x[:3].tolist()}


def flaky(seed: int, mode: str, marker: str = "") -> dict:
    """Fails on `seed` 3: always ('raise', 'exit'), or only the first time ('once': the
    marker file records the first attempt, so the re-run passes)."""
    if seed == 3:
        if mode == "raise":
            raise ValueError(f"bad case {seed}")
        if mode == "exit":
            os._exit(7)
        if mode == "once" and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt fails")
    return {"seed": seed, "pid": os.getpid()}


def cached(seed: int) -> dict:
    """Counts, per worker process, how often its 'build' was made."""
    cache = worker_cache()
    made = "build" not in cache
    cache.setdefault("build", object())
    return {"seed": seed, "pid": os.getpid(), "made": made}


def _jobs(fn, seeds, **kw):
    return [Job(fn, {"seed": s, **kw}, key=f"seed {s}") for s in seeds]


@pytest.fixture(scope="module")
def ray_local():
    """A one-machine Ray instance started by this test module (2 CPUs), shut down after."""
    ray = pytest.importorskip("ray")  # the `cluster` extra; `make venv` installs it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield Executor(workers=2, ray="local")
    ray.shutdown()


def test_same_results_serial_pool_and_ray(ray_local):
    jobs = [Job(square_sum, {"seed": s, "n": 50 + s}, key=f"seed {s}") for s in range(8)]
    serial = run_jobs(jobs, SERIAL)
    assert serial.ok and [r["seed"] for r in serial.results] == list(range(8))
    for ex in (POOL, ray_local):
        out = run_jobs(jobs, ex)
        assert out.ok and out.results == serial.results, ex.describe()


@pytest.mark.parametrize("where", ["serial", "pool", "ray"])
def test_a_raising_job_is_reported_rerun_once_and_the_rest_complete(where, request):
    ex = {"serial": SERIAL, "pool": POOL}.get(where) or request.getfixturevalue("ray_local")
    out = run_jobs(_jobs(flaky, range(6), mode="raise"), ex)
    assert not out.ok and not out.interrupted
    assert [r["key"] for r in out.failures] == ["seed 3"] and "bad case 3" in out.failures[0]["error"]
    assert [r["key"] for r in out.retried] == ["seed 3"]          # the first attempt, re-run once
    assert out.results[3] is None
    assert [r["seed"] for i, r in enumerate(out.results) if i != 3] == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("where", ["pool", "ray"])
def test_a_killed_worker_is_reported_and_the_rest_complete(where, request):
    ex = POOL if where == "pool" else request.getfixturevalue("ray_local")
    out = run_jobs(_jobs(flaky, range(8), mode="exit"), ex)
    assert [r["key"] for r in out.failures] == ["seed 3"]
    assert "died" in out.failures[0]["error"]
    assert "seed 3" in [r["key"] for r in out.retried]
    assert [r["seed"] for i, r in enumerate(out.results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


@pytest.mark.parametrize("where", ["serial", "pool"])
def test_a_job_that_fails_once_passes_on_its_rerun(where, tmp_path):
    out = run_jobs(_jobs(flaky, range(5), mode="once", marker=str(tmp_path / "m")), SERIAL if where == "serial" else POOL)
    assert out.ok and [r["seed"] for r in out.results] == list(range(5))
    assert out.retried == [{"index": 3, "key": "seed 3", "error": "RuntimeError: first attempt fails"}]


def test_no_rerun_when_retries_is_zero():
    out = run_jobs(_jobs(flaky, range(5), mode="raise"), SERIAL, retries=0)
    assert out.retried == [] and [r["key"] for r in out.failures] == ["seed 3"]


def test_ctrl_c_keeps_what_finished():
    seen = []

    def stop_after_two(i, res):
        seen.append(i)
        if len(seen) == 2:
            raise KeyboardInterrupt

    for ex in (SERIAL, POOL):
        seen.clear()
        out = run_jobs(_jobs(flaky, range(10), mode="none"), ex, on_result=stop_after_two)
        assert out.interrupted and not out.ok
        kept = [i for i, r in enumerate(out.results) if r is not None]
        assert sorted(kept) == sorted(seen) and len(kept) == 2


def test_worker_cache_is_kept_across_jobs():
    out = run_jobs(_jobs(cached, range(8)), POOL)
    by_pid = {}
    for r in out.results:
        by_pid.setdefault(r["pid"], []).append(r["made"])
    assert len(by_pid) <= 2 and all(made.count(True) == 1 for made in by_pid.values())


def test_executor_options_are_checked():
    import argparse

    from eie.common import UserError
    from eie.jobs import add_executor_options, executor_from_args

    p = argparse.ArgumentParser()
    add_executor_options(p)
    assert executor_from_args(p.parse_args(["--workers", "3"])) == Executor(workers=3)
    assert executor_from_args(p.parse_args([])).workers == (os.cpu_count() or 1)
    with pytest.raises(UserError, match="--workers 0: expected a positive"):
        executor_from_args(p.parse_args(["--workers", "0"]))
