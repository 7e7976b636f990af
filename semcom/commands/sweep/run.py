"""Running a sweep: skip the points already done, execute the rest, write the aggregate.

Resuming is per run: a point whose ``<run.out_dir>/<run_id>/record.json`` holds a
complete ``ok`` record is skipped (unless ``overwrite``), so an interrupted sweep
continues where it stopped. A failing run is recorded with ``status: "error"`` and the
sweep goes on; it is redone next time. Ctrl-C (and SIGTERM under
:func:`sigterm_as_interrupt`) stops the sweep after writing the aggregate of what is done.
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
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    from semcom.provenance import provenance

    return {
        "schema": RECORD_SCHEMA,
        "run_id": task.run_id,
        "status": "error",
        "error": {
            "type": type(exc).__name__,
            "message": str(exc),
            "user_error": isinstance(exc, SemcomError),
            "traceback": tb,
            "where": "sweep executor",
        },
        "label": (task.config.get("run") or {}).get("label") or "",
        "method": (task.config.get("edge") or {}).get("method"),
        "config": task.config,
        "settings": task.settings,
        "wall_s": None,
        "provenance": provenance(),
    }


def run_sweep(
    sweep: Sweep,
    *,
    run_fn: RunFn | str | None = None,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    aggregate: bool = True,
) -> SweepReport:
    """Run every point of ``sweep`` that has no complete record yet; then aggregate.

    A run function that raises (rather than recording its own error) gets an error
    record written for it, so the failure is visible and the run is redone next time.
    Ctrl-C stops the sweep after writing the aggregate of what is done
    (``report.interrupted``); rerunning resumes.
    """
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
    ex = make_executor(executor, fn, workers, address)
    bar = _bar(sweep, len(sweep.points), len(sweep.points) - len(tasks), progress)
    interrupted = False
    try:
        for task, result in ex.execute(tasks) if tasks else ():
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
    report = SweepReport(
        sweep, outcomes, ex.name, ex.workers, time.perf_counter() - t0, interrupted
    )
    if aggregate:
        report.files = write_aggregate(report)
    return report


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
    """``kill`` (SIGTERM) stops like Ctrl-C: finished runs stay, the aggregate is written."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
