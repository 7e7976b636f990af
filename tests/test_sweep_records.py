"""Records keep what determines results; presentation comes from the sweep being run."""

from __future__ import annotations

import csv
import json

from sweep_fakes import synthetic_run

from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep
from semcom.results import RunPaths, atomic_write_json, read_record

GRID = """\
data: {{num_images: 6}}
channel: {{link: nr-table}}
cloud: {{tasks: [vqa]}}
run: {{out_dir: {out}}}
sweep:
  channel.snr_db: [2, 8]
  method:
    - {{edge.method: jpeg, edge.image.quality: 20, run.label: {jpeg}}}
    - {{edge.method: tokens, edge.select.budget: 16, edge.quant.type: codebook,
       run.label: {tok}}}
"""


def _sweep(tmp_path, name, jpeg, tok):
    f = tmp_path / f"{name}.yaml"
    f.write_text(GRID.format(out=tmp_path / "runs", jpeg=jpeg, tok=tok))
    return load_sweep(f)


def _labels(report) -> tuple[set, set, set]:
    doc = json.loads(report.files["json"].read_text())
    rows = list(csv.DictReader(open(report.files["csv"])))
    return (
        {r["label"] for r in rows},
        {r["label"] for r in doc["rows"]},
        {r["label"] for r in doc["records"]},
    )


def test_reused_out_dir_each_aggregate_shows_its_own_labels(tmp_path):
    first = _sweep(tmp_path, "first", "textsim-topk", "JPEG-old")
    second = _sweep(tmp_path, "second", "fp16", "JPEG-new")
    assert [p.run_id for p in first.points] == [p.run_id for p in second.points]

    a = run_sweep(first, run_fn=synthetic_run, progress=False)
    assert a.ok and a.ran == 4
    b = run_sweep(second, run_fn=synthetic_run, progress=False)
    assert b.ok and b.skipped == 4 and b.ran == 0  # every record reused

    for labels in _labels(a):
        assert labels == {"textsim-topk", "JPEG-old"}
    for labels in _labels(b):
        assert labels == {"fp16", "JPEG-new"}
    # settings are the sweep's too, and the figures read the presented records
    doc = json.loads(b.files["json"].read_text())
    assert all(r["settings"] == p.settings for r, p in zip(doc["records"], second.points))
    from semcom.plotting.points import collect_points, metric_spec

    pts = collect_points(doc["records"], "bpp_wire", metric_spec(doc["records"], "vqa", "accuracy"))
    assert {p.label for p in pts} == {"fp16", "JPEG-new"}


def test_a_stale_label_on_disk_never_reaches_the_aggregate(tmp_path):
    sweep = _sweep(tmp_path, "s", "JPEG", "ours")
    run_sweep(sweep, run_fn=synthetic_run, progress=False)
    p = sweep.points[0]
    path = RunPaths(tmp_path / "runs", p.run_id).record
    rec = read_record(path)
    atomic_write_json(path, dict(rec, label="textsim-topk", settings={"x": 1}))
    again = run_sweep(sweep, run_fn=synthetic_run, progress=False)
    row = next(r for r in csv.DictReader(open(again.files["csv"])) if r["run_id"] == p.run_id)
    assert row["label"] == "JPEG" and "set:x" not in row


def test_records_keep_only_what_determines_results(tmp_path):
    sweep = _sweep(tmp_path, "s", "JPEG", "ours")
    run_sweep(sweep, run_fn=synthetic_run, progress=False)
    rec = read_record(RunPaths(tmp_path / "runs", sweep.points[0].run_id).record)
    assert "settings" not in rec
    assert rec["label"] == "JPEG"  # the default label, derived from the method
    assert not {"label", "out_dir", "progress", "batch_size"} & set(rec["config"]["run"])


def test_the_runner_writes_no_presentation(tmp_path, monkeypatch):
    import semcom.commands.runner as runner
    from semcom.config import load_config

    monkeypatch.setattr(runner, "_execute", lambda cfg, paths, transport=None: {"num_samples": 0})
    cfg = load_config(None, [f"run.out_dir={tmp_path}", "run.label=fancy", "edge.method=jpeg"])
    rec = runner.run(cfg).record
    assert rec["label"] == "JPEG" and "settings" not in rec
    assert "label" not in rec["config"]["run"] and "out_dir" not in rec["config"]["run"]
