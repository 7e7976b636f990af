"""Every message answered: the daemon's gRPC handlers, on raw bytes.

The generated ``add_*Servicer_to_server`` let grpc decode requests, and a message that
does not decode escapes as UNKNOWN with a traceback per call. The handlers here take
the raw bytes and decode them themselves, so:

- an undecodable message is INVALID_ARGUMENT naming its type (in a stream: which
  message; the stream's other checks are :class:`semcom.wire.Assembler`'s);
- :class:`cloud.limits.Abort` is answered with its code, message and trailing metadata;
- any other exception is INTERNAL with a short message (``internal error: Type: text``),
  one ERROR line (the traceback only at DEBUG);
- each call ends in exactly one log line (a success line only for a call that
  succeeded) and one count under its final code (:meth:`cloud.metrics.Metrics.call`).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from cloud.limits import Abort
from protos import semcom_pb2 as pb
from semcom import wire
from semcom.errors import WireFormatError

log = logging.getLogger("semcom.cloud")

MAX_DETAIL_CHARS = 200


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def _decode(cls, raw: bytes, what: str):
    try:
        return cls.FromString(raw)
    except Exception as exc:
        raise WireFormatError(
            f"{what} is not a valid {cls.DESCRIPTOR.full_name} ({short(exc)})"
        ) from None


async def _stream(raw_iterator, cls):
    n = 0
    async for raw in raw_iterator:
        n += 1
        yield _decode(cls, raw, f"message {n} of the stream")


def _describe(method: str, ctx: dict) -> str:
    if method in ("Submit", "SubmitOne"):
        return f"submit key={ctx.get('key', '-')} sample={ctx.get('sample', '-')}"
    return method.lower()


async def _answer(method, fn, arg, context, metrics):
    """Run ``fn(arg, context, ctx)``; answer, log and count exactly once."""
    t0 = time.perf_counter()
    ctx: dict = {}
    trailing = ()
    try:
        reply = await fn(arg, context, ctx)
    except Abort as exc:
        code, message, trailing = exc.code, exc.message, exc.trailing
    except WireFormatError as exc:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    except asyncio.CancelledError:
        metrics.call(method, grpc.StatusCode.CANCELLED, time.perf_counter() - t0)
        log.info("%s cancelled by the client (or its deadline)", _describe(method, ctx))
        raise
    except grpc.aio.AbortError:  # someone aborted the call already
        raise
    except Exception as exc:
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {short(exc)}"
        log.error("%s -> INTERNAL: %s", _describe(method, ctx), message)
        log.debug("traceback of the INTERNAL answer", exc_info=True)
    else:
        dt = time.perf_counter() - t0
        metrics.call(method, grpc.StatusCode.OK, dt)
        if method in ("Submit", "SubmitOne", "Rank"):
            log.info("%s %s %.1f ms", _describe(method, ctx), ctx.get("log", ""), 1e3 * dt)
        return reply
    metrics.call(method, code, time.perf_counter() - t0)
    if code != grpc.StatusCode.INTERNAL:
        log.info("%s -> %s: %s", _describe(method, ctx), code.name, message)
    await context.abort(code, message, trailing_metadata=trailing)


def _unary(method, fn, cls, metrics):
    async def handler(raw, context):
        async def call(raw, context, ctx):
            return await fn(_decode(cls, raw, "the request"), context, ctx)

        return await _answer(method, call, raw, context, metrics)

    return handler


def _client_stream(method, fn, cls, metrics):
    async def handler(raw_iterator, context):
        return await _answer(method, fn, _stream(raw_iterator, cls), context, metrics)

    return handler


def service_handler(service) -> grpc.GenericRpcHandler:
    """``semcom.v1.EdgeCloud`` on ``service`` (a :class:`cloud.service.CloudService`)."""
    m = service.metrics
    methods = {
        "Submit": grpc.stream_unary_rpc_method_handler(
            _client_stream("Submit", service.Submit, pb.SubmitRequest, m),
            response_serializer=pb.SubmitReply.SerializeToString,
        ),
        "SubmitOne": grpc.unary_unary_rpc_method_handler(
            _unary("SubmitOne", service.SubmitOne, pb.SubmitBundle, m),
            response_serializer=pb.SubmitReply.SerializeToString,
        ),
        "Setup": grpc.unary_unary_rpc_method_handler(
            _unary("Setup", service.Setup, pb.SetupRequest, m),
            response_serializer=pb.SetupReply.SerializeToString,
        ),
        "Rank": grpc.unary_unary_rpc_method_handler(
            _unary("Rank", service.Rank, pb.RankRequest, m),
            response_serializer=pb.RankReply.SerializeToString,
        ),
        "Status": grpc.unary_unary_rpc_method_handler(
            _unary("Status", service.Status, pb.StatusRequest, m),
            response_serializer=pb.StatusReply.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(wire.SERVICE, methods)


def health_handler(health, metrics) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health`` on the standard servicer, with Check on raw bytes."""
    from grpc_health.v1 import health_pb2 as hpb

    async def check(req, context, ctx):
        return await health.Check(req, context)

    methods = {
        "Check": grpc.unary_unary_rpc_method_handler(
            _unary("Health.Check", check, hpb.HealthCheckRequest, metrics),
            response_serializer=hpb.HealthCheckResponse.SerializeToString,
        ),
        "List": grpc.unary_unary_rpc_method_handler(
            health.List,
            request_deserializer=hpb.HealthListRequest.FromString,
            response_serializer=hpb.HealthListResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            health.Watch,
            request_deserializer=hpb.HealthCheckRequest.FromString,
            response_serializer=hpb.HealthCheckResponse.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", methods)
