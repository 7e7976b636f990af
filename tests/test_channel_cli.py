"""``semcom ber`` and ``semcom bler-table`` through the CLI's main()."""

import json
import subprocess
import sys

from semcom.commands import cli


def test_ber_json_small_run(capsys, tmp_path):
    out = tmp_path / "ber.json"
    rc = cli.main(
        [
            "ber",
            "--k",
            "64",
            "--n",
            "128",
            "--modulation",
            "qpsk",
            "--ebno",
            "1:5:2",
            "--max-blocks",
            "400",
            "--batch-size",
            "200",
            "--target-block-errors",
            "50",
            "--json",
            "-q",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    assert doc["code"]["bg"] == 2 and doc["code"]["k"] == 64 and doc["decoder"]["name"] == "fast"
    pts = doc["points"]
    assert [p["ebno_db"] for p in pts] == [1.0, 3.0, 5.0]
    assert pts[0]["esno_db"] == 1.0  # QPSK at rate 1/2: Es/N0 = Eb/N0
    assert pts[0]["bler"] > pts[1]["bler"] or pts[1]["status"].startswith("skipped")
    assert all(p["blocks"] <= 400 for p in pts)


def test_ber_table_output_and_tb_mode(capsys):
    rc = cli.main(
        [
            "ber",
            "--tb",
            "--k",
            "256",
            "--rate",
            "1/2",
            "--esno",
            "0,6",
            "--max-blocks",
            "100",
            "--batch-size",
            "100",
            "-q",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "transport-block" in out and "EsNo [dB]" in out and "EbNo [dB]" in out


def test_ber_rejects_bad_code_parameters(capsys):
    assert cli.main(["ber", "--k", "5"]) == 2
    assert "--k 5" in capsys.readouterr().err
    assert cli.main(["ber", "--k", "9000"]) == 2
    assert "--k 9000" in capsys.readouterr().err
    assert cli.main(["ber", "--k", "100", "--n", "1000"]) == 2
    assert "1/5" in capsys.readouterr().err
    assert cli.main(["ber", "--k", "100", "--n", "201", "--modulation", "qpsk"]) == 2
    assert "multiple" in capsys.readouterr().err
    assert cli.main(["ber", "--ebno", "3:1:0.5"]) == 2
    assert cli.main(["ber", "--set", "channel.iterations=0"]) == 2
    assert "channel.iterations" in capsys.readouterr().err


def test_bler_table_show(capsys):
    assert cli.main(["bler-table", "show"]) == 0
    out = capsys.readouterr().out
    assert "semcom.bler-table/1" in out and "rayleigh-block" in out
    assert cli.main(["bler-table", "build"]) == 2  # needs --out


def test_ber_help_does_not_import_torch():
    code = (
        "import sys; from semcom.commands.cli import main; main(['ber', '--help']); "
        "main(['bler-table', '--help']); import json; print(json.dumps(sorted(m for m in "
        "sys.modules if m.split('.')[0] in ('torch', 'sionna'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_import_channel_is_cheap():
    code = (
        "import sys, channel, channel.link; from channel.link import build_link; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sionna', "
        "'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _record(folder, name, budget, quant, bits, D, acc, wire_bits, link="ideal", loss=0.0):
    import json

    d = folder / name
    d.mkdir()
    rec = {
        "status": "ok",
        "config": {
            "channel": {"link": link},
            "edge": {
                "method": "tokens",
                "select": {"budget": budget},
                "quant": {"type": quant, "bits": bits},
                "mdc": {"descriptions": D},
            },
        },
        "metrics": {"vqa": {"accuracy": {"value": acc}}},
        "rate": {"wire_bits_per_tx": wire_bits},
        "link": {"description_loss_rate": loss},
    }
    (d / "record.json").write_text(json.dumps(rec))


def test_bler_table_plan_chooses_from_a_calibration(tmp_path, capsys):
    import json

    from semcom.commands.bler_table import bler_table_main

    for i, b in enumerate((1, 4, 16)):
        for D in (1, 4):
            _record(tmp_path, f"r{i}{D}", b, "codebook", None, D, 60 + 2 * b, 40 * b + 32 * D)
    _record(tmp_path, "lost", 16, "codebook", None, 4, 15.0, 0, link="nr-table", loss=1.0)
    args = ["plan", "--calibration", str(tmp_path), "--snr-db=-4,16", "--deadline-ms", "0.05"]
    assert bler_table_main([*args, "--set", "channel.bandwidth_mhz=5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["esno_db"] for r in rows] == [-4.0, 16.0]
    low, high = rows
    assert high["mcs"] > low["mcs"] and high["expected_accuracy"] >= low["expected_accuracy"]
    assert 15.0 <= low["expected_accuracy"] <= 92.0
    assert bler_table_main(["show", "--by-mcs", "1040"]) == 0
    out = capsys.readouterr().out
    assert "awgn" in out and len(out.splitlines()) >= 2 + 37
