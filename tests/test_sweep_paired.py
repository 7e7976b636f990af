"""Paired comparisons against a named baseline, on the same samples."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from sweep_fakes import synthetic_run

from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep
from semcom.metrics.paired import align, describe, paired_difference
from semcom.results import RunPaths, read_jsonl


def test_mcnemar_and_the_bootstrap_interval_on_known_data():
    base = [0] * 10 + [100] * 30 + [0] * 10
    test = [100] * 10 + [100] * 30 + [0] * 10  # 10 discordant pairs, all for the test
    r = paired_difference(base, test)
    assert r["diff"] == pytest.approx(20.0) and r["discordant"] == [10, 0]
    assert r["test"] == "mcnemar-exact" and r["p"] == pytest.approx(2 * 0.5**10)
    lo, hi = r["ci95"]
    assert 0 < lo < 20 < hi < 40
    same = paired_difference(base, base)
    assert same["diff"] == 0 and same["p"] == 1.0 and same["ci95"] == [0.0, 0.0]
    soft = paired_difference([0.2, 0.5, 0.9, 0.4], [0.3, 0.6, 0.8, 0.9])
    assert soft["test"] == "wilcoxon" and 0 <= soft["p"] <= 1
    assert "McNemar p = 0.002" in describe(r, "pp")
    with pytest.raises(ValueError, match="same samples"):
        paired_difference([1, 0], [1])


def test_align_keeps_the_samples_both_runs_scored():
    a, b = align(["x", "y", "z"], [1, None, 0], ["z", "x", "y"], [1, 0, 1])
    assert (a, b) == ([1.0, 0.0], [0.0, 1.0])


def test_the_aggregate_compares_every_run_with_the_baseline_on_the_same_samples(tmp_path):
    data = {
        "data": {"num_images": 30},
        "channel": {"link": "nr-table"},
        "cloud": {"tasks": ["vqa"]},
        "run": {"out_dir": str(tmp_path / "runs")},
        "plot": {"anchor": "JPEG"},
        "sweep": {
            "channel.snr_db": [3, 9],
            "method": [
                {"edge.method": "jpeg", "edge.image.quality": q, "run.label": "JPEG"}
                for q in (10, 60)
            ]
            + [
                {
                    "edge.method": "tokens",
                    "edge.select.budget": b,
                    "edge.quant.type": "codebook",
                    "edge.mdc.descriptions": 4,
                    "run.label": "ours",
                }
                for b in (8, 32)
            ],
        },
    }
    sweep = load_sweep(None, data=data, name="p")
    report = run_sweep(sweep, run_fn=synthetic_run, progress=False)
    doc = json.loads(report.files["json"].read_text())
    assert doc["baseline"] == "JPEG"
    rows = {r["run_id"]: r for r in csv.DictReader(open(report.files["csv"]))}
    recs = {r["run_id"]: r for r in doc["records"]}
    ours = [r for r in doc["records"] if r["label"] == "ours"]
    assert len(ours) == 4
    for rec in ours:
        row = rows[rec["run_id"]]
        ref = recs[row["paired.ref_run_id"]]
        assert ref["label"] == "JPEG"
        assert ref["config"]["channel"]["snr_db"] == rec["config"]["channel"]["snr_db"]
        # nearest JPEG in rate at that SNR
        same = [
            r
            for r in doc["records"]
            if r["label"] == "JPEG"
            and r["config"]["channel"]["snr_db"] == rec["config"]["channel"]["snr_db"]
        ]
        x = rec["rate_by_task"]["vqa"]["bpp_wire"]
        near = min(same, key=lambda r: abs(math.log(r["rate_by_task"]["vqa"]["bpp_wire"] / x)))
        assert near["run_id"] == ref["run_id"]
        # the difference is the mean per-sample difference read back from samples.jsonl
        out = tmp_path / "runs"
        s_t = {
            r["sample_id"]: r["scores"]["vqa"]["accuracy"]
            for r in read_jsonl(RunPaths(out, rec["run_id"]).samples)
        }
        s_b = {
            r["sample_id"]: r["scores"]["vqa"]["accuracy"]
            for r in read_jsonl(RunPaths(out, ref["run_id"]).samples)
        }
        want = np.mean([s_t[k] - s_b[k] for k in s_t])
        assert float(row["paired.diff"]) == pytest.approx(want)
        assert row["paired.test"] == "mcnemar-exact" and 0 <= float(row["paired.p"]) <= 1
        assert float(row["paired.ci_lo"]) <= want <= float(row["paired.ci_hi"])
    # the embedded per-sample columns make the aggregate self-contained
    assert all(len(r["per_sample"]["sample_id"]) == 30 for r in doc["records"])
