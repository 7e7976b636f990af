"""Executing runs: run functions, thread limits, task order, the serial executor.

An executor runs a *run function* ``run_fn(config: dict, overwrite: bool, settings:
dict) -> record`` on :class:`Task` objects and yields ``(task, record or exception)`` as
runs finish. The default run function, :func:`run_point`, validates the plain config
and calls :func:`semcom.commands.runner.run`; tests and benchmarks plug in others
(``--run-fn module:function``, :func:`resolve_run_fn`). Configs travel as plain data,
so every executor runs exactly the same thing, and per-sample randomness is seeded per
run and sample (:mod:`semcom.seeding`), so records do not depend on the executor or
the worker count.

Executors: :class:`SerialExecutor` (here), the warm local pool
(:mod:`semcom.commands.sweep.pool`) and Ray actors
(:mod:`semcom.commands.sweep.ray_executor`). Both parallel executors keep one
long-lived worker per slot that loads each model once (the runner caches backends per
process) and hand a worker the runs of the model it already holds first
(:func:`model_key`, :func:`take_task`); each worker gets ``cores // workers``
torch/OpenMP threads unless told otherwise. Every executor takes a ``stop`` callable:
once it returns true no new run starts and the runs in flight finish (a drain).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from semcom.errors import SemcomError

RunFn = Callable[[dict, bool, dict], dict]
StopFn = Callable[[], bool]


def _never() -> bool:
    return False


# --------------------------------------------------------------------------- run functions

_THREADS_SET = False


def _limit_threads() -> None:
    """Apply ``SEMCOM_TORCH_THREADS`` (set in each worker) to torch, once."""
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
    """The default run function: validate ``config`` and run it with
    :func:`semcom.commands.runner.run`. ``settings`` (the sweep point) is not part of the
    record: the sweep adds it when it aggregates.

    Backends are cached per process by the runner, so a worker loads each model once.
    """
    from semcom.commands.runner import run
    from semcom.config import resolve

    _limit_threads()
    return run(resolve(config), overwrite=overwrite).record


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


# --------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """One run to execute: the point's index in the sweep, its plain config and settings."""

    index: int
    run_id: str
    config: dict
    settings: dict
    overwrite: bool = False

    @property
    def model_key(self) -> str:
        return model_key(self.config)


def model_key(config: dict) -> str:
    """What a worker keeps loaded between runs: the edge and cloud models (and, for
    the token path, the codebook it reads). Runs with one key share a warm worker."""
    edge, cloud = config.get("edge") or {}, config.get("cloud") or {}
    quant = edge.get("quant") or {}
    return json.dumps(
        [edge.get("model"), cloud.get("model"), quant.get("codebook")], sort_keys=True
    )


def group_by_model(tasks: list[Task]) -> list[Task]:
    """``tasks`` reordered so that runs of one model are adjacent (stable otherwise)."""
    first: dict[str, int] = {}
    for i, t in enumerate(tasks):
        first.setdefault(t.model_key, i)
    return sorted(tasks, key=lambda t: first[t.model_key])


def take_task(
    pending: list[Task], key: str | None, held: set[str] | frozenset = frozenset()
) -> Task:
    """The next run for a worker that holds ``key``: the first of that model; else the
    first of a model no other worker holds (``held``), so that workers spread over the
    models; else the first pending one. ``pending`` is in :func:`group_by_model` order."""
    for want in ([key] if key is not None else []) + [None]:
        for i, t in enumerate(pending):
            if (t.model_key == want) if want is not None else (t.model_key not in held):
                return pending.pop(i)
    return pending.pop(0)


# --------------------------------------------------------------------------- threads


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Torch/OpenMP threads of each worker: ``threads`` if given, else
    ``cores // workers`` (at least 1) so that workers do not oversubscribe the cores."""
    if threads is not None:
        return max(1, int(threads))
    return max(1, cpu_count() // max(1, workers))


THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "SEMCOM_TORCH_THREADS",
)


def init_worker(threads: int) -> None:
    """Cap the threads of this worker (before torch is imported, or via torch if it is)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    global _THREADS_SET
    _THREADS_SET = False


def call(run_fn: RunFn, task: Task) -> dict:
    return run_fn(task.config, task.overwrite, task.settings)


class RemoteError(RuntimeError):
    """A run's exception that could not be sent back as itself; keeps its type name."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(message)
        self.type_name, self.remote_traceback = type_name, remote_traceback

    def __reduce__(self):
        return (RemoteError, (self.type_name, str(self), self.remote_traceback))


# --------------------------------------------------------------------------- serial


class SerialExecutor:
    """Runs in this process, one after the other (``--workers 1``)."""

    name = "serial"

    def __init__(self, run_fn: RunFn, workers: int = 1, threads: int | None = None):
        self.run_fn, self.workers, self.threads = run_fn, 1, threads

    def execute(
        self, tasks: list[Task], stop: StopFn = _never
    ) -> Iterator[tuple[Task, dict | BaseException]]:
        before = None
        if self.threads is not None:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(max(1, int(self.threads)))
        try:
            for task in group_by_model(tasks):
                if stop():
                    return
                try:
                    yield task, call(self.run_fn, task)
                except Exception as exc:
                    yield task, exc
        finally:
            if before is not None:  # this process's own setting again
                import torch

                torch.set_num_threads(before)

    def close(self) -> None:
        pass


def make_executor(
    kind: str,
    run_fn: RunFn,
    workers: int = 1,
    address: str | None = None,
    threads: int | None = None,
):
    """``local`` (serial for 1 worker, a warm process pool for more) or ``ray``."""
    if kind == "ray":
        from semcom.commands.sweep.ray_executor import RayExecutor

        return RayExecutor(run_fn, workers, address, threads)
    if kind != "local":
        raise SemcomError(f"unknown executor {kind!r}; choose local or ray")
    if address:
        raise SemcomError("--ray-address needs --executor ray")
    if workers <= 1:
        return SerialExecutor(run_fn, threads=threads)
    from semcom.commands.sweep.pool import ProcessExecutor

    return ProcessExecutor(run_fn, workers, threads)
