"""The cloud daemon's gRPC service (``semcom.v1.EdgeCloud``).

:class:`CloudService` answers ``Submit`` (one transmission: header, chunks, end; or
``SubmitOne``, the same messages in one) by
checking the stream (:class:`semcom.wire.Assembler`), the identities (model id, codebook
id, agreed config settings), admitting it (:class:`cloud.limits.Admission`: a slot and
its declared bytes), and handing it to the :class:`cloud.batcher.Batcher`, which runs
the same :class:`cloud.session.CloudSession` as ``semcom run`` on a worker thread for a
batch of concurrent requests. ``Setup`` keeps stream setups; ``Status`` reports what it
runs, its limits and counters; ``Rank`` ranks a run's retrieval queries against the
gallery the cloud holds (:mod:`cloud.gallery`).

Every message gets a proper answer: the service's handlers take raw bytes
(:mod:`cloud.guard`), so an undecodable message is INVALID_ARGUMENT, and an unexpected
exception is INTERNAL with a short message; each failed call is one log line and one
count under its code (Status counters, ``semcom_cloud_requests_total``).

Status codes (each with a message naming the problem):

- INVALID_ARGUMENT: undecodable message, malformed stream or description;
- FAILED_PRECONDITION: model id, codebook id or a config setting differs; a task this
  cloud does not serve (retrieval: only with a gallery); an idempotency key reused for
  different content; an unknown stream setup; a Rank image not in the gallery;
- RESOURCE_EXHAUSTED: slots or the bytes-in-flight budget are full (trailing metadata
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

import grpc

from cloud.batcher import Abandoned, Batcher, Job
from cloud.gallery import GalleryError, Queries
from cloud.limits import MIB, Abort, Admission, Limits, release_memory
from cloud.metrics import Metrics
from protos import semcom_pb2 as pb
from semcom import __version__, wire
from semcom.errors import SemcomError, WireFormatError

log = logging.getLogger("semcom.cloud")

State = pb.StatusReply.State
BIG_REQUEST_BYTES = 8 * MIB  # after a call this large, freed heap is returned to the OS


def _bare(exc: BaseException) -> BaseException:
    """``exc`` without its traceback and chained exceptions: their frames would keep the
    request's bytes alive as long as the exception lives (in futures, in the cache)."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


