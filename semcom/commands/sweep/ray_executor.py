"""The Ray executor: one Ray actor per worker, each holding its models across runs.

``--executor ray`` starts a local Ray with ``--workers`` CPUs, or joins a running
cluster (``--ray-address``); the same sweep moves from a laptop to a cluster with that
one flag. Each actor (one CPU) is a long-lived process, so the runner's backend cache
keeps its models loaded, and it is handed the runs of the model it already holds
first, one run at a time (:func:`~.executors.take_task`). An actor that dies costs
only the run it held (recorded as failed; a new actor takes its place). The actor
returns the record and the run's files, and the driver writes the files it lacks, so
results land where a local run would put them even without a shared file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from semcom.commands.sweep.executors import (
    RunFn,
    StopFn,
    Task,
    _never,
    call,
    group_by_model,
    init_worker,
    take_task,
    threads_per_worker,
)
from semcom.errors import SemcomError
from semcom.results import atomic_write_text


def run_and_collect(run_fn: RunFn, task: Task) -> dict:
    """Run ``task`` here and return the record with the run's files (for the driver)."""
    record = call(run_fn, task)
    out_dir = Path((task.config.get("run") or {}).get("out_dir") or "experiments/runs")
    files = {}
    for name in ("samples.jsonl", "config.yaml"):
        f = out_dir / task.run_id / name
        if f.is_file():
            files[name] = f.read_text()
    return {"record": record, "files": files, "node": os.uname().nodename}


class RunActor:
    """The body of a Ray actor: set threads and working folder once, then run tasks."""

    def __init__(self, run_fn: RunFn, threads: int, cwd: str):
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        init_worker(threads)
        self.run_fn = run_fn

    def run(self, task: Task) -> dict:
        return run_and_collect(self.run_fn, task)

    def pid(self) -> int:
        return os.getpid()


def restore_files(task: Task, files: dict[str, str]) -> None:
    run_dir = (
        Path((task.config.get("run") or {}).get("out_dir") or "experiments/runs") / task.run_id
    )
    for name, text in files.items():
        if not (run_dir / name).exists():
            atomic_write_text(run_dir / name, text)


class RayExecutor:
    """Ray actors on a local Ray (started here) or on a running cluster (``address``)."""

    name = "ray"

    def __init__(
        self,
        run_fn: RunFn,
        workers: int = 2,
        address: str | None = None,
        threads: int | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise SemcomError(
                "--executor ray needs Ray, which is not installed: "
                "pip install -e '.[ray]' (or pip install ray); "
                "or use --workers N for a local process pool"
            ) from None
        self.ray, self.run_fn, self.address = ray, run_fn, address
        self.workers = max(1, int(workers))
        # on a cluster each actor has one CPU of some node: one thread unless told
        self.threads = threads_per_worker(self.workers, threads) if not address else (threads or 1)
        self._started = False
        self._actors: list[Any] = []

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

    def _new_actor(self, cls, fn_ref):
        return cls.remote(fn_ref, self.threads, os.getcwd())

    def execute(
        self, tasks: list[Task], stop: StopFn = _never
    ) -> Iterator[tuple[Task, dict | BaseException]]:
        self._init()
        ray = self.ray
        cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(RunActor)
        fn_ref = ray.put(self.run_fn)
        pending = group_by_model(tasks)
        slots: list[dict] = [
            {"actor": self._new_actor(cls, fn_ref), "key": None, "ref": None, "task": None}
            for _ in range(min(self.workers, len(pending)))
        ]
        self._actors = [s["actor"] for s in slots]
        while True:
            if not stop():
                for s in slots:
                    if s["ref"] is None and pending:
                        held = {o["key"] for o in slots if o is not s and o["key"]}
                        task = take_task(pending, s["key"], held)
                        s.update(task=task, key=task.model_key, ref=s["actor"].run.remote(task))
            busy = {s["ref"]: s for s in slots if s["ref"] is not None}
            if not busy:
                return
            done, _ = ray.wait(list(busy), num_returns=1)
            for ref in done:
                s = busy[ref]
                task = s["task"]
                s.update(ref=None, task=None)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    s.update(actor=self._new_actor(cls, fn_ref), key=None)
                    self._actors = [x["actor"] for x in slots]
                    yield task, RuntimeError(f"the Ray actor died while running this run: {exc}")
                    continue
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    yield task, cause if isinstance(cause, Exception) else exc
                    continue
                restore_files(task, out.get("files") or {})
                yield task, out["record"]

    def close(self) -> None:
        for a in self._actors:
            try:
                self.ray.kill(a)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
