"""The cloud daemon's gRPC service (``semcom.v1.EdgeCloud``) and its server.

:class:`CloudService` answers ``Submit`` (one transmission: header, chunks, end) by
checking the stream (:class:`semcom.wire.Assembler`), the identities (model id, codebook
id, agreed config settings), admitting it into a bounded queue, and running the same
:class:`cloud.session.CloudSession` as ``semcom run`` on a worker thread. ``Status``
reports what it runs, its limits and counters. :class:`CloudServer` wires the service,
the standard health service, authentication and TLS into a ``grpc.aio`` server;
:class:`ServerThread` runs one in a background thread (tests, benchmarks, embedding).

Status codes (each with a message naming the problem):

- INVALID_ARGUMENT: malformed stream or description (see ``semcom.wire.Assembler``);
- FAILED_PRECONDITION: model id, codebook id or a config setting differs; a task this
  cloud does not serve (retrieval is never served over gRPC: it ranks a whole gallery);
  an idempotency key reused for different content;
- RESOURCE_EXHAUSTED: workers and queue are full (trailing metadata
  ``semcom-retry-after-ms``); the edge backs off and retries;
- UNAVAILABLE: warming up or draining; DEADLINE_EXCEEDED: the request's deadline or
  ``request_timeout_s`` passed (the result is still cached for a retry);
- UNAUTHENTICATED: no or wrong bearer token (the interceptor); INTERNAL: a bug.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import grpc

from protos import semcom_pb2 as pb
from protos import semcom_pb2_grpc as pb_grpc
from semcom import __version__, wire
from semcom.errors import SemcomError, WireFormatError

log = logging.getLogger("semcom.cloud")

RETRY_AFTER_KEY = "semcom-retry-after-ms"
State = pb.StatusReply.State


@dataclass(frozen=True)
class Limits:
    """Bounds of the cloud daemon (CLI flags of ``semcom cloud serve``)."""

    workers: int = 1  # requests on the model at once
    max_queue: int = 64  # admitted requests waiting for a worker
    max_request_bytes: int = wire.DEFAULT_MAX_REQUEST_BYTES
    max_chunk_bytes: int = wire.MAX_CHUNK_BYTES
    max_message_bytes: int = wire.MAX_MESSAGE_BYTES
    request_timeout_s: float = 120.0  # queue + compute, also capped by the call deadline
    stream_timeout_s: float = 60.0  # to receive a whole stream
    cache_size: int = 4096  # idempotency cache entries
    max_pixels: int = wire.DEFAULT_MAX_PIXELS

    def __post_init__(self):
        for name in (
            "workers",
            "max_request_bytes",
            "max_chunk_bytes",
            "max_message_bytes",
            "max_pixels",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0 or self.cache_size < 0:
            raise ValueError("max_queue and cache_size must be >= 0")
        if self.request_timeout_s <= 0 or self.stream_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_chunk_bytes > wire.MAX_CHUNK_BYTES:
            raise ValueError(f"max_chunk_bytes is at most {wire.MAX_CHUNK_BYTES} (1 MiB)")
        if self.max_message_bytes < self.max_chunk_bytes + 64 * 1024:
            raise ValueError("max_message_bytes must exceed max_chunk_bytes by 64 KiB")

    @property
    def slots(self) -> int:
        return self.workers + self.max_queue


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, trailing=()):
        super().__init__(message)
        self.code, self.message, self.trailing = code, message, tuple(trailing)


class _Abandoned(Exception):
    """Every caller gave up before a worker picked the job: nothing was computed."""


class _Slot:
    """One of ``workers + max_queue`` admissions; released exactly once."""

    def __init__(self, service: CloudService):
        self._service, self._held = service, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._service._in_flight -= 1


@dataclass(eq=False)
class _Job:
    key: str
    digest: str
    future: asyncio.Future
    waiters: int = 1


class CloudService(pb_grpc.EdgeCloudServicer):
    """Submit + Status. ``backend`` (or ``loader() -> backend``) is the cloud model."""

    def __init__(
        self,
        cfg,
        limits: Limits = Limits(),
        *,
        backend=None,
        loader=None,
        health=None,
        warmup: bool = True,
    ):
        self.cfg = cfg
        self.limits = limits
        self.backend = backend
        self._loader = loader
        self._warmup_enabled = warmup
        self.health = health
        self.state = State.STARTING
        self.error = ""
        self.model_id = ""
        self.codebook_id = ""
        self.settings = wire.agreed_settings(cfg)
        self.tasks = tuple(cfg.cloud.tasks)
        self.started = time.time()
        self.counters = {
            f.name: 0
            for f in pb.Counters.DESCRIPTOR.fields
            if f.name not in ("in_flight", "running")
        }
        self._in_flight = 0
        self._running = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, pb.SubmitReply]] = OrderedDict()
        # stream setups by id (what Setup received and checked), most recent last
        self._setups: OrderedDict[str, bytes] = OrderedDict()
        self._jobs: dict[str, _Job] = {}
        self._local = threading.local()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="semcom-cloud"
        )

    # -- lifecycle -------------------------------------------------------------------
    async def load(self) -> None:
        """Load the model and warm it up (on a worker thread), then report SERVING."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load_blocking)
        except Exception as exc:
            self.state, self.error = State.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("cloud model failed to load: %s", self.error)
            raise
        self.state = State.SERVING
        await self._set_health(True)
        log.info(
            "serving: method %s, model %s, codebook %s, tasks %s",
            self.cfg.edge.method,
            self.model_id,
            self.codebook_id or "none",
            ",".join(self.tasks),
        )

    def _load_blocking(self) -> None:
        t0 = time.perf_counter()
        if self.backend is None:
            if self._loader is not None:
                self.backend = self._loader()
            else:
                from semcom.models import load_backend

                self.backend = load_backend(
                    self.cfg.cloud.model, device=self.cfg.run.torch_device()
                )
        self.model_id = str(self.backend.model_id)
        self.codebook_id = wire.codebook_id(self.cfg)
        import cloud.methods  # noqa: F401
        from semcom import registry

        registry.get("cloud-method", self.cfg.edge.method)  # fail early on a bad method
        log.info("model %s loaded in %.1f s", self.model_id, time.perf_counter() - t0)
        if self._warmup_enabled:
            self._warmup()

    def _warmup(self) -> None:
        """One all-erased request through the full path (decode, concealment, tasks)."""
        import numpy as np

        from cloud.pipeline import CloudItem
        from semcom.tasks import task_spec
        from semcom.types import Erasure, Sample

        tasks = [t for t in self.tasks if t in wire.GRPC_TASKS]
        if not tasks:
            return
        size = int(getattr(self.backend, "image_size", 0) or 96)
        q = "What is in the image?" if any(task_spec(t).per_question for t in tasks) else None
        item = CloudItem(
            "warmup", [Erasure("warmup", 0, 1, (size, size), "warmup")], (size, size), q
        )
        sample = Sample("warmup", "warmup", np.empty((size, size, 0), np.uint8), question=q)
        t0 = time.perf_counter()
        try:
            self._session(tuple(tasks), self.cfg.run.seed).process([item], [sample])
            log.info("warm-up done in %.2f s", time.perf_counter() - t0)
        except Exception as exc:
            log.warning("warm-up request failed (serving anyway): %s: %s", type(exc).__name__, exc)

    async def _set_health(self, serving: bool) -> None:
        if self.health is None:
            return
        from grpc_health.v1 import health_pb2

        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", wire.SERVICE):
            await self.health.set(name, status)

    async def drain(self) -> None:
        """Stop admitting (health NOT_SERVING, Submit UNAVAILABLE); in-flight work goes on."""
        if self.state != State.DRAINING:
            self.state = State.DRAINING
            if self.health is not None:
                await self.health.enter_graceful_shutdown()
            log.info("draining: %d requests in flight", self._in_flight)

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)

    # -- Status ----------------------------------------------------------------------
    def status(self) -> pb.StatusReply:
        lim = self.limits
        counters = pb.Counters(**self.counters, in_flight=self._in_flight, running=self._running)
        return pb.StatusReply(
            version=__version__,
            protocol=wire.PROTOCOL,
            state=self.state,
            model_id=self.model_id,
            codebook_id=self.codebook_id,
            method=self.cfg.edge.method,
            tasks=[t for t in self.tasks if t in wire.GRPC_TASKS],
            settings=self.settings,
            limits=pb.Limits(
                workers=lim.workers,
                max_queue=lim.max_queue,
                max_request_bytes=lim.max_request_bytes,
                max_chunk_bytes=lim.max_chunk_bytes,
                max_message_bytes=lim.max_message_bytes,
                request_timeout_s=lim.request_timeout_s,
                cache_size=lim.cache_size,
                max_pixels=lim.max_pixels,
            ),
            counters=counters,
            uptime_s=time.time() - self.started,
            error=self.error,
        )

    async def Status(self, request, context):
        return self.status()

    # -- Setup -----------------------------------------------------------------------
    MAX_SETUPS = 256

    async def Setup(self, request, context):
        """Check and keep a stream setup; its id is what Submit headers name."""
        from semcom.stages.setup import MAX_SETUP_BYTES

        data = bytes(request.setup)
        try:
            if self.state != State.SERVING:
                raise _Abort(grpc.StatusCode.UNAVAILABLE, "the cloud is not serving; retry")
            if not data or len(data) > MAX_SETUP_BYTES:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a stream setup has 1 to {MAX_SETUP_BYTES} bytes, got {len(data)}",
                )
            sid = wire.setup_id(data)
            if sid not in self._setups:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(self._executor, self._check_setup, data)
                except SemcomError as exc:
                    raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
                self._setups[sid] = data
                while len(self._setups) > self.MAX_SETUPS:
                    self._setups.popitem(last=False)
            self._setups.move_to_end(sid)
            log.info("setup %s (%d bytes) kept", sid, len(data))
            return pb.SetupReply(setup_id=sid)
        except _Abort as exc:
            self._count(exc.code)
            log.info("setup -> %s: %s", exc.code.name, exc.message)
            await context.abort(exc.code, exc.message)

    def _check_setup(self, data: bytes) -> None:
        """The cloud method takes this setup (its model, codebook, prior, settings)."""
        from cloud.pipeline import CloudPipeline

        CloudPipeline(self.cfg, backend=self.backend).open(data)

    def count_unauthenticated(self, method: str) -> None:
        self.counters["unauthenticated"] += 1

    # -- Submit ----------------------------------------------------------------------
    async def Submit(self, request_iterator, context):
        t0 = time.perf_counter()
        self.counters["requests"] += 1
        # ctx["slot"]: the admission this call still holds (None once a job owns it)
        ctx = {
            "key": "-",
            "sample": "-",
            "bytes": 0,
            "descs": 0,
            "erased": 0,
            "replayed": False,
            "slot": None,
        }
        code = grpc.StatusCode.OK
        try:
            try:
                reply = await self._submit(request_iterator, context, ctx)
                self.counters["ok"] += 1
                return reply
            except _Abort as exc:
                code = exc.code
                self._count(code)
                log.info(
                    "submit key=%s sample=%s -> %s: %s",
                    ctx["key"],
                    ctx["sample"],
                    code.name,
                    exc.message,
                )
                await context.abort(code, exc.message, trailing_metadata=exc.trailing)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            self.counters["cancelled"] += 1
            log.info("submit key=%s cancelled by the client (or its deadline)", ctx["key"])
            raise
        finally:
            if ctx["slot"] is not None:
                ctx["slot"].release()
            if code == grpc.StatusCode.OK:
                log.info(
                    "submit key=%s sample=%s bytes=%d descs=%d erased=%d replayed=%s %.1f ms",
                    ctx["key"],
                    ctx["sample"],
                    ctx["bytes"],
                    ctx["descs"],
                    ctx["erased"],
                    ctx["replayed"],
                    1e3 * (time.perf_counter() - t0),
                )

    def _count(self, code: grpc.StatusCode) -> None:
        name = code.name.lower()
        if name in self.counters:
            self.counters[name] += 1

    async def _submit(self, request_iterator, context, ctx):
        """The reply, or raises _Abort. An admission it takes goes to ``ctx["slot"]``."""
        if self.state != State.SERVING:
            why = {
                State.STARTING: "the cloud is loading its model; retry shortly",
                State.DRAINING: "the cloud is shutting down",
                State.FAILED: f"the cloud failed to load its model: {self.error}",
            }
            raise _Abort(grpc.StatusCode.UNAVAILABLE, why.get(self.state, "not serving"))
        lim = self.limits
        deadline = time.monotonic() + lim.stream_timeout_s
        asm = wire.Assembler(
            max_request_bytes=lim.max_request_bytes,
            max_chunk_bytes=lim.max_chunk_bytes,
            max_pixels=lim.max_pixels,
        )
        it = request_iterator.__aiter__()
        try:
            first = await self._next(it, deadline)
            if first is None:
                raise WireFormatError("empty stream: no header")
            asm.feed(first)
            h = asm.header
            ctx["key"], ctx["sample"] = h.idempotency_key, h.sample_id
            self._check_identity(h)
            setup = self._setup_of(h)
            if h.idempotency_key not in self._cache and h.idempotency_key not in self._jobs:
                ctx["slot"] = self._admit()
            while True:
                msg = await self._next(it, deadline)
                if msg is None:
                    break
                asm.feed(msg)
            item = asm.finish()
            if not setup:
                self._check_method(item)
            item.setup = setup
        except WireFormatError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self.counters["bytes_received"] += item.total_bytes
        ctx["bytes"] = item.total_bytes
        ctx["descs"] = len(item.received)
        ctx["erased"] = sum(d.erased for d in item.header.descriptions)
        self.counters["descriptions"] += ctx["descs"]
        self.counters["erasures"] += ctx["erased"]

        key = item.key
        cached = self._cache.get(key)
        if cached is not None:
            digest, reply = cached
            self._same_content(key, digest, item.digest)
            self._cache.move_to_end(key)
            self.counters["replayed"] += 1
            ctx["replayed"] = True
            out = pb.SubmitReply()
            out.CopyFrom(reply)
            out.replayed = True
            return out
        job = self._jobs.get(key)
        if job is not None:
            self._same_content(key, job.digest, item.digest)
            job.waiters += 1
            ctx["replayed"] = True
        else:
            if ctx["slot"] is None:  # the key's cached result was evicted meanwhile
                ctx["slot"] = self._admit()
            job = self._start_job(item, ctx["slot"])
            ctx["slot"] = None  # the job releases it when the work ends
        try:
            remaining = context.time_remaining()
            timeout = (
                lim.request_timeout_s
                if remaining is None
                else min(lim.request_timeout_s, remaining)
            )
            if timeout <= 0:
                raise _Abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the call's deadline passed before the request could run",
                )
            try:
                reply = await asyncio.wait_for(asyncio.shield(job.future), timeout)
            except TimeoutError:
                raise _Abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no result within {timeout:.1f} s (queue + model); the result "
                    "is kept for a retry with the same idempotency key",
                ) from None
            except WireFormatError as exc:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            except SemcomError as exc:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
            except _Abandoned:
                raise _Abort(grpc.StatusCode.CANCELLED, "abandoned") from None
            except Exception as exc:
                raise _Abort(
                    grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
                ) from None
        finally:
            job.waiters -= 1
        if ctx["replayed"]:
            self.counters["replayed"] += 1
            out = pb.SubmitReply()
            out.CopyFrom(reply)
            out.replayed = True
            return out
        return reply

    @staticmethod
    async def _next(it, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            raise WireFormatError("stream not completed within the cloud's stream timeout")
        try:
            return await asyncio.wait_for(it.__anext__(), left)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise WireFormatError(
                "stream not completed within the cloud's stream timeout"
            ) from None

    def _admit(self) -> _Slot:
        if self._in_flight >= self.limits.slots:
            retry_ms = int(100 + 50 * self._in_flight / max(1, self.limits.workers))
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"cloud busy: {self._in_flight} requests in flight (workers "
                f"{self.limits.workers} + queue {self.limits.max_queue}); retry later",
                trailing=((RETRY_AFTER_KEY, str(retry_ms)),),
            )
        self._in_flight += 1
        return _Slot(self)

    def _same_content(self, key: str, have: str, got: str) -> None:
        if have != got:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"idempotency key {key!r} was already used for a different request "
                "(content differs); use a new key for new content",
            )

    def _check_identity(self, h: pb.SubmitHeader) -> None:
        for t in h.tasks:
            if t not in wire.GRPC_TASKS:
                raise _Abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"task {t!r} is not served over gRPC: it ranks the whole gallery "
                    "in one session; run it in process (`semcom run`)",
                )
            if t not in self.tasks:
                raise _Abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"task {t!r} is not among this cloud's tasks "
                    f"(cloud.tasks: {', '.join(self.tasks)})",
                )
        if not h.model_id:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "header field model_id is empty (Status tells the cloud's model id)",
            )
        if h.model_id != self.model_id:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model id differs: the edge expects {h.model_id}, this cloud runs "
                f"{self.model_id} ({self.cfg.cloud.model.name})",
            )
        if h.codebook_id != self.codebook_id:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"codebook id differs: the edge uses {h.codebook_id or 'none'}, this "
                f"cloud has {self.codebook_id or 'none'}",
            )
        msg = wire.settings_mismatch(dict(h.settings), self.settings)
        if msg:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, msg)

    def _setup_of(self, h: pb.SubmitHeader) -> bytes:
        """The setup a header names (``b""`` for none); FAILED_PRECONDITION if unknown."""
        if not h.setup_id:
            return b""
        data = self._setups.get(h.setup_id)
        if data is None:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"unknown stream setup {h.setup_id}: send it with Setup, then submit again",
            )
        return data

    def _check_method(self, item: wire.WireItem) -> None:
        from semcom.stages.envelope import Envelope
        from semcom.types import Description

        for r in item.received:
            if isinstance(r, Description):
                env, _ = Envelope.unpack(r.data)
                if env.method != self.cfg.edge.method:
                    raise WireFormatError(
                        f"description {r.index} carries method "
                        f"'{env.method}', this cloud decodes "
                        f"'{self.cfg.edge.method}'"
                    )

    # -- the work --------------------------------------------------------------------
    def _start_job(self, item: wire.WireItem, slot: _Slot | None) -> _Job:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        job = _Job(item.key, item.digest, fut)
        self._jobs[item.key] = job
        work = loop.run_in_executor(self._executor, self._compute, job, item)

        def done(w: asyncio.Future) -> None:
            self._jobs.pop(job.key, None)
            if slot is not None:
                slot.release()
            if w.cancelled():
                fut.cancel()
                return
            exc = w.exception()
            if exc is not None:
                fut.set_exception(exc)
                return
            reply = w.result()
            self.counters["computed"] += 1
            if self.limits.cache_size:
                self._cache[job.key] = (job.digest, reply)
                while len(self._cache) > self.limits.cache_size:
                    self._cache.popitem(last=False)
            fut.set_result(reply)

        work.add_done_callback(done)
        fut.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        return job

    def _compute(self, job: _Job, item: wire.WireItem) -> pb.SubmitReply:
        if job.waiters <= 0:
            raise _Abandoned()
        with self._lock:
            self._running += 1
        try:
            import numpy as np

            from cloud.pipeline import CloudItem
            from semcom.types import Sample

            h, w = item.original_hw
            session = self._session(item.tasks, int(item.header.seed), item.setup)
            citem = CloudItem(item.sample_id, list(item.received), (h, w), item.question)
            # The cloud never sees pixels: an (H, W, 0) array keeps Sample.hw honest.
            sample = Sample(
                item.sample_id,
                item.header.image_id,
                np.empty((h, w, 0), np.uint8),
                question=item.question,
            )
            reply = session.process([citem], [sample])[0]
            return wire.make_reply(
                key=item.key, sample_id=item.sample_id, reply=reply, model_id=self.model_id
            )
        except Exception:
            log.debug("request %s failed", item.key, exc_info=True)
            raise
        finally:
            with self._lock:
                self._running -= 1

    def _session(self, tasks: tuple[str, ...], seed: int, setup: bytes = b""):
        """This worker thread's CloudSession for (tasks, seed, setup): built once, reused."""
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = OrderedDict()
        key = (tuple(tasks), seed, wire.setup_id(setup))
        if key not in sessions:
            from cloud.session import CloudSession

            cfg = self.cfg
            if seed != cfg.run.seed:
                cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))
            sessions[key] = CloudSession(cfg, self.backend, list(tasks), None, setup=setup)
            while len(sessions) > 8:
                sessions.popitem(last=False)
        sessions.move_to_end(key)
        return sessions[key]


