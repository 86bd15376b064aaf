"""One execution layer for independent pure jobs: serial, a local process pool, or Ray.

A job is a picklable top-level function and JSON-able keyword arguments; it returns a
JSON-able result. Results come back in job order (each passed through JSON), so what a
command builds from them is the same whatever ran them. A job that raises, or whose
worker dies, is reported with its key and run once more; Ctrl-C stops the workers and
keeps what finished (`Outcome.interrupted`).

Pool workers are started with 'spawn' (no forked torch / Amaranth state) and live for the
whole run (inside a `kept` block, for every run of the block), so `worker_cache()` lets
jobs reuse what they built (e.g. a simulator build) across the jobs a worker runs. Ray is
imported only when asked for (`--ray`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import traceback
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable

from threadpoolctl import threadpool_limits

from eie.cli_inputs import WORKERS_MAX, int_in
from eie.common import UserError

__all__ = ["Job", "Executor", "Outcome", "JobError", "run_jobs", "kept", "worker_cache", "add_executor_options",
           "executor_from_args", "RAY_HINT"]

RAY_HINT = "pip install -e '.[cluster]'"
_WORKER_CACHE: dict = {}
_KEPT: dict = {}     # "pool": the process pool of the innermost `kept` block


def worker_cache() -> dict:
    """A dict that lives as long as this process: a worker's memo across its jobs."""
    return _WORKER_CACHE


@dataclass(frozen=True)
class Job:
    fn: Callable                 # a top-level function (pickled by reference)
    args: dict                   # JSON-able keyword arguments
    key: str                     # how reports name the job, e.g. "seed 40 on 3x8"


@dataclass(frozen=True)
class Executor:
    """Where jobs run: `workers` processes here, or Ray (`ray`: an address or "local")."""

    workers: int = 1
    ray: str | None = None

    def describe(self) -> str:
        if self.ray:
            return f"Ray ({self.ray})"
        return "serial" if self.workers == 1 else f"{self.workers}-process pool"


@dataclass
class Outcome:
    results: list                              # per job, in job order; None where it failed
    failures: list = field(default_factory=list)   # [{"index", "key", "error"}] after the re-run
    retried: list = field(default_factory=list)    # [{"index", "key", "error"}] first failures
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def raise_if_incomplete(self) -> None:
        """For callers that need every result: Ctrl-C goes on as KeyboardInterrupt, a job
        that failed twice becomes a JobError naming it."""
        if self.interrupted:
            raise KeyboardInterrupt
        if self.failures:
            f = self.failures[0]
            raise JobError(f"job {f['key']} failed twice ({f['error']})")


class JobError(RuntimeError):
    """A job whose result its caller cannot do without failed on its re-run too."""


def _call(fn, args):
    """The worker side: run the job and hand back its result as JSON text."""
    return json.dumps(fn(**args))


_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_LIMITS: list = []


def _worker_call(fn, args):
    """`_call` in a pool or Ray worker, with one BLAS / OpenMP thread in this process and in
    the processes its jobs start (the simulators). N workers whose libraries each keep a
    thread pool as wide as the machine oversubscribe its cores: a 2-worker regression ran
    1.16x faster than serial so, 1.67x with one thread each (docs/scale.md)."""
    if not _LIMITS:
        os.environ.update(_ONE_THREAD_ENV)
        _LIMITS.append(threadpool_limits(1))
    return _call(fn, args)


def _error_text(e: BaseException) -> str:
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    return last.splitlines()[-1] if last else type(e).__name__


class _Tracker:
    """Attempts, results and the progress bar, shared by the executors."""

    def __init__(self, jobs, retries: int, progress: bool, desc: str, on_result):
        from tqdm import tqdm

        self.jobs, self.retries, self.on_result = jobs, retries, on_result
        self.out = Outcome([None] * len(jobs))
        self.attempts = [0] * len(jobs)
        self.bar = tqdm(total=len(jobs), unit="job", desc=desc, disable=not progress)

    def done(self, i: int, text: str) -> None:
        self.out.results[i] = json.loads(text)
        self.bar.update(1)
        if self.on_result:
            self.on_result(i, self.out.results[i])

    def failed(self, i: int, error: str) -> bool:
        """Record a failed attempt; True if the job is to be run again."""
        self.attempts[i] += 1
        rec = {"index": i, "key": self.jobs[i].key, "error": error}
        if self.attempts[i] <= self.retries:
            self.out.retried.append(rec)
            self.bar.write(f"job {self.jobs[i].key} failed ({error}); running it again", file=sys.stderr)
            return True
        self.out.failures.append(rec)
        self.bar.write(f"job {self.jobs[i].key} failed again ({error})", file=sys.stderr)  # stdout may be JSON
        self.bar.update(1)
        return False


def run_jobs(jobs: list[Job], executor: Executor = Executor(), *, retries: int = 1, progress: bool = False,
             desc: str = "jobs", on_result: Callable[[int, Any], None] | None = None) -> Outcome:
    """Run `jobs` on `executor`; `on_result(index, result)` is called as each finishes."""
    t = _Tracker(jobs, retries, progress, desc, on_result)
    try:
        if executor.ray:
            _run_ray(t, executor)
        elif executor.workers > 1 and len(jobs) > 1:
            _run_pool(t, min(executor.workers, len(jobs)))
        else:
            _run_serial(t)
    except KeyboardInterrupt:
        t.out.interrupted = True
    finally:
        t.bar.close()
    t.out.failures.sort(key=lambda r: r["index"])
    t.out.retried.sort(key=lambda r: r["index"])
    return t.out


