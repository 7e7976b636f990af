"""The local executor for ``--workers N``: N warm worker processes that die with their parent.

Written here rather than on :class:`concurrent.futures.ProcessPoolExecutor` because a
sweep needs three things that pool does not give:

- **warm workers with affinity**: each worker is a long-lived spawned process that
  keeps its models loaded (the runner caches backends per process) and is handed the
  runs of the model it already holds first (:func:`~.executors.take_task`);
- **one run per worker at a time**, so when a worker dies (segfault, out of memory,
  ``os._exit``) the run that killed it is known: a fresh worker takes the slot and the
  run is tried once more there; if it kills that worker too it alone is recorded as
  failed;
- **no orphans**: a worker asks the kernel to SIGKILL it when its parent dies
  (``prctl(PR_SET_PDEATHSIG)`` on Linux, through ctypes) and also watches its parent's
  pid (any platform), so a SIGKILLed sweep leaves no worker behind. Workers ignore
  SIGINT (Ctrl-C reaches the whole process group; the parent decides) and are
  terminated, then killed, when the executor closes.

``stop()`` (the sweep's drain request, set by SIGTERM) stops the dispatch: the runs in
flight finish and are reported, no new one starts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait

from semcom.commands.sweep.executors import (
    RemoteError,
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

PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its parent) ends, whatever the signal."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog stays
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _as_sendable(exc: BaseException) -> BaseException:
    import pickle

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))
        exc.remote_traceback = tb  # type: ignore[attr-defined]
        pickle.dumps(exc)
        return exc
    except Exception:
        return RemoteError(type(exc).__name__, str(exc), tb)


def worker_main(conn: Connection, run_fn: RunFn, threads: int, parent_pid: int) -> None:
    """A worker: take a task, run it, send ``("ok", record)`` or ``("error", exc)``."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    init_worker(threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            out = ("ok", call(run_fn, task))
        except BaseException as exc:  # SystemExit too: reported as the run's error
            out = ("error", _as_sendable(exc))
        try:
            conn.send(out)
        except Exception as exc:  # an unpicklable record
            conn.send(("error", RemoteError(type(exc).__name__, f"cannot send the record: {exc}")))


class _Worker:
    def __init__(self, ctx, run_fn: RunFn, threads: int):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=worker_main,
            args=(child, run_fn, threads, os.getpid()),
            name="semcom-sweep-worker",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.key: str | None = None

    def give(self, task: Task) -> None:
        self.task, self.key = task, task.model_key
        self.conn.send(task)

    def stop(self, timeout: float = 2.0) -> None:
        try:
            if self.proc.is_alive() and self.task is None:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout if self.task is None else 0)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout)
        self.conn.close()


class ProcessExecutor:
    """A local pool of ``workers`` warm spawned processes (``--workers N``)."""

    name = "process"

    def __init__(self, run_fn: RunFn, workers: int = 2, threads: int | None = None):
        self.run_fn, self.workers = run_fn, max(1, int(workers))
        self.threads = threads_per_worker(self.workers, threads)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._pool if w.proc.pid is not None]

    def execute(
        self, tasks: list[Task], stop: StopFn = _never
    ) -> Iterator[tuple[Task, dict | BaseException]]:
        pending = group_by_model(tasks)
        deaths: dict[int, int] = {}  # task index -> workers it killed
        n = min(self.workers, len(pending))
        self._pool = [_Worker(self._ctx, self.run_fn, self.threads) for _ in range(n)]
        while True:
            if not stop():
                for i in range(len(self._pool)):
                    w = self._pool[i]
                    if w.task is None and pending:
                        held = {o.key for o in self._pool if o is not w and o.key}
                        task = take_task(pending, w.key, held)
                        try:
                            w.give(task)
                        except OSError:  # it died while idle (killed from outside)
                            w.task = None
                            self._replace(w)
                            self._pool[i].give(task)
            busy = [w for w in self._pool if w.task is not None]
            if not busy:
                return
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for w in busy:
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                task, msg = w.task, None
                try:
                    if w.conn.poll():
                        msg = w.conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:  # the worker died while running this task
                    w.proc.join(1.0)
                    code = w.proc.exitcode
                    self._replace(w)
                    deaths[task.index] = deaths.get(task.index, 0) + 1
                    if deaths[task.index] < 2:  # once more on a fresh worker (transient OOM)
                        pending.insert(0, task)
                        continue
                    yield (
                        task,
                        RuntimeError(
                            "the worker process died while running this run, twice (exit "
                            f"code {code}: crash, out of memory or exit); see the worker's "
                            "stderr"
                        ),
                    )
                    continue
                w.task = None
                yield task, msg[1]

    def _replace(self, dead: _Worker) -> None:
        i = self._pool.index(dead)
        dead.task = None
        dead.stop(timeout=0.5)
        self._pool[i] = _Worker(self._ctx, self.run_fn, self.threads)

    def close(self) -> None:
        pool, self._pool = self._pool, []
        for w in pool:
            w.stop()
