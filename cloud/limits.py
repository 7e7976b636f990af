"""Bounds of the cloud daemon and the admission that enforces them.

:class:`Limits` holds every bound (``semcom cloud serve`` flags). :class:`Admission`
takes one :class:`Ticket` per Submit call once its header is read: a slot (one of
``workers * max_batch + max_queue``) for new work, and the stream's declared bytes out
of ``max_inflight_bytes``, a cap on description bytes held across all requests at
once. Past either bound the call gets RESOURCE_EXHAUSTED with a retry hint (trailing
metadata ``semcom-retry-after-ms``) before any of its bytes are received. The ticket
is released exactly once, when the request's bytes are no longer held (its result is
computed, or it was refused, replayed, cancelled or timed out).

:func:`release_memory` hands freed heap back to the OS after large requests (glibc
keeps it otherwise, and the daemon's RSS would not return to idle).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field

import grpc

from semcom import wire

RETRY_AFTER_KEY = "semcom-retry-after-ms"
MIB = 1 << 20


def host_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 4 << 30


def default_inflight_bytes() -> int:
    """1/16 of the host's physical memory, within [256 MiB, 2 GiB]."""
    return int(min(2048 * MIB, max(256 * MIB, host_memory_bytes() // 16)))


def default_query_bytes() -> int:
    """1/8 of the host's physical memory, within [256 MiB, 4 GiB]."""
    return int(min(4096 * MIB, max(256 * MIB, host_memory_bytes() // 8)))


@dataclass(frozen=True)
class Limits:
    """Bounds of the cloud daemon (CLI flags of ``semcom cloud serve``)."""

    workers: int = 1  # model calls (batches) at once
    max_queue: int = 64  # admitted requests beyond the ones in running batches
    max_request_bytes: int = wire.DEFAULT_MAX_REQUEST_BYTES
    max_chunk_bytes: int = wire.MAX_CHUNK_BYTES
    max_message_bytes: int = wire.MAX_MESSAGE_BYTES
    request_timeout_s: float = 120.0  # queue + compute, also capped by the call deadline
    stream_timeout_s: float = 60.0  # to receive a whole stream
    cache_size: int = 4096  # idempotency cache entries
    max_pixels: int = wire.DEFAULT_MAX_PIXELS
    max_batch: int = 8  # requests gathered into one model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for more
    # per task: ((task, max_batch, max_wait_ms), ...); a batch of several tasks takes
    # the smallest of its tasks' values
    task_batch: tuple[tuple[str, int, float], ...] = ()
    # a batch that had to wait for a busy model keeps gathering for up to this long after
    # the model frees (or until it is full): the callers of the batch that just ended
    # send their next requests then
    refill_ms: float = 0.0
    max_inflight_bytes: int = field(default_factory=default_inflight_bytes)
    # retrieval: query images' embeddings and tokens held for Rank, across runs
    max_query_bytes: int = field(default_factory=default_query_bytes)

    def __post_init__(self):
        for name in (
            "workers",
            "max_request_bytes",
            "max_chunk_bytes",
            "max_message_bytes",
            "max_pixels",
            "max_batch",
            "max_inflight_bytes",
            "max_query_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0 or self.cache_size < 0:
            raise ValueError("max_queue and cache_size must be >= 0")
        if self.request_timeout_s <= 0 or self.stream_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.refill_ms < 0:
            raise ValueError(f"refill_ms must be >= 0, got {self.refill_ms}")
        if self.max_chunk_bytes > wire.MAX_CHUNK_BYTES:
            raise ValueError(f"max_chunk_bytes is at most {wire.MAX_CHUNK_BYTES} (1 MiB)")
        if self.max_message_bytes < self.max_chunk_bytes + 64 * 1024:
            raise ValueError("max_message_bytes must exceed max_chunk_bytes by 64 KiB")
        if self.max_inflight_bytes < self.max_request_bytes:
            raise ValueError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least "
                f"max_request_bytes ({self.max_request_bytes}): a largest request must fit"
            )
        for entry in self.task_batch:
            task, mb, mw = entry
            if task not in wire.TASKS or mb < 1 or mw < 0:
                raise ValueError(
                    f"bad per-task batching {entry}: a task of {wire.TASKS}, "
                    "max batch >= 1, max wait >= 0 ms"
                )

    @property
    def slots(self) -> int:
        return self.workers * self.max_batch + self.max_queue

    def batching(self, tasks) -> tuple[int, float]:
        """(max batch, max wait in seconds) for a request naming ``tasks``."""
        mb, mw = self.max_batch, self.max_wait_ms
        own = {t: (b, w) for t, b, w in self.task_batch}
        if any(t in own for t in tasks):
            mb = min(own.get(t, (mb, mw))[0] for t in tasks)
            mw = min(own.get(t, (mb, mw))[1] for t in tasks)
        return mb, mw / 1e3


class Abort(Exception):
    """Answer the call with ``code`` and ``message`` (and trailing metadata)."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing=()):
        super().__init__(message)
        self.code, self.message, self.trailing = code, message, tuple(trailing)


class Ticket:
    """What one call holds: a slot (new work only) and its declared bytes."""

    def __init__(self, admission: Admission, slot: bool, nbytes: int):
        self._adm, self.slot, self.nbytes, self._held = admission, slot, nbytes, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._adm._release(self)


class Admission:
    """Slots and bytes in flight (used on the event loop's thread only)."""

    def __init__(self, limits: Limits, on_change=None):
        self.limits = limits
        self.in_flight = 0  # slots held
        self.bytes = 0  # declared description bytes held
        self._on_change = on_change or (lambda adm: None)

    def admit(self, nbytes: int, *, slot: bool = True) -> Ticket:
        lim = self.limits
        if slot and self.in_flight >= lim.slots:
            retry_ms = int(100 + 50 * self.in_flight / max(1, lim.workers * lim.max_batch))
            raise Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"cloud busy: {self.in_flight} requests in flight (workers "
                f"{lim.workers} x batch {lim.max_batch} + queue {lim.max_queue}); retry later",
                trailing=((RETRY_AFTER_KEY, str(retry_ms)),),
            )
        if nbytes and self.bytes + nbytes > lim.max_inflight_bytes:
            # roughly the time for what is in flight to drain, at least 200 ms
            retry_ms = int(200 + 1000 * self.bytes / (256 * MIB))
            raise Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"cloud memory budget full: {self.bytes} of {lim.max_inflight_bytes} "
                f"bytes in flight, this request declares {nbytes}; retry later",
                trailing=((RETRY_AFTER_KEY, str(retry_ms)),),
            )
        self.in_flight += int(slot)
        self.bytes += nbytes
        self._on_change(self)
        return Ticket(self, slot, nbytes)

    def _release(self, t: Ticket) -> None:
        self.in_flight -= int(t.slot)
        self.bytes -= t.nbytes
        self._on_change(self)
        if t.nbytes >= 8 * MIB or (self.bytes == 0 and t.nbytes >= MIB):
            release_memory()


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            _LIBC = lib if lib is not None and hasattr(lib, "malloc_trim") else False
        except OSError:  # pragma: no cover
            _LIBC = False
    return _LIBC


def release_memory() -> None:
    """``malloc_trim(0)``: return freed heap pages to the OS (glibc; no-op elsewhere)."""
    if _libc():
        _LIBC.malloc_trim(0)