def _run_serial(t: _Tracker) -> None:
    """In this process (a job that kills its process kills the run: use a pool for those)."""
    for i, job in enumerate(t.jobs):
        while True:
            try:
                t.done(i, _call(job.fn, job.args))
                break
            except Exception as e:  # noqa: BLE001 - a job's error is reported, not raised
                if not t.failed(i, _error_text(e)):
                    break


def _new_pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))


def _run_pool(t: _Tracker, workers: int) -> None:
    """A spawn-context pool (the one `kept` holds, if any). A dead worker breaks the whole
    pool: the jobs that may have been running then (the first 2 x workers + 1 unfinished,
    the pool's in-flight window) are charged an attempt and re-run one at a time, so a
    second death names its job; the others go back to a new pool uncharged."""
    queue = list(range(len(t.jobs)))
    alone: deque[int] = deque()
    while queue or alone:
        batch, n = (queue, workers) if queue else ([alone.popleft()], 1)
        queue = []
        shared = _KEPT.get("pool") if n > 1 else None
        ex = shared or _new_pool(n)
        try:
            futs = {ex.submit(_worker_call, t.jobs[i].fn, t.jobs[i].args): i for i in batch}
            pending = set(futs)
            broken: list[int] = []
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=futs.get):
                    i = futs[f]
                    try:
                        t.done(i, f.result())
                    except BrokenProcessPool:
                        broken.append(i)
                    except Exception as e:  # noqa: BLE001 - reported, and run again once
                        if t.failed(i, _error_text(e)):
                            (alone if n == 1 else queue).append(i)
            broken.sort()
            window = 2 * n + 1
            for i in broken[:window]:
                if t.failed(i, "worker process died" + ("" if n == 1 else " (this job or one beside it)")):
                    alone.append(i)
            queue.extend(broken[window:])
            queue.sort()
        except KeyboardInterrupt:
            for p in list((getattr(ex, "_processes", None) or {}).values()):  # stop the running jobs now
                p.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            if shared:
                _KEPT.pop("pool", None)
            raise
        if shared and broken:               # a broken pool takes no more jobs: later batches get new ones
            _KEPT.pop("pool", None)
        if not shared or broken:
            ex.shutdown(wait=True)


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray: Ray is not installed; install it with `{RAY_HINT}`") from None
    return ray


def _ray_init(executor: Executor) -> bool:
    """Start (`local`) or join Ray unless this process already has; True if it did."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if executor.ray == "local":
            ray.init(num_cpus=executor.workers, **kw)
        else:
            ray.init(address=executor.ray, **kw)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"--ray {executor.ray}: cannot join the cluster ({_error_text(e)})") from None
    return True


def _run_ray(t: _Tracker, executor: Executor) -> None:
    """Ray tasks (no Ray-side retries: the re-run is ours, so it is reported). `local`
    starts a one-machine instance for this run, or reuses one this process started."""
    ray = _ray()
    started = _ray_init(executor)
    task = ray.remote(max_retries=0, num_cpus=1)(_worker_call)
    refs = {}

    def submit(i):
        refs[task.remote(t.jobs[i].fn, t.jobs[i].args)] = i

    try:
        for i in range(len(t.jobs)):
            submit(i)
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for r in ready:
                i = refs.pop(r)
                try:
                    t.done(i, ray.get(r))
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if t.failed(i, _error_text(cause) if isinstance(cause, BaseException) else _error_text(e)):
                        submit(i)
                except ray.exceptions.RayError as e:   # worker crashed, node died, ...
                    if t.failed(i, f"Ray worker died ({type(e).__name__})"):
                        submit(i)
    except KeyboardInterrupt:
        for r in refs:
            ray.cancel(r, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


@contextmanager
def kept(executor: Executor):
    """Inside the block, the run_jobs calls on `executor` share one process pool (or one
    Ray instance): its workers, and what they keep (`worker_cache`), outlive each call.
    For callers that run many small rounds of jobs, such as NetAdapt's iterations."""
    if executor.ray:
        started = _ray_init(executor)
        try:
            yield
        finally:
            if started:
                _ray().shutdown()
    elif executor.workers > 1 and "pool" not in _KEPT:
        _KEPT["pool"] = _new_pool(executor.workers)
        try:
            yield
        finally:
            pool = _KEPT.pop("pool", None)
            if pool is not None:
                pool.shutdown(wait=True)
    else:
        yield


# -- command-line options (the commands' --workers / --ray) ---------------------------------
def add_executor_options(parser) -> None:
    g = parser.add_argument_group("where the jobs run (docs/scale.md)")
    g.add_argument("--workers", type=int_in(1, WORKERS_MAX), default=None,
                   help="local worker processes (default: the CPU count; 1 runs in this process)")
    g.add_argument("--ray", metavar="HOST:PORT|local",
                   help=f"run on a running Ray cluster (its head's HOST:PORT, e.g. 10.0.0.5:6379) or on a "
                        f"one-machine Ray instance started for the run (local); needs `{RAY_HINT}`")


def executor_from_args(args) -> Executor:
    """The Executor the options ask for; a bad value is a UserError naming the option."""
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)  # --workers: checked by its type
    if args.ray is not None:
        if not args.ray.strip():
            raise UserError("--ray: expected a cluster address (HOST:PORT) or 'local'")
        _ray()
    return Executor(workers=workers, ray=args.ray)
