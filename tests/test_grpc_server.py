"""The cloud daemon's service in process: auth, TLS, health, bad input, limits, shutdown.

The cloud is cheap (JPEG method, the fake backend of benchmarks/bench_grpc.py) so
these tests exercise the daemon, not a model.
"""

import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_grpc import MODEL_ID, fake_backend, fake_samples, install_fakes
from cloud.server import Limits, ServerThread, ServerTLS
from protos import semcom_pb2 as pb
from protos import semcom_pb2_grpc as pb_grpc
from semcom import security, wire
from semcom.config import load_config
from semcom.stages.envelope import Envelope
from semcom.stages.image import PillowCodec
from semcom.types import Description, Erasure, RateLedger

TOKEN = "test-token-" + "x" * 24
MD = security.bearer_metadata(TOKEN)


def _cfg(*extra):
    return load_config(
        None, ["edge.method=jpeg", "edge.image.quality=75", "cloud.tasks=[caption, vqa]", *extra]
    )


@pytest.fixture
def fakes(monkeypatch):
    return install_fakes(monkeypatch, delay_s=0.0)


@pytest.fixture
def server(fakes):
    with ServerThread(_cfg(), token=TOKEN) as srv:
        yield srv


def _jpeg_desc(i=0, hw=(96, 96), method="jpeg"):
    img = fake_samples(i + 1)[i].image
    p = PillowCodec("jpeg", 75).encode(img)
    data, led = Envelope(method, 0, 1, *hw).wrap(p.data, p.ledger)
    return Description(f"im{i}", 0, 1, data, hw, led)


def _header(received=None, *, key="r/caption/s0", cfg=None, **kw):
    cfg = cfg or _cfg()
    args = dict(
        key=key,
        run_id="r",
        sample_id=key.rsplit("/", 1)[-1],
        image_id="im0",
        tasks=["caption"],
        question=None,
        original_hw=(96, 96),
        model_id=MODEL_ID,
        codebook_id="",
        settings=wire.agreed_settings(cfg),
        seed=0,
        received=received if received is not None else [_jpeg_desc()],
        link_cfg=cfg.channel,
    )
    args.update(kw)
    return wire.make_header(**args)


def _msgs(received=None, **kw):
    header, payloads = _header(received, **kw)
    return list(wire.request_messages(header, payloads))


def _stub(target, creds=None):
    ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    return ch, pb_grpc.EdgeCloudStub(ch)


def _submit(target, msgs, md=MD, timeout=10, creds=None):
    ch, stub = _stub(target, creds)
    with ch:
        return stub.Submit(iter(msgs), timeout=timeout, metadata=md)


def _code(fn):
    with pytest.raises(grpc.RpcError) as exc:
        fn()
    return exc.value.code(), exc.value.details() or ""


def _health(target, md=MD, creds=None):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with ch:
        r = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=wire.SERVICE), timeout=5, metadata=md
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


# ------------------------------------------------------------------------------ basics


def test_submit_answers_with_outputs_and_exact_info(server):
    reply = _submit(server.target, _msgs())
    assert reply.idempotency_key == "r/caption/s0" and not reply.replayed
    assert reply.outputs["caption"].split()[0] in ("bright", "dark")
    info = wire.reply_to_dict(reply)["info"]
    assert info["tokens_to_model"] == 4 and info["descriptions_received"] == 1
    # an erased image is concealed (mid-grey) and still answered
    r2 = _submit(server.target, _msgs([Erasure("im0", 0, 1, (96, 96))], key="r/caption/s1"))
    assert r2.descriptions_received == 0 and r2.outputs["caption"].startswith("bright")
    st = server.service.status()
    assert st.counters.ok == 2 and st.counters.computed == 2 and st.counters.erasures == 1


# ------------------------------------------------------------------------------ security


def test_every_call_needs_the_token(server):
    t = server.target
    for md in (
        (),
        security.bearer_metadata("wrong-token-" + "y" * 20),
        (("authorization", TOKEN),),
    ):
        assert _code(lambda: _submit(t, _msgs(), md=md))[0] == grpc.StatusCode.UNAUTHENTICATED
        ch, stub = _stub(t)
        with ch:
            code, _ = _code(lambda: stub.Status(pb.StatusRequest(), timeout=5, metadata=md))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: _health(t, md=md))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert server.service.counters["unauthenticated"] == 9
    assert server.service.counters["requests"] == 0  # rejected before the servicer
    assert _health(t) == "SERVING" and _submit(t, _msgs()).outputs


