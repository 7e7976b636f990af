"""Plots from a small saved results file (synthetic records in the real schema)."""

from __future__ import annotations

import json

import pytest
from sweep_fakes import synthetic_run

from semcom import plotting
from semcom.commands.sweep.run import run_sweep
from semcom.commands.sweep.spec import load_sweep

SWEEP = {
    "data": {"num_images": 40},
    "channel": {"link": "nr-table"},
    "cloud": {"tasks": ["vqa"]},
    "sweep": {
        "channel.snr_db": [4, 7, 12],
        "method": [
            *(
                {
                    "edge.method": "tokens",
                    "edge.select.budget": b,
                    "edge.quant.type": "codebook",
                    "edge.mdc.descriptions": 4,
                    "run.label": "ours",
                }
                for b in (8, 16, 32, 64)
            ),
            *(
                {"edge.method": "jpeg", "edge.image.quality": q, "run.label": "JPEG"}
                for q in (5, 20, 50, 90)
            ),
            {"edge.method": "tokens", "run.label": "Full tokens"},
        ],
    },
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    data = dict(SWEEP, run={"out_dir": str(root / "runs")}, plot={"anchor": "JPEG"})
    report = run_sweep(
        load_sweep(None, data=data, name="small"), run_fn=synthetic_run, progress=False
    )
    assert report.ok
    return root, report.files["json"]


@pytest.fixture(scope="module")
def figures(results):
    root, agg = results
    return plotting.make_figures([agg], root / "fig", formats=("png",), dpi=50), root / "fig"


def test_every_figure_is_written_with_a_sidecar(figures, results):
    res, out = figures
    names = {f.name for f in res.figures}
    assert names == {
        "vqa-accuracy_vs_bpp_wire",
        "vqa-accuracy_vs_bpp_wire_by_snr",
        "vqa-accuracy_vs_snr",
        "bler_vs_snr",
        "latency",
    }
    from PIL import Image

    for name in names:
        png = out / f"{name}.png"
        with Image.open(png) as im:
            assert im.size[0] > 200 and im.size[1] > 100
        side = json.loads((out / f"{name}.json").read_text())
        assert side["inputs"] == [str(results[1])] and len(side["run_ids"]) == 27
        assert "commit" in side["git"] and side["files"] == [png.name]


def test_png_at_300_dpi_and_vector_pdf(results, tmp_path):
    from PIL import Image

    res = plotting.make_figures([results[1]], tmp_path, kinds=("snr",))
    assert [f.name for f in res.figures] == ["vqa-accuracy_vs_snr"]
    with Image.open(tmp_path / "vqa-accuracy_vs_snr.png") as im:
        assert im.size[0] > 1500  # 6.4 in x 300 dpi, cropped tight
    assert (tmp_path / "vqa-accuracy_vs_snr.pdf").read_bytes().startswith(b"%PDF")


def test_plotted_numbers_are_the_saved_ones(figures, results):
    res, out = figures
    doc = json.loads(results[1].read_text())
    by_id = {r["run_id"]: r for r in doc["records"]}
    side = json.loads((out / "vqa-accuracy_vs_bpp_wire.json").read_text())
    curves = [s for s in side["series"] if not s.get("upper_bound")]
    assert len(curves) == 6  # 2 methods x 3 SNRs; full tokens is a line, not a curve
    for s in curves:
        assert s["x"] == sorted(s["x"]) and len(s["x"]) == 4
        for rid, x, y in zip(s["run_ids"], s["x"], s["y"]):
            rec = by_id[rid]
            assert x == rec["rate_by_task"]["vqa"]["bpp_wire"]
            assert y == rec["metrics"]["vqa"]["accuracy"]["value"]
            assert rec["label"] == s["label"]
    upper = [s for s in side["series"] if s.get("upper_bound")]
    assert {s["label"] for s in upper} == {"Full tokens"} and len(upper) == 3


def test_accuracy_vs_snr_uses_one_operating_point_per_method(figures):
    res, out = figures
    side = json.loads((out / "vqa-accuracy_vs_snr.json").read_text())
    assert {s["label"] for s in side["series"]} == {"ours", "JPEG", "Full tokens"}
    for s in side["series"]:
        assert s["snr_db"] == [4.0, 7.0, 12.0] and len(set(s["run_ids"])) == 3
    target = side["target_rate"]
    rates = {s["label"]: s["rate"] for s in side["series"] if s["label"] != "Full tokens"}
    assert all(0.25 < r / target < 4 for r in rates.values())


def test_bd_table_from_the_sweep_hint(figures):
    res, out = figures
    assert res.anchor == "JPEG" and res.bd_rows
    assert {r["condition"] for r in res.bd_rows} == {"Es/N0 4 dB", "Es/N0 7 dB", "Es/N0 12 dB"}
    assert all(r["test"] == "ours" for r in res.bd_rows)  # full tokens is not a curve
    for r in res.bd_rows:  # noisy curves get the monotone rule, reported, and a number
        assert r["bd_rate_pct"] is not None
        # BD-accuracy needs overlapping rate ranges: a number, or the reason in the note
        assert r["bd_accuracy"] is not None or "no rate overlap" in r["note"]
        assert (r["fit"] == "monotone") == ("monotone fit" in r["note"])
        assert "paired bootstrap over 40 samples" in r["ci_note"]
        for key in ("bd_rate_ci95", "bd_accuracy_ci95"):  # an interval or the reason
            ci = r[key]
            assert (ci is not None and ci[0] < ci[1]) or "defined in" in r["ci_note"]
    assert sum(r["bd_rate_ci95"] is not None for r in res.bd_rows) >= 2
    assert sum(r["bd_accuracy"] is not None for r in res.bd_rows) >= 2
    md = (out / "bd_vqa-accuracy_bpp_wire.md").read_text()
    assert "| Es/N0 12 dB | ours | JPEG | 4/4 |" in md
    mono = next(r["condition"] for r in res.bd_rows if r["fit"] == "monotone")
    row = next(line for line in md.splitlines() if line.startswith(f"| {mono} |"))
    assert "monotone fit" in row  # the rule used, and intervals or why there are none
    assert row.count("[") >= 1 or "defined in" in row
    assert "| Es/N0 12 dB" in md and any(
        line.count("[") >= 2 for line in md.splitlines() if line.startswith("| Es/N0")
    )
    # and the paired table: every "ours" point against a JPEG point of its SNR
    assert len(res.paired_rows) == 12 and {r["label"] for r in res.paired_rows} == {"ours"}
    assert all(r["test"] == "mcnemar-exact" and r["n"] == 40 for r in res.paired_rows)
    assert (out / "paired_vqa-accuracy_bpp_wire.csv").is_file()


def test_colors_are_fixed_per_label():
    a = plotting.ColorMap(["ours", "JPEG", "Full tokens"])
    b = plotting.ColorMap(["JPEG", "other", "ours", "WebP"])
    assert a("JPEG") == b("JPEG") == plotting.FIXED_COLORS["JPEG"]
    assert a("Full tokens") == plotting.FIXED_COLORS["Full tokens"]
    assert len({b(x) for x in ("JPEG", "other", "ours", "WebP")}) == 4
    assert a("ours") not in plotting.FIXED_COLORS.values()


def test_log_x_only_beyond_a_decade():
    assert plotting.needs_log([0.05, 0.6])
    assert not plotting.needs_log([0.1, 0.9])


def test_conditions_and_upper_bound_detection():
    rec = {
        "method": "tokens",
        "config": {
            "channel": {
                "link": "nr-table",
                "snr_db": 5.0,
                "snr_type": "esno",
                "code_rate": 0.5,
                "modulation": "qpsk",
            },
            "edge": {
                "method": "tokens",
                "select": {"budget": None, "ratio": None},
                "quant": {"type": "none"},
            },
        },
        "link": {"esno_db": 5.0},
    }
    assert plotting.is_upper_bound(rec) and not plotting.is_anchor(rec)
    c = plotting.condition_of(rec)
    assert c.snr_db == 5.0 and c.code_rate == 0.5
    assert c.describe({"snr_db"}) == "$E_s/N_0$ 5 dB"
    rec["config"]["edge"]["select"]["budget"] = 16
    assert not plotting.is_upper_bound(rec) and plotting.is_upper_bound(rec, ["tokens"]) is False
    ideal = {"config": {"channel": {"link": "ideal", "snr_db": 10.0}}}
    assert plotting.condition_of(ideal).describe() == "ideal link"


def test_cli_plot_from_run_folders_and_errors(results, tmp_path, capsys):
    from semcom.commands import cli

    root, agg = results
    out = tmp_path / "figs"
    # run folders (not the aggregate) work the same; error records are skipped
    bad = root / "runs" / "badrun00000" / "record.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(json.dumps({"run_id": "badrun00000", "status": "error"}))
    code = cli.main(
        [
            "plot",
            str(root / "runs"),
            "-o",
            str(out),
            "--only",
            "rate",
            "--format",
            "png",
            "--anchor",
            "JPEG",
            "--x",
            "cpp",
            "--dpi",
            "50",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "1 failed runs not plotted" in captured.err
    assert (out / "vqa-accuracy_vs_cpp.png").is_file() and not (out / "latency.png").exists()
    assert "BD against **JPEG** on `cpp`" in captured.out
    assert cli.main(["plot", str(agg), "-o", str(out), "--metric", "vqa.cider"]) == 2
    assert "available: vqa.accuracy" in capsys.readouterr().err
    assert cli.main(["plot", str(agg), "-o", str(out), "--anchor", "HEVC"]) == 2
    assert "anchor 'HEVC'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["plot", str(empty), "-o", str(out)]) == 2
    assert cli.main(["plot", str(tmp_path / "nope"), "-o", str(out)]) == 2


def test_full_tokens_on_the_ideal_link_is_the_ceiling_of_every_condition(tmp_path):
    """One ideal-link full-tokens run becomes the upper bound in each SNR's panel and curve."""
    data = {
        "data": {"num_images": 20},
        "channel": {"link": "nr-table"},
        "cloud": {"tasks": ["vqa"]},
        "run": {"out_dir": str(tmp_path / "runs")},
        "sweep": {
            "channel.snr_db": [4, 12],
            "method": [
                *(
                    {"edge.method": "jpeg", "edge.image.quality": q, "run.label": "JPEG"}
                    for q in (5, 50)
                ),
                {
                    "edge.method": "tokens",
                    "channel.link": "ideal",
                    "channel.snr_db": 0,
                    "run.label": "Full tokens",
                },
            ],
        },
    }
    sweep = load_sweep(None, data=data, name="ideal")
    assert len(sweep.points) == 5 and sweep.duplicates == 1  # the ideal run is run once
    report = run_sweep(sweep, run_fn=synthetic_run, progress=False)
    res = plotting.make_figures(
        [report.files["json"]], tmp_path / "fig", formats=("png",), dpi=40, kinds=("rate", "snr")
    )
    side = json.loads((tmp_path / "fig" / "vqa-accuracy_vs_bpp_wire_by_snr.json").read_text())
    upper = [s for s in side["series"] if s.get("upper_bound")]
    assert len(upper) == 2  # one per SNR panel, no "ideal link" panel of its own
    assert {s["condition"] for s in upper} == {
        s["condition"] for s in side["series"] if not s.get("upper_bound")
    }
    assert len({s["run_ids"][0] for s in upper}) == 1 and upper[0]["y"] == upper[1]["y"]
    snr = json.loads((tmp_path / "fig" / "vqa-accuracy_vs_snr.json").read_text())
    full = [s for s in snr["series"] if s["label"] == "Full tokens"]
    assert len(full) == 1 and full[0]["snr_db"] == [4, 12] and len(set(full[0]["y"])) == 1
    assert len(res.figures) == 3