class CloudService:
    """Submit + Setup + Status + Rank. ``backend`` (or ``loader() -> backend``) is the cloud
    model; ``gallery`` (a :class:`cloud.gallery.Gallery`) what retrieval ranks against."""

    MAX_SETUPS = 256

    def __init__(
        self,
        cfg,
        limits: Limits | None = None,
        *,
        backend=None,
        loader=None,
        health=None,
        warmup: bool = True,
        gallery=None,
    ):
        self.cfg = cfg
        self.gallery = gallery
        self.queries = Queries(limits.max_query_bytes if limits else Limits().max_query_bytes)
        self.limits = limits = limits or Limits()
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
        self.metrics = Metrics()
        self.counters = self.metrics.counters
        self.admission = Admission(limits, on_change=self.metrics.admission)
        self._running_requests = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, pb.SubmitReply]] = OrderedDict()
        self._setups: OrderedDict[str, bytes] = OrderedDict()  # by id, most recent last
        self._jobs: dict[str, Job] = {}
        self._local = threading.local()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="semcom-cloud"
        )
        self.batcher = Batcher(
            limits=limits, executor=self._executor, compute=self._compute, metrics=self.metrics
        )

    @property
    def _in_flight(self) -> int:
        return self.admission.in_flight

    @property
    def _running(self) -> int:
        return self._running_requests

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
            "serving: method %s, model %s, codebook %s, tasks %s, batches of up to %d "
            "(wait %.1f ms, refill %.1f ms), %d MiB in flight at most",
            self.cfg.edge.method,
            self.model_id,
            self.codebook_id or "none",
            ",".join(self.tasks),
            self.limits.max_batch,
            self.limits.max_wait_ms,
            self.limits.refill_ms,
            self.limits.max_inflight_bytes >> 20,
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
        if "retrieval" in self.tasks:
            self._load_gallery()
        import cloud.methods  # noqa: F401
        from semcom import registry

        registry.get("cloud-method", self.cfg.edge.method)  # fail early on a bad method
        log.info("model %s loaded in %.1f s", self.model_id, time.perf_counter() - t0)
        if self._warmup_enabled:
            self._warmup()

    def _load_gallery(self) -> None:
        from semcom.tasks.retrieval import RetrievalTask

        if self.gallery is None:
            raise GalleryError(
                "cloud.tasks has retrieval but this cloud holds no gallery "
                "(semcom cloud serve --gallery FILE, or a data set with captions)"
            )
        t0 = time.perf_counter()
        self.gallery.embed(self.backend, int(RetrievalTask.spec.options["batch_size"]))
        log.info(
            "gallery: %d images, %d texts from %s, features in %.1f s",
            self.gallery.n_images,
            self.gallery.n_texts,
            self.gallery.source,
            time.perf_counter() - t0,
        )

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
            session = self._session(tuple(tasks), self.cfg.run.seed)
            session.process([item], [sample])
            for t in session.set_tasks:  # a whole-set task: nothing to keep
                session.take(t)
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
        self.metrics.close()

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
                max_query_bytes=lim.max_query_bytes,
            ),
            counters=counters,
            uptime_s=time.time() - self.started,
            error=self.error,
            gallery_images=self.gallery.n_images if self.gallery else 0,
            gallery_texts=self.gallery.n_texts if self.gallery else 0,
            gallery_source=self.gallery.source if self.gallery else "",
        )

    async def Status(self, request, context, ctx=None):
        return self.status()

    # -- Setup -----------------------------------------------------------------------
    async def Setup(self, request, context, ctx=None):
        """Check and keep a stream setup; its id is what Submit headers name."""
        from semcom.stages.setup import MAX_SETUP_BYTES

        data = bytes(request.setup)
        if self.state != State.SERVING:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "the cloud is not serving; retry")
        if not data or len(data) > MAX_SETUP_BYTES:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a stream setup has 1 to {MAX_SETUP_BYTES} bytes, got {len(data)}",
            )
        sid = wire.setup_id(data)
        if sid not in self._setups:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._check_setup, data)
            except SemcomError as exc:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
            self._setups[sid] = data
            while len(self._setups) > self.MAX_SETUPS:
                self._setups.popitem(last=False)
        self._setups.move_to_end(sid)
        log.info("setup %s (%d bytes) kept", sid, len(data))
        return pb.SetupReply(setup_id=sid)

    def _check_setup(self, data: bytes) -> None:
        """The cloud method takes this setup (its model, codebook, prior, settings)."""
        from cloud.pipeline import CloudPipeline

        CloudPipeline(self.cfg, backend=self.backend).open(data)

    def count_unauthenticated(self, method: str) -> None:
        self.counters["unauthenticated"] += 1
        self.metrics.requests.labels(method.rsplit("/", 1)[-1], "UNAUTHENTICATED").inc()

    # -- Rank ------------------------------------------------------------------------
    MAX_RANK_MISSING = 10_000  # sample ids listed in one reply

    async def Rank(self, request, context, ctx=None):
        """Rank a run's retrieval queries against the gallery (see :mod:`cloud.gallery`)."""
        from semcom.results import dumps

        if self.state != State.SERVING:
            raise Abort(grpc.StatusCode.UNAVAILABLE, "the cloud is not serving; retry")
        if request.task != "retrieval":
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Rank ranks task 'retrieval', got {request.task!r}",
            )
        if "retrieval" not in self.tasks or self.gallery is None:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this cloud does not serve retrieval (no gallery; cloud.tasks: "
                f"{', '.join(self.tasks)})",
            )
        ids, image_ids = list(request.sample_ids), list(request.image_ids)
        if not ids or len(ids) != len(image_ids) or len(set(ids)) != len(ids):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Rank needs distinct sample ids, one image id each (got {len(ids)} sample "
                f"ids, {len(set(ids))} distinct, {len(image_ids)} image ids)",
            )
        if ctx is not None:
            ctx["log"] = f"run={request.run_id} queries={len(ids)}"
        entries, missing = self.queries.get(request.run_id, ids)
        if missing:
            return pb.RankReply(missing=missing[: self.MAX_RANK_MISSING])
        for sid, want, (got, _, _) in zip(ids, image_ids, entries):
            if want != got:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sample {sid!r} was submitted as image {got!r}, Rank names {want!r}",
                )
        try:
            texts, txt2img, feats = self.gallery.select(image_ids)
        except GalleryError as exc:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        loop = asyncio.get_running_loop()
        metrics, per = await loop.run_in_executor(
            self._executor, self._rank, entries, texts, txt2img, feats, int(request.seed)
        )
        return pb.RankReply(
            metrics_json=dumps(metrics), per_sample_json=dumps(per), texts=len(texts)
        )

    def _rank(self, entries, texts, txt2img, feats, seed: int):
        from semcom.tasks import make_task

        task = make_task("retrieval", self.backend, k_test=self.cfg.cloud.k_test, seed=seed)
        return task.rank(
            [e for _, e, _ in entries], [t for _, _, t in entries], texts, txt2img, feats
        )

    # -- Submit ----------------------------------------------------------------------
    async def Submit(self, request_iterator, context, ctx=None):
        """The reply, or raises :class:`Abort` (the guard answers, logs and counts it).
        ``ctx``: what the guard's log line names (key, sample, ``log``)."""
        self.counters["requests"] += 1
        ctx = {} if ctx is None else ctx
        ctx.update(key="-", sample="-", ticket=None)
        try:
            return await self._submit(request_iterator, context, ctx)
        finally:
            if ctx["ticket"] is not None:  # not handed to a job: released now
                ctx["ticket"].release()
            if ctx.get("nbytes", 0) >= BIG_REQUEST_BYTES:
                # once this call's frames and messages are gone, hand the heap back
                loop = asyncio.get_running_loop()
                for delay in (0.05, 1.0):  # and again once other calls' buffers went
                    loop.call_later(delay, release_memory)

    async def SubmitOne(self, request, context, ctx=None):
        """A whole Submit stream in one message: the same checks, answer and counts."""

        async def parts():
            for part in request.parts:
                yield part

        return await self.Submit(parts(), context, ctx)

    async def _submit(self, request_iterator, context, ctx):
        if self.state != State.SERVING:
            why = {
                State.STARTING: "the cloud is loading its model; retry shortly",
                State.DRAINING: "the cloud is shutting down",
                State.FAILED: f"the cloud failed to load its model: {self.error}",
            }
            raise Abort(grpc.StatusCode.UNAVAILABLE, why.get(self.state, "not serving"))
        lim = self.limits
        asm = wire.Assembler(
            max_request_bytes=lim.max_request_bytes,
            max_chunk_bytes=lim.max_chunk_bytes,
            max_pixels=lim.max_pixels,
        )
        try:
            async with asyncio.timeout(lim.stream_timeout_s):  # one timer per stream
                item = await self._receive(request_iterator.__aiter__(), asm, ctx)
        except TimeoutError:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "stream not completed within the cloud's stream timeout",
            ) from None
        except WireFormatError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        finally:
            asm.discard()
        del asm
        self.counters["bytes_received"] += item.total_bytes
        self.metrics.received.inc(item.total_bytes)
        ndesc = len(item.received)
        nerased = sum(d.erased for d in item.header.descriptions)
        self.counters["descriptions"] += ndesc
        self.counters["erasures"] += nerased
        ctx["log"] = f"bytes={item.total_bytes} descs={ndesc} erased={nerased}"

        key = item.key
        cached = self._cache.get(key)
        if cached is not None:
            digest, reply = cached
            self._same_content(key, digest, item.digest)
            self._cache.move_to_end(key)
            return self._replayed(reply, ctx)
        job = self._jobs.get(key)
        if job is not None:
            self._same_content(key, job.digest, item.digest)
            job.waiters += 1
            replayed = True
            del item
        else:
            ticket = ctx["ticket"]
            if not ticket.slot:  # the key's cached result was evicted meanwhile
                ticket.release()
                ticket = ctx["ticket"] = self.admission.admit(ticket.nbytes)
            job = self._start_job(item, ticket)
            del item
            ctx["ticket"] = None  # the job releases it when the work ends
            replayed = False
        try:
            remaining = context.time_remaining()
            timeout = (
                lim.request_timeout_s
                if remaining is None
                else min(lim.request_timeout_s, remaining)
            )
            if timeout <= 0:
                raise Abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the call's deadline passed before the request could run",
                )
            try:
                reply = await asyncio.wait_for(asyncio.shield(job.future), timeout)
            except TimeoutError:
                raise Abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no result within {timeout:.1f} s (queue + model); the result "
                    "is kept for a retry with the same idempotency key",
                ) from None
            except WireFormatError as exc:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            except SemcomError as exc:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
            except Abandoned:
                raise Abort(grpc.StatusCode.CANCELLED, "abandoned") from None
        finally:
            job.waiters -= 1
        return self._replayed(reply, ctx) if replayed else self._timed(reply, ctx)

    @staticmethod
    def _timed(reply: pb.SubmitReply, ctx) -> pb.SubmitReply:
        """A copy of ``reply`` (shared with the cache and other waiters) with ``server_s``."""
        out = pb.SubmitReply()
        out.CopyFrom(reply)
        out.server_s = time.perf_counter() - ctx["received_at"]
        return out

    def _needs_query(self, h: pb.SubmitHeader) -> bool:
        """A retrieval request whose query image this cloud does not hold (any more)."""
        return "retrieval" in h.tasks and not self.queries.get(h.run_id, [h.sample_id])[0]

    def _replayed(self, reply: pb.SubmitReply, ctx) -> pb.SubmitReply:
        self.counters["replayed"] += 1
        ctx["log"] = ctx.get("log", "") + " replayed"
        out = pb.SubmitReply()
        out.CopyFrom(reply)
        out.replayed = True
        out.server_s = time.perf_counter() - ctx.get("received_at", time.perf_counter())
        return out

    async def _receive(self, it, asm: wire.Assembler, ctx) -> wire.WireItem:
        """Read the stream into ``asm``: the header is checked (identity, setup) and the
        call admitted before any description byte is taken; the item once it ended."""
        first = await self._next(it)
        if first is None:
            raise WireFormatError("empty stream: no header")
        asm.feed(first)
        h = asm.header
        ctx["key"], ctx["sample"] = h.idempotency_key, h.sample_id
        self._check_identity(h)
        setup = self._setup_of(h)
        if self._needs_query(h):  # a cached reply without its kept image: compute again
            self._cache.pop(h.idempotency_key, None)
        new = h.idempotency_key not in self._cache and h.idempotency_key not in self._jobs
        ctx["nbytes"] = asm.declared_bytes
        ctx["ticket"] = self.admission.admit(asm.declared_bytes, slot=new)
        while True:
            msg = await self._next(it)
            if msg is None:
                break
            asm.feed(msg)
        item = asm.finish()
        ctx["received_at"] = time.perf_counter()
        if not setup:
            self._check_method(item)
        item.setup = setup
        return item

    @staticmethod
    async def _next(it):
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return None

    def _same_content(self, key: str, have: str, got: str) -> None:
        if have != got:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"idempotency key {key!r} was already used for a different request "
                "(content differs); use a new key for new content",
            )

    def _check_identity(self, h: pb.SubmitHeader) -> None:
        for t in h.tasks:
            if t not in wire.GRPC_TASKS:
                raise Abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"task {t!r} is not served over gRPC: it ranks the whole gallery "
                    "in one session; run it in process (`semcom run`)",
                )
            if t not in self.tasks:
                raise Abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"task {t!r} is not among this cloud's tasks "
                    f"(cloud.tasks: {', '.join(self.tasks)})",
                )
        if not h.model_id:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "header field model_id is empty (Status tells the cloud's model id)",
            )
        if h.model_id != self.model_id:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model id differs: the edge expects {h.model_id}, this cloud runs "
                f"{self.model_id} ({self.cfg.cloud.model.name})",
            )
        if h.codebook_id != self.codebook_id:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"codebook id differs: the edge uses {h.codebook_id or 'none'}, this "
                f"cloud has {self.codebook_id or 'none'}",
            )
        msg = wire.settings_mismatch(dict(h.settings), self.settings)
        if msg:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, msg)

    def _setup_of(self, h: pb.SubmitHeader) -> bytes:
        """The setup a header names (``b""`` for none); FAILED_PRECONDITION if unknown."""
        if not h.setup_id:
            return b""
        data = self._setups.get(h.setup_id)
        if data is None:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"unknown stream setup {h.setup_id}: send it with Setup, then submit again",
            )
        return data

    def _check_method(self, item: wire.WireItem) -> None:
        from semcom.stages.envelope import Envelope
        from semcom.types import Description

        for r in item.received:
            if isinstance(r, Description):
                env, _ = Envelope.unpack(r.data[:16])
                if env.method != self.cfg.edge.method:
                    raise WireFormatError(
                        f"description {r.index} carries method "
                        f"'{env.method}', this cloud decodes "
                        f"'{self.cfg.edge.method}'"
                    )

    # -- the work --------------------------------------------------------------------
    def _start_job(self, item: wire.WireItem, ticket) -> Job:
        loop = asyncio.get_running_loop()
        group = (item.tasks, int(item.header.seed), wire.setup_id(item.setup))
        job = Job(item.key, item.digest, item, group, loop.create_future())
        self._jobs[item.key] = job

        def done(fut: asyncio.Future) -> None:
            self._jobs.pop(job.key, None)
            ticket.release()
            if fut.cancelled() or fut.exception() is not None:
                return
            reply = fut.result()
            self.counters["computed"] += 1
            if self.limits.cache_size:
                self._cache[job.key] = (job.digest, reply)
                while len(self._cache) > self.limits.cache_size:
                    self._cache.popitem(last=False)

        job.future.add_done_callback(done)
        self.batcher.put(job)
        return job

    def _compute(self, group: tuple, items: list[wire.WireItem]) -> list:
        """One model call for ``items`` (a worker thread); a reply or exception each.
        A batch that fails is retried item by item, so one bad request fails alone."""
        n = len(items)
        with self._lock:
            self._running_requests += n
        try:
            try:
                return self._process(group, items)
            except Exception as exc:
                if n == 1:
                    log.debug("request %s failed", items[0].key, exc_info=True)
                    return [_bare(exc)]
            out = []
            for it in items:
                try:
                    out.extend(self._process(group, [it]))
                except Exception as exc:
                    log.debug("request %s failed", it.key, exc_info=True)
                    out.append(_bare(exc))
            return out
        finally:
            with self._lock:
                self._running_requests -= n

    def _process(self, group: tuple, items: list[wire.WireItem]) -> list[pb.SubmitReply]:
        import numpy as np

        from cloud.pipeline import CloudItem
        from semcom.types import Sample

        tasks, seed, _ = group
        session = self._session(tasks, seed, items[0].setup)
        citems, samples = [], []
        for it in items:
            h, w = it.original_hw
            citems.append(CloudItem(it.sample_id, list(it.received), (h, w), it.question))
            # The cloud never sees pixels: an (H, W, 0) array keeps Sample.hw honest.
            samples.append(
                Sample(
                    it.sample_id,
                    it.header.image_id,
                    np.empty((h, w, 0), np.uint8),
                    question=it.question,
                )
            )
        replies = session.process(citems, samples)
        for task in session.set_tasks:  # a whole-set task: keep each image for Rank
            kept = session.take(task)
            if len(kept) != len(items):
                raise RuntimeError(f"{task} kept {len(kept)} images for {len(items)}")
            for it, (emb, toks, _) in zip(items, kept):
                self.queries.put(it.header.run_id, it.sample_id, it.header.image_id, emb, toks)
        return [
            wire.make_reply(key=it.key, sample_id=it.sample_id, reply=r, model_id=self.model_id)
            for it, r in zip(items, replies)
        ]

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
