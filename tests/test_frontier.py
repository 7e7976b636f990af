"""The rate frontier: per family, the lowest rate at a share of the reference accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sweep_fakes import synthetic_run

from semcom.commands.frontier import family_of, main
from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep
from semcom.metrics.frontier import FrontierRun, frontier


def _run(rid, fam, acc, bits, n=200, seed=0):
    r = np.random.default_rng(seed)
    scores = (r.random(n) < acc).astype(float) * 100
    return FrontierRun(rid, fam, scores, np.full(n, float(bits)), np.full(n, 100.0))


def test_frontier_picks_the_cheapest_run_over_the_threshold_with_paired_intervals():
    ref = _run("ref", "full", 0.9, 5000)
    runs = [
        ref,
        _run("a1", "A", 0.5, 10),  # too inaccurate
        _run("a2", "A", 0.9, 40, seed=1),
        _run("a3", "A", 0.92, 80, seed=2),
        _run("c1", "C", 0.9, 400, seed=3),
        _run("n1", "never", 0.3, 1),
    ]
    f = frontier(runs, ref, fraction=0.9, n_boot=300)
    fam = f["families"]
    assert fam["A"]["run_id"] == "a2" and fam["A"]["bpp"] == pytest.approx(0.4)
    assert fam["never"]["bpp"] is None and fam["never"]["reach"] == 0.0
    lo, hi = fam["C"]["ci95"]
    assert lo <= fam["C"]["bpp"] <= hi
    assert f["ratios"]["C"]["A"]["value"] == pytest.approx(10.0)
    assert "never" not in f["ratios"]
    with pytest.raises(ValueError, match="samples"):
        frontier([ref, _run("x", "A", 0.9, 1, n=10)], ref)


def test_families_come_from_the_config():
    def rec(**edge):
        return {"config": {"edge": edge}}

    assert family_of(rec(method="tokens", mdc={"descriptions": 4})) == "tokens D=4"
    assert family_of(rec(method="jpeg", image={"headers": "shared"})) == "JPEG (shared headers)"
    assert family_of(rec(method="webp", image={"headers": "file"})) == "WebP (file headers)"
    assert family_of(rec(method="neck", image={"neck_setting": "d2"})) == "neck d2"


def test_frontier_command_on_a_sweep(tmp_path, capsys):
    data = {
        "name": "fr",
        "run": {"out_dir": str(tmp_path / "runs")},
        "data": {"num_images": 200},
        "channel": {"link": "ideal"},
        "sweep": {
            "method": [
                {"edge.method": "tokens", "run.label": "Full tokens"},
                *(
                    {
                        "edge.method": "tokens",
                        "edge.select.budget": b,
                        "edge.quant.type": "codebook",
                    }
                    for b in (16, 64, 128)
                ),
                *({"edge.method": "jpeg", "edge.image.quality": q} for q in (20, 60, 95)),
            ]
        },
    }
    report = run_sweep(load_sweep(None, data=data, name="fr"), run_fn=synthetic_run, progress=False)
    assert report.ok
    agg = report.files["json"]
    assert main([str(agg), "-o", str(tmp_path / "out"), "--boot", "200", "--fraction", "0.8"]) == 0
    doc = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert doc["metric"] == "vqa.accuracy" and doc["samples"] == 200
    assert set(doc["families"]) == {"tokens D=1", "JPEG (shared headers)"}
    md = (tmp_path / "out" / "frontier.md").read_text()
    assert md.startswith("<!-- semcom frontier ") and "| tokens D=1 |" in md
    assert md.split("-->\n\n", 1)[1] in capsys.readouterr().out
    with pytest.raises(Exception, match="fraction"):
        main([str(agg), "--fraction", "1.5"])
