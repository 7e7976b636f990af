"""``semcom cloud``: the cloud daemon (gRPC server) and its tools.

    semcom cloud serve --config C --listen 127.0.0.1:50051 --tls-cert S.pem --tls-key S.key \\
                       --token-file TOKEN
    semcom cloud status --cloud HOST:PORT --ca CA.pem --token-file TOKEN
    semcom cloud gen-certs --out DIR            (throwaway CA, certificates and token)

``serve`` loads the model of ``cloud.model`` once (health NOT_SERVING until it is loaded
and warm), then answers Submit calls with the same cloud session as ``semcom run``;
SIGTERM / SIGINT drain it: health NOT_SERVING, new calls refused, in-flight ones finish
within ``--grace`` seconds. See docs/daemons.md.
"""

from __future__ import annotations

import argparse

from semcom.cliargs import add_config_args, parser

MIB = 1 << 20


def _add_token(p) -> None:
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token file (default: the SEMCOM_TOKEN environment variable)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = parser(
        "cloud",
        "The cloud daemon: a gRPC server that runs the VLM on what the edge's receiver got.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{serve,status,gen-certs}")

    s = sub.add_parser(
        "serve",
        help="serve the cloud model over gRPC",
        description="Serve the model of cloud.model over gRPC (semcom.v1).",
    )
    add_config_args(s)
    s.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        metavar="HOST:PORT",
        help="address to bind (default 127.0.0.1:50051, loopback; port 0 picks one)",
    )
    s.add_argument("--tls-cert", metavar="PEM", help="server certificate (TLS)")
    s.add_argument("--tls-key", metavar="PEM", help="server private key (TLS)")
    s.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    s.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext without TLS (loopback addresses only; tokens still checked)",
    )
    _add_token(s)
    s.add_argument(
        "--open-health",
        action="store_true",
        help="answer health checks without a token (for load-balancer probes)",
    )
    s.add_argument("--workers", type=int, default=1, help="model calls (batches) at once (1)")
    s.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per model call (default: the cores / --workers, at least 1)",
    )
    s.add_argument(
        "--max-batch", type=int, default=8, help="requests gathered into one model call (8)"
    )
    s.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="how long a batch's first request waits for more (5)",
    )
    s.add_argument(
        "--refill-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="a batch that waited for a busy model keeps gathering this long after the "
        "model frees, or until full (0: off)",
    )
    s.add_argument(
        "--batch",
        action="append",
        default=[],
        metavar="TASK=N[:MS]",
        help="per-task max batch (and wait), e.g. vqa=16:10; repeatable",
    )
    s.add_argument(
        "--max-inflight-mib",
        type=float,
        default=None,
        metavar="MIB",
        help="description bytes held across all requests at once; beyond: "
        "RESOURCE_EXHAUSTED with a retry hint (default 1/16 of host memory, 256 to 2048)",
    )
    s.add_argument(
        "--gallery",
        metavar="FILE",
        help='retrieval\'s gallery: JSON lines {"image_id": ..., "captions": [...]} '
        "(default, when cloud.tasks has retrieval: the captions of the config's data set)",
    )
    s.add_argument(
        "--max-query-mib",
        type=float,
        default=None,
        metavar="MIB",
        help="retrieval query images (embeddings, tokens) held for Rank across runs "
        "(default 1/8 of host memory, 256 to 4096)",
    )
    s.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default)",
    )
    s.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="admitted requests beyond the running batches; beyond: RESOURCE_EXHAUSTED (64)",
    )
    s.add_argument(
        "--max-request-mib",
        type=float,
        default=64,
        help="largest Submit stream, MiB of description bytes (64)",
    )
    s.add_argument(
        "--max-pixels", type=int, default=1 << 26, help="largest original H x W accepted (67108864)"
    )
    s.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="queue + model time per request, capped by the call deadline (120)",
    )
    s.add_argument(
        "--stream-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="time to receive one whole stream (60)",
    )
    s.add_argument(
        "--cache-size",
        type=int,
        default=4096,
        help="idempotency cache entries (recent results replayed to retries) (4096)",
    )
    s.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM, seconds in-flight requests get to finish (30)",
    )
    s.add_argument("--no-warmup", action="store_true", help="skip the warm-up request")
    s.add_argument("--port-file", metavar="FILE", help="write the bound port here once listening")
    s.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    s.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")

    st = sub.add_parser("status", help="ask a cloud daemon for its health and status")
    st.add_argument("--cloud", required=True, metavar="HOST:PORT")
    st.add_argument("--ca", metavar="PEM", help="CA that signed the cloud's certificate")
    st.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    st.add_argument("--tls-key", metavar="PEM", help="client key (mutual TLS)")
    st.add_argument("--server-name", help="expected name in the cloud's certificate")
    st.add_argument("--insecure", action="store_true", help="plaintext (loopback only)")
    _add_token(st)
    st.add_argument("--json", action="store_true", help="print the status as JSON")

    g = sub.add_parser(
        "gen-certs", help="write a throwaway CA, certificates and a token (development only)"
    )
    g.add_argument("--out", required=True, metavar="DIR")
    g.add_argument(
        "--hosts",
        default="localhost,127.0.0.1,::1",
        help="names and addresses in the server certificate (comma-separated)",
    )
    g.add_argument("--days", type=int, default=30, help="validity (30)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "serve":
        return serve_main(args)
    if args.cmd == "status":
        return status_main(args)
    return gen_certs_main(args)


# ------------------------------------------------------------------------------ serve


def serve_main(args) -> int:
    import logging

    logging.basicConfig(
        level=logging.WARNING
        if args.quiet
        else logging.INFO
        if args.verbose <= 0
        else logging.DEBUG,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from semcom import security
    from semcom.config import load_config

    cfg = load_config(args.config, args.overrides)
    token = security.load_token(args.token_file)
    tls = None
    if args.tls_cert or args.tls_key:
        from cloud.server import ServerTLS

        if not (args.tls_cert and args.tls_key):
            raise security.SecurityError("TLS needs both --tls-cert and --tls-key")
        tls = ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_client_ca:
        raise security.SecurityError("--tls-client-ca needs --tls-cert and --tls-key")
    elif not args.insecure:
        raise security.SecurityError(
            "no TLS: give --tls-cert and --tls-key (or --insecure for "
            "plaintext on a loopback address)"
        )
    from cloud.server import Limits

    try:
        extra = {}
        if args.max_inflight_mib is not None:
            extra["max_inflight_bytes"] = int(args.max_inflight_mib * MIB)
        if args.max_query_mib is not None:
            extra["max_query_bytes"] = int(args.max_query_mib * MIB)
        limits = Limits(
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            refill_ms=args.refill_ms,
            task_batch=tuple(_task_batch(b, args.max_wait_ms) for b in args.batch),
            **extra,
            workers=args.workers,
            max_queue=args.max_queue,
            max_request_bytes=int(args.max_request_mib * MIB),
            request_timeout_s=args.request_timeout,
            stream_timeout_s=args.stream_timeout,
            cache_size=args.cache_size,
            max_pixels=args.max_pixels,
        )
    except ValueError as exc:
        raise security.SecurityError(f"bad limit: {exc}") from None
    gallery = build_gallery(cfg, args.gallery)
    import os

    threads = (
        args.threads
        if args.threads is not None
        else max(1, (os.cpu_count() or 1) // max(1, args.workers))
    )
    if threads < 1:
        raise security.SecurityError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    import asyncio

    return asyncio.run(
        serve(
            cfg,
            gallery=gallery,
            listen=args.listen,
            token=token,
            tls=tls,
            limits=limits,
            grace=args.grace,
            warmup=not args.no_warmup,
            open_health=args.open_health,
            port_file=args.port_file,
            metrics_listen=args.metrics_listen,
        )
    )


def build_gallery(cfg, path=None):
    """Retrieval's gallery for a cloud serving ``cfg``: the JSON-lines file ``path``, or the
    captions of the config's data set (what ``semcom run`` on that config ranks against);
    ``None`` when ``cloud.tasks`` has no retrieval."""
    from cloud.gallery import Gallery, GalleryError

    if "retrieval" not in cfg.cloud.tasks:
        if path:
            raise GalleryError("--gallery is for retrieval: add it to cloud.tasks")
        return None
    if path:
        return Gallery.read(path)
    from semcom.commands.runner import load_samples

    d = cfg.data
    return Gallery.from_samples(load_samples(cfg, "retrieval"), f"data.dataset={d.dataset}")


def _task_batch(text: str, wait_ms: float) -> tuple[str, int, float]:
    """``TASK=N[:MS]`` -> (task, max batch, max wait ms; default ``wait_ms``)."""
    from semcom.security import SecurityError

    task, _, rest = text.partition("=")
    n, _, ms = rest.partition(":")
    try:
        return task.strip(), int(n), float(ms) if ms else wait_ms
    except ValueError:
        raise SecurityError(f"--batch {text!r}: expected TASK=N[:MS], e.g. vqa=16:10") from None


async def serve(
    cfg,
    *,
    listen: str,
    token: str,
    tls=None,
    limits=None,
    grace: float = 30.0,
    warmup: bool = True,
    open_health: bool = False,
    port_file=None,
    backend=None,
    loader=None,
    metrics_listen=None,
    gallery=None,
) -> int:
    """Run the daemon until SIGTERM / SIGINT; 0 after a clean drain, 1 if the model failed."""
    import asyncio
    import logging
    import signal
    from pathlib import Path

    from cloud.server import CloudServer, Limits

    log = logging.getLogger("semcom.cloud")
    srv = CloudServer(
        cfg,
        listen=listen,
        token=token,
        tls=tls,
        limits=limits or Limits(),
        backend=backend,
        loader=loader,
        warmup=warmup,
        open_health=open_health,
        metrics_listen=metrics_listen,
        gallery=gallery,
    )
    port = await srv.start()
    if port_file:
        from semcom.results import atomic_write_text

        atomic_write_text(Path(port_file), f"{port}\n")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    load = asyncio.create_task(srv.load())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({load, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if load.done() and load.exception() is not None:
        code = 1
        log.error("exiting: the cloud model did not load")
    elif not stop.is_set():
        await stopper
    log.info("shutting down (grace %.0f s)", grace)
    await srv.stop(0 if code else grace)
    if not load.done():
        load.cancel()
    stopper.cancel()
    return code


# ------------------------------------------------------------------------------ status


def status_main(args) -> int:
    import json

    import grpc
    from google.protobuf import json_format

    from protos import semcom_pb2 as pb
    from protos import semcom_pb2_grpc as pb_grpc
    from semcom import security, wire

    token = security.load_token(args.token_file)
    opts = [("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES)]
    if args.server_name:
        opts.append(("grpc.ssl_target_name_override", args.server_name))
    if args.insecure:
        host, _ = security.split_address(args.cloud)
        if not security.is_loopback(host):
            raise security.SecurityError("plaintext only to loopback addresses (give --ca)")
        channel = grpc.insecure_channel(args.cloud, options=opts)
    else:
        channel = grpc.secure_channel(
            args.cloud, security.channel_credentials(args.ca, args.tls_cert, args.tls_key), opts
        )
    md = security.bearer_metadata(token)
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=wire.SERVICE), timeout=10, metadata=md
            )
            st = pb_grpc.EdgeCloudStub(channel).Status(pb.StatusRequest(), timeout=10, metadata=md)
    except grpc.RpcError as exc:
        print(f"semcom cloud status: {args.cloud}: {exc.code().name}: {exc.details()}")
        return 1
    data = json_format.MessageToDict(
        st, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    data["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        c = data["counters"]
        print(
            f"{args.cloud}: {data['health']} ({data['state']}), semcom {data['version']}, "
            f"protocol {data['protocol']}, up {data['uptime_s']:.0f} s"
        )
        print(
            f"  method {data['method']}, model {data['model_id']}, codebook "
            f"{data['codebook_id'] or 'none'}, tasks {', '.join(data['tasks'])}"
        )
        print(
            f"  requests {c['requests']}: ok {c['ok']} (computed {c['computed']}, replayed "
            f"{c['replayed']}), invalid {c['invalid_argument']}, precondition "
            f"{c['failed_precondition']}, busy {c['resource_exhausted']}, unauthenticated "
            f"{c['unauthenticated']}; in flight {c['in_flight']}, running {c['running']}"
        )
        if data.get("error"):
            print(f"  error: {data['error']}")
    return 0 if data["health"] == "SERVING" else 1


# ------------------------------------------------------------------------------ gen-certs


def gen_certs_main(args) -> int:
    from semcom.security import make_dev_pki

    hosts = tuple(h.strip() for h in args.hosts.split(",") if h.strip())
    paths = make_dev_pki(args.out, hosts=hosts, days=args.days)
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    print("development only: the CA key is beside the certificates")
    return 0
