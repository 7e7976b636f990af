"""Every message gets a proper answer: random bytes, mutated valid requests, truncated
streams (benchmarks/grpc_fuzz.py) never give UNKNOWN, never crash the daemon, cost one
log line each (no traceback, no success line for a failed call), are counted by status,
and a valid request is answered afterwards."""

import logging
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_grpc_server import MD, TOKEN, _cfg, _health, _jpeg_desc, _msgs, _submit

from benchmarks.bench_grpc import install_fakes
from benchmarks.grpc_fuzz import fuzz, valid_streams
from cloud.server import ServerThread

N = 3000


def _streams():
    return valid_streams(
        lambda i: _msgs([_jpeg_desc(i % 3)], key=f"r/caption/f{i}", image_id=f"im{i % 3}"), 4
    )


def test_fuzz_no_unknown_no_crash_and_a_valid_request_answered_after(monkeypatch, caplog):
    install_fakes(monkeypatch, delay_s=0.0)
    with ServerThread(_cfg(), token=TOKEN) as srv:
        caplog.set_level(logging.INFO, logger="semcom.cloud")
        caplog.clear()
        out = fuzz(srv.target, MD, n=N, seed=3, streams=_streams())
        codes = out["codes"]
        assert out["calls"] == N
        assert "UNKNOWN" not in codes, codes
        assert codes.get("INVALID_ARGUMENT", 0) > N // 2, codes
        assert set(codes) <= {"OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION"}, codes
        for kind in ("random", "mutated", "truncated"):
            assert sum(out["by_kind"][kind].values()) == N // 3
        assert out["by_kind"]["truncated"].get("OK", 0) == 0  # no end marker: never OK
        # one log line per call, none with a traceback, success lines only for successes
        records = [r for r in caplog.records if r.name == "semcom.cloud"]
        assert not [r for r in records if r.exc_info], "a traceback was logged"
        assert not [r for r in records if r.levelno >= logging.ERROR]
        calls = [
            r
            for r in records
            if r.getMessage().startswith(("submit ", "status ", "setup ", "health.check ", "rank "))
        ]
        ok_submits = [
            r for r in calls if r.getMessage().startswith("submit ") and "->" not in r.getMessage()
        ]
        failed = [r for r in calls if " -> " in r.getMessage()]
        st = srv.service.status()
        assert len(ok_submits) == st.counters.ok
        n_failed = N - codes.get("OK", 0)
        assert len(failed) == n_failed
        c = st.counters
        assert c.invalid_argument + c.failed_precondition == n_failed
        assert c.internal == 0
        # Prometheus counts the same
        prom = srv.service.metrics.summary()["by_status"]
        assert sum(v for k, v in prom.items() if not k.endswith(":OK")) == n_failed
        # the daemon still serves, and answers a valid request
        assert _health(srv.target) == "SERVING"
        reply = _submit(srv.target, _msgs(key="r/caption/after-fuzz"))
        assert reply.outputs["caption"]


def test_undecodable_messages_are_invalid_argument_with_a_short_message(monkeypatch):
    install_fakes(monkeypatch, delay_s=0.0)
    with ServerThread(_cfg(), token=TOKEN) as srv, grpc.insecure_channel(srv.target) as ch:
        for method, call in (
            (
                "Submit",
                lambda: ch.stream_unary("/semcom.v1.EdgeCloud/Submit")(
                    iter([b"\xff\xff\xff"]), metadata=MD, timeout=5
                ),
            ),
            (
                "Status",
                lambda: ch.unary_unary("/semcom.v1.EdgeCloud/Status")(
                    b"\xff\xff", metadata=MD, timeout=5
                ),
            ),
            (
                "Health",
                lambda: ch.unary_unary("/grpc.health.v1.Health/Check")(
                    b"\x0a\xff", metadata=MD, timeout=5
                ),
            ),
        ):
            try:
                call()
                raise AssertionError(f"{method}: garbage accepted")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, exc.code())
                assert "not a valid" in exc.details() and len(exc.details()) < 300


def test_an_unexpected_exception_is_internal_with_one_error_line(monkeypatch, caplog):
    install_fakes(monkeypatch, delay_s=0.0)
    with ServerThread(_cfg(), token=TOKEN) as srv:

        def boom(h):
            raise KeyError("surprise")

        monkeypatch.setattr(srv.service, "_check_identity", boom)
        caplog.set_level(logging.INFO, logger="semcom.cloud")
        caplog.clear()
        try:
            _submit(srv.target, _msgs(key="r/caption/boom"))
            raise AssertionError("no error")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INTERNAL
            assert exc.details() == "internal error: KeyError: 'surprise'"
        lines = [r for r in caplog.records if "r/caption/boom" in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.ERROR and not lines[0].exc_info
        assert srv.service.counters["internal"] == 1 and srv.service.counters["ok"] == 0
        monkeypatch.undo()
        install_fakes(monkeypatch, delay_s=0.0)
        assert _submit(srv.target, _msgs(key="r/caption/fine")).outputs["caption"]
