"""``semcom demo --from``: the figures and summary again from a saved results.json."""

from __future__ import annotations

import json
import re

from sweep_fakes import RUN_FN

from semcom.commands import cli

CONFIG = """\
name: demo
plot: {anchor: JPEG}
data: {num_images: 20}
cloud: {tasks: [vqa]}
channel: {link: nr-table}
sweep:
  channel.snr_db: [5]
  method:
    - &tok {edge.method: tokens, edge.select.budget: 4, edge.quant.type: codebook,
            edge.mdc.descriptions: 4, run.label: ours}
    - {<<: *tok, edge.select.budget: 16}
    - &jpeg {edge.method: jpeg, edge.image.quality: 5, run.label: JPEG}
    - {<<: *jpeg, edge.image.quality: 50}
"""
FIGS = ("--dpi", "40", "--format", "png", "-q")


def test_from_results_redraws_the_same_summary_without_running(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(CONFIG)
    ran = tmp_path / "ran"
    assert (
        cli.main(["demo", "--config", str(cfg), "--out", str(ran), *FIGS, "--run-fn", RUN_FN]) == 0
    )
    again = tmp_path / "again"
    capsys.readouterr()
    assert cli.main(["demo", "--from", str(ran / "results.json"), "--out", str(again), *FIGS]) == 0
    assert "ok" not in capsys.readouterr().err.split("wrote")[0]  # no runs reported
    assert not (again / "runs").exists()
    assert (again / "results.json").read_bytes() == (ran / "results.json").read_bytes()
    assert (again / "results.csv").is_file()
    a, b = (ran / "summary.md").read_text(), (again / "summary.md").read_text()
    assert a.replace(str(ran), "X") == b.replace(str(again), "X")
    doc = json.loads((ran / "results.json").read_text())
    assert doc["git"]["commit"][:10] in b and f"{len(doc['records'])} runs" in b
    shown = re.findall(r"\]\((figures/[^)]+\.png)\)", b)
    assert "figures/vqa-accuracy_vs_bpp_wire.png" in shown
    for rel in shown:
        assert (again / rel).is_file()
    # in place: the folder's own results.json is read and left as it is
    before = (again / "results.json").read_bytes()
    assert (
        cli.main(["demo", "--from", str(again / "results.json"), "--out", str(again), *FIGS]) == 0
    )
    assert (again / "results.json").read_bytes() == before


def test_from_results_rejects_other_files_and_run_options(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text(json.dumps({"schema": "semcom.record/1"}))
    assert cli.main(["demo", "--from", str(bad), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert (
        cli.main(
            ["demo", "--from", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o"), "-q"]
        )
        == 2
    )
    assert cli.main(["demo", "--from", str(bad), "--set", "run.limit=2", "-q"]) == 2
    assert not (tmp_path / "o").exists()


def test_default_output_is_the_ignored_results_folder():
    from semcom.commands.demo import build_parser

    assert build_parser().parse_args([]).out == "results/demo"
