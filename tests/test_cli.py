import json
import subprocess
import sys

import pytest

from semcom.commands import cli


def test_help_lists_every_reserved_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "run", "sweep", "plot", "ber", "bler-table", "train", "edge", "cloud"):
        assert f"  {name} " in out


def test_no_args_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: semcom" in capsys.readouterr().out


def test_unknown_command_exits_2_with_suggestion(capsys):
    assert cli.main(["swep"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'swep'" in err and "did you mean 'sweep'" in err


def test_every_command_resolves_to_a_main():
    for name in cli.COMMANDS:
        fn = cli.load_command(name)
        assert callable(fn), name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help_and_rejects_bad_flags(name, capsys):
    assert cli.main([name, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out
    assert cli.main([name, "--no-such-flag"]) == 2


def test_help_does_not_import_torch():
    code = (
        "import sys; from semcom.commands.cli import main; main(['--help']); "
        "import json; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch','sionna','transformers','compressai','grpc'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == []


def test_config_error_exits_2_with_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("channel:\n  snr_dbb: 3\n")
    assert cli.main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "channel.snr_dbb" in err and "snr_db" in err
