"""Dynamic batching in the cloud: concurrent requests share a model call, with outputs
identical to unbatched ones; per-task limits; a bad request in a batch fails alone."""

import sys
import threading
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_grpc_server import TOKEN, _cfg, _jpeg_desc, _msgs, _submit

from benchmarks.bench_grpc import install_fakes
from cloud.limits import Limits
from cloud.server import ServerThread
from semcom import wire
from semcom.stages.envelope import Envelope
from semcom.types import Description, Erasure, RateLedger

TIMING = ("cloud_s", "cloud_decode_s")


def _requests(n=12):
    out = []
    for i in range(n):
        rec = [Erasure(f"im{i}", 0, 1, (96, 96))] if i % 4 == 3 else [_jpeg_desc(i % 6)]
        tasks = ["vqa"] if i % 2 else ["caption"]
        q = "is it bright?" if tasks == ["vqa"] else None
        out.append(
            _msgs(rec, key=f"r/{tasks[0]}/b{i}", tasks=tasks, question=q, image_id=f"im{i % 6}")
        )
    return out


def _answers(srv, reqs):
    out = [None] * len(reqs)

    def one(i):
        r = wire.reply_to_dict(_submit(srv.target, reqs[i]))
        r["info"] = {k: v for k, v in r["info"].items() if k not in TIMING}
        out[i] = r

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(reqs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_batched_outputs_equal_unbatched_and_batches_form(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.02)
    reqs = _requests()
    with ServerThread(_cfg(), token=TOKEN, limits=Limits(max_batch=1)) as srv:
        single = _answers(srv, reqs)
        s1 = srv.service.metrics.summary()
    with ServerThread(_cfg(), token=TOKEN, limits=Limits(max_batch=8, max_wait_ms=300)) as srv:
        batched = _answers(srv, reqs)
        s8 = srv.service.metrics.summary()
        assert srv.service.counters["computed"] == len(reqs)
    assert batched == single
    assert all(r["outputs"] for r in batched)
    assert s1["batch_mean"] == 1.0 and s1["batch_count"] == len(reqs) + 0
    # caption and vqa are separate groups: at most 6 each, so at least 2 model calls
    assert 2 <= s8["batch_count"] < len(reqs) and s8["batch_mean"] > 1.5, s8


def test_per_task_batch_limits():
    lim = Limits(max_batch=8, max_wait_ms=5, task_batch=(("vqa", 2, 0.0),))
    assert lim.batching(["caption"]) == (8, 0.005)
    assert lim.batching(["vqa"]) == (2, 0.0)
    assert lim.batching(["caption", "vqa"]) == (2, 0.0)


def test_a_bad_request_in_a_batch_fails_alone(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.02)
    env = Envelope("jpeg", 0, 1, 96, 96)
    data, led = env.wrap(b"not a jpeg at all", RateLedger())
    bad = _msgs([Description("im0", 0, 1, data, (96, 96), led)], key="r/caption/bad")
    reqs = [_msgs(key=f"r/caption/g{i}") for i in range(5)] + [bad]
    codes = {}

    def one(i):
        try:
            _submit(srv.target, reqs[i])
            codes[i] = "OK"
        except grpc.RpcError as exc:
            codes[i] = exc.code().name

    with ServerThread(_cfg(), token=TOKEN, limits=Limits(max_batch=8, max_wait_ms=300)) as srv:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(reqs))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert codes[5] == "INVALID_ARGUMENT" and all(codes[i] == "OK" for i in range(5)), codes
