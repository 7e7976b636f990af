"""Running a sweep: skip the points already done, execute the rest, write the aggregate.

Resuming is per run: a point whose ``<run.out_dir>/<run_id>/record.json`` holds a
complete ``ok`` record is skipped (unless ``overwrite``), so an interrupted sweep
continues where it stopped. A failing run is recorded with ``status: "error"`` and the
sweep goes on; it is redone next time.

Stopping: Ctrl-C stops at once (the workers are ended); under :func:`sigterm_as_interrupt`
a first SIGTERM *drains* (no new run starts, the runs in flight finish and are
recorded) and a second one stops at once. Either way the aggregate is written, and it
counts every run whose record is complete on disk, including runs that finished while
the sweep was shutting down.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import Path

from semcom.commands.sweep.aggregate import write_aggregate
from semcom.commands.sweep.executors import RunFn, Task, make_executor, resolve_run_fn
from semcom.commands.sweep.report import Outcome, SweepReport
from semcom.commands.sweep.spec import Sweep
from semcom.config import to_dict
from semcom.errors import SemcomError
from semcom.results import RECORD_SCHEMA, RunPaths, atomic_write_json, read_record

log = logging.getLogger(__name__)


def _error_record(task: Task, exc: BaseException) -> dict:
    tb = getattr(exc, "remote_traceback", None) or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    type_name = getattr(exc, "type_name", None) or type(exc).__name__
    from semcom.provenance import provenance

    return {
        "schema": RECORD_SCHEMA,
        "run_id": task.run_id,
        "status": "error",
        "error": {
            "type": type_name,
            "message": str(exc),
            "user_error": isinstance(exc, SemcomError),
            "traceback": tb,
            "where": "sweep executor",
        },
        "method": (task.config.get("edge") or {}).get("method"),
        "config": _hashed_config(task.config),
        "wall_s": None,
        "provenance": provenance(),
    }


def _hashed_config(config: dict) -> dict:
    """The part of a plain config that determines results (what records keep)."""
    from semcom.config import resolve

    try:
        return to_dict(resolve(config), hashed_only=True)
    except Exception:  # an invalid config: keep it as given, it is the error's context
        return config


class Drain:
    """The drain request of a sweep: set by the first SIGTERM (see
    :func:`sigterm_as_interrupt`), read by the executors before each dispatch."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


DRAIN = Drain()


def run_sweep(
    sweep: Sweep,
    *,
    run_fn: RunFn | str | None = None,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    aggregate: bool = True,
    stop: Drain | None = None,
) -> SweepReport:
    """Run every point of ``sweep`` that has no complete record yet; then aggregate.

    A run function that raises (rather than recording its own error) gets an error
    record written for it, so the failure is visible and the run is redone next time.
    Ctrl-C stops the sweep after writing the aggregate of what is done
    (``report.interrupted``); ``stop`` (default: the SIGTERM drain request) makes it
    finish the runs in flight and start no new one. Rerunning resumes.
    """
    stop = DRAIN if stop is None else stop
    fn = resolve_run_fn(run_fn)
    t0 = time.perf_counter()
    outcomes = [Outcome(p) for p in sweep.points]
    tasks = []
    for i, p in enumerate(sweep.points):
        paths = RunPaths(Path(p.config.run.out_dir), p.run_id)
        if not overwrite and paths.done():
            outcomes[i].record, outcomes[i].skipped = read_record(paths.record), True
        else:
            tasks.append(Task(i, p.run_id, to_dict(p.config), dict(p.settings), overwrite))
    ex = make_executor(executor, fn, workers, address, threads)
    bar = _bar(sweep, len(sweep.points), len(sweep.points) - len(tasks), progress)
    interrupted = False
    try:
        for task, result in ex.execute(tasks, stop) if tasks else ():
            if isinstance(result, BaseException):
                record = _error_record(task, result)
                paths = RunPaths(Path(sweep.points[task.index].config.run.out_dir), task.run_id)
                if not paths.done():
                    atomic_write_json(paths.record, record)
            else:
                record = result
            outcomes[task.index].record = record
            if record.get("status") != "ok":
                err = record.get("error") or {}
                msg = (
                    f"run {task.run_id} {task.settings} failed: {err.get('type')}: "
                    f"{err.get('message')}"
                )
                bar.write(msg) if bar else log.warning(msg)
            if bar:
                failed = sum(o.status == "error" for o in outcomes)
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar:
            bar.close()
        try:
            ex.close()
        except KeyboardInterrupt:  # a second Ctrl-C while shutting down the workers
            interrupted = True
    interrupted = interrupted or stop()
    _collect_finished(sweep, outcomes)
    report = SweepReport(
        sweep, outcomes, ex.name, ex.workers, time.perf_counter() - t0, interrupted
    )
    if aggregate:
        report.files = write_aggregate(report)
    return report


def _collect_finished(sweep: Sweep, outcomes: list[Outcome]) -> None:
    """Outcomes without a record whose run completed anyway (it finished while the sweep
    was stopping, or its result was lost with an ended worker): read it from disk."""
    for o in outcomes:
        if o.record is None:
            paths = RunPaths(Path(o.point.config.run.out_dir), o.point.run_id)
            if paths.done():
                try:
                    o.record = read_record(paths.record)
                except (OSError, ValueError):
                    pass


def _bar(sweep: Sweep, total: int, done: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        desc=f"sweep {sweep.name}",
        unit="run",
        dynamic_ncols=True,
        smoothing=0.1,
    )


@contextlib.contextmanager
def sigterm_as_interrupt():
    """``kill`` (SIGTERM) drains the sweep: the first SIGTERM lets the runs in flight
    finish and starts no new one (:data:`DRAIN`), a second stops at once like Ctrl-C.
    The aggregate is written either way and the exit code is 130."""
    import signal

    DRAIN.requested = False

    def handler(signum, frame):
        if DRAIN.requested:
            raise KeyboardInterrupt
        DRAIN.requested = True

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield DRAIN
        return
    try:
        yield DRAIN
    finally:
        signal.signal(signal.SIGTERM, old)
        DRAIN.requested = False
