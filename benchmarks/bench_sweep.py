"""Sweep throughput with 1 and 2 workers (and Ray when installed).

Two measurements, each on a fresh results folder:

- ``real``: a small sweep of real runs through the pipeline (tiny world, JPEG and the
  token path over the BLER-table link, ``SEMCOM_BENCH_SWEEP_SAMPLES`` samples per run,
  default 32); skipped with the reason when the pipeline cannot run here. The 1- and
  2-worker records are compared (measured fields and per-sample outputs must be equal).
- ``synthetic``: the test fake ``synthetic_run`` (``tests/sweep_fakes.py``, imported as
  ``tests.sweep_fakes``: benchmarks run from the repo root) with 300 ms of CPU work per
  run, i.e. the executors' own overhead and scaling, independent of the models.

Runs per second include worker start-up (spawned processes import torch and load the
models once each), which is what a user waits for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

REAL_SWEEP = {
    "data": {"num_images": 200},
    "edge": {"model": {"name": "llava"}},
    "cloud": {"model": {"name": "llava"}, "tasks": ["vqa"]},
    "channel": {"link": "nr-table", "snr_db": 1.0},
    "sweep": {
        "method": [
            *({"edge.method": "jpeg", "edge.image.quality": q} for q in (10, 30, 50, 90)),
            *(
                {
                    "edge.method": "tokens",
                    "edge.select.budget": b,
                    "edge.quant.type": "codebook",
                    "edge.quant.bits": 8,
                    "edge.mdc.descriptions": 4,
                }
                for b in (8, 16, 32, 64)
            ),
        ]
    },
}
SYNTH_SWEEP = {
    "data": {"num_images": 20},
    "channel": {"link": "nr-table"},
    "run": {"progress": False},
    "sweep": {"channel.snr_db": [0, 2, 4, 6, 8, 10, 12, 14]},
}


def _measure(
    data: dict, root: Path, name: str, workers: int, executor: str = "local", run_fn=None
) -> dict:
    from semcom.commands.sweep.run import run_sweep
    from semcom.commands.sweep.spec import load_sweep

    out = root / f"{name}-{executor}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    sweep = load_sweep(
        None, data=dict(data, run={**data.get("run", {}), "out_dir": str(out)}), name=name
    )
    t0 = time.perf_counter()
    rep = run_sweep(sweep, run_fn=run_fn, workers=workers, executor=executor, progress=False)
    wall = time.perf_counter() - t0
    errors = [
        o.record.get("error", {}).get("message")
        for o in rep.outcomes
        if o.record and o.status != "ok"
    ]
    return {
        "executor": executor,
        "workers": workers,
        "runs": len(sweep.points),
        "ok": rep.count("ok"),
        "wall_s": round(wall, 2),
        "runs_per_min": round(60 * len(sweep.points) / wall, 2),
        "out": str(out),
        "ids": [p.run_id for p in sweep.points],
        "first_error": errors[0] if errors else None,
    }


def _compare(a: dict, b: dict) -> list[str]:
    from semcom.commands.sweep.aggregate import compare_runs

    return compare_runs(a["out"], b["out"], a["ids"])


def run() -> dict:
    from tests.sweep_fakes import synthetic_run

    root = Path(tempfile.mkdtemp(prefix="semcom-bench-sweep-"))
    # the load average says how far the timings are from an idle machine (shared cores)
    result: dict = {"cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    try:
        os.environ["SEMCOM_SYNTHETIC_WORK_MS"] = "300"
        synth = [_measure(SYNTH_SWEEP, root, "synth", w, run_fn=synthetic_run) for w in (1, 2)]
        try:
            import ray  # noqa: F401

            synth.append(_measure(SYNTH_SWEEP, root, "synth", 2, "ray", run_fn=synthetic_run))
        except ImportError:
            result["ray"] = "not installed (pip install -e '.[ray]')"
        os.environ.pop("SEMCOM_SYNTHETIC_WORK_MS", None)
        result["synthetic"] = [
            {k: v for k, v in m.items() if k not in ("ids", "out")} for m in synth
        ]
        result["synthetic_identical"] = all(not _compare(synth[0], m) for m in synth[1:])

        n = int(os.environ.get("SEMCOM_BENCH_SWEEP_SAMPLES", "32"))
        real_sweep = dict(REAL_SWEEP, run={"limit": n, "progress": False})
        real = [_measure(real_sweep, root, "real", 1)]
        if real[0]["ok"] == 0:
            result["real"] = f"skipped: the pipeline failed here ({real[0]['first_error']})"
        else:
            real.append(_measure(real_sweep, root, "real", 2))
            result["real_samples_per_run"] = n
            result["real"] = [{k: v for k, v in m.items() if k not in ("ids", "out")} for m in real]
            diffs = _compare(real[0], real[1])
            result["real_identical_1_vs_2_workers"] = not diffs
            if diffs:
                result["real_differences"] = diffs[:10]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    lines = [
        f"sweep throughput (runs/min, including worker start-up; {result['cores']} "
        f"cores, load average {result['loadavg_start'][0]:.1f} at the start, "
        f"{result['loadavg_end'][0]:.1f} at the end):"
    ]
    for kind in ("real", "synthetic"):
        rows = result.get(kind)
        if isinstance(rows, str):
            lines.append(f"  {kind}: {rows}")
            continue
        for m in rows or []:
            lines.append(
                f"  {kind:9s} {m['executor']:5s} workers={m['workers']}: {m['runs']} runs "
                f"in {m['wall_s']:.1f} s = {m['runs_per_min']:.1f} runs/min "
                f"({m['ok']} ok)"
            )
    if "real_identical_1_vs_2_workers" in result:
        lines.append(
            f"  real records identical with 1 and 2 workers: "
            f"{result['real_identical_1_vs_2_workers']}"
        )
    lines.append(f"  synthetic records identical across executors: {result['synthetic_identical']}")
    result["summary"] = "\n".join(lines)
    return result
