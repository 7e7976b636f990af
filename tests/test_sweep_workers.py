"""Warm workers: runs grouped by model, each worker loads each model at most once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from semcom.commands.sweep.executors import Task, group_by_model, model_key, take_task
from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep
from semcom.config import resolve
from semcom.fingerprint import run_id
from semcom.results import RECORD_SCHEMA, RunPaths, atomic_write_json

_LOADED: set[str] = set()  # per worker process: the "models" it has loaded


def fake_model_cache(config, overwrite=False, settings=None):
    """Records whether this worker had to load the point's model (first time it saw it)."""
    key = model_key(config)
    loaded = key not in _LOADED
    _LOADED.add(key)
    cfg = resolve(config)
    rec = {
        "schema": RECORD_SCHEMA,
        "run_id": run_id(cfg),
        "status": "ok",
        "method": cfg.edge.method,
        "pid": os.getpid(),
        "loaded": loaded,
        "key": key,
        "t": time.time(),
    }
    atomic_write_json(RunPaths(Path(cfg.run.out_dir), rec["run_id"]).record, rec)
    return rec


def test_runs_are_grouped_by_model_and_workers_keep_theirs(tmp_path):
    def t(i, model):
        return Task(i, f"r{i}", {"edge": {"model": {"name": model}}}, {})

    tasks = group_by_model([t(0, "a"), t(1, "b"), t(2, "a"), t(3, "b"), t(4, "a")])
    assert [x.index for x in tasks] == [0, 2, 4, 1, 3]
    key_a, key_b = tasks[0].model_key, tasks[3].model_key
    pending = list(tasks)
    assert take_task(pending, key_b).index == 1  # the model the worker holds first
    assert take_task(pending, None, {key_a}).index == 3  # a model no other worker holds
    assert take_task(pending, key_b).index == 0  # none left of b: the first pending

    data = {
        "data": {"num_images": 6},
        "cloud": {"tasks": ["vqa"]},
        "channel": {"link": "nr-table"},
        "run": {"out_dir": str(tmp_path / "runs")},
        "sweep": {
            "channel.snr_db": [1, 2, 3, 4],
            "edge.model.name": ["blip", "llava"],
            "cloud.model.name": ["llava"],
        },
    }
    sweep = load_sweep(None, data=data, name="warm")
    report = run_sweep(sweep, run_fn=fake_model_cache, workers=2, progress=False)
    recs = [o.record for o in report.outcomes]
    assert report.ok and len({r["pid"] for r in recs}) == 2
    # each worker loads each model at most once (2 or 3 loads for 8 runs: workers start
    # on different models, and one that runs out of its model's runs helps with the other)
    loads = [(r["pid"], r["key"]) for r in recs if r["loaded"]]
    assert len(loads) == len(set(loads)) and 2 <= len(loads) <= 3
    first = {r["pid"]: r["key"] for r in sorted(recs, key=lambda r: r["t"], reverse=True)}
    assert len(set(first.values())) == 2  # the two workers started on different models