def test_open_health_lets_probes_in_but_nothing_else(fakes):
    with ServerThread(_cfg(), token=TOKEN, open_health=True) as srv:
        assert _health(srv.target, md=()) == "SERVING"
        assert (
            _code(lambda: _submit(srv.target, _msgs(), md=()))[0] == grpc.StatusCode.UNAUTHENTICATED
        )


def test_tls_and_mutual_tls(fakes, tmp_path):
    pki = security.make_dev_pki(tmp_path)
    ca = security.channel_credentials(pki["ca"])
    tls = ServerTLS(str(pki["server_cert"]), str(pki["server_key"]))
    with ServerThread(_cfg(), token=TOKEN, tls=tls) as srv:
        assert _submit(srv.target, _msgs(), creds=ca).outputs
        assert (
            _code(lambda: _submit(srv.target, _msgs(), md=(), creds=ca))[0]
            == grpc.StatusCode.UNAUTHENTICATED
        )
        # plaintext to a TLS server never gets through
        assert (
            _code(lambda: _submit(srv.target, _msgs(), timeout=3))[0] == grpc.StatusCode.UNAVAILABLE
        )
        # a CA that did not sign the server's certificate is refused
        other = security.make_dev_pki(tmp_path / "other")
        bad = security.channel_credentials(other["ca"])
        assert (
            _code(lambda: _submit(srv.target, _msgs(), creds=bad, timeout=3))[0]
            == grpc.StatusCode.UNAVAILABLE
        )
    mtls = ServerTLS(str(pki["server_cert"]), str(pki["server_key"]), str(pki["ca"]))
    with ServerThread(_cfg(), token=TOKEN, tls=mtls) as srv:
        assert (
            _code(lambda: _submit(srv.target, _msgs(), creds=ca, timeout=3))[0]
            == grpc.StatusCode.UNAVAILABLE
        )  # no client certificate
        client = security.channel_credentials(pki["ca"], pki["client_cert"], pki["client_key"])
        assert _submit(srv.target, _msgs(), creds=client).outputs


def test_plaintext_only_on_loopback_and_tokens_must_be_real(fakes, tmp_path, monkeypatch):
    with pytest.raises(security.SecurityError, match="refusing to serve plaintext"):
        security.check_bind("0.0.0.0:50051", tls=False)
    security.check_bind("0.0.0.0:50051", tls=True)
    security.check_bind("[::1]:1", tls=False)
    monkeypatch.delenv(security.TOKEN_ENV, raising=False)
    with pytest.raises(security.SecurityError, match="no bearer token"):
        security.load_token(None)
    (tmp_path / "t").write_text("short\n")
    with pytest.raises(security.SecurityError, match="too short"):
        security.load_token(tmp_path / "t")
    monkeypatch.setenv(security.TOKEN_ENV, TOKEN)
    assert security.load_token(None) == TOKEN


def test_serve_refuses_unsafe_setups(tmp_path, capsys, monkeypatch):
    from semcom.commands.cli import main

    monkeypatch.delenv(security.TOKEN_ENV, raising=False)
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    cases = [
        (["--insecure"], "no bearer token"),
        (["--token-file", str(tok)], "no TLS: give --tls-cert and --tls-key"),
        (
            ["--insecure", "--listen", "0.0.0.0:0", "--token-file", str(tok)],
            "refusing to serve plaintext on 0.0.0.0:0",
        ),
        (["--tls-cert", "x.pem", "--token-file", str(tok)], "needs both --tls-cert"),
        (
            [
                "--tls-cert",
                str(tok),
                "--tls-key",
                str(tmp_path / "missing.key"),
                "--token-file",
                str(tok),
            ],
            "cannot read the TLS key",
        ),
    ]
    for extra, needle in cases:
        assert main(["cloud", "serve", *extra]) == 2
        assert needle in capsys.readouterr().err, needle


# ------------------------------------------------------------------------------ bad input


