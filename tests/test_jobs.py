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


def blas_threads(seed: int) -> dict:
    """What a job sees: the OpenMP variable its subprocesses inherit, its BLAS threads."""
    import numpy  # noqa: F401 - loads the BLAS that threadpool_info reports
    from threadpoolctl import threadpool_info

    return {"seed": seed, "omp": os.environ.get("OMP_NUM_THREADS"),
            "blas": max([p["num_threads"] for p in threadpool_info()] or [1])}


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


def test_pool_and_ray_workers_run_one_blas_thread_and_serial_jobs_keep_the_drivers(ray_local):
    """N workers on N cores with a machine-wide BLAS pool each oversubscribe them (docs/scale.md)."""
    for ex in (POOL, ray_local):
        out = run_jobs(_jobs(blas_threads, range(4)), ex)
        assert [r["omp"] for r in out.results] == ["1"] * 4 and [r["blas"] for r in out.results] == [1] * 4
    before = os.environ.get("OMP_NUM_THREADS")
    out = run_jobs(_jobs(blas_threads, range(2)), SERIAL)
    assert [r["omp"] for r in out.results] == [before] * 2 and os.environ.get("OMP_NUM_THREADS") == before


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

    p = argparse.ArgumentParser(exit_on_error=False)
    add_executor_options(p)
    assert executor_from_args(p.parse_args(["--workers", "3"])) == Executor(workers=3)
    assert executor_from_args(p.parse_args([])).workers == (os.cpu_count() or 1)
    with pytest.raises(argparse.ArgumentError, match="--workers: expected an integer in 1..4096, got 0"):
        p.parse_args(["--workers", "0"])
    with pytest.raises(UserError, match="--ray: expected a cluster address"):
        executor_from_args(p.parse_args(["--ray", " "]))


# -- the commands on the three executors --------------------------------------------------
def _strip(o, keys):
    """A summary without what differs between two runs (timings, the executor's name)."""
    if isinstance(o, dict):
        return {k: _strip(v, keys) for k, v in o.items() if k not in keys}
    if isinstance(o, list):
        return [_strip(v, keys) for v in o]
    return o


@pytest.mark.sim
def test_regress_summary_is_the_same_serially_on_a_pool_and_on_ray(tmp_path, capsys, ray_local):
    """4 cases on two cached Verilator builds, one case per job (two jobs per build)."""
    import json

    from eie.cli import main

    summaries = []
    for where in (["--workers", "1"], ["--workers", "2"], ["--ray", "local", "--workers", "2"]):
        assert main(["regress", "--cases", "4", "--seed", "40", "--builds", "1x1,3x8", "--chunk", "1", "--json",
                     "--simulator", "verilator", "--failures", str(tmp_path / "fail"), *where]) == 0
        summaries.append(json.loads(capsys.readouterr().out))
    assert [s["executor"] for s in summaries] == ["serial", "2-process pool", "Ray (local)"]
    keys = set(summaries[0]["timing_keys"]) | {"executor"}
    first = _strip(summaries[0], keys)
    assert first["passed"] == first["cases_run"] == 4 and first["complete"]
    assert [(b["n_pe"], b["cases"]) for b in first["builds"]] == [(1, 2), (3, 2)]
    for s in summaries[1:]:
        assert _strip(s, keys) == first


@pytest.mark.sim
def test_a_worker_reuses_its_simulator_build(monkeypatch):
    """The second build() of a parameter set in a process generates no Verilog again."""
    from eie.sim import runner
    from eie.sim.cases import sim_params

    calls = []
    real = runner.generate_verilog
    monkeypatch.setattr(runner, "generate_verilog", lambda p: calls.append(p) or real(p))
    a = runner.build(sim_params(1, 1), simulator="verilator")
    b = runner.build(sim_params(1, 1), simulator="verilator")
    assert a.directory == b.directory and len(calls) <= 1 and b.seconds == 0


