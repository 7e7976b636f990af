"""The cloud daemon's server: the service, health, auth and TLS in a ``grpc.aio`` server.

:class:`CloudServer` wires :class:`cloud.service.CloudService` (``semcom.v1.EdgeCloud``,
on the raw-bytes handlers of :mod:`cloud.guard`), the standard health service, the
token interceptor and TLS into a ``grpc.aio`` server, and optionally a Prometheus
``/metrics`` endpoint (:mod:`cloud.metrics`); :class:`ServerThread` runs one in a
background thread (tests, benchmarks, embedding). The bounds are
:class:`cloud.limits.Limits`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass

import grpc

from cloud.limits import RETRY_AFTER_KEY, Limits
from cloud.service import CloudService, State
from semcom import wire

__all__ = [
    "RETRY_AFTER_KEY",
    "CloudServer",
    "CloudService",
    "Limits",
    "ServerTLS",
    "ServerThread",
    "State",
]

log = logging.getLogger("semcom.cloud")

STREAM_WINDOW_BYTES = 4 << 20  # HTTP/2 receive window per stream (4 MiB: 80 MB/s at 50 ms)


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
        limits: Limits | None = None,
        backend=None,
        loader=None,
        warmup: bool = True,
        open_health: bool = False,
        metrics_listen: str | None = None,
        gallery=None,
    ):
        from grpc_health.v1 import health

        from semcom import security

        security.check_bind(listen, tls=tls is not None)
        self.listen = listen
        self.health = health.aio.HealthServicer()
        self.service = CloudService(
            cfg,
            limits,
            backend=backend,
            loader=loader,
            health=self.health,
            warmup=warmup,
            gallery=gallery,
        )
        exempt = security.HEALTH_METHODS if open_health else ()
        self._interceptor = security.make_interceptor(
            token, exempt=exempt, on_reject=self.service.count_unauthenticated
        )
        self._tls = tls
        self._metrics_listen = metrics_listen
        self.metrics_port: int | None = None
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING until :meth:`load`)."""
        from grpc_health.v1 import health_pb2

        from cloud.guard import health_handler, service_handler
        from semcom import security

        lim = self.service.limits
        opts = [
            ("grpc.max_receive_message_length", lim.max_message_bytes),
            ("grpc.max_send_message_length", lim.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # a fixed receive window per stream instead of one that grows with the
            # bandwidth-delay estimate: a stream the cloud refuses (busy, over the bytes
            # in flight) can have at most this much in the cloud's buffers
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
        ]
        self.server = grpc.aio.server(
            interceptors=[self._interceptor],
            options=opts,
            maximum_concurrent_rpcs=2 * lim.slots + 64,
        )
        self.server.add_generic_rpc_handlers(
            (
                service_handler(self.service),
                health_handler(self.health, self.service.metrics),
            )
        )
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
        if self._metrics_listen:
            from semcom import security

            host, mport = security.split_address(self._metrics_listen)
            try:
                self.metrics_port = self.service.metrics.serve_http(host, mport)
            except OSError as exc:
                raise security.SecurityError(
                    f"cannot serve metrics on {self._metrics_listen}: {exc}"
                ) from None
            log.info("Prometheus metrics on http://%s:%d/metrics", host, self.metrics_port)
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
        summ = self.service.metrics.summary()
        log.info(
            "stopped: %d requests, %d ok (%d computed, %d replayed), %d invalid, %d busy, "
            "%d internal; %d model calls, %.2f requests per call",
            c["requests"],
            c["ok"],
            c["computed"],
            c["replayed"],
            c["invalid_argument"],
            c["resource_exhausted"],
            c["internal"],
            summ["batch_count"],
            summ["batch_mean"],
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
