"""The cloud daemon's measurements: Status counters and a Prometheus registry.

:class:`Metrics` keeps the counters ``Status`` reports (requests, ok, one per error
code, bytes, ...) and, in its own ``prometheus_client`` registry (one per service, so
several services in one process do not collide), what ``--metrics-port`` serves at
``/metrics``:

- ``semcom_cloud_requests_total{method, code}``: calls by RPC and final status code;
- ``semcom_cloud_request_seconds{method}``: call latency (histogram);
- ``semcom_cloud_batch_size``, ``semcom_cloud_queue_wait_seconds`` (admission to the
  start of its model call), ``semcom_cloud_model_seconds`` (per model call);
- gauges ``semcom_cloud_in_flight``, ``semcom_cloud_bytes_in_flight``,
  ``semcom_cloud_queue_depth``, ``semcom_cloud_running_batches``;
- ``semcom_cloud_received_bytes_total``.
"""

from __future__ import annotations

import grpc

from protos import semcom_pb2 as pb

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.counters = {
            f.name: 0
            for f in pb.Counters.DESCRIPTOR.fields
            if f.name not in ("in_flight", "running")
        }
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "semcom_cloud_requests", "calls by RPC and status code", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "semcom_cloud_request_seconds",
            "call latency",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "semcom_cloud_batch_size", "requests per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "semcom_cloud_queue_wait_seconds",
            "admission to the start of the request's model call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_time = Histogram(
            "semcom_cloud_model_seconds", "time per model call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("semcom_cloud_in_flight", "admitted requests", registry=r)
        self.bytes_in_flight = Gauge(
            "semcom_cloud_bytes_in_flight", "declared description bytes held", registry=r
        )
        self.queue_depth = Gauge(
            "semcom_cloud_queue_depth", "requests waiting for a model call", registry=r
        )
        self.running = Gauge("semcom_cloud_running_batches", "model calls running", registry=r)
        self.received = Counter(
            "semcom_cloud_received_bytes", "description bytes received", registry=r
        )
        self._http = None

    def call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """One finished call: the Status counter of its code and the Prometheus series."""
        name = code.name.lower()
        if code == grpc.StatusCode.OK:
            if method in ("Submit", "SubmitOne"):
                self.counters["ok"] += 1
        elif name in self.counters:
            self.counters[name] += 1
        self.requests.labels(method, code.name).inc()
        self.latency.labels(method).observe(seconds)

    def admission(self, adm) -> None:
        self.in_flight.set(adm.in_flight)
        self.bytes_in_flight.set(adm.bytes)

    def summary(self) -> dict:
        """Counts by status and batch statistics (for logs and benchmarks)."""
        by = {}
        for m in self.requests.collect():
            for s in m.samples:
                if s.name.endswith("_total") and s.value:
                    key = f"{s.labels['method']}:{s.labels['code']}"
                    by[key] = int(s.value)
        return {"by_status": by, **histogram_stats(self.batch_size, "batch")}

    def serve_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0 picks one); returns the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def histogram_stats(hist, prefix: str) -> dict:
    """``{prefix}_count``, ``{prefix}_mean`` of an unlabelled Histogram."""
    total = count = 0.0
    for m in hist.collect():
        for s in m.samples:
            if s.name.endswith("_sum"):
                total = s.value
            elif s.name.endswith("_count"):
                count = s.value
    return {f"{prefix}_count": int(count), f"{prefix}_mean": total / count if count else 0.0}