def _garbage_jpeg():
    body = b"\xff\xd8\xff\xe0 not really a jpeg"
    data, led = Envelope("jpeg", 0, 1, 96, 96).wrap(
        body, RateLedger().add("jpeg", "payload", 8 * len(body))
    )
    return Description("im0", 0, 1, data, (96, 96), led)


def _raw(data, ledger_bits=None):
    return Description(
        "im0", 0, 1, data, (96, 96), RateLedger().add("x", "payload", ledger_bits or 8 * len(data))
    )


def _with_header(mutate, received=None):
    header, payloads = _header(received)
    mutate(header)
    return list(wire.request_messages(header, payloads))


INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECOND = grpc.StatusCode.FAILED_PRECONDITION

BAD_INPUTS = {
    "wrong protocol version": (
        lambda: _with_header(lambda h: setattr(h, "protocol", 9)),
        INVALID,
        "unsupported protocol version 9",
    ),
    "wrong envelope version": (
        lambda: _msgs([_raw(bytes([(2 << 5) | 2, 0, 96, 96]) + b"x")]),
        INVALID,
        "unsupported envelope version 2",
    ),
    "garbage bytes": (
        lambda: _msgs([_raw(b"\x00garbage\x00\xff")]),
        INVALID,
        "unsupported envelope version 0",
    ),
    "garbage after a valid envelope": (
        lambda: _msgs([_garbage_jpeg()]),
        INVALID,
        "jpeg bytes do not decode",
    ),
    "another method's bytes": (
        lambda: _msgs([_jpeg_desc(method="webp")]),
        INVALID,
        "carries method 'webp'",
    ),
    "inconsistent shapes": (
        lambda: _msgs(
            [Description("im0", 0, 1, _jpeg_desc(hw=(64, 80)).data, (96, 96), _jpeg_desc().ledger)]
        ),
        INVALID,
        "envelope says 64x80",
    ),
    "inconsistent counts": (
        lambda: _with_header(
            lambda h: h.descriptions.append(pb.DescriptionHeader(index=1, count=3, erased=True))
        ),
        INVALID,
        "inconsistent description counts",
    ),
    "index out of range": (
        lambda: _with_header(lambda h: setattr(h.descriptions[0], "index", 5)),
        INVALID,
        "index 5 out of range for count 1",
    ),
    "ledger does not add up": (
        lambda: _msgs([_raw(_jpeg_desc().data, 8)]),
        INVALID,
        "rate ledger totals 8 bits",
    ),
    "truncated stream": (lambda: _msgs()[:-1], INVALID, "truncated stream: no end marker"),
    "ends mid-description": (
        lambda: [m for m in _msgs() if m.WhichOneof("part") != "chunk"],
        INVALID,
        "stream ended mid-description",
    ),
    "no header": (lambda: _msgs()[1:], INVALID, "the first message must be the header"),
    "empty stream": (lambda: [], INVALID, "empty stream"),
    "oversized chunk": (
        lambda: [
            _msgs()[0],
            pb.SubmitRequest(
                chunk=pb.Chunk(index=0, offset=0, data=b"\0" * (wire.MAX_CHUNK_BYTES + 1))
            ),
        ],
        INVALID,
        "exceeds the chunk limit of 1048576 bytes",
    ),
    "oversized stream": (
        lambda: _msgs([_raw(b"\x22\x00\x60\x60" + b"\0" * (65 * wire.MIB))]),
        INVALID,
        "more than this cloud's limit of 67108864",
    ),
    "model id the cloud does not have": (
        lambda: _msgs(model_id="other-model"),
        PRECOND,
        "model id differs: the edge expects other-model",
    ),
    "codebook the cloud does not have": (
        lambda: _msgs(codebook_id="abc123"),
        PRECOND,
        "codebook id differs: the edge uses abc123",
    ),
    "config setting differs": (
        lambda: _msgs(settings=wire.agreed_settings(_cfg("edge.image.quality=90"))),
        PRECOND,
        "edge.image.quality differs",
    ),
    "retrieval from a cloud without it": (
        lambda: _msgs(tasks=["retrieval"]),
        PRECOND,
        "task 'retrieval' is not among this cloud's tasks",
    ),
    "unknown task": (lambda: _msgs(tasks=["dance"]), INVALID, "unknown task 'dance'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_the_daemon_keeps_serving(server, case):
    build, code, needle = BAD_INPUTS[case]
    got, details = _code(lambda: _submit(server.target, build(), timeout=30))
    assert got == code and needle in details, (got, details)
    assert _submit(server.target, _msgs(key=f"r/caption/after-{len(case)}")).outputs
    counters = server.service.counters
    assert counters[code.name.lower()] == 1 and counters["ok"] == 1


def test_message_over_the_grpc_limit_is_resource_exhausted(server):
    huge = [
        _msgs()[0],
        pb.SubmitRequest(chunk=pb.Chunk(index=0, offset=0, data=b"\0" * (5 * wire.MIB))),
    ]
    ch = grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", -1)])
    with ch:
        stub = pb_grpc.EdgeCloudStub(ch)
        code, details = _code(lambda: stub.Submit(iter(huge), timeout=10, metadata=MD))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details
    assert _submit(server.target, _msgs()).outputs


# ------------------------------------------------------------------------------ idempotency


def test_a_retry_is_replayed_not_recomputed_and_keys_bind_content(server):
    first = _submit(server.target, _msgs(key="r/caption/k1"))
    again = _submit(server.target, _msgs(key="r/caption/k1"))
    assert again.replayed and not first.replayed
    assert dict(again.outputs) == dict(first.outputs) and again.info_json == first.info_json
    c = server.service.counters
    assert c["computed"] == 1 and c["replayed"] == 1
    code, details = _code(
        lambda: _submit(server.target, _msgs([_jpeg_desc(3)], key="r/caption/k1"))
    )
    assert code == PRECOND and "already used for a different request" in details


def test_concurrent_duplicates_are_computed_once(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.4)
    with ServerThread(_cfg(), token=TOKEN, limits=Limits(workers=2)) as srv:
        out = []
        threads = [
            threading.Thread(
                target=lambda: out.append(_submit(srv.target, _msgs(key="r/caption/dup")))
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(out) == 3 and sum(r.replayed for r in out) == 2
        assert len({r.outputs["caption"] for r in out}) == 1
        assert srv.service.counters["computed"] == 1


# ------------------------------------------------------------------------------ limits


def test_full_queue_answers_resource_exhausted_and_the_edge_retries(monkeypatch):
    from edge.client import CloudClient

    install_fakes(monkeypatch, delay_s=0.3)
    with ServerThread(
        _cfg(), token=TOKEN, limits=Limits(workers=1, max_queue=1, max_batch=1)
    ) as srv:
        codes, trailing = [], []

        def raw(i):
            try:
                _submit(srv.target, _msgs(key=f"r/caption/q{i}"))
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                trailing.append(dict(exc.trailing_metadata() or ()))

        threads = [threading.Thread(target=raw, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes.count("OK") >= 2 and codes.count("RESOURCE_EXHAUSTED") >= 1, codes
        assert all("semcom-retry-after-ms" in t for t in trailing)
        assert srv.service.counters["resource_exhausted"] == codes.count("RESOURCE_EXHAUSTED")
        # the edge client backs off and gets every answer
        client = CloudClient(srv.target, token=TOKEN, insecure=True, backoff_s=(0.05, 0.5))
        replies = []
        threads = [
            threading.Thread(
                target=lambda i=i: replies.append(client.submit(*_header(key=f"r/caption/e{i}")))
            )
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.close()
        assert len(replies) == 4 and client.retries >= 1
        assert _settles(lambda: srv.service.status().counters.in_flight == 0)


def _settles(cond, timeout=2.0):
    """The server finishes its bookkeeping just after the client has its answer."""
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            return False
        time.sleep(0.01)
    return True


def test_stalled_or_abandoned_streams_give_their_admission_back(monkeypatch):
    install_fakes(monkeypatch)
    limits = Limits(workers=1, max_queue=0, max_batch=1, stream_timeout_s=0.5)
    with ServerThread(_cfg(), token=TOKEN, limits=limits) as srv:
        msgs = _msgs()

        def stalled(seconds):
            yield msgs[0]
            time.sleep(seconds)
            yield from msgs[1:]

        # the client gives up mid-stream (its deadline), twice: the slot comes back each time
        for _ in range(2):
            code, _ = _code(lambda: _submit(srv.target, stalled(1.0), timeout=0.3))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert _settles(lambda: srv.service._in_flight == 0)
        # a client that stalls longer than the cloud's stream timeout
        code, details = _code(lambda: _submit(srv.target, stalled(1.0), timeout=10))
        assert code == INVALID and "stream timeout" in details
        assert _settles(lambda: srv.service._in_flight == 0)
        assert _submit(srv.target, _msgs(key="r/caption/fine")).outputs  # the one slot is free


def test_deadlines_on_both_ends_and_the_result_is_kept_for_a_retry(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.6)
    with ServerThread(_cfg(), token=TOKEN, limits=Limits(request_timeout_s=0.2)) as srv:
        code, details = _code(lambda: _submit(srv.target, _msgs(key="r/caption/d1"), timeout=5))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "no result within 0.2 s" in details
        code, _ = _code(lambda: _submit(srv.target, _msgs(key="r/caption/d2"), timeout=0.1))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED  # the client's own deadline
        time.sleep(1.5)  # both finish on the worker and land in the cache
        again = _submit(srv.target, _msgs(key="r/caption/d1"), timeout=5)
        assert again.replayed
        assert srv.service.counters["deadline_exceeded"] >= 1


# ------------------------------------------------------------------------------ lifecycle


def test_health_transitions_starting_serving_draining(monkeypatch):
    install_fakes(monkeypatch)
    gate = threading.Event()

    def loader():
        gate.wait(10)
        return fake_backend()

    srv = ServerThread(_cfg(), token=TOKEN, load=False, loader=loader)
    try:
        assert _health(srv.target) == "NOT_SERVING"
        loading = srv.submit(srv.server.load())
        time.sleep(0.1)
        st = _status(srv.target)
        assert st.state == pb.StatusReply.STARTING and st.model_id == ""
        code, details = _code(lambda: _submit(srv.target, _msgs()))
        assert code == grpc.StatusCode.UNAVAILABLE and "loading its model" in details
        gate.set()
        loading.result(10)
        assert _health(srv.target) == "SERVING"
        assert _status(srv.target).state == pb.StatusReply.SERVING
        assert _submit(srv.target, _msgs()).outputs
        srv.call(srv.service.drain())
        assert _health(srv.target) == "NOT_SERVING"
        assert _status(srv.target).state == pb.StatusReply.DRAINING
        code, details = _code(lambda: _submit(srv.target, _msgs(key="r/caption/late")))
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
    finally:
        srv.stop(0.5)


def test_a_model_that_fails_to_load_is_reported(monkeypatch):
    install_fakes(monkeypatch)

    def loader():
        raise RuntimeError("weights missing")

    srv = ServerThread(_cfg(), token=TOKEN, load=False, loader=loader)
    try:
        with pytest.raises(RuntimeError):
            srv.call(srv.server.load())
        st = _status(srv.target)
        assert st.state == pb.StatusReply.FAILED and "weights missing" in st.error
        assert _health(srv.target) == "NOT_SERVING"
    finally:
        srv.stop(0.1)


def _status(target):
    ch, stub = _stub(target)
    with ch:
        return stub.Status(pb.StatusRequest(), timeout=5, metadata=MD)


def test_graceful_shutdown_finishes_in_flight_and_refuses_new(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.8)
    srv = ServerThread(_cfg(), token=TOKEN)
    results = {}

    def first():
        try:
            results["first"] = _submit(srv.target, _msgs(key="r/caption/inflight"))
        except grpc.RpcError as exc:
            results["first"] = exc.code()

    t = threading.Thread(target=first)
    t.start()
    deadline = time.time() + 5
    while srv.service._running == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert srv.service._running == 1
    stopping = srv.submit(srv.server.stop(5.0))
    while srv.service.state != pb.StatusReply.DRAINING:
        time.sleep(0.01)
    code, _ = _code(lambda: _submit(srv.target, _msgs(key="r/caption/new"), timeout=3))
    assert code == grpc.StatusCode.UNAVAILABLE
    t.join(10)
    stopping.result(10)
    assert isinstance(results["first"], pb.SubmitReply) and results["first"].outputs
    assert srv.service.counters["computed"] == 1
    srv.stop(0.1)
