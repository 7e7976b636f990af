"""The edge side: the gRPC transport gives the in-process results; journal, resume, retries.

Fakes (benchmarks/bench_grpc.py) stand in for the models, the link and the scores, so
these tests check the daemons' plumbing: tests/test_grpc_real.py does the same with the
real pieces.
"""

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_grpc import install_fakes
from cloud.server import ServerThread
from edge.client import JOURNAL_NAME, CloudClient, CloudError, GrpcTransport
from semcom import wire
from semcom.commands import runner
from semcom.config import load_config
from semcom.errors import SemcomError

TOKEN = "edge-test-token-" + "z" * 20
TIMING = ("edge_s", "cloud_s")


def _cfg(out, *extra):
    return load_config(
        None,
        [
            f"run.out_dir={out}",
            "edge.method=jpeg",
            "edge.image.quality=60",
            "run.batch_size=5",
            "run.progress=false",
            "cloud.tasks=[caption, vqa]",
            *extra,
        ],
    )


def _rows(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        for k in TIMING:
            r.pop(k, None)
    return rows


def _measured(rec):
    out = {
        k: rec[k]
        for k in (
            "num_samples",
            "metrics",
            "rate",
            "rate_by_task",
            "tokens",
            "link",
            "run_id",
            "config",
            "label",
            "method",
            "tasks",
        )
    }
    out["config"] = {**out["config"], "run": {**out["config"]["run"], "out_dir": None}}
    return out


@pytest.fixture
def fakes(monkeypatch):
    return install_fakes(monkeypatch, n=12, loss=0.3)


def _transport(cfg, srv, **kw):
    client = CloudClient(srv.target, token=TOKEN, insecure=True, backoff_s=(0.05, 0.2))
    return GrpcTransport(cfg, client, **kw)


@pytest.mark.parametrize("tasks", ["[caption]", "[vqa]"])
def test_daemons_give_exactly_the_in_process_results(tmp_path, fakes, tasks):
    local = runner.run(_cfg(tmp_path / "local", f"cloud.tasks={tasks}"))
    assert local.ok, local.record.get("error")
    cfg = _cfg(tmp_path / "daemon", f"cloud.tasks={tasks}")
    with ServerThread(_cfg(tmp_path), token=TOKEN) as srv:
        tr = _transport(cfg, srv, journal=tmp_path / "j.jsonl")
        remote = runner.run(cfg, transport=tr)
        tr.close()
    assert remote.ok, remote.record.get("error")
    assert remote.record["link"]["erasures"] > 0  # the erasure markers crossed the wire
    a, b = (
        _rows(local.record_path.parent / "samples.jsonl"),
        _rows(remote.record_path.parent / "samples.jsonl"),
    )
    assert len(a) == len(b) > 0 and a == b
    assert _measured(local.record) == _measured(remote.record)
    assert tr.stats["sent"] == len(b) and srv.service.counters["computed"] == len(b)


def test_a_killed_edge_resumes_from_its_journal_exactly_once(tmp_path, fakes, monkeypatch):
    cfg = _cfg(tmp_path, "cloud.tasks=[caption]")
    with ServerThread(cfg, token=TOKEN) as srv:
        journal = tmp_path / JOURNAL_NAME
        tr = _transport(cfg, srv, journal=journal, concurrency=1)
        real_submit, calls = tr.client.submit, []

        def dying_submit(header, payloads):
            if len(calls) == 7:
                raise KeyboardInterrupt  # the edge dies mid-run (like SIGKILL, no cleanup)
            calls.append(header.sample_id)
            return real_submit(header, payloads)

        monkeypatch.setattr(tr.client, "submit", dying_submit)
        with pytest.raises(KeyboardInterrupt):
            runner.run(cfg, transport=tr)
        assert len(journal.read_text().splitlines()) == 7
        # a torn last line (killed mid-append) is repaired on open
        with open(journal, "a") as fh:
            fh.write('{"key": "torn')
        tr2 = _transport(cfg, srv, journal=journal)
        res = runner.run(cfg, transport=tr2)
        tr2.close()
        assert res.ok, res.record.get("error")
        assert tr2.stats["from_journal"] == 7 and tr2.stats["sent"] == 12 - 7
        keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
        assert len(keys) == len(set(keys)) == 12
        rows = _rows(res.record_path.parent / "samples.jsonl")
        assert sorted(r["sample_id"] for r in rows) == sorted(f"im{i}" for i in range(12))
        assert srv.service.counters["computed"] == 12  # nothing computed twice
    local = runner.run(_cfg(tmp_path / "local", "cloud.tasks=[caption]"))
    assert _rows(local.record_path.parent / "samples.jsonl") == rows


def test_unavailable_cloud_is_retried_until_it_comes_up(tmp_path, fakes):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(tmp_path, "cloud.tasks=[caption]")
    started = {}

    def start_late():
        time.sleep(1.0)
        started["srv"] = ServerThread(cfg, token=TOKEN, listen=f"127.0.0.1:{port}")

    t = threading.Thread(target=start_late)
    t.start()
    client = CloudClient(f"127.0.0.1:{port}", token=TOKEN, insecure=True, backoff_s=(0.05, 0.3))
    try:
        st = client.wait_until_serving(20)
        header, payloads = wire.make_header(
            key="k/caption/s",
            run_id="k",
            sample_id="s",
            image_id="i",
            tasks=["caption"],
            question=None,
            original_hw=(8, 8),
            model_id=st.model_id,
            codebook_id="",
            settings=wire.agreed_settings(cfg),
            seed=0,
            received=[__import__("semcom.types", fromlist=["Erasure"]).Erasure("i", 0, 1, (8, 8))],
        )
        assert client.submit(header, payloads).outputs["caption"]
    finally:
        t.join()
        client.close()
        started["srv"].stop(0.1)
    # nothing listening and a short budget: UNAVAILABLE after retries
    client = CloudClient(
        f"127.0.0.1:{port}", token=TOKEN, insecure=True, retry_for_s=0.5, backoff_s=(0.05, 0.1)
    )
    with pytest.raises(CloudError, match="UNAVAILABLE"):
        client.submit(header, payloads)
    assert client.retries >= 2


def test_connect_checks_what_the_cloud_runs(tmp_path, fakes):
    with ServerThread(_cfg(tmp_path), token=TOKEN) as srv:
        with pytest.raises(CloudError, match="edge.image.quality differs"):
            _transport(_cfg(tmp_path, "edge.image.quality=90"), srv).connect()
        with pytest.raises(CloudError, match="does not serve task.s. retrieval"):
            _transport(_cfg(tmp_path, "cloud.tasks=[caption, retrieval]"), srv).connect()
        with pytest.raises(CloudError, match="model id differs"):
            _transport(_cfg(tmp_path), srv, expect_model_id="another").connect()
        bad = CloudClient(srv.target, token="wrong-token-" + "q" * 20, insecure=True)
        with pytest.raises(CloudError, match="UNAUTHENTICATED"):
            GrpcTransport(_cfg(tmp_path), bad, wait_s=1).connect()


def test_edge_and_cloud_commands(tmp_path, fakes, capsys, monkeypatch):
    from semcom.commands.cloud import main as cloud_main
    from semcom.commands.edge import main as edge_main

    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    sets = [
        "--set",
        "edge.method=jpeg",
        "--set",
        "edge.image.quality=60",
        "--set",
        "cloud.tasks=[caption]",
    ]
    with ServerThread(_cfg(tmp_path, "cloud.tasks=[caption]"), token=TOKEN) as srv:
        assert (
            cloud_main(["status", "--cloud", srv.target, "--insecure", "--token-file", str(tok)])
            == 0
        )
        assert "SERVING" in capsys.readouterr().out
        argv = [
            "run",
            "--cloud",
            srv.target,
            "--insecure",
            "--token-file",
            str(tok),
            "--out",
            str(tmp_path / "runs"),
            "-q",
            *sets,
        ]
        assert edge_main(argv) == 0
        out = capsys.readouterr().out
        assert "12 sent, 0 from the journal" in out
        rec = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
        assert rec["status"] == "ok" and rec["transport"]["cloud_model_id"] == "fake-backend-0001"
        tr = rec["transport"]  # latency percentiles, and the transport's part of them
        assert tr["answered"] == 12 and "transport (latency minus cloud time) p50" in out
        assert 0 < tr["transport_ms"]["p50"] <= tr["latency_ms"]["p50"] <= tr["latency_ms"]["p99"]
        assert edge_main(argv) == 0 and "skipped" in capsys.readouterr().out
        assert edge_main(argv + ["--overwrite"]) == 0
        assert "12 sent" in capsys.readouterr().out
        assert srv.service.counters["replayed"] == 12  # the cloud's cache answered the redo
        # a folder of images (the real folder loader)
        from PIL import Image

        from semcom.data import load_samples

        monkeypatch.setattr(
            runner,
            "load_samples",
            lambda cfg, task: load_samples(cfg.data, task, seed=cfg.run.seed),
        )
        img_dir = tmp_path / "imgs"
        img_dir.mkdir()
        for i in range(3):
            Image.new("RGB", (40 + i, 30), (80 * i, 20, 200)).save(img_dir / f"p{i}.png")
        (img_dir / "captions.json").write_text(
            json.dumps({f"p{i}.png": ["dark"] for i in range(3)})
        )
        assert edge_main(argv + ["--images", str(img_dir)]) == 0
        assert "3 sent" in capsys.readouterr().out
        with pytest.raises(SemcomError, match=r"q\.json not found"):
            edge_main(argv + ["--images", str(img_dir), "--questions", str(tmp_path / "q.json")])


class _Rpc(__import__("grpc").RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"fake {self._code.name}"

    def trailing_metadata(self):
        return ()


def test_small_transmissions_go_as_one_message_large_ones_as_a_stream(tmp_path, fakes):
    """SubmitOne when the descriptions fit one chunk, a Submit stream otherwise, the same
    answer either way; a cloud without SubmitOne (UNIMPLEMENTED) gets streams."""
    import grpc

    from benchmarks.bench_grpc import caption_request, fake_samples
    from semcom.stages.envelope import Envelope
    from semcom.stages.image import PillowCodec
    from semcom.types import Description, RateLedger

    cfg = _cfg(tmp_path, "cloud.tasks=[caption]")
    with ServerThread(cfg, token=TOKEN) as srv:
        st = srv.service.status()
        s = fake_samples(1)[0]
        p = PillowCodec("jpeg", 60).encode(s.image)
        data, led = Envelope("jpeg", 0, 1, 96, 96).wrap(p.data, p.ledger)
        desc = Description(s.image_id, 0, 1, data, (96, 96), RateLedger().merged(led))

        def submit(client, key):
            header, payloads = caption_request(key, [desc], st.model_id, cfg)
            return client.submit(header, payloads).outputs["caption"]

        one = CloudClient(srv.target, token=TOKEN, insecure=True)
        streamed = CloudClient(srv.target, token=TOKEN, insecure=True, chunk_bytes=64)
        assert submit(one, "r/caption/a") == submit(streamed, "r/caption/b")
        calls = srv.service.metrics.summary()["by_status"]
        assert calls["SubmitOne:OK"] == 1 and calls["Submit:OK"] == 1, calls

        def old_cloud(*a, **kw):
            raise _Rpc(grpc.StatusCode.UNIMPLEMENTED)

        one.stub.SubmitOne = old_cloud
        assert submit(one, "r/caption/c") and not one._one_message
        assert srv.service.metrics.summary()["by_status"]["Submit:OK"] == 2
        one.close()
        streamed.close()


def test_which_codes_the_edge_retries(tmp_path):
    """UNAVAILABLE and CANCELLED (a stopping cloud cancels its calls; either can reach the
    edge, depending on how far the stream got) are retried with the same request;
    INVALID_ARGUMENT is not."""
    import grpc

    from protos import semcom_pb2 as pb

    client = CloudClient("127.0.0.1:9", token=TOKEN, insecure=True, backoff_s=(0.01, 0.02))
    header = pb.SubmitHeader(idempotency_key="k/caption/s", sample_id="s")
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        calls = []

        class Stub:
            def Submit(self, messages, **kw):
                calls.append(list(messages)[0].header.idempotency_key)
                if len(calls) < 3:
                    raise _Rpc(code)
                return pb.SubmitReply(idempotency_key="k/caption/s")

            def SubmitOne(self, bundle, **kw):  # small transmissions: one message
                return self.Submit(bundle.parts, **kw)

        client.stub = Stub()
        assert client.submit(header, []).idempotency_key == "k/caption/s"
        assert calls == ["k/caption/s"] * 3, code
    calls = []

    class Refusing:
        def Submit(self, messages, **kw):
            calls.append(1)
            raise _Rpc(grpc.StatusCode.INVALID_ARGUMENT)

        SubmitOne = Submit

    client.stub = Refusing()
    with pytest.raises(CloudError, match="INVALID_ARGUMENT"):
        client.submit(header, [])
    assert calls == [1] and client.retries == 4
    client.close()
