"""``semcom demo`` end to end with the synthetic run function (no models needed)."""

from __future__ import annotations

import json

from semcom import cli

CONFIG = """\
name: demo
plot: {anchor: JPEG}
data: {num_images: 30}
cloud: {tasks: [vqa]}
channel: {link: nr-table}
sweep:
  channel.snr_db: [5, 9]
  method:
    - &tok {edge.method: tokens, edge.select.budget: 4, edge.quant.type: codebook,
            edge.mdc.descriptions: 4, run.label: ours}
    - {<<: *tok, edge.select.budget: 16}
    - {<<: *tok, edge.select.budget: 32}
    - {<<: *tok, edge.select.budget: 64}
    - &jpeg {edge.method: jpeg, edge.image.quality: 5, run.label: JPEG}
    - {<<: *jpeg, edge.image.quality: 20}
    - {<<: *jpeg, edge.image.quality: 50}
    - {<<: *jpeg, edge.image.quality: 90}
    - {edge.method: tokens, run.label: Full tokens}
"""


def test_demo_writes_results_figures_and_summary_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "demo"
    args = ["demo", "--config", str(cfg), "--out", str(out), "--dpi", "40", "--format", "png", "-q",
            "--run-fn", "semcom.sweep:synthetic_run"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "18 ok, 0 failed" in err and "ran 18 now" in err
    doc = json.loads((out / "results.json").read_text())
    assert doc["counts"]["ok"] == 18 and len(doc["records"]) == 18
    assert (out / "results.csv").is_file()
    assert len(list((out / "runs").glob("*/record.json"))) == 18
    summary = (out / "summary.md").read_text()
    assert "SYNTHETIC" in summary  # a fake run function is never passed off as results
    for fig in ("vqa-accuracy_vs_bpp_wire", "vqa-accuracy_vs_snr", "bler_vs_snr", "latency"):
        assert (out / "figures" / f"{fig}.png").is_file()
        assert f"(figures/{fig}.png)" in summary
    assert "BD-rate" in summary and (out / "figures" / "bd_vqa-accuracy_bpp_wire.csv").is_file()
    assert "| ours | 0.0" in summary and "| Es/N0 5 dB | Es/N0 9 dB |" in summary

    # interrupted half way: remove some runs; the next invocation redoes only those
    victims = sorted((out / "runs").glob("*/record.json"))[:5]
    for v in victims:
        v.unlink()
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "ran 5 now, 13 were done" in err
