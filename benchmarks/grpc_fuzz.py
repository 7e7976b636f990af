"""Bad messages for the cloud daemon: random bytes, mutated valid requests, truncated streams.

:func:`fuzz` sends ``n`` bad calls to a cloud on ``target`` (raw bytes, so nothing on
the client side filters them) and returns the status codes it got. The suite's fuzz
test (tests/test_grpc_fuzz.py) runs a small ``n`` in process; ``python -m
benchmarks.bench_grpc fuzz`` runs thousands against a ``semcom cloud serve`` process.

Kinds of call (in equal shares, drawn by a seeded generator):

- ``random``: random bytes (0 to 2 KiB) as a Submit message, a SubmitOne, Rank,
  Status, Setup or health Check request;
- ``mutated``: a valid Submit stream (header, chunks, end) with some bytes of one
  message flipped, one message cut short, a message dropped or repeated, or a
  message spliced from another stream;
- ``truncated``: a valid stream cut after a random message (no end marker).

Mutated and truncated streams go half the time as a Submit stream and half as one
SubmitOne message (the same parts in a ``SubmitBundle``).
"""

from __future__ import annotations

import collections
import threading

import numpy as np

KINDS = ("random", "mutated", "truncated")
SUBMIT = "/semcom.v1.EdgeCloud/Submit"
SUBMIT_ONE = "/semcom.v1.EdgeCloud/SubmitOne"
UNARY = (
    SUBMIT_ONE,
    "/semcom.v1.EdgeCloud/Rank",
    "/semcom.v1.EdgeCloud/Status",
    "/semcom.v1.EdgeCloud/Setup",
    "/grpc.health.v1.Health/Check",
)


def valid_streams(make_messages, count: int = 4) -> list[list[bytes]]:
    """``count`` valid Submit streams, serialized (``make_messages(i) -> [SubmitRequest]``)."""
    return [[m.SerializeToString() for m in make_messages(i)] for i in range(count)]


def _mutate(g: np.random.Generator, streams: list[list[bytes]]) -> list[bytes]:
    msgs = list(streams[int(g.integers(len(streams)))])
    i = int(g.integers(len(msgs)))
    how = int(g.integers(5))
    if how == 0:  # flip bytes
        b = bytearray(msgs[i])
        for _ in range(int(g.integers(1, 8))):
            if b:
                b[int(g.integers(len(b)))] ^= int(g.integers(1, 256))
        msgs[i] = bytes(b)
    elif how == 1:  # cut one message short
        msgs[i] = msgs[i][: int(g.integers(len(msgs[i]) + 1))]
    elif how == 2 and len(msgs) > 1:  # drop one
        del msgs[i]
    elif how == 3:  # repeat one
        msgs.insert(i, msgs[i])
    else:  # splice a message of another stream
        other = streams[int(g.integers(len(streams)))]
        msgs[i] = other[int(g.integers(len(other)))]
    return msgs


def bundle(parts: list[bytes]) -> bytes:
    """The serialized ``SubmitBundle`` of serialized parts (field 1, length-delimited),
    whatever the parts hold."""
    from semcom.stages.bits import varint

    return b"".join(b"\x0a" + varint(len(p)) + p for p in parts)


def fuzz(target: str, metadata, *, n: int, seed: int = 0, threads: int = 4, streams=None):
    """``n`` bad calls to ``target``; ``{"calls", "codes": {name: count}, "by_kind"}``."""
    import grpc

    codes: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
    lock = threading.Lock()

    def worker(w: int) -> None:
        g = np.random.default_rng([seed, w])
        with grpc.insecure_channel(target) as ch:
            stream = ch.stream_unary(SUBMIT)
            unary = {m: ch.unary_unary(m) for m in UNARY}

            def submit(msgs, **kw):  # a stream, or the same parts as one SubmitOne
                if g.integers(2):
                    return stream(iter(msgs), **kw)
                return unary[SUBMIT_ONE](bundle(list(msgs)), **kw)

            for k in range(w, n, threads):
                kind = KINDS[k % len(KINDS)] if streams else "random"
                try:
                    if kind == "random":
                        data = g.bytes(int(g.integers(0, 2048)))
                        which = int(g.integers(len(UNARY) + 1))
                        if which == len(UNARY):
                            stream(iter([data]), metadata=metadata, timeout=10)
                        else:
                            unary[UNARY[which]](data, metadata=metadata, timeout=10)
                    elif kind == "mutated":
                        submit(_mutate(g, streams), metadata=metadata, timeout=10)
                    else:
                        s = streams[int(g.integers(len(streams)))]
                        cut = int(g.integers(len(s)))  # 0 .. len-1 messages: no end marker
                        submit(s[:cut], metadata=metadata, timeout=10)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    codes[code] += 1
                    by_kind[kind][code] += 1

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {
        "calls": sum(codes.values()),
        "codes": dict(codes),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
    }
