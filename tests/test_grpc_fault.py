"""Faults: the cloud killed mid-run and restarted, the edge killed and rerun, SIGTERM.

With real processes (`slow`: each starts two or three processes that import torch, 15 to
60 s on the shared 2-core machine; `make test-slow`): the cloud SIGKILLed and restarted
on the same port mid-run, the edge SIGKILLed and rerun, SIGTERM draining a cloud
process. `semcom cloud serve` / `semcom edge run` run as subprocesses with the fakes of
benchmarks/bench_grpc.py installed (cheap model, fake link).

In the default suite (a few seconds): the same crash in one process (the cloud's server
stopped with no grace, its worker pool and idempotency cache thrown away, exactly what
the edge sees of a SIGKILL: the connection drops and the restarted cloud knows nothing),
and SIGTERM delivered to `semcom.commands.cloud.serve` running on this process's main thread.
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
from semcom.commands import runner  # noqa: E402
from semcom.config import load_config  # noqa: E402
from semcom.fingerprint import run_id  # noqa: E402

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
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_grpc",
            "cloud",
            "serve",
            "--insecure",
            "--listen",
            f"127.0.0.1:{port}",
            "--port-file",
            str(self.port_file),
            "--token-file",
            str(tmp / "token"),
            "--grace",
            str(grace),
            *_sets(),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=_env(SEMCOM_FAKE_DELAY=delay),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
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
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_grpc",
        "edge",
        "run",
        "--cloud",
        target,
        "--insecure",
        "--token-file",
        str(tmp / "token"),
        "--out",
        str(out),
        "-q",
        "--concurrency",
        "2",
        "--retry-for",
        "60",
        "--wait",
        "60",
        *_sets(),
    ]
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


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
    local = runner.run(
        load_config(None, [*SETS, f"run.out_dir={tmp / 'local'}", "run.progress=false"])
    )
    want = {
        r["sample_id"]: r
        for r in map(json.loads, (local.record_path.parent / "samples.jsonl").open())
    }
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


@pytest.mark.slow
def test_sigterm_drains_the_cloud_process(tmp):
    import grpc

    from semcom import wire
    from semcom.types import Erasure

    cloud = Cloud(tmp, delay=1.0, grace=10)
    client = CloudClient(cloud.target, token=TOKEN, insecure=True, retry_for_s=0)
    st = client.wait_until_serving(30)
    cfg = load_config(None, SETS)

    def header(name):
        return wire.make_header(
            key=f"t/caption/{name}",
            run_id="t",
            sample_id=name,
            image_id=name,
            tasks=["caption"],
            question=None,
            original_hw=(16, 16),
            model_id=st.model_id,
            codebook_id="",
            settings=wire.agreed_settings(cfg),
            seed=0,
            received=[Erasure(name, 0, 1, (16, 16))],
        )

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


# ------------------------------------------------------------------------------ fast variants


def test_cloud_crashed_and_restarted_mid_run_every_result_once(tmp, monkeypatch):
    from cloud.server import Limits, ServerThread
    from edge.client import GrpcTransport

    n = 24
    install_fakes(monkeypatch, n=n, loss=0.25, delay_s=0.05)
    cfg = load_config(None, [*SETS, f"run.out_dir={tmp / 'runs'}", "run.progress=false"])
    journal = tmp / JOURNAL_NAME
    srv = ServerThread(cfg, token=TOKEN, limits=Limits(workers=1))
    port = srv.port
    client = CloudClient(
        srv.target, token=TOKEN, insecure=True, backoff_s=(0.05, 0.3), retry_for_s=60
    )
    tr = GrpcTransport(cfg, client, journal=journal, concurrency=2)
    box = {}
    edge = threading.Thread(target=lambda: box.setdefault("res", runner.run(cfg, transport=tr)))
    edge.start()
    restarted = None
    try:
        _wait_for(
            lambda: _journal_lines(journal) >= 6 and srv.service._running >= 1,
            timeout=30,
            what="6 results and one running",
        )
        srv.crash()  # no drain, no grace, calls aborted, cache lost
        time.sleep(0.3)  # replies already received are journaled; the edge now retries
        done_before = _journal_lines(journal)
        assert done_before < n, "the run finished before the crash; slow the fake model"
        restarted = ServerThread(cfg, token=TOKEN, listen=f"127.0.0.1:{port}")
        edge.join(60)
        assert not edge.is_alive(), "the edge did not finish after the restart"
        computed_after = restarted.service.counters["computed"]
    finally:
        tr.close()
        if restarted is not None:
            restarted.stop(0.1)
    res = box["res"]
    assert res.ok, res.record.get("error")
    assert client.retries >= 1 and tr.stats["sent"] == n
    # nothing answered twice: the restarted cloud computed exactly what was not journaled
    assert computed_after == n - done_before
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == n
    rows = [json.loads(line) for line in (res.record_path.parent / "samples.jsonl").open()]
    assert sorted(r["sample_id"] for r in rows) == sorted(f"im{i}" for i in range(n))
    # ... and they are the in-process results
    install_fakes(monkeypatch, n=n, loss=0.25, delay_s=0.0)
    local = runner.run(
        load_config(None, [*SETS, f"run.out_dir={tmp / 'local'}", "run.progress=false"])
    )
    want = {
        r["sample_id"]: r
        for r in map(json.loads, (local.record_path.parent / "samples.jsonl").open())
    }
    for r in rows:
        w = want[r["sample_id"]]
        assert (r["outputs"], r["scores"], r["rate"]) == (w["outputs"], w["scores"], w["rate"])
    assert res.record["metrics"] == local.record["metrics"]


def test_sigterm_drains_serve_in_process(tmp, monkeypatch, caplog):
    """`semcom.commands.cloud.serve` (what `semcom cloud serve` runs) on the main thread; SIGTERM
    comes from another thread while a request runs: it finishes, a new one is refused
    (UNAVAILABLE), and serve returns 0 (health NOT_SERVING while draining is checked in
    tests/test_grpc_server.py: once the server stops, no call gets through to ask)."""
    import asyncio
    import logging

    import grpc

    from semcom import wire
    from semcom.commands.cloud import serve
    from semcom.types import Erasure

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    install_fakes(monkeypatch, delay_s=1.0)
    cfg = load_config(None, SETS)
    port_file = tmp / "port"
    seen: dict = {}

    def header(client, name):
        st = client.status()
        return wire.make_header(
            key=f"t/caption/{name}",
            run_id="t",
            sample_id=name,
            image_id=name,
            tasks=["caption"],
            question=None,
            original_hw=(16, 16),
            model_id=st.model_id,
            codebook_id="",
            settings=wire.agreed_settings(cfg),
            seed=0,
            received=[Erasure(name, 0, 1, (16, 16))],
        )

    def drive():
        try:
            _wait_for(port_file.exists, timeout=30, what="the port file")
            target = f"127.0.0.1:{int(port_file.read_text())}"
            client = CloudClient(target, token=TOKEN, insecure=True, retry_for_s=0)
            client.wait_until_serving(30)
            seen["health_before"] = client.health()
            inflight = threading.Thread(
                target=lambda: seen.setdefault("reply", client.submit(*header(client, "a")))
            )
            inflight.start()
            _wait_for(
                lambda: client.status().counters.running == 1, timeout=10, what="a running request"
            )
            late_header = header(client, "b")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the request runs for 1 s: still in flight
            try:
                client.submit(*late_header)
                seen["late"] = "OK"
            except Exception as exc:
                seen["late"] = getattr(exc, "code_name", repr(exc))
            seen["inflight_at_late"] = inflight.is_alive()
            inflight.join(30)
            client.close()
        except BaseException as exc:
            seen["error"] = exc
            os.kill(os.getpid(), signal.SIGTERM)  # never leave serve() running

    caplog.set_level(logging.INFO, logger="semcom.cloud")
    t = threading.Thread(target=drive)
    t.start()
    code = asyncio.run(
        serve(cfg, listen="127.0.0.1:0", token=TOKEN, grace=10, port_file=str(port_file))
    )
    t.join(30)
    assert "error" not in seen, seen.get("error")
    assert code == 0
    assert seen["health_before"] == "SERVING"
    assert seen["late"] == "UNAVAILABLE" and seen["inflight_at_late"]
    assert "draining: 1 requests in flight" in caplog.text
    assert "stopped: 1 requests, 1 ok" in caplog.text, caplog.text
    assert seen["reply"].outputs["caption"]  # the in-flight request finished
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler removed again
    with pytest.raises(grpc.RpcError):  # and the server is gone
        CloudClient(f"127.0.0.1:{int(port_file.read_text())}", token=TOKEN, insecure=True).status(
            timeout_s=1
        )
