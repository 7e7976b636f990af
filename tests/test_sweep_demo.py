"""``semcom demo`` end to end with the synthetic run function (no models needed)."""

from __future__ import annotations

import json

from sweep_fakes import RUN_FN, env_with_fakes

from semcom.commands import cli

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
    args = [
        "demo",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--dpi",
        "40",
        "--format",
        "png",
        "-q",
        "--run-fn",
        RUN_FN,
    ]
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
    # paired differences against the anchor, and BD numbers with intervals or a reason
    assert "## Paired differences against JPEG" in summary
    paired = [
        line for line in summary.splitlines() if line.startswith("| Es/N0") and "McNemar" in line
    ]
    assert len(paired) == 8  # 4 token points x 2 SNRs, each against a JPEG point
    bd = json.loads((out / "figures" / "bd_vqa-accuracy_bpp_wire.json").read_text())["rows"]
    assert bd and all(r["bd_rate_pct"] is not None or r["note"] for r in bd)
    assert all(r.get("bd_rate_ci95") or r.get("ci_note") for r in bd)

    # interrupted half way: remove some runs; the next invocation redoes only those
    victims = sorted((out / "runs").glob("*/record.json"))[:5]
    for v in victims:
        v.unlink()
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "ran 5 now, 13 were done" in err


def test_demo_killed_half_way_finishes_only_the_missing_runs(tmp_path, capsys):
    """A real kill: SIGTERM to a running `semcom demo`, then the same command again."""
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "demo.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "demo"
    args = [
        "demo",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--dpi",
        "40",
        "--format",
        "png",
        "-q",
        "--run-fn",
        RUN_FN,
    ]
    env = env_with_fakes(SEMCOM_SYNTHETIC_WORK_MS="150", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "semcom", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = out / "runs"
    deadline = time.monotonic() + 60
    try:
        while len(list(runs.glob("*/record.json"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the demo did not start its runs"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    done = len(list(runs.glob("*/record.json")))
    assert 3 <= done < 18  # stopped half way: some runs done, some not
    assert not (out / "summary.md").exists()  # no figures / summary from a partial demo

    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert f"ran {18 - done} now, {done} were done" in err
    assert (out / "summary.md").is_file()


def test_demo_names_every_missing_asset_before_running(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(
        CONFIG.replace(
            "cloud: {tasks: [vqa]}",
            f"""cloud: {{tasks: [vqa]}}
edge:
  model: {{name: llava, path: {tmp_path / "no-model"}}}
  quant: {{codebook: {tmp_path / "no-codebook.npz"}}}""",
        )
    )
    out = tmp_path / "demo"
    assert cli.main(["demo", "--config", str(cfg), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "no-model") in err and "semcom train tinyworld --model llava" in err
    assert str(tmp_path / "no-codebook.npz") in err and "semcom train codebook" in err
    assert not (out / "runs").exists()  # nothing ran
