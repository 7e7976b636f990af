"""Sweep throughput: 1 worker, 2 warm workers and Ray with 2 CPUs, side by side.

Two measurements, each executor on a fresh results folder:

- ``real``: the compare sweep (``configs/sweeps/compare.yaml``: tokens + codebook + MDC
  at 6 budgets, tokens D=1 at 4, JPEG and WebP at 5 and 4 qualities, full tokens on the
  ideal link) at one SNR (``SEMCOM_BENCH_SWEEP_SNR``, default 1 dB), 200 samples per
  run (``SEMCOM_BENCH_SWEEP_SAMPLES``): 20 real runs through the pipeline with the tiny
  LLaVA. The records of every executor are compared with the serial ones (measured
  fields and per-sample outputs must be equal). Skipped with the reason when the
  pipeline cannot run here.
- ``synthetic``: the test fake ``synthetic_run`` (``tests/sweep_fakes.py``) with 300 ms
  of CPU work per run: the executors' own overhead and scaling, without models.

Wall times include everything a user waits for: spawning workers, importing torch,
loading the models once per worker (warm workers keep them across their runs) and
starting Ray. Each executor uses its default threads (cores / workers; serial: all
cores), or ``SEMCOM_BENCH_SWEEP_THREADS`` for all of them. The load average before each
measurement says how far the machine was from idle (the cores may be shared: other
work then takes its share of the CPUs, and more workers cannot help); the CPU seconds
(local executors) say how much work each did; the speed-ups are ratios of wall times
measured back to back in one run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMPARE = REPO / "configs" / "sweeps" / "compare.yaml"
SYNTH_SWEEP = {
    "data": {"num_images": 20},
    "channel": {"link": "nr-table"},
    "run": {"progress": False},
    "sweep": {"channel.snr_db": [0, 2, 4, 6, 8, 10, 12, 14]},
}


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _measure(
    sweep_of, root: Path, name: str, workers: int, executor="local", run_fn=None, threads=None
):
    from semcom.commands.sweep.run import run_sweep

    out = root / f"{name}-{executor}-{workers}-{threads or 'auto'}"
    shutil.rmtree(out, ignore_errors=True)
    sweep = sweep_of(out)
    load0 = os.getloadavg()[0]
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    threads = threads or os.environ.get("SEMCOM_BENCH_SWEEP_THREADS")
    rep = run_sweep(
        sweep,
        run_fn=run_fn,
        workers=workers,
        executor=executor,
        threads=int(threads) if threads else None,
        progress=False,
    )
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    errors = [
        (o.record.get("error") or {}).get("message")
        for o in rep.outcomes
        if o.record and o.status != "ok"
    ]
    return {
        "executor": rep.executor,
        "workers": workers,
        "threads": int(threads) if threads else None,
        "runs": len(sweep.points),
        "ok": rep.count("ok"),
        "wall_s": round(wall, 2),
        "runs_per_min": round(60 * len(sweep.points) / wall, 2),
        "loadavg_1min_before": round(load0, 2),
        # CPU seconds of this process and its reaped children (the local pool's workers;
        # Ray's workers are not our children, so not for Ray)
        "cpu_s": round(cpu, 1) if executor != "ray" else None,
        "out": str(out),
        "ids": [p.run_id for p in sweep.points],
        "first_error": errors[0] if errors else None,
    }


def _cpu_s() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _series(sweep_of, root, name, run_fn=None) -> tuple[list[dict], dict]:
    """Serial, 2 local workers, Ray with 2 CPUs; speed-ups and record equality. Also
    serial on one torch thread: what one core does, so that the speed-up per core the
    workers reach can be read beside the one a serial run already gets from threads."""
    rows = [_measure(sweep_of, root, name, 1, run_fn=run_fn)]
    if rows[0]["ok"] == 0:
        return rows, {"skipped": f"the pipeline failed here ({rows[0]['first_error']})"}
    one_core = _measure(sweep_of, root, name, 1, run_fn=run_fn, threads=1)
    rows.append(_measure(sweep_of, root, name, 2, run_fn=run_fn))
    if _has_ray():
        rows.append(_measure(sweep_of, root, name, 2, "ray", run_fn=run_fn))
    from semcom.commands.sweep.aggregate import compare_runs

    base = rows[0]
    info = {}
    for m in rows[1:]:
        m["speedup_vs_serial"] = round(base["wall_s"] / m["wall_s"], 2)
        diffs = compare_runs(base["out"], m["out"], base["ids"])
        m["records_identical_to_serial"] = not diffs
        if diffs:
            info[f"differences_{m['executor']}"] = diffs[:10]
    for m in rows[1:]:
        m["speedup_vs_one_thread"] = round(one_core["wall_s"] / m["wall_s"], 2)
    base["speedup_vs_one_thread"] = round(one_core["wall_s"] / base["wall_s"], 2)
    rows.insert(1, one_core)
    return [{k: v for k, v in m.items() if k not in ("ids", "out")} for m in rows], info


def run() -> dict:
    from semcom.commands.sweep.spec import load_sweep
    from tests.sweep_fakes import synthetic_run

    root = Path(tempfile.mkdtemp(prefix="semcom-bench-sweep-"))
    result: dict = {"cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    if not _has_ray():
        result["ray"] = "not installed (pip install -e '.[ray]')"
    n = int(os.environ.get("SEMCOM_BENCH_SWEEP_SAMPLES", "200"))
    snr = float(os.environ.get("SEMCOM_BENCH_SWEEP_SNR", "1.0"))

    def real_of(out: Path):
        return load_sweep(
            COMPARE,
            [
                f"sweep.channel.snr_db=[{snr}]",
                f"run.limit={n}",
                f"run.out_dir={out}",
                "run.progress=false",
            ],
            name="bench-compare",
        )

    def synth_of(out: Path):
        return load_sweep(
            None, data=dict(SYNTH_SWEEP, run={"progress": False, "out_dir": str(out)}), name="s"
        )

    try:
        os.environ["SEMCOM_SYNTHETIC_WORK_MS"] = "300"
        result["synthetic"], info = _series(synth_of, root, "synth", synthetic_run)
        result.update({f"synthetic_{k}": v for k, v in info.items()})
        os.environ.pop("SEMCOM_SYNTHETIC_WORK_MS", None)
        result["real_sweep"] = f"compare.yaml at {snr} dB, {n} samples per run"
        real, info = _series(real_of, root, "real")
        if "skipped" in info:
            result["real"] = f"skipped: {info['skipped']}"
        else:
            result["real"] = real
            result.update({f"real_{k}": v for k, v in info.items()})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    lines = [
        f"sweep throughput ({result['cores']} cores; load average "
        f"{result['loadavg_start'][0]:.1f} at the start, {result['loadavg_end'][0]:.1f} at "
        "the end; wall times include worker start-up and model loading):"
    ]
    for kind in ("real", "synthetic"):
        rows = result.get(kind)
        if isinstance(rows, str):
            lines.append(f"  {kind}: {rows}")
            continue
        for m in rows or []:
            extra = ""
            if "speedup_vs_serial" in m:
                extra = (
                    f", {m['speedup_vs_serial']:.2f}x serial, records identical: "
                    f"{m['records_identical_to_serial']}"
                )
            if "speedup_vs_one_thread" in m:
                extra += f", {m['speedup_vs_one_thread']:.2f}x serial on one thread"
            th = f" threads={m['threads']}" if m.get("threads") else ""
            lines.append(
                f"  {kind:9s} {m['executor']:7s} workers={m['workers']}{th}: {m['runs']} runs "
                f"in {m['wall_s']:.1f} s = {m['runs_per_min']:.1f} runs/min ({m['ok']} ok; "
                + (f"{m['cpu_s']:.0f} CPU-s; " if m.get("cpu_s") is not None else "")
                + f"load {m['loadavg_1min_before']:.1f} before){extra}"
            )
    if "ray" in result:
        lines.append(f"  ray: {result['ray']}")
    result["summary"] = "\n".join(lines)
    return result
