"""Sweeps: loading, resume, failure isolation, executors, aggregation, CLI.

The run functions here are fakes in the documented record schema (no models), so the
machinery is tested on its own; ``sweep_fakes.synthetic_run`` (tests/sweep_fakes.py) is the
importable one (Ray workers and spawned processes need to import it).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from sweep_fakes import RUN_FN, env_with_fakes, synthetic_run

from semcom.commands.runner import default_label
from semcom.commands.sweep.aggregate import compare_runs, measured
from semcom.commands.sweep.executors import run_point, threads_per_worker
from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep
from semcom.config import ConfigError, load_config, resolve, to_dict
from semcom.fingerprint import run_id
from semcom.results import RECORD_SCHEMA, RunPaths, atomic_write_json, read_record

SWEEP_YAML = """\
name: tiny
description: a test sweep
plot: {anchor: JPEG}
data: {num_images: 12}
channel: {link: nr-table}
cloud: {tasks: [vqa]}
sweep:
  channel.snr_db: [2, 8]
  method:
    - {edge.method: jpeg, edge.image.quality: 20, run.label: JPEG}
    - {edge.method: tokens, edge.select.budget: 16, edge.quant.type: codebook,
       edge.mdc.descriptions: 2, run.label: ours}
"""


@pytest.fixture
def sweep_file(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text(SWEEP_YAML + f"run: {{out_dir: {tmp_path / 'runs'}}}\n")
    return f


# ----------------------------------------------------------------------------- fakes


def _fake_record(config: dict, settings: dict, **extra) -> dict:
    cfg = resolve(config)
    rid = run_id(cfg)
    value = (cfg.channel.snr_db + cfg.edge.image.quality) / 100.0
    return {
        "schema": RECORD_SCHEMA,
        "run_id": rid,
        "status": "ok",
        "error": None,
        "label": default_label(cfg),
        "method": cfg.edge.method,
        "tasks": ["vqa"],
        "config": to_dict(cfg, hashed_only=True),
        "num_samples": 3,
        "metrics": {"vqa": {"accuracy": {"value": value, "ci95": [value - 0.1, value + 0.1]}}},
        "rate": {"bpp_wire": 0.1 + cfg.edge.image.quality / 100},
        "link": {"bler": 0.0},
        "latency": {},
        "wall_s": 0.0,
        **extra,
    }


def _write(config: dict, record: dict) -> dict:
    out = Path(config["run"]["out_dir"])
    atomic_write_json(RunPaths(out, record["run_id"]).record, record)
    return record


def _log_call(config: dict) -> None:
    log = Path(config["run"]["out_dir"]) / "calls.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(run_id(resolve(config)) + "\n")


def _calls(out: Path) -> list[str]:
    f = out / "calls.txt"
    return f.read_text().split() if f.exists() else []


def fake_ok(config, overwrite=False, settings=None):
    _log_call(config)
    return _write(config, _fake_record(config, settings or {}))


def fake_interrupted_on_third(config, overwrite=False, settings=None):
    _log_call(config)
    if len(_calls(Path(config["run"]["out_dir"]))) == 3:
        raise KeyboardInterrupt
    return _write(config, _fake_record(config, settings or {}))


def fake_fails_at_snr_8(config, overwrite=False, settings=None):
    _log_call(config)
    if config["channel"]["snr_db"] == 8 and config["edge"]["method"] == "jpeg":
        raise ValueError("boom at 8 dB")
    return _write(config, _fake_record(config, settings or {}))


def fake_records_error(config, overwrite=False, settings=None):
    """Like the runner: records its own error (status error) instead of raising."""
    _log_call(config)
    rec = _fake_record(config, settings or {})
    if config["edge"]["method"] == "tokens":
        rec.update(
            status="error",
            error={"type": "ImportError", "message": "no link yet", "traceback": "..."},
        )
    return _write(config, rec)


def fake_threads(config, overwrite=False, settings=None):
    rec = _fake_record(
        config, settings or {}, threads=os.environ.get("OMP_NUM_THREADS"), pid=os.getpid()
    )
    return _write(config, rec)


def fake_crash_once(config, overwrite=False, settings=None):
    """Kills its worker process the first time it sees the 8 dB JPEG point."""
    out = Path(config["run"]["out_dir"])
    marker = out / "crashed"
    if (
        config["channel"]["snr_db"] == 8
        and config["edge"]["method"] == "jpeg"
        and not marker.exists()
    ):
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        os._exit(3)
    return _write(config, _fake_record(config, settings or {}))


def fake_always_crash_at_8(config, overwrite=False, settings=None):
    if config["channel"]["snr_db"] == 8 and config["edge"]["method"] == "jpeg":
        os._exit(3)
    return _write(config, _fake_record(config, settings or {}))


# ----------------------------------------------------------------------------- loading


def test_load_sweep_expands_grid_and_zip_and_reads_meta(sweep_file):
    sweep = load_sweep(sweep_file)
    assert sweep.name == "tiny" and sweep.description == "a test sweep"
    assert sweep.plot == {"anchor": "JPEG"}
    assert len(sweep.points) == 4
    combos = {
        (p.config.channel.snr_db, p.config.edge.method, p.config.run.label) for p in sweep.points
    }
    assert combos == {
        (s, m, lab) for s in (2.0, 8.0) for m, lab in (("jpeg", "JPEG"), ("tokens", "ours"))
    }
    tok = [p for p in sweep.points if p.config.edge.method == "tokens"]
    assert all(
        p.config.edge.select.budget == 16 and p.config.edge.mdc.descriptions == 2 for p in tok
    )
    assert all(p.settings["channel.snr_db"] in (2, 8) for p in sweep.points)
    assert sweep.results_dir == sweep.out_dir / "sweeps" / "tiny"


def test_load_sweep_overrides_name_and_duplicates(sweep_file):
    sweep = load_sweep(
        sweep_file, ["sweep.channel.snr_db=[0,4,6]", "data.num_images=5"], name="other"
    )
    assert sweep.name == "other" and len(sweep.points) == 6
    assert all(p.config.data.num_images == 5 for p in sweep.points)
    # an axis over a field that does not change results yields the same run twice
    dup = load_sweep(None, data={"sweep": {"run.batch_size": [1, 2, 3]}})
    assert len(dup.points) == 1 and dup.duplicates == 2 and dup.name == "sweep"


def test_load_sweep_rejects_bad_meta_and_keys(sweep_file, tmp_path):
    with pytest.raises(ConfigError, match="plot.colour"):
        load_sweep(None, data={"plot": {"colour": "red"}})
    with pytest.raises(ConfigError) as exc:
        load_sweep(None, data={"sweep": {"channel.snr": [1]}})
    assert "channel.snr_db" in str(exc.value)


# ----------------------------------------------------------------------------- resume


def test_interrupted_sweep_resumes_only_missing_runs(sweep_file):
    sweep = load_sweep(sweep_file)
    out = sweep.out_dir
    first = run_sweep(sweep, run_fn=fake_interrupted_on_third, progress=False)
    assert first.interrupted and not first.ok
    assert first.count("ok") == 2 and first.count("missing") == 2
    done = {o.point.run_id for o in first.outcomes if o.status == "ok"}
    agg = json.loads((sweep.results_dir / "aggregate.json").read_text())
    assert agg["interrupted"] and agg["counts"] == {"ok": 2, "error": 0, "missing": 2}

    (out / "calls.txt").unlink()
    second = run_sweep(sweep, run_fn=fake_ok, progress=False)
    assert second.ok and second.skipped == 2 and second.ran == 2
    ran_now = set(_calls(out))
    assert ran_now == {p.run_id for p in sweep.points} - done  # only the missing runs ran

    (out / "calls.txt").unlink()
    third = run_sweep(sweep, run_fn=fake_ok, progress=False)
    assert third.ok and third.skipped == 4 and _calls(out) == []
    fourth = run_sweep(sweep, run_fn=fake_ok, progress=False, overwrite=True)
    assert fourth.ran == 4 and len(_calls(out)) == 4


# ----------------------------------------------------------------------------- failures


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(sweep_file):
    sweep = load_sweep(sweep_file)
    report = run_sweep(sweep, run_fn=fake_fails_at_snr_8, progress=False)
    assert report.count("ok") == 3 and report.count("error") == 1 and not report.ok
    bad = next(o for o in report.outcomes if o.status == "error")
    assert bad.point.config.channel.snr_db == 8.0 and bad.point.config.edge.method == "jpeg"
    rec = read_record(RunPaths(sweep.out_dir, bad.point.run_id).record)
    assert rec["status"] == "error" and rec["error"]["type"] == "ValueError"
    assert "boom at 8 dB" in rec["error"]["message"] and "Traceback" in rec["error"]["traceback"]
    assert "settings" not in rec and "label" not in rec  # presentation is the sweep's
    assert "out_dir" not in rec["config"]["run"]  # only what determines results
    rows = list(csv.DictReader(open(report.files["csv"])))
    assert sorted(r["status"] for r in rows) == ["error", "ok", "ok", "ok"]
    assert "boom at 8 dB" in next(r["error"] for r in rows if r["status"] == "error")

    # next time only the failed run is redone
    (sweep.out_dir / "calls.txt").unlink()
    again = run_sweep(sweep, run_fn=fake_ok, progress=False)
    assert again.ok and _calls(sweep.out_dir) == [bad.point.run_id]


def test_runs_that_record_their_own_error_are_reported_and_redone(sweep_file):
    sweep = load_sweep(sweep_file)
    report = run_sweep(sweep, run_fn=fake_records_error, progress=False)
    assert report.count("error") == 2 and report.count("ok") == 2
    (sweep.out_dir / "calls.txt").unlink()
    run_sweep(sweep, run_fn=fake_ok, progress=False)
    redone = set(_calls(sweep.out_dir))
    assert redone == {p.run_id for p in sweep.points if p.config.edge.method == "tokens"}


def test_a_crashed_worker_costs_only_its_runs(sweep_file):
    sweep = load_sweep(sweep_file)
    report = run_sweep(sweep, run_fn=fake_crash_once, workers=2, progress=False)
    assert report.ok, [o.record.get("error") for o in report.outcomes if o.record]
    assert (sweep.out_dir / "crashed").exists()  # it did crash, and was retried
    sweep2 = load_sweep(sweep_file, ["run.seed=1"])
    report2 = run_sweep(sweep2, run_fn=fake_always_crash_at_8, workers=2, progress=False)
    assert report2.count("error") == 1 and report2.count("ok") == 3
    err = next(o.record for o in report2.outcomes if o.status == "error")
    assert "worker process died" in err["error"]["message"]


# ----------------------------------------------------------------------------- executors


def test_process_pool_gives_the_same_records_as_serial(sweep_file, tmp_path):
    serial = load_sweep(sweep_file, [f"run.out_dir={tmp_path / 'a'}"])
    pooled = load_sweep(sweep_file, [f"run.out_dir={tmp_path / 'b'}"])
    ra = run_sweep(serial, run_fn=synthetic_run, progress=False)
    rb = run_sweep(pooled, run_fn=synthetic_run, workers=2, progress=False)
    assert ra.executor == "serial" and rb.executor == "process" and ra.ok and rb.ok
    ids = [p.run_id for p in serial.points]
    assert ids == [p.run_id for p in pooled.points]
    assert compare_runs(tmp_path / "a", tmp_path / "b", ids) == []
    # and compare_runs does notice a difference
    rec = read_record(RunPaths(tmp_path / "b", ids[0]).record)
    rec["metrics"]["vqa"]["accuracy"]["value"] += 0.01
    atomic_write_json(RunPaths(tmp_path / "b", ids[0]).record, rec)
    assert compare_runs(tmp_path / "a", tmp_path / "b", ids) == [f"{ids[0]}: metrics differs"]


def test_workers_get_their_share_of_the_cores(sweep_file):
    sweep = load_sweep(sweep_file)
    report = run_sweep(sweep, run_fn=fake_threads, workers=2, progress=False)
    threads = {o.record["threads"] for o in report.outcomes}
    assert threads == {str(threads_per_worker(2))}
    assert all(o.record["pid"] != os.getpid() for o in report.outcomes)
    assert len({o.record["pid"] for o in report.outcomes}) <= 2  # workers are reused


def test_missing_ray_is_a_clear_error(sweep_file, monkeypatch):
    from semcom.errors import SemcomError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SemcomError, match=r"pip install -e '\.\[ray\]'"):
        run_sweep(load_sweep(sweep_file), run_fn=fake_ok, executor="ray", progress=False)


@pytest.mark.slow  # starting a local Ray takes ~9 s on 2 cores
def test_ray_executor_gives_the_same_records_as_serial(sweep_file, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", env_with_fakes()["PYTHONPATH"])  # Ray workers import it
    serial = load_sweep(sweep_file, [f"run.out_dir={tmp_path / 'a'}"])
    on_ray = load_sweep(sweep_file, [f"run.out_dir={tmp_path / 'r'}"])
    ra = run_sweep(serial, run_fn=synthetic_run, progress=False)
    rr = run_sweep(on_ray, run_fn=synthetic_run, executor="ray", workers=2, progress=False)
    assert rr.executor == "ray" and ra.ok and rr.ok
    ids = [p.run_id for p in serial.points]
    assert compare_runs(tmp_path / "a", tmp_path / "r", ids) == []
    assert (tmp_path / "r" / ids[0] / "samples.jsonl").is_file()


# ----------------------------------------------------------------------------- default run fn


def test_run_point_resolves_the_plain_config_and_calls_the_runner(monkeypatch):
    import semcom.commands.runner as runner

    seen = {}

    class Result:
        record = {"status": "ok"}

    def fake_run(cfg, overwrite=False, transport=None):
        seen.update(cfg=cfg, overwrite=overwrite)
        return Result()

    monkeypatch.setattr(runner, "run", fake_run)
    cfg = load_config(None, ["channel.snr_db=4", "edge.method=jpeg"])
    assert run_point(to_dict(cfg), True, {"channel.snr_db": 4}) == {"status": "ok"}
    assert run_id(seen["cfg"]) == run_id(cfg) and seen["overwrite"] is True


def test_measured_ignores_provenance_and_timing():
    rec = {
        "run_id": "x",
        "status": "ok",
        "metrics": {"a": 1},
        "wall_s": 3.0,
        "provenance": {"utc": "now"},
        "latency": {"edge_s_mean": 1.0},
    }
    other = dict(rec, wall_s=9.0, provenance={"utc": "later"}, latency={"edge_s_mean": 2.0})
    assert measured(rec) == measured(other)
    assert measured(rec) != measured(dict(rec, metrics={"a": 2}))


# ----------------------------------------------------------------------------- aggregate + CLI


def test_aggregate_lists_settings_status_metrics_and_rates(sweep_file):
    sweep = load_sweep(sweep_file)
    report = run_sweep(sweep, run_fn=synthetic_run, progress=False)
    doc = json.loads(report.files["json"].read_text())
    assert doc["schema"] == "semcom.sweep/1" and doc["name"] == "tiny"
    assert doc["plot"] == {"anchor": "JPEG"} and len(doc["records"]) == 4
    for col in (
        "run_id",
        "status",
        "label",
        "set:channel.snr_db",
        "set:edge.method",
        "vqa.accuracy",
        "vqa.accuracy.ci_lo",
        "bpp_wire",
        "bpp_payload",
        "cpp",
        "bler",
        "snr_db",
        "edge_s_mean",
        "airtime_s_mean",
        "cloud_s_mean",
    ):
        assert col in doc["columns"], col
    rows = {r["run_id"]: r for r in csv.DictReader(open(report.files["csv"]))}
    for rec in doc["records"]:
        row = rows[rec["run_id"]]
        assert float(row["vqa.accuracy"]) == pytest.approx(
            rec["metrics"]["vqa"]["accuracy"]["value"]
        )
        assert float(row["bpp_wire"]) == pytest.approx(rec["rate"]["bpp_wire"])
        assert row["label"] == rec["label"]


def test_cli_sweep_runs_resumes_and_dry_runs(sweep_file, capsys):
    from semcom.commands import cli

    args = ["sweep", str(sweep_file), "--run-fn", RUN_FN, "-q"]
    assert cli.main(args + ["--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["runs"] == 4 and dry["done"] == 0
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "JPEG" in captured.out and "ours" in captured.out
    assert "4 ok, 0 failed" in captured.err
    assert cli.main(args + ["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 4
    assert cli.main(args) == 0
    assert "resumed 4" in capsys.readouterr().err


def test_cli_sweep_exit_codes(sweep_file, capsys):
    from semcom.commands import cli

    base = ["sweep", str(sweep_file), "-q"]
    assert cli.main(base + ["--run-fn", f"{__name__}:fake_fails_at_snr_8"]) == 1
    assert cli.main(base + ["--workers", "0"]) == 2
    assert cli.main(base + ["--set", "channel.snr=3"]) == 2
    assert "channel.snr" in capsys.readouterr().err
    assert cli.main(base + ["--ray-address", "auto"]) == 2


def test_ray_task_returns_the_run_files_for_drivers_without_a_shared_disk(sweep_file, monkeypatch):
    from semcom.commands.sweep.executors import THREAD_VARS, Task
    from semcom.commands.sweep.ray_executor import RunActor, restore_files

    for var in THREAD_VARS:  # the actor sets them; restore them afterwards
        monkeypatch.setenv(var, os.environ.get(var, ""))

    p = load_sweep(sweep_file).points[0]
    task = Task(0, p.run_id, to_dict(p.config), dict(p.settings))
    out = RunActor(synthetic_run, 1, "").run(task)  # "": stay in this directory
    assert out["record"]["run_id"] == p.run_id and set(out["files"]) == {"samples.jsonl"}
    samples = Path(p.config.run.out_dir) / p.run_id / "samples.jsonl"
    text = samples.read_text()
    samples.unlink()  # as if the run had happened on another node
    restore_files(task, out["files"])
    assert samples.read_text() == text


def test_shipped_sweep_configs_expand_and_the_demo_has_the_promised_shape():
    repo = Path(__file__).resolve().parent.parent
    files = sorted((repo / "configs" / "sweeps").glob("*.yaml"))
    assert {f.stem for f in files} >= {"snr", "coderate", "budget", "compare"}
    for f in files:
        assert load_sweep(f).points  # every point validates
    demo = load_sweep(repo / "configs" / "demo.yaml")
    labels: dict[str, set] = {}
    for p in demo.points:
        labels.setdefault(p.config.run.label, set()).add(p.config.channel.snr_db)
    assert set(labels) == {"Tokens + MDC (ours)", "JPEG", "Full tokens"}
    linked = [p for p in demo.points if p.config.channel.link != "ideal"]
    snrs = {p.config.channel.snr_db for p in linked}
    assert 3 <= len(snrs) <= 4
    for label in ("Tokens + MDC (ours)", "JPEG"):
        per_snr = [p for p in linked if p.config.run.label == label]
        assert 4 <= len(per_snr) // len(snrs) <= 5 and len(per_snr) % len(snrs) == 0
    tok = next(p.config.edge for p in linked if p.config.edge.method == "tokens")
    assert (tok.select.scorer, tok.quant.type, tok.mdc.descriptions > 1) == (
        "text-sim",
        "codebook",
        True,
    )
    assert demo.plot.get("anchor") == "JPEG"
