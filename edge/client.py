"""The edge's gRPC transport: the runner's cloud sessions, served by a cloud daemon.

:class:`CloudClient` is one channel to ``semcom cloud serve``: TLS or plaintext (loopback),
the bearer token on every call, a deadline on every call, message size limits, and
retries with exponential backoff and jitter for UNAVAILABLE (cloud down, restarting or
warming up), for CANCELLED (a cloud that stops cancels the calls it has), for
RESOURCE_EXHAUSTED when the cloud says it is busy, and (twice) for DEADLINE_EXCEEDED. Every retry reuses the transmission's idempotency key, so the cloud
answers a retry from its cache instead of counting it twice.

:class:`GrpcTransport` is what ``semcom.commands.runner.run(cfg, transport=...)`` takes in place
of the in-process transport: ``open(tasks, samples)`` returns a :class:`GrpcSession`
whose ``process(items, samples)`` sends each transmission (what the simulated receiver
got: descriptions and erasure markers) as one Submit stream (or one SubmitOne message
when it fits 1 MiB), up to ``concurrency`` at once, and returns the cloud's replies in
order; ``finalize()`` asks the cloud to rank retrieval over the images it sent (Rank).
Each reply is appended to a durable journal (JSONL, flushed and fsynced) before it is
used; a killed edge that runs again
takes the journaled replies instead of asking the cloud again, so every transmission's
result is in the journal, and in the run's ``samples.jsonl``, exactly once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from semcom import wire
from semcom.errors import SemcomError

log = logging.getLogger("semcom.edge")

JOURNAL_NAME = "edge-journal.jsonl"


class CloudError(SemcomError):
    """The cloud refused a request (or could not be reached within the retry budget)."""

    def __init__(self, code_name: str, message: str):
        self.code_name, self.message = code_name, message
        super().__init__(f"cloud answered {code_name}: {message}")


class CloudClient:
    """One channel to a cloud daemon, with auth, deadlines and retries."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        timeout_s: float = 300.0,
        retry_for_s: float = 600.0,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        deadline_retries: int = 2,
        chunk_bytes: int = wire.MAX_CHUNK_BYTES,
    ):
        import grpc

        from protos import semcom_pb2_grpc as pb_grpc
        from semcom import security

        security.split_address(target)
        self.target = target
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.backoff_s = backoff_s
        self.deadline_retries = deadline_retries
        self.chunk_bytes = chunk_bytes
        self._md = security.bearer_metadata(token)
        opts = [
            ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.enable_retries", 0),
        ]  # retries are ours: explicit, with the same key
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        if insecure:
            host, _ = security.split_address(target)
            if not security.is_loopback(host):
                raise security.SecurityError(
                    f"refusing plaintext to {target}: only loopback "
                    "addresses may be reached without TLS (give --ca)"
                )
            self.channel = grpc.insecure_channel(target, options=opts)
        else:
            creds = security.channel_credentials(ca, cert, key)
            self.channel = grpc.secure_channel(target, creds, options=opts)
        self.stub = pb_grpc.EdgeCloudStub(self.channel)
        self._tls = None if insecure else (ca, cert, key, server_name)
        self.retries = 0
        self.retries_by_code: dict[str, int] = {}  # status code name -> retries after it
        self._one_message = True  # SubmitOne for small transmissions (until UNIMPLEMENTED)
        self._lock = threading.Lock()

    # -- unary calls -----------------------------------------------------------------
    def status(self, timeout_s: float = 10.0):
        from protos import semcom_pb2 as pb

        return self.stub.Status(pb.StatusRequest(), timeout=timeout_s, metadata=self._md)

    def health(self, timeout_s: float = 5.0, service: str = wire.SERVICE) -> str:
        """The health status name (``SERVING``, ``NOT_SERVING``, ...)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, metadata=self._md
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_until_serving(self, wait_s: float):
        """Status once the cloud is SERVING; retries UNAVAILABLE and STARTING for ``wait_s``."""
        import grpc

        from protos import semcom_pb2 as pb

        end = time.monotonic() + wait_s
        delay = self.backoff_s[0]
        last = "no answer"
        while True:
            try:
                st = self.status()
                if st.state == pb.StatusReply.SERVING:
                    return st
                if st.state == pb.StatusReply.FAILED:
                    raise CloudError(
                        "FAILED_PRECONDITION", f"the cloud failed to load its model: {st.error}"
                    )
                last = f"state {pb.StatusReply.State.Name(st.state)}"
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise CloudError(exc.code().name, exc.details() or "") from None
                last = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self.raise_for_tls()
            if time.monotonic() + delay > end:
                raise CloudError(
                    "UNAVAILABLE", f"cloud {self.target} not serving after {wait_s:.0f} s ({last})"
                )
            time.sleep(delay)
            delay = min(self.backoff_s[1], delay * 2)

    def raise_for_tls(self) -> None:
        """A CloudError naming the failed side of the TLS handshake and why, if the TLS
        handshake is what fails (gRPC reports it only as ``UNAVAILABLE``); nothing if the
        handshake succeeds or the cloud is simply down."""
        if self._tls is None:
            return
        from semcom.security import diagnose_tls

        why = diagnose_tls(self.target, *self._tls)
        if why:
            raise CloudError("UNAVAILABLE", f"TLS handshake with {self.target} failed: {why}")

    # -- Setup, Rank ------------------------------------------------------------------
    def _unary(self, call, request, what: str, retry_codes=("UNAVAILABLE",)):
        """``call(request)`` with the deadline and token; retries ``retry_codes`` with
        backoff and jitter within the retry budget; a CloudError naming ``what`` else."""
        import grpc

        start, attempt = time.monotonic(), 0
        while True:
            try:
                return call(request, timeout=self.timeout_s, metadata=self._md)
            except grpc.RpcError as exc:
                code = exc.code()
                cap = min(self.backoff_s[1], self.backoff_s[0] * 2**attempt)
                delay = random.uniform(0, cap)
                if code.name not in retry_codes or (
                    time.monotonic() - start + delay > self.retry_for_s
                ):
                    raise CloudError(code.name, f"{what}: {exc.details() or code.name}") from None
                attempt += 1
                with self._lock:
                    self.retries += 1
                time.sleep(delay)

    def setup(self, data: bytes) -> str:
        """Send a stream setup; its id. Retries UNAVAILABLE within the retry budget."""
        from protos import semcom_pb2 as pb

        return self._unary(self.stub.Setup, pb.SetupRequest(setup=data), "stream setup").setup_id

    def rank(self, *, run_id: str, task: str, sample_ids, image_ids, seed: int):
        """RankReply of a run's whole-set task; retries UNAVAILABLE (and CANCELLED: a
        stopping cloud cancels its calls) within the retry budget."""
        from protos import semcom_pb2 as pb

        req = pb.RankRequest(
            run_id=run_id,
            task=task,
            sample_ids=list(sample_ids),
            image_ids=list(image_ids),
            seed=int(seed),
        )
        return self._unary(self.stub.Rank, req, f"rank {task}", ("UNAVAILABLE", "CANCELLED"))

    # -- Submit ----------------------------------------------------------------------
    def submit(self, header, payloads: list[bytes]):
        """One transmission -> SubmitReply, retrying what is safe to retry. A transmission
        whose descriptions fit one chunk goes as one message (SubmitOne), else as a
        stream (Submit)."""
        import grpc

        from protos import semcom_pb2 as pb

        start = time.monotonic()
        attempt = deadline_fails = 0
        one = self._one_message and sum(len(p) for p in payloads) <= self.chunk_bytes
        while True:
            try:
                messages = wire.request_messages(header, payloads, chunk_bytes=self.chunk_bytes)
                if one:  # fits one message: a unary call, no request stream to drive
                    return self.stub.SubmitOne(
                        pb.SubmitBundle(parts=list(messages)),
                        timeout=self.timeout_s,
                        metadata=self._md,
                        wait_for_ready=False,
                    )
                return self.stub.Submit(
                    messages, timeout=self.timeout_s, metadata=self._md, wait_for_ready=False
                )
            except grpc.RpcError as exc:
                code = exc.code()
                if one and code == grpc.StatusCode.UNIMPLEMENTED:  # a cloud without it
                    self._one_message = one = False
                    continue
                retry_after = _retry_after(exc)
                # UNAVAILABLE: down, restarting, warming up, draining. CANCELLED: a sync call
                # is never cancelled by this side, so the server cancelled it (a cloud that
                # stops sends GOAWAY and cancels its calls). The same key makes both safe.
                retry = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) or (
                    code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None
                )
                if (
                    code == grpc.StatusCode.DEADLINE_EXCEEDED
                    and deadline_fails < self.deadline_retries
                ):
                    deadline_fails += 1
                    retry = True
                cap = min(self.backoff_s[1], self.backoff_s[0] * 2**attempt)
                delay = max(random.uniform(0, cap), retry_after or 0.0)
                if not retry or time.monotonic() - start + delay > self.retry_for_s:
                    raise CloudError(
                        code.name,
                        f"sample {header.sample_id}: "
                        f"{exc.details() or code.name}"
                        + (f" (after {attempt} retries)" if attempt else ""),
                    ) from None
                attempt += 1
                with self._lock:
                    self.retries += 1
                    self.retries_by_code[code.name] = self.retries_by_code.get(code.name, 0) + 1
                log.info(
                    "retry %d for %s in %.2f s: %s %s",
                    attempt,
                    header.sample_id,
                    delay,
                    code.name,
                    exc.details(),
                )
                time.sleep(delay)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _retry_after(exc) -> float | None:
    try:
        for k, v in exc.trailing_metadata() or ():
            if k == "semcom-retry-after-ms":
                return max(0.0, float(v) / 1000.0)
    except Exception:
        return None
    return None


class Journal:
    """Durable replies by idempotency key (the edge's source of truth for exactly once)."""

    def __init__(self, path: str | Path):
        from semcom.results import DurableJsonl

        self.path = Path(path)
        self._file = DurableJsonl(self.path)
        self._rows: dict[str, dict] = {}
        for row in self._file.rows():
            self._rows.setdefault(row["key"], row)
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def append(self, row: dict) -> None:
        with self._lock:
            if row["key"] in self._rows:  # a concurrent duplicate: keep the first
                return
            self._file.append(row)
            self._rows[row["key"]] = row

    def close(self) -> None:
        self._file.close()


class GrpcTransport:
    """The runner's transport over gRPC (see the module docstring).

    ``connect()`` waits for the cloud to be SERVING and checks that it runs what this
    config needs (settings, codebook, tasks, and the edge's own model when edge and
    cloud name the same one); the cloud's model id is then pinned for the whole run.
    """

    def __init__(
        self,
        cfg,
        client: CloudClient,
        *,
        journal: str | Path | None = None,
        concurrency: int = 4,
        wait_s: float = 600.0,
        expect_model_id: str | None = None,
    ):
        from semcom.fingerprint import run_id

        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.cfg = cfg
        self.client = client
        self.run_id = run_id(cfg)
        self.settings = wire.agreed_settings(cfg)
        self.codebook_id = wire.codebook_id(cfg)
        self.concurrency = concurrency
        self.wait_s = wait_s
        self.expect_model_id = expect_model_id
        self._journal_path = journal
        self.journal: Journal | None = None
        self._model_id: str | None = None
        self.status = None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="semcom-edge")
        self.stats = {"sent": 0, "from_journal": 0, "cloud_replayed": 0, "setups_sent": 0}
        self.setup_bytes, self.setup_id = b"", ""
        self._sent_setups: set[str] = set()
        self._stats_lock = threading.Lock()
        self._latency: list[float] = []  # seconds per answered Submit (retries included)
        self._overhead: list[float] = []  # latency minus the cloud's server_s

    def send_setup(self) -> None:
        sid = self.client.setup(self.setup_bytes)
        if sid != self.setup_id:
            raise CloudError("INTERNAL", f"the cloud named setup {sid}, expected {self.setup_id}")
        self._sent_setups.add(sid)
        self._count(setups_sent=1)

    def latency_summary(self) -> dict:
        """Percentiles (ms) of the Submit latency the edge saw and of the transport's part
        of it (latency minus the time the cloud held the request: ``server_s``)."""
        import numpy as np

        with self._stats_lock:
            lat, ovh = list(self._latency), list(self._overhead)
        out: dict = {"answered": len(lat)}
        for name, xs in (("latency_ms", lat), ("transport_ms", ovh)):
            out[name] = (
                {f"p{q}": float(np.percentile(xs, q)) * 1e3 for q in (50, 90, 99)} if xs else None
            )
        return out

    def _count(self, **incs) -> None:
        with self._stats_lock:
            for k, v in incs.items():
                self.stats[k] += v

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self.connect()
        return self._model_id

    def connect(self):
        from semcom.config import to_dict

        bad = [t for t in self.cfg.cloud.tasks if t not in wire.GRPC_TASKS]
        if bad:
            raise SemcomError(
                f"task(s) {', '.join(bad)} cannot run through the cloud daemon "
                f"(it serves {', '.join(wire.GRPC_TASKS)}); run them in process "
                "(`semcom run`) or drop them from cloud.tasks"
            )
        st = self.client.wait_until_serving(self.wait_s)
        msg = wire.settings_mismatch(self.settings, dict(st.settings))
        if msg:
            raise CloudError("FAILED_PRECONDITION", msg)
        if self.codebook_id != st.codebook_id:
            raise CloudError(
                "FAILED_PRECONDITION",
                f"codebook id differs: the edge uses "
                f"{self.codebook_id or 'none'}, the cloud has "
                f"{st.codebook_id or 'none'}",
            )
        missing = [t for t in self.cfg.cloud.tasks if t not in st.tasks]
        if missing:
            raise CloudError(
                "FAILED_PRECONDITION",
                f"the cloud does not serve task(s) "
                f"{', '.join(missing)} (it serves {', '.join(st.tasks) or 'none'})",
            )
        expect = self.expect_model_id or self._edge_model_id()
        if expect and expect != st.model_id:
            raise CloudError(
                "FAILED_PRECONDITION",
                f"model id differs: the edge expects {expect}, the cloud runs {st.model_id}",
            )
        self._model_id = st.model_id
        self.status = st
        if self._journal_path is not None and self.journal is None:
            self.journal = Journal(self._journal_path)
            stale = {r.get("model_id") for r in self.journal._rows.values()} - {st.model_id}
            if stale:
                raise SemcomError(
                    f"the journal {self._journal_path} holds replies of cloud "
                    f"model(s) {sorted(stale)}, the cloud now runs {st.model_id}; "
                    "rerun with --overwrite to start over"
                )
        log.info(
            "cloud %s serving model %s (%s)",
            self.client.target,
            st.model_id,
            to_dict(self.cfg.cloud.model),
        )
        return st

    def _edge_model_id(self) -> str | None:
        """The edge backend's id when edge and cloud name the same model (in process they
        share one backend, so the daemons must run the same one)."""
        import edge.methods  # noqa: F401
        from semcom import registry

        cls = registry.get("edge-method", self.cfg.edge.method)
        if not getattr(cls, "needs_backend", True) or self.cfg.edge.model != self.cfg.cloud.model:
            return None
        from semcom.models import get_backend

        return str(get_backend(self.cfg.edge.model, self.cfg.run.torch_device()).model_id)

    def open(self, tasks, samples, setup: bytes = b"") -> GrpcSession:
        """A session for ``tasks``; the stream ``setup`` goes to the cloud once per
        connection (again only if the cloud forgot it)."""
        self.setup_bytes = bytes(setup)
        self.setup_id = wire.setup_id(self.setup_bytes)
        if self.setup_bytes and self.setup_id not in self._sent_setups:
            self.send_setup()
        if self._model_id is None:
            self.connect()
        bad = [t for t in tasks if t not in wire.GRPC_TASKS]
        if bad:
            raise SemcomError(f"task(s) {', '.join(bad)} cannot run through the cloud daemon")
        return GrpcSession(self, list(tasks))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
        self.client.close()