def test_workers_and_ray_options_are_one_line_errors(capsys, monkeypatch):
    import sys

    from eie.cli import main

    with pytest.raises(SystemExit) as e:
        main(["regress", "--cases", "1", "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "argument --workers: expected an integer in 1..4096, got 0" in err and "\n" not in err
    monkeypatch.setitem(sys.modules, "ray", None)              # as if the extra were not installed
    assert main(["regress", "--cases", "1", "--ray", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[cluster]'" in err and "\n" not in err


def test_prune_compare_is_the_same_serially_on_a_pool_and_on_ray(tmp_path, capsys, ray_local):
    """Two rows x two seeds of a tiny comparison (2 dense epochs, cached per seed)."""
    import json

    from eie.cli import main

    reports = []
    for where in (["--workers", "1"], ["--workers", "2"], ["--ray", "local", "--workers", "2"]):
        assert main(["prune", "compare", "--epochs", "2", "--seeds", "0,1", "--quiet", "--n-pe", "4", "--calib", "32",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--json",
                     "--sparsity", "0.8", "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0",
                     "--methods", "one-shot (global),L1", *where]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    keys = {"seconds", "executor"}
    first = _strip(reports[0], keys)
    assert [t["method"] for t in first["table"]] == ["magnitude one-shot (global)", "L1 + one-shot global"]
    assert all([r["seed"] for r in t["runs"]] == [0, 1] for t in first["table"])
    assert not first["job_failures"] and not first["interrupted"]
    for r in reports[1:]:
        assert _strip(r, keys) == first


def test_bench_is_the_same_serially_on_a_pool_and_on_ray(tmp_path, capsys, ray_local):
    """`eie bench --tiny`'s cycle-model sections (Table IV both ways, FC8 when its data is
    present, both sweeps): one job per row, per layer's depth sweep, per (layer, N)."""
    import json

    from eie.bench.paper import TABLE_III
    from eie.cli import main

    results = []
    for i, where in enumerate((["--workers", "1"], ["--workers", "2"], ["--ray", "local", "--workers", "2"])):
        assert main(["bench", "--tiny", "--sections", "table", "fc8", "depth", "pe", "--json",
                     "--out", str(tmp_path / f"b{i}"), *where]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert [r["environment"]["executor"] for r in results] == ["serial", "2-process pool", "Ray (local)"]
    first = _strip(results[0], {"seconds", "environment"})
    layers = len(TABLE_III) + (first["fc8"] is not None)
    assert len(first["table_iv"]) == len(first["table_iv_work_matched"]) == len(TABLE_III)
    assert len(first["depth_sweep"]) == len(first["pe_sweep"]) == layers
    assert first["jobs"] == {"count": 2 * len(TABLE_III) + (first["fc8"] is not None) + layers + 3 * layers,
                             "failures": [], "rerun": [], "interrupted": False}
    for r in results[1:]:
        assert _strip(r, {"seconds", "environment"}) == first


def test_a_failing_bench_job_leaves_its_row_out_and_exits_1(tmp_path, capsys, monkeypatch):
    import json

    import eie.bench.jobs as bench_jobs
    from eie.cli import main

    real = bench_jobs.table_row

    def broken(P, L, *a, **kw):
        if P.name == "VGG-6":
            raise ArithmeticError("broken row")
        return real(P, L, *a, **kw)

    monkeypatch.setattr(bench_jobs, "table_row", broken)
    assert main(["bench", "--tiny", "--sections", "table", "--json", "--workers", "1",
                 "--out", str(tmp_path / "b")]) == 1
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert "VGG-6" not in [r["layer"] for r in res["table_iv"]] and len(res["table_iv"]) == 8
    assert "VGG-6" not in [r["layer"] for r in res["table_iv_work_matched"]]
    keys = ["VGG-6 (table densities)", "VGG-6 (work densities)"]
    assert [(f["key"], f["error"]) for f in res["jobs"]["failures"]] == [(k, "ArithmeticError: broken row")
                                                                         for k in keys]
    assert [f["key"] for f in res["jobs"]["rerun"]] == keys
    assert "eie bench: job VGG-6 (table densities) failed twice (ArithmeticError: broken row)" in err
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["jobs"] == res["jobs"]


# -- the sensitivity scan and NetAdapt's candidates as jobs --------------------------------
def test_a_pruned_model_travels_to_a_job_exactly(train_mlp):
    """model_to_text keeps the masks and the weights under them, and the mode."""
    import torch

    from eie.pruning.handoff import model_from_text, model_to_text
    from eie.pruning.masks import is_pruned, set_mask

    m = train_mlp(2, sizes=(64, 16, 10))
    set_mask(m.layers[0], (torch.arange(m.layers[0].weight.numel()) % 3 != 0).float().view_as(m.layers[0].weight))
    m.eval()
    c = model_from_text(model_to_text(m))
    assert is_pruned(c.layers[0]) and not is_pruned(c.layers[1]) and not c.training
    sd, sc = m.state_dict(), c.state_dict()
    assert list(sd) == list(sc) and all(torch.equal(sd[k], sc[k]) for k in sd)
    assert bool((sc["layers.0.weight_orig"][sc["layers.0.weight_mask"] == 0] != 0).any())  # kept under the mask
    x = torch.randn(7, 64)
    assert torch.equal(m(x), c(x))


def test_sensitivity_scan_is_the_same_serially_on_a_pool_and_on_ray(train_mlp, ray_local):
    from eie.pruning.data import load_splits
    from eie.pruning.sensitivity import scan

    sp = load_splits("digits")          # with a source: a worker loads the same splits
    m = train_mlp(3, sizes=(64, 32, 10))
    runs = [scan(m, sp, [0.0, 0.5, 0.9], executor=ex) for ex in (SERIAL, POOL, ray_local)]
    assert list(runs[0]["layers"]) == ["layers.0", "layers.1"]
    assert [p["ratio"] for p in runs[0]["layers"]["layers.1"]] == [0.0, 0.5, 0.9]
    assert runs[0]["layers"]["layers.0"][0]["drop"] == 0.0       # ratio 0 is the unpruned model
    assert runs[1] == runs[0] and runs[2] == runs[0]


def test_netadapt_is_the_same_serially_on_a_pool_and_on_ray(train_mlp, ray_local):
    import json

    from eie.pruning.data import load_splits
    from eie.pruning.netadapt import NetAdaptConfig, run_netadapt

    sp = load_splits("digits")
    m = train_mlp(3, sizes=(64, 32, 16, 10), bias=False)
    cfg = NetAdaptConfig(delta=0.2, budget=0.5, max_iterations=2, short_epochs=1, long_epochs=0, n_pe=2,
                         n_calibration=8, seed=0)
    runs = []
    for ex in (SERIAL, POOL, ray_local):
        res = run_netadapt(m, sp, cfg, executor=ex)
        res.pop("model")
        res.pop("seconds")
        runs.append(json.dumps(res, sort_keys=True))
    first = json.loads(runs[0])
    assert len(first["iterations"]) >= 2 and len(first["iterations"][1]["candidates"]) == 3
    assert runs[1] == runs[0] and runs[2] == runs[0]


def test_splits_without_a_source_run_serially_only(train_mlp, splits):
    from eie.pruning.sensitivity import scan

    m = train_mlp(3, sizes=(64, 32, 10))
    assert scan(m, splits, [0.5], executor=SERIAL)["layers"]["layers.1"][0]["ratio"] == 0.5
    with pytest.raises(ValueError, match="not made by data.load_splits"):
        scan(m, splits, [0.5], executor=POOL)


def test_a_netadapt_candidate_that_fails_twice_stops_the_run_naming_it(train_mlp, splits, monkeypatch):
    from eie.jobs import JobError
    from eie.pruning import netadapt

    calls = []

    def broken(cand, sp, cfg, est, k, name, target, i):
        calls.append(name)
        raise FloatingPointError("diverged")

    monkeypatch.setattr(netadapt, "_candidate", broken)
    cfg = netadapt.NetAdaptConfig(delta=0.2, budget=0.5, max_iterations=1, short_epochs=0, long_epochs=0, n_pe=2,
                                  n_calibration=8)
    with pytest.raises(JobError, match=r"job iteration 1, layer layers.0 failed twice \(FloatingPointError: diverged\)"):
        netadapt.run_netadapt(train_mlp(2, sizes=(64, 16, 10)), splits, cfg, executor=SERIAL)
    assert calls[:2] == ["layers.0", "layers.0"]
