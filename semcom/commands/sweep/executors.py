"""Executing runs: run functions, thread limits, serial / process-pool / Ray executors.

An executor runs a *run function* ``run_fn(config: dict, overwrite: bool, settings:
dict) -> record`` on :class:`Task` objects and yields ``(task, record or exception)`` as
runs finish. The default run function, :func:`run_point`, validates the plain config
and calls :func:`semcom.commands.runner.run`; tests and benchmarks plug in others
(``--run-fn module:function``, :func:`resolve_run_fn`). Configs travel as plain data,
so every executor runs exactly the same thing, and per-sample randomness is seeded per
run and sample (:mod:`semcom.seeding`), so records do not depend on the executor or
the worker count. Workers get ``cores // workers`` torch/OpenMP threads each.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcom.errors import SemcomError
from semcom.results import atomic_write_text

RunFn = Callable[[dict, bool, dict], dict]


# --------------------------------------------------------------------------- run functions

_THREADS_SET = False


def _limit_threads() -> None:
    """Apply ``SEMCOM_TORCH_THREADS`` (set by the pool initialiser) to torch, once."""
    global _THREADS_SET
    n = os.environ.get("SEMCOM_TORCH_THREADS")
    if _THREADS_SET or not n:
        return
    import torch

    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # already set or parallel work started: keep the default
        pass
    _THREADS_SET = True


def run_point(config: dict, overwrite: bool = False, settings: dict | None = None) -> dict:
    """The default run function: validate ``config`` and run it with :func:`semcom.commands.runner.run`.

    Backends are cached per process by the runner, so a worker loads each model once.
    """
    from semcom.commands.runner import run
    from semcom.config import resolve

    _limit_threads()
    return run(resolve(config), overwrite=overwrite, settings=settings).record


def resolve_run_fn(spec: str | RunFn | None) -> RunFn:
    """``None`` -> :func:`run_point`; ``"module:function"`` -> that function."""
    if spec is None:
        return run_point
    if callable(spec):
        return spec
    import importlib

    module, _, func = str(spec).partition(":")
    if not module or not func:
        raise SemcomError(f"--run-fn expects module:function, got {spec!r}")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise SemcomError(f"cannot load run function {spec!r}: {exc}") from None


# --------------------------------------------------------------------------- executors


@dataclass
class Task:
    """One run to execute: the point's index in the sweep, its plain config and settings."""

    index: int
    run_id: str
    config: dict
    settings: dict
    overwrite: bool = False


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch/OpenMP threads each worker may use so that workers do not oversubscribe."""
    return max(1, cpu_count() // max(1, workers))


_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "SEMCOM_TORCH_THREADS",
)


def _init_worker(threads: int) -> None:
    """Pool initialiser: cap the threads of this worker before torch is imported."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)


def _call(run_fn: RunFn, task: Task) -> dict:
    return run_fn(task.config, task.overwrite, task.settings)