# ------------------------------------------------------------------------------ server


@dataclass
class ServerTLS:
    cert: str
    key: str
    client_ca: str | None = None  # set: mutual TLS (client certificates required)


class CloudServer:
    """The aio server: EdgeCloud + health, token auth, TLS, limits; load, drain, stop."""

    def __init__(
        self,
        cfg,
        *,
        listen: str = "127.0.0.1:50051",
        token: str,
        tls: ServerTLS | None = None,
        limits: Limits = Limits(),
        backend=None,
        loader=None,
        warmup: bool = True,
        open_health: bool = False,
    ):
        from grpc_health.v1 import health

        from semcom import security

        security.check_bind(listen, tls=tls is not None)
        self.listen = listen
        self.health = health.aio.HealthServicer()
        self.service = CloudService(
            cfg, limits, backend=backend, loader=loader, health=self.health, warmup=warmup
        )
        exempt = security.HEALTH_METHODS if open_health else ()
        self._interceptor = security.make_interceptor(
            token, exempt=exempt, on_reject=self.service.count_unauthenticated
        )
        self._tls = tls
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING until :meth:`load`)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from semcom import security

        lim = self.service.limits
        opts = [
            ("grpc.max_receive_message_length", lim.max_message_bytes),
            ("grpc.max_send_message_length", lim.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        self.server = grpc.aio.server(
            interceptors=[self._interceptor],
            options=opts,
            maximum_concurrent_rpcs=2 * lim.slots + 64,
        )
        pb_grpc.add_EdgeCloudServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for name in ("", wire.SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            if self._tls is not None:
                creds = security.server_credentials(
                    self._tls.cert, self._tls.key, self._tls.client_ca
                )
                self.port = self.server.add_secure_port(self.listen, creds)
            else:
                self.port = self.server.add_insecure_port(self.listen)
        except RuntimeError as exc:
            raise security.SecurityError(f"cannot listen on {self.listen}: {exc}") from None
        if not self.port:
            raise security.SecurityError(f"cannot listen on {self.listen}")
        await self.server.start()
        log.info(
            "listening on %s (port %d, %s)",
            self.listen,
            self.port,
            "mutual TLS"
            if self._tls and self._tls.client_ca
            else "TLS"
            if self._tls
            else "plaintext, loopback only",
        )
        return self.port

    async def load(self) -> None:
        await self.service.load()

    async def stop(self, grace: float = 30.0) -> None:
        """Graceful: NOT_SERVING, refuse new calls, let in-flight ones finish (``grace`` s)."""
        await self.service.drain()
        if self.server is not None:
            await self.server.stop(grace)
        self.service.close(wait=True)
        c = self.service.counters
        log.info(
            "stopped: %d requests, %d ok (%d computed, %d replayed), %d invalid, %d busy",
            c["requests"],
            c["ok"],
            c["computed"],
            c["replayed"],
            c["invalid_argument"],
            c["resource_exhausted"],
        )


class ServerThread:
    """A :class:`CloudServer` on its own event loop in a background thread.

    >>> # with ServerThread(cfg, token=tok, backend=fake) as srv: connect to srv.port
    """

    def __init__(self, cfg, *, load: bool = True, **kw):
        kw.setdefault("listen", "127.0.0.1:0")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="semcom-cloud-loop"
        )
        self._thread.start()
        self.server: CloudServer = self.call(self._make(cfg, kw))
        self.port = self.call(self.server.start())
        if load:
            self.call(self.server.load())

    @staticmethod
    async def _make(cfg, kw):
        return CloudServer(cfg, **kw)

    @property
    def service(self) -> CloudService:
        return self.server.service

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coro, timeout: float | None = 120):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self, grace: float = 5.0) -> None:
        if self._loop.is_closed():
            return
        try:
            self.call(self.server.stop(grace), timeout=grace + 60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def crash(self) -> None:
        """Stop the way a killed process does (tests): no drain, no grace, calls in flight
        aborted, the worker pool and the idempotency cache thrown away."""
        if self._loop.is_closed():
            return

        async def drop():
            await self.server.server.stop(None)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=5) if tasks else None

        self.call(drop(), timeout=30)
        self.service.close(wait=False)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()  # stop() is a no-op now

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc) -> None:
        self.stop(0.5)