class GrpcSession:
    """``process(items, samples) -> replies`` over Submit; ``finalize()`` asks the cloud to
    rank the whole-set tasks (retrieval) over what this session sent (Rank), sending again
    any image the cloud no longer holds; ``scores()`` as the in-process session."""

    def __init__(self, transport: GrpcTransport, tasks: list[str]):
        from semcom.tasks import task_spec

        self.t = transport
        self.tasks = tasks
        self.set_tasks = [t for t in tasks if not task_spec(t).per_sample]
        self._sent: list[tuple] = []  # (item, image_id) of every sample, for Rank
        self._scores: dict[str, tuple[list[dict], dict]] = {}

    def process(self, items, samples) -> list[dict]:
        futures = [
            self.t._pool.submit(self._one, item, sample.image_id)
            for item, sample in zip(items, samples)
        ]
        replies, error = [], None
        for f in futures:  # wait for all: finished ones are journaled even if one fails
            try:
                replies.append(f.result())
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error
        if self.set_tasks:
            self._sent.extend((item, s.image_id) for item, s in zip(items, samples))
        return replies

    def _one(self, item, image_id: str, *, journal: bool = True) -> dict:
        t = self.t
        key = wire.idempotency_key(t.run_id, self.tasks, item.sample_id)
        if journal and t.journal is not None and key in t.journal:
            t._count(from_journal=1)
            return t.journal.get(key)["reply"]
        header, payloads = wire.make_header(
            key=key,
            run_id=t.run_id,
            sample_id=item.sample_id,
            image_id=image_id,
            tasks=self.tasks,
            question=item.question,
            original_hw=item.original_hw,
            model_id=t.model_id,
            codebook_id=t.codebook_id,
            settings=t.settings,
            seed=t.cfg.run.seed,
            received=item.received,
            link_cfg=t.cfg.channel,
            link_stats=getattr(item, "link_stats", None),
            setup=t.setup_id,
        )
        t0 = time.perf_counter()
        try:
            msg = t.client.submit(header, payloads)
        except CloudError as exc:
            # a cloud that restarted (or evicted it) no longer holds the setup: send it
            # again, once, then the same request (same idempotency key)
            if not (t.setup_id and "unknown stream setup" in exc.message):
                raise
            t.send_setup()
            msg = t.client.submit(header, payloads)
        latency = time.perf_counter() - t0
        with t._stats_lock:
            t._latency.append(latency)
            t._overhead.append(max(0.0, latency - msg.server_s))
        if msg.idempotency_key != key or msg.sample_id != item.sample_id:
            raise CloudError("INTERNAL", f"reply for {msg.idempotency_key!r}, expected {key!r}")
        reply = wire.reply_to_dict(msg)
        t._count(sent=1, cloud_replayed=int(msg.replayed))
        if t.journal is not None:
            t.journal.append(
                {
                    "key": key,
                    "sample_id": item.sample_id,
                    "model_id": msg.model_id,
                    "replayed": msg.replayed,
                    "t": time.time(),
                    "reply": reply,
                }
            )
        return reply

    def finalize(self) -> dict:
        """``{task: [per-sample output]}`` of the whole-set tasks, ranked by the cloud."""
        import json

        out = {}
        ids = [item.sample_id for item, _ in self._sent]
        image_ids = [image_id for _, image_id in self._sent]
        for task in self.set_tasks:
            if not ids:
                out[task], self._scores[task] = [], ([], {})
                continue
            for attempt in range(3):
                reply = self.t.client.rank(
                    run_id=self.t.run_id,
                    task=task,
                    sample_ids=ids,
                    image_ids=image_ids,
                    seed=self.t.cfg.run.seed,
                )
                if not reply.missing or attempt == 2:  # no resending after the last ask
                    break
                # the cloud restarted (or dropped the run): send those images again
                missing = set(reply.missing)
                log.info(
                    "the cloud no longer holds %d query images: sending them again", len(missing)
                )
                again = [(it, i) for it, i in self._sent if it.sample_id in missing]
                futures = [self.t._pool.submit(self._one, it, i, journal=False) for it, i in again]
                for f in futures:
                    f.result()
            if reply.missing:
                raise CloudError(
                    "FAILED_PRECONDITION",
                    f"rank {task}: the cloud still lacks {len(reply.missing)} query images "
                    "after sending them again (is its --max-query-mib too small for the run?)",
                )
            per = json.loads(reply.per_sample_json)
            metrics = json.loads(reply.metrics_json)
            if len(per) != len(ids):
                raise CloudError("INTERNAL", f"rank {task}: {len(per)} rows for {len(ids)} samples")
            out[task] = per
            self._scores[task] = (per, metrics)
        self._sent = []
        return out

    def scores(self) -> dict[str, tuple[list[dict], dict]]:
        """``{task: (per_sample_scores, metrics)}`` of the tasks the cloud ranked."""
        return dict(self._scores)
