import json
import os
import signal
import subprocess
import sys
import textwrap

from semcom.results import DurableJsonl, RunPaths, atomic_write_json, read_jsonl


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2, "nan": float("nan")})
    assert json.loads(p.read_text()) == {"a": 2, "nan": None}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_killed_writer_leaves_old_record_intact(tmp_path):
    p = tmp_path / "record.json"
    atomic_write_json(p, {"old": True})
    # A child writes a huge record and is SIGKILLed mid-write: the old file must survive.
    code = textwrap.dedent(f"""
        import os, signal
        import semcom.results as r
        real = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = die
        r.atomic_write_json({str(p)!r}, {{"new": "x" * 10_000_000}})
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(p.read_text()) == {"old": True}


def test_run_paths_done_requires_a_complete_matching_record(tmp_path):
    paths = RunPaths(tmp_path, "abc123")
    assert not paths.done()
    paths.dir.mkdir()
    paths.record.write_text('{"schema": "semcom.record/1", "run_id": "abc')  # torn
    assert not paths.done()
    atomic_write_json(
        paths.record, {"schema": "semcom.record/1", "run_id": "other", "status": "ok"}
    )
    assert not paths.done()
    atomic_write_json(
        paths.record, {"schema": "semcom.record/1", "run_id": "abc123", "status": "error"}
    )
    assert not paths.done()  # failed runs are redone
    atomic_write_json(
        paths.record, {"schema": "semcom.record/1", "run_id": "abc123", "status": "ok"}
    )
    assert paths.done()


def test_durable_jsonl_repairs_a_torn_tail(tmp_path):
    p = tmp_path / "s.jsonl"
    with DurableJsonl(p) as out:
        out.append({"i": 0})
        out.append({"i": 1})
    with open(p, "ab") as fh:
        fh.write(b'{"i": 2, "trunc')
    assert [r["i"] for r in read_jsonl(p)] == [0, 1]
    with DurableJsonl(p) as out:
        out.append({"i": 2})
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2]
    assert os.path.getsize(p) == len(p.read_bytes())