class SerialExecutor:
    """Runs in this process, one after the other (``--workers 1``)."""

    name = "serial"

    def __init__(self, run_fn: RunFn, workers: int = 1):
        self.run_fn, self.workers = run_fn, 1

    def execute(self, tasks: list[Task]) -> Iterator[tuple[Task, dict | BaseException]]:
        for task in tasks:
            try:
                yield task, _call(self.run_fn, task)
            except Exception as exc:
                yield task, exc

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A local pool of ``workers`` spawned processes (``--workers N``).

    Each worker is a long-lived process (models are loaded once per worker by the
    runner's cache) with ``cores // workers`` torch/OpenMP threads. At most ``workers``
    runs are in flight, so a crashed worker costs only the runs it held; the pool is
    restarted for the rest.
    """

    name = "process"

    def __init__(self, run_fn: RunFn, workers: int = 2):
        self.run_fn, self.workers = run_fn, max(1, int(workers))
        self.threads = threads_per_worker(self.workers)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads,),
        )

    def execute(self, tasks: list[Task]) -> Iterator[tuple[Task, dict | BaseException]]:
        queue = list(reversed(tasks))
        suspects: list[Task] = []  # in flight when a worker died: retried one at a time
        running: dict[cf.Future, Task] = {}
        self._pool = self._new_pool()
        while queue or suspects or running:
            if suspects:
                if not running:
                    task = suspects.pop()
                    running[self._pool.submit(_call, self.run_fn, task)] = task
            else:
                while queue and len(running) < self.workers:
                    task = queue.pop()
                    running[self._pool.submit(_call, self.run_fn, task)] = task
            isolated = len(running) == 1
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = running.pop(fut)
                try:
                    yield task, fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    running[fut] = task  # handled below with the other runs in flight
                except Exception as exc:
                    yield task, exc
            if broken:
                # A worker died (segfault, out of memory, os._exit); which run killed it is
                # unknown when several were in flight: those are retried one at a time,
                # and a run that kills its worker alone is recorded as failed.
                self._pool.shutdown(wait=False, cancel_futures=True)
                for fut, task in list(running.items()):
                    running.pop(fut)
                    if isolated:
                        yield (
                            task,
                            RuntimeError(
                                "the worker process died while running this "
                                "run (crash, out of memory or exit); see the "
                                "worker's stderr"
                            ),
                        )
                    else:
                        suspects.insert(0, task)
                self._pool = self._new_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ray_task(run_fn: RunFn, task: Task, threads: int, cwd: str) -> dict:
    """Body of a Ray task: run, then return the record and the run's files.

    On a cluster without a shared file system the driver writes the files it lacks,
    so the results end up where a local run would put them.
    """
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    _init_worker(threads)
    record = _call(run_fn, task)
    out_dir = Path((task.config.get("run") or {}).get("out_dir") or "experiments/runs")
    files = {}
    for name in ("samples.jsonl", "config.yaml"):
        f = out_dir / task.run_id / name
        if f.is_file():
            files[name] = f.read_text()
    return {"record": record, "files": files, "node": os.uname().nodename}


class RayExecutor:
    """Ray tasks on a local Ray (started here) or on a running cluster (``address``).

    A local Ray gets ``workers`` CPUs; each task asks for one CPU and runs with
    ``cores // workers`` threads. Ray reuses its worker processes, so models stay
    loaded across the runs a worker executes.
    """

    name = "ray"

    def __init__(self, run_fn: RunFn, workers: int = 2, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise SemcomError(
                "--executor ray needs Ray, which is not installed: "
                "pip install -e '.[ray]' (or pip install 'ray[default]'); "
                "or use --workers N for a local process pool"
            ) from None
        self.ray, self.run_fn, self.address = ray, run_fn, address
        self.workers = max(1, int(workers))
        self.threads = threads_per_worker(self.workers) if not address else 1
        self._started = False

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if self.address:
            ray.init(address=self.address, **kwargs)
        else:
            ray.init(num_cpus=self.workers, **kwargs)
        self._started = True

    def execute(self, tasks: list[Task]) -> Iterator[tuple[Task, dict | BaseException]]:
        self._init()
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        fn_ref = ray.put(self.run_fn)
        refs = {remote.remote(fn_ref, t, self.threads, os.getcwd()): t for t in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    yield task, cause if isinstance(cause, Exception) else exc
                    continue
                _restore_files(task, out.get("files") or {})
                yield task, out["record"]

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


def _restore_files(task: Task, files: dict[str, str]) -> None:
    run_dir = (
        Path((task.config.get("run") or {}).get("out_dir") or "experiments/runs") / task.run_id
    )
    for name, text in files.items():
        if not (run_dir / name).exists():
            atomic_write_text(run_dir / name, text)


def make_executor(kind: str, run_fn: RunFn, workers: int = 1, address: str | None = None):
    """``local`` (serial for 1 worker, a process pool for more) or ``ray``."""
    if kind == "ray":
        return RayExecutor(run_fn, workers, address)
    if kind != "local":
        raise SemcomError(f"unknown executor {kind!r}; choose local or ray")
    if address:
        raise SemcomError("--ray-address needs --executor ray")
    return SerialExecutor(run_fn) if workers <= 1 else ProcessExecutor(run_fn, workers)
