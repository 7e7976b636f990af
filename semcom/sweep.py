"""Sweeps: a YAML grid expanded into runs, executed serially, on a process pool or on Ray.

A sweep file is a normal config plus a ``sweep:`` block (see
:func:`semcom.config.expand_sweep`: dotted keys to value lists are grid axes, an axis
name to a list of mappings is a zipped axis) and three optional top-level keys that
only the sweep reads: ``name`` (default: the file's stem), ``description`` and
``plot`` (defaults for ``semcom plot``: ``anchor``, ``metric``, ``x``).

Resuming is per run: a point whose ``<run.out_dir>/<run_id>/record.json`` holds a
complete ``ok`` record is skipped (unless ``overwrite``), so an interrupted sweep
continues where it stopped. A failing run is recorded with ``status: "error"`` and the
sweep goes on; it is redone next time. After the runs, the aggregate table of the
whole sweep is written to ``<run.out_dir>/sweeps/<name>/aggregate.{csv,json}``
(``aggregate.json`` also embeds every record, so ``semcom plot`` can read it alone).

Executors run a *run function* ``run_fn(config: dict, overwrite: bool, settings: dict)
-> record``. The default, :func:`run_point`, validates the plain config and calls
:func:`semcom.runner.run`; tests and benchmarks plug in others (e.g.
:func:`synthetic_run`). Configs travel as plain data, so every executor runs exactly
the same thing, and per-sample randomness is seeded per run and sample
(:mod:`semcom.seeding`), so records do not depend on the executor or worker count.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import logging
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.config import SweepPoint, apply_overrides, expand_sweep, load_raw, to_dict
from semcom.errors import ConfigError, SemcomError
from semcom.results import (
    RECORD_SCHEMA, RunPaths, atomic_write_json, atomic_write_text, dumps, read_jsonl,
    read_record,
)

log = logging.getLogger(__name__)

AGGREGATE_SCHEMA = "semcom.sweep/1"
SWEEP_META_KEYS = ("name", "description", "plot")
PLOT_KEYS = ("anchor", "metric", "x", "upper_bound")

RunFn = Callable[[dict, bool, dict], dict]


# --------------------------------------------------------------------------- loading

@dataclass
class Sweep:
    """An expanded sweep: its name, meta data and points (in grid order)."""

    name: str
    points: list[SweepPoint]
    source: str | None = None
    description: str = ""
    plot: dict = field(default_factory=dict)
    duplicates: int = 0

    @property
    def out_dir(self) -> Path:
        """The results root of the first point (``run.out_dir``)."""
        return Path(self.points[0].config.run.out_dir)

    @property
    def results_dir(self) -> Path:
        """Where the aggregate goes: ``<run.out_dir>/sweeps/<name>/``."""
        return self.out_dir / "sweeps" / self.name


def load_sweep(path: str | Path | None, overrides: Sequence[str] = (), *,
               name: str | None = None, data: Mapping | None = None) -> Sweep:
    """Read a sweep YAML (or plain ``data``), apply ``--set`` overrides and expand it.

    Points with the same run id (e.g. axes over fields that do not change results)
    are run once; :attr:`Sweep.duplicates` counts the ones dropped.
    """
    raw = dict(load_raw(path) if data is None else data)
    meta = {k: raw.pop(k) for k in SWEEP_META_KEYS if k in raw}
    plot = meta.get("plot") or {}
    if not isinstance(plot, Mapping):
        raise ConfigError("plot", f"must be a mapping ({', '.join(PLOT_KEYS)}), got {plot!r}")
    unknown = sorted(set(plot) - set(PLOT_KEYS))
    if unknown:
        raise ConfigError(f"plot.{unknown[0]}", f"unknown key; allowed: {', '.join(PLOT_KEYS)}")
    raw = apply_overrides(raw, overrides)
    points = expand_sweep(raw)
    seen: set[str] = set()
    unique = []
    for p in points:
        if p.run_id not in seen:
            seen.add(p.run_id)
            unique.append(p)
    sweep_name = name or meta.get("name") or (Path(path).stem if path else "sweep")
    if not isinstance(sweep_name, str) or not sweep_name or "/" in sweep_name:
        raise ConfigError("name", f"must be a non-empty string without '/', got {sweep_name!r}")
    return Sweep(name=sweep_name, points=unique, source=str(path) if path else None,
                 description=str(meta.get("description") or ""), plot=dict(plot),
                 duplicates=len(points) - len(unique))


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
    """The default run function: validate ``config`` and run it with :func:`semcom.runner.run`.

    Backends are cached per process by the runner, so a worker loads each model once.
    """
    from semcom.config import resolve
    from semcom.runner import run

    _limit_threads()
    return run(resolve(config), overwrite=overwrite, settings=settings).record


def synthetic_run(config: dict, overwrite: bool = False, settings: dict | None = None) -> dict:
    """A model-free stand-in for :func:`run_point` that writes records in the real schema.

    For tests and executor benchmarks only: the numbers come from a toy rate and
    accuracy model (tokens kept / JPEG quality, and a logistic description-loss curve
    versus SNR), drawn per sample from ``rng(seed, "synthetic", run_id, i)``, so they are
    deterministic whatever the process. Records carry ``"synthetic": true`` and plots of
    them are stamped SYNTHETIC. ``SEMCOM_SYNTHETIC_WORK_MS`` adds that much busy CPU work
    per run (to measure executor throughput).
    """
    import numpy as np

    from semcom.config import resolve, run_id
    from semcom.provenance import provenance
    from semcom.rate import SampleRate, aggregate
    from semcom.runner import default_label
    from semcom.seeding import rng

    t0 = time.perf_counter()
    cfg = resolve(config)
    rid = run_id(cfg)
    paths = RunPaths(Path(cfg.run.out_dir), rid)
    if paths.done() and not overwrite:
        return read_record(paths.record)
    work_ms = float(os.environ.get("SEMCOM_SYNTHETIC_WORK_MS", "0") or 0)
    if work_ms > 0:
        end, x = time.process_time() + work_ms / 1000, 0
        while time.process_time() < end:
            x += sum(i * i for i in range(2000))
    n = min(cfg.data.num_images, cfg.run.limit or cfg.data.num_images)
    e, ch = cfg.edge, cfg.channel
    if e.method == "tokens":
        kept = e.select.budget or round((e.select.ratio or 1.0) * 144)
        bits = {"none": 16 * 64, "scalar": e.quant.bits * 64, "codebook": e.quant.bits}[e.quant.type]
        payload, side = kept * bits, 144 if kept < 144 else 0
        quality, parts = 1.0 - math.exp(-kept / 12.0), e.mdc.descriptions
    else:
        payload, side = int(400 + 60 * e.image.quality), 0
        quality, parts = 1.0 - math.exp(-e.image.quality / 15.0), 1
    if ch.link in ("nr", "nr-table"):
        threshold = 1.0 + 6.0 * ch.code_rate + 2.0 * math.log2(ch.bits_per_symbol)
        p_loss = 1.0 / (1.0 + math.exp(2.0 * (ch.snr_db - threshold)))
    else:
        p_loss = ch.loss_prob if ch.link == "erasure" else 0.0
    pixels = 96 * 96
    rows, rates = [], []
    for i in range(n):
        g = rng(cfg.run.seed, "synthetic", rid, i)
        received = int((g.random(parts) >= p_loss).sum())
        p_correct = 0.05 + 0.9 * quality * received / parts
        correct = bool(g.random() < p_correct)
        header = 32 * parts
        coded = int((payload + side + header) / ch.code_rate)
        r = SampleRate(pixels=pixels, payload_bits=payload, side_info_bits=side,
                       header_bits=header, coded_bits=coded,
                       channel_uses=math.ceil(coded / ch.bits_per_symbol),
                       airtime_s=coded / ch.bits_per_symbol / 1e6)
        rates.append(r)
        rows.append({"sample_id": f"s{i}", "image_id": i, "outputs": {"vqa": "yes" if correct else "no"},
                     "scores": {"vqa": {"accuracy": 100.0 * correct}}, "rate": r.to_dict(),
                     "descriptions_sent": parts, "descriptions_received": received,
                     "edge_s": 1e-3, "cloud_s": 2e-3, "airtime_s": r.airtime_s})
    acc = np.array([r["scores"]["vqa"]["accuracy"] / 100 for r in rows])
    p_hat = float(acc.mean()) if n else 0.0
    half = 1.96 * math.sqrt(max(p_hat * (1 - p_hat), 1e-12) / max(n, 1))
    sent = parts * n
    recv = sum(r["descriptions_received"] for r in rows)
    record = {
        "schema": RECORD_SCHEMA, "run_id": rid, "status": "ok", "error": None, "synthetic": True,
        "label": cfg.run.label or default_label(cfg), "method": e.method, "tasks": ["vqa"],
        "config": to_dict(cfg), "settings": settings or {}, "num_samples": n,
        "metrics": {"vqa": {"accuracy": {  # in percent, as semcom.metrics reports it
            "value": 100 * p_hat, "ci95": [100 * max(0.0, p_hat - half),
                                           100 * min(1.0, p_hat + half)]}}},
        "rate": aggregate(rates), "rate_by_task": {"vqa": aggregate(rates)},
        "tokens": {"sent_mean": None, "to_model_mean": None},
        "link": {"type": ch.link, "descriptions": sent, "erasures": sent - recv,
                 "description_loss_rate": (sent - recv) / sent if sent else None,
                 "blocks": sent, "block_errors": sent - recv,
                 "bler": (sent - recv) / sent if sent else None, "harq_rounds_mean": 1.0,
                 "snr_db": ch.snr_db},
        "latency": {"edge_s_mean": 1e-3, "airtime_s_mean": sum(r.airtime_s for r in rates) / max(n, 1),
                    "cloud_s_mean": 2e-3},
    }
    paths.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.samples, "".join(dumps(r) + "\n" for r in rows))
    record["wall_s"] = time.perf_counter() - t0
    record["provenance"] = provenance()
    atomic_write_json(paths.record, record)
    return record


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


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "SEMCOM_TORCH_THREADS")


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
            except Exception as exc:  # noqa: BLE001 - reported per run
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
        return cf.ProcessPoolExecutor(max_workers=self.workers,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_worker, initargs=(self.threads,))

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
                except Exception as exc:  # noqa: BLE001 - the run function raised
                    yield task, exc
            if broken:
                # A worker died (segfault, out of memory, os._exit); which run killed it is
                # unknown when several were in flight: those are retried one at a time,
                # and a run that kills its worker alone is recorded as failed.
                self._pool.shutdown(wait=False, cancel_futures=True)
                for fut, task in list(running.items()):
                    running.pop(fut)
                    if isolated:
                        yield task, RuntimeError("the worker process died while running this "
                                                 "run (crash, out of memory or exit); see the "
                                                 "worker's stderr")
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
            raise SemcomError("--executor ray needs Ray, which is not installed: "
                              "pip install -e '.[ray]' (or pip install 'ray[default]'); "
                              "or use --workers N for a local process pool") from None
        self.ray, self.run_fn, self.address = ray, run_fn, address
        self.workers = max(1, int(workers))
        self.threads = threads_per_worker(self.workers) if not address else 1
        self._started = False

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
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
                except Exception as exc:  # noqa: BLE001 - RayTaskError, worker crash...
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
    run_dir = Path((task.config.get("run") or {}).get("out_dir") or "experiments/runs") / task.run_id
    for name, text in files.items():
        if not (run_dir / name).exists():
            atomic_write_text(run_dir / name, text)


def make_executor(kind: str, run_fn: RunFn, workers: int = 1,
                  address: str | None = None):
    """``local`` (serial for 1 worker, a process pool for more) or ``ray``."""
    if kind == "ray":
        return RayExecutor(run_fn, workers, address)
    if kind != "local":
        raise SemcomError(f"unknown executor {kind!r}; choose local or ray")
    if address:
        raise SemcomError("--ray-address needs --executor ray")
    return SerialExecutor(run_fn) if workers <= 1 else ProcessExecutor(run_fn, workers)


# --------------------------------------------------------------------------- running a sweep

@dataclass
class Outcome:
    """What happened to one point in this invocation."""

    point: SweepPoint
    record: dict | None = None
    skipped: bool = False  # a complete record existed before this invocation

    @property
    def status(self) -> str:
        if self.record is None:
            return "missing"
        return str(self.record.get("status"))


@dataclass
class SweepReport:
    sweep: Sweep
    outcomes: list[Outcome]
    executor: str
    workers: int
    wall_s: float
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ran(self) -> int:
        return sum(o.record is not None and not o.skipped for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.skipped for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status == "ok" for o in self.outcomes)


def _error_record(task: Task, exc: BaseException) -> dict:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    from semcom.provenance import provenance

    return {"schema": RECORD_SCHEMA, "run_id": task.run_id, "status": "error",
            "error": {"type": type(exc).__name__, "message": str(exc),
                      "user_error": isinstance(exc, SemcomError), "traceback": tb,
                      "where": "sweep executor"},
            "label": (task.config.get("run") or {}).get("label") or "",
            "method": (task.config.get("edge") or {}).get("method"),
            "config": task.config, "settings": task.settings, "wall_s": None,
            "provenance": provenance()}


def run_sweep(sweep: Sweep, *, run_fn: RunFn | str | None = None, executor: str = "local",
              workers: int = 1, address: str | None = None, overwrite: bool = False,
              progress: bool = True, aggregate: bool = True) -> SweepReport:
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
        for task, result in (ex.execute(tasks) if tasks else ()):
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
                msg = f"run {task.run_id} {task.settings} failed: {err.get('type')}: " \
                      f"{err.get('message')}"
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
    report = SweepReport(sweep, outcomes, ex.name, ex.workers, time.perf_counter() - t0,
                         interrupted)
    if aggregate:
        report.files = write_aggregate(report)
    return report


def _bar(sweep: Sweep, total: int, done: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {sweep.name}", unit="run",
                dynamic_ncols=True, smoothing=0.1)


# --------------------------------------------------------------------------- aggregation

RATE_COLUMNS = ("bpp_wire", "bpp_payload", "bpp_channel", "cpp", "bpp_est", "bpp_wire_mean")
LINK_COLUMNS = ("snr_db", "esno_db", "ebno_db", "bler", "description_loss_rate",
                "harq_rounds_mean")
LATENCY_COLUMNS = ("edge_s_mean", "airtime_s_mean", "cloud_s_mean")


def table_row(rec: dict, *, sweep: str = "", skipped: bool = False) -> dict[str, Any]:
    """One flat row of the aggregate table from a record."""
    row: dict[str, Any] = {"sweep": sweep, "run_id": rec.get("run_id"),
                           "status": rec.get("status"), "resumed": skipped,
                           "label": rec.get("label"), "method": rec.get("method")}
    for key, value in (rec.get("settings") or {}).items():
        row[f"set:{key}"] = value
    row["num_samples"] = rec.get("num_samples")
    for task, metrics in (rec.get("metrics") or {}).items():
        for name, m in (metrics or {}).items():
            if isinstance(m, Mapping):
                row[f"{task}.{name}"] = m.get("value")
                ci = m.get("ci95") or [None, None]
                row[f"{task}.{name}.ci_lo"], row[f"{task}.{name}.ci_hi"] = ci[0], ci[1]
    rate = rec.get("rate") or {}
    for col in RATE_COLUMNS:
        row[col] = rate.get(col)
    link = rec.get("link") or {}
    for col in LINK_COLUMNS:
        row[col] = link.get(col)
    if row.get("snr_db") is None:
        row["snr_db"] = ((rec.get("config") or {}).get("channel") or {}).get("snr_db")
    lat = rec.get("latency") or {}
    for col in LATENCY_COLUMNS:
        row[col] = lat.get(col)
    row["wall_s"] = rec.get("wall_s")
    err = rec.get("error") or {}
    row["error"] = f"{err.get('type')}: {err.get('message')}" if err else ""
    return row


def _missing_row(o: Outcome, sweep: str) -> dict:
    row = {"sweep": sweep, "run_id": o.point.run_id, "status": "missing", "resumed": False,
           "label": o.point.config.run.label, "method": o.point.config.edge.method}
    for key, value in o.point.settings.items():
        row[f"set:{key}"] = value
    return row


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def _strip_record(rec: dict) -> dict:
    """A record as embedded in the aggregate (tracebacks shortened)."""
    rec = dict(rec)
    if rec.get("error") and rec["error"].get("traceback"):
        rec["error"] = dict(rec["error"], traceback=rec["error"]["traceback"][-2000:])
    return rec


def write_aggregate(report: SweepReport) -> dict[str, Path]:
    """``aggregate.json`` (table + records) and ``aggregate.csv`` for the whole sweep."""
    sweep = report.sweep
    rows = [table_row(o.record, sweep=sweep.name, skipped=o.skipped) if o.record is not None
            else _missing_row(o, sweep.name) for o in report.outcomes]
    cols = _columns(rows)
    from semcom.provenance import git_info, utc_now

    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "error", "missing")}
    doc = {
        "schema": AGGREGATE_SCHEMA, "name": sweep.name, "description": sweep.description,
        "source": sweep.source, "plot": sweep.plot, "utc": utc_now(), "git": git_info(),
        "executor": report.executor, "workers": report.workers,
        "wall_s": report.wall_s, "interrupted": report.interrupted,
        "points": len(rows), "counts": counts, "ran": report.ran, "resumed": report.skipped,
        "columns": cols, "rows": rows,
        "records": [_strip_record(o.record) for o in report.outcomes if o.record is not None],
    }
    out = sweep.results_dir
    json_path = atomic_write_json(out / "aggregate.json", doc)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    csv_path = atomic_write_text(out / "aggregate.csv", buf.getvalue())
    return {"json": json_path, "csv": csv_path}


def format_table(report: SweepReport, max_rows: int = 200) -> str:
    """A compact plain-text table of the sweep (stdout summary)."""
    recs = [o.record for o in report.outcomes if o.record is not None and o.status == "ok"]
    metric = None
    if recs:
        from semcom.plotting import default_metric

        metric = default_metric(recs)
    head = ["status", "label", "settings"]
    if metric:
        head.append(f"{metric[0]}.{metric[1]}")
    head += ["bpp_wire", "bler", "wall_s"]
    lines = []
    for o in report.outcomes[:max_rows]:
        rec = o.record or {}
        settings = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in o.point.settings.items()
                             if k != "run.label")
        status = o.status + (" (resumed)" if o.skipped else "")
        row = [status, str(rec.get("label") or o.point.config.run.label or ""), settings]
        if metric:
            m = ((rec.get("metrics") or {}).get(metric[0]) or {}).get(metric[1]) or {}
            row.append(_num(m.get("value")))
        row += [_num((rec.get("rate") or {}).get("bpp_wire")),
                _num((rec.get("link") or {}).get("bler")), _num(rec.get("wall_s"), 3)]
        lines.append(row)
    if len(report.outcomes) > max_rows:
        lines.append(["...", f"{len(report.outcomes) - max_rows} more", ""] +
                     [""] * (len(head) - 3))
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def _short(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


# --------------------------------------------------------------------------- comparing runs

# Fields of a record that are measurements (must not depend on the executor); provenance,
# wall time, latency (timings) and the output folder naturally differ.
MEASURED_FIELDS = ("run_id", "status", "label", "method", "settings", "num_samples",
                   "metrics", "rate", "rate_by_task", "tokens", "link")
TIMING_SAMPLE_FIELDS = ("edge_s", "cloud_s")


def measured(record: dict) -> dict:
    """The part of a record that must be identical whatever executed it."""
    return {k: record.get(k) for k in MEASURED_FIELDS}


def measured_samples(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_SAMPLE_FIELDS} for r in rows]


def compare_runs(dir_a: str | Path, dir_b: str | Path, run_ids: Sequence[str]) -> list[str]:
    """Differences of measured fields and per-sample outputs between two results roots."""
    diffs = []
    for rid in run_ids:
        a, b = RunPaths(Path(dir_a), rid), RunPaths(Path(dir_b), rid)
        if not (a.record.is_file() and b.record.is_file()):
            diffs.append(f"{rid}: record missing in {'a' if not a.record.is_file() else 'b'}")
            continue
        ra, rb = measured(read_record(a.record)), measured(read_record(b.record))
        for k in MEASURED_FIELDS:
            if dumps(ra[k]) != dumps(rb[k]):
                diffs.append(f"{rid}: {k} differs")
        sa = measured_samples(read_jsonl(a.samples)) if a.samples.is_file() else None
        sb = measured_samples(read_jsonl(b.samples)) if b.samples.is_file() else None
        if dumps(sa) != dumps(sb):
            diffs.append(f"{rid}: samples.jsonl differs")
    return diffs
