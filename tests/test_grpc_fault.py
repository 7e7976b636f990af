"""Faults with real processes: the cloud SIGKILLed and restarted mid-run, the edge SIGKILLed
and rerun (both `slow`: each starts three processes that import torch; `make test-slow`),
and SIGTERM draining the cloud. `semcom cloud serve` / `semcom edge run` run as
subprocesses with the fakes of benchmarks/bench_grpc.py installed (cheap model, fake link).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_grpc import install_fakes  # noqa: E402
from edge.client import JOURNAL_NAME, CloudClient  # noqa: E402
from semcom import runner  # noqa: E402
from semcom.config import load_config, run_id  # noqa: E402

TOKEN = "fault-test-token-" + "f" * 20
N = 24
SETS = ["edge.method=jpeg", "edge.image.quality=60", "cloud.tasks=[caption]", "run.batch_size=6"]


def _env(**kw):
    env = dict(os.environ, SEMCOM_FAKE_N=str(N), SEMCOM_FAKE_LOSS="0.25", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def _sets():
    return [x for s in SETS for x in ("--set", s)]


class Cloud:
    def __init__(self, tmp: Path, port: int = 0, delay: float = 0.1, grace: float = 10):
        self.port_file = tmp / f"port-{time.monotonic_ns()}"
        self.log = open(tmp / f"cloud-{time.monotonic_ns()}.log", "w+")
        cmd = [sys.executable, "-m", "benchmarks.bench_grpc", "cloud", "serve", "--insecure",
               "--listen", f"127.0.0.1:{port}", "--port-file", str(self.port_file),
               "--token-file", str(tmp / "token"), "--grace", str(grace), *_sets()]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=_env(SEMCOM_FAKE_DELAY=delay),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        t0 = time.time()
        while not self.port_file.exists():
            assert self.proc.poll() is None, self.output()
            assert time.time() - t0 < 60, "cloud did not start"
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.target = f"127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def kill(self, sig=signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(30)


def _edge(tmp: Path, target: str, out: Path):
    cmd = [sys.executable, "-m", "benchmarks.bench_grpc", "edge", "run", "--cloud", target,
           "--insecure", "--token-file", str(tmp / "token"), "--out", str(out), "-q",
           "--concurrency", "2", "--retry-for", "60", "--wait", "60", *_sets()]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _journal_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(cond, timeout=60, what=""):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)


def _check_exactly_once(out: Path, tmp: Path, monkeypatch):
    rid = run_id(load_config(None, SETS))
    journal = out / rid / JOURNAL_NAME
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == N
    rows = [json.loads(line) for line in (out / rid / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["sample_id"] for r in rows) == sorted(f"im{i}" for i in range(N))
    rec = json.loads((out / rid / "record.json").read_text())
    assert rec["status"] == "ok" and rec["num_samples"] == N
    # ... and they are the in-process results
    install_fakes(monkeypatch, n=N, loss=0.25)
    local = runner.run(load_config(None, [*SETS, f"run.out_dir={tmp / 'local'}",
                                          "run.progress=false"]))
    want = {r["sample_id"]: r for r in map(json.loads, (local.record_path.parent /
                                                         "samples.jsonl").open())}
    for r in rows:
        w = want[r["sample_id"]]
        assert (r["outputs"], r["scores"], r["rate"]) == (w["outputs"], w["scores"], w["rate"])
    assert rec["metrics"] == local.record["metrics"]
    return rec


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    return tmp_path


@pytest.mark.slow
def test_cloud_sigkilled_and_restarted_mid_run(tmp, monkeypatch):
    cloud = Cloud(tmp, delay=0.15)
    out = tmp / "runs"
    journal = out / run_id(load_config(None, SETS)) / JOURNAL_NAME
    edge = _edge(tmp, cloud.target, out)
    try:
        _wait_for(lambda: _journal_lines(journal) >= 6, what="6 results")
        assert cloud.kill(signal.SIGKILL) == -signal.SIGKILL
        done_before = _journal_lines(journal)
        assert done_before < N, "the run finished before the kill; slow the fake model"
        time.sleep(1.0)  # the edge sees UNAVAILABLE and backs off
        cloud = Cloud(tmp, port=cloud.port, delay=0.15)
        text, _ = edge.communicate(timeout=120)
    finally:
        if edge.poll() is None:
            edge.kill()
        cloud.kill(signal.SIGTERM)
    assert edge.returncode == 0, text
    retries = int(text.split(" retries")[0].rsplit(" ", 1)[-1])
    assert retries >= 1, text
    rec = _check_exactly_once(out, tmp, monkeypatch)
    assert rec["transport"]["retries"] == retries


@pytest.mark.slow
def test_edge_sigkilled_and_rerun_sends_only_what_is_missing(tmp, monkeypatch):
    cloud = Cloud(tmp, delay=0.1)
    out = tmp / "runs"
    journal = out / run_id(load_config(None, SETS)) / JOURNAL_NAME
    try:
        edge = _edge(tmp, cloud.target, out)
        _wait_for(lambda: _journal_lines(journal) >= 6, what="6 results")
        edge.send_signal(signal.SIGKILL)
        edge.wait(30)
        done = _journal_lines(journal)
        assert done < N and not (journal.parent / "record.json").exists()
        edge = _edge(tmp, cloud.target, out)
        text, _ = edge.communicate(timeout=120)
        assert edge.returncode == 0, text
        assert f"{N - done} sent, {done} from the journal" in text, text
        client = CloudClient(cloud.target, token=TOKEN, insecure=True)
        counters = client.status().counters
        client.close()
        assert counters.computed == N  # in flight at the kill: replayed from the cache
    finally:
        cloud.kill(signal.SIGTERM)
    _check_exactly_once(out, tmp, monkeypatch)


def test_sigterm_drains_the_cloud(tmp):
    import grpc

    from semcom import wire
    from semcom.types import Erasure

    cloud = Cloud(tmp, delay=1.0, grace=10)
    client = CloudClient(cloud.target, token=TOKEN, insecure=True, retry_for_s=0)
    st = client.wait_until_serving(30)
    cfg = load_config(None, SETS)

    def header(name):
        return wire.make_header(key=f"t/caption/{name}", run_id="t", sample_id=name, image_id=name,
                                tasks=["caption"], question=None, original_hw=(16, 16),
                                model_id=st.model_id, codebook_id="",
                                settings=wire.agreed_settings(cfg), seed=0,
                                received=[Erasure(name, 0, 1, (16, 16))])

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("reply", client.submit(*header("a"))))
    t.start()
    _wait_for(lambda: client.status().counters.running == 1, what="a running request")
    cloud.proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: "draining" in cloud.output(), what="draining")
    late = CloudClient(cloud.target, token=TOKEN, insecure=True, retry_for_s=0)
    with pytest.raises(Exception) as exc:
        late.submit(*header("b"))
    assert "UNAVAILABLE" in str(exc.value)
    t.join(30)
    assert result["reply"].outputs["caption"]  # the in-flight request finished
    assert cloud.proc.wait(30) == 0
    log = cloud.output()
    assert "stopped: 1 requests, 1 ok" in log or "stopped: 2 requests, 1 ok" in log, log
    with pytest.raises(grpc.RpcError):
        client.status(timeout_s=2)
    client.close()
    late.close()
