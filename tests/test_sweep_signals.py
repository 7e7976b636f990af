"""Stopping a parallel sweep: no worker outlives its parent; SIGTERM drains and counts.

A real ``semcom sweep --workers 2`` subprocess runs the synthetic run function
(``sweep_fakes``) with busy work per run, so runs are in flight when the signal comes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_fakes import RUN_FN, env_with_fakes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

GRID = """\
name: sig
data: {{num_images: 4}}
channel: {{link: nr-table}}
cloud: {{tasks: [vqa]}}
run: {{out_dir: {out}}}
sweep:
  channel.snr_db: [0, 1, 2, 3, 4, 5, 6, 7]
"""


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _descendants(pid: int) -> set[int]:
    todo, seen = [pid], set()
    while todo:
        for c in _children(todo.pop()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended (only its exit status is left)


def _records(out: Path) -> int:
    return sum(1 for _ in out.glob("*/record.json"))


def _start(tmp_path: Path, work_ms: int) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "runs"
    f = tmp_path / "sig.yaml"
    f.write_text(GRID.format(out=out))
    env = env_with_fakes(SEMCOM_SYNTHETIC_WORK_MS=str(work_ms), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "semcom", "sweep", str(f), "--workers", "2"]
    proc = subprocess.Popen(
        cmd + ["--run-fn", RUN_FN, "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def _wait_for(cond, timeout: float, what: str, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = {p for p in pids if _alive(p)}
        if not left:
            return set()
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def test_sigkill_of_the_sweep_leaves_no_worker(tmp_path):
    # each run is 20 s of work: a worker that only noticed its parent's death after its
    # run (or never, idle on its queue) would still be there when we look
    proc, out = _start(tmp_path, work_ms=20000)
    workers: set[int] = set()
    try:
        _wait_for(lambda: len(_descendants(proc.pid)) >= 2, 60, "the workers", proc)
        time.sleep(0.5)
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        proc.kill()
        proc.wait(10)
        left = _wait_gone(workers, timeout=5.0)
        assert not left, f"processes left after SIGKILL of the sweep: {sorted(left)}"
    finally:
        proc.kill()
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_sigterm_drains_and_the_summary_counts_what_finished(tmp_path):
    proc, out = _start(tmp_path, work_ms=700)
    try:
        _wait_for(lambda: _records(out) >= 1, 90, "the first record", proc)
        workers = _descendants(proc.pid)
        at_signal = _records(out)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    finished = _records(out)
    assert finished > at_signal  # the runs in flight were allowed to finish
    assert finished < 8, "the drain must not start new runs"  # 8 points of 700 ms each
    assert f"{finished} ok, 0 failed, {8 - finished} not run" in err
    agg = json.loads((out / "sweeps" / "sig" / "aggregate.json").read_text())
    assert agg["interrupted"] and agg["counts"]["ok"] == finished
    assert agg["counts"]["missing"] == 8 - finished
    assert not _wait_gone(workers)
