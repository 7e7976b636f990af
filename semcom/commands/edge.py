"""``semcom edge``: the edge daemon, a gRPC client of ``semcom cloud serve``.

    semcom edge run --config C --cloud HOST:PORT --ca CA.pem --token-file TOKEN \\
                    [--images DIR [--questions FILE]] [--set KEY=VALUE ...]

``run`` is ``semcom run`` with the cloud half behind gRPC: the same runner
(:func:`semcom.commands.runner.run`) loads the samples (a dataset from the config, or a folder of
images with ``--images``), encodes them with the edge method, simulates the link, and
hands what the receiver got to a :class:`edge.client.GrpcTransport`, which streams it to
the cloud daemon and journals each reply durably. The record and ``samples.jsonl`` are
built by the same code as ``semcom run``, so for the same config and seed they hold the
same results. A killed edge resumes: run the same command again (journaled replies are
not asked for again); ``--overwrite`` starts over. See docs/daemons.md.
"""

from __future__ import annotations

import argparse

from semcom.cliargs import add_config_args, parser, setup_logging


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cloud", required=True, metavar="HOST:PORT", help="the cloud daemon")
    p.add_argument(
        "--ca",
        metavar="PEM",
        help="CA that signed the cloud's certificate (default: the system's roots)",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    p.add_argument(
        "--server-name",
        help="name expected in the cloud's certificate (default: the host of --cloud)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="plaintext without TLS (loopback addresses only)"
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token file (default: the SEMCOM_TOKEN environment variable)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = parser(
        "edge",
        "The edge daemon: encode, simulate the link, stream what the receiver "
        "got to the cloud daemon, record the results.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run}")
    r = sub.add_parser(
        "run",
        help="one run through a cloud daemon (resumable)",
        description="One run (like `semcom run`) whose cloud half is a cloud "
        "daemon. Resumable: run it again after a crash.",
    )
    add_config_args(r)
    _add_connection(r)
    r.add_argument(
        "--images",
        metavar="DIR",
        help="a folder of images (data.dataset=folder, data.path=DIR: every file "
        "Pillow reads, sub-folders included, unless data.num_images is set; a file "
        "that cannot be read becomes its sample's error row)",
    )
    r.add_argument(
        "--questions",
        metavar="FILE",
        help="questions for the images (VQA; a list of {file, question, answers}, file "
        "names relative to DIR; default DIR/questions.json)",
    )
    r.add_argument("--out", metavar="DIR", help="results root (overrides run.out_dir)")
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="redo the run even if its record exists (forgets the journal)",
    )
    r.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="deadline of each call (300)"
    )
    r.add_argument(
        "--retry-for",
        type=float,
        default=600.0,
        metavar="S",
        help="keep retrying an unavailable or busy cloud this long per request (600)",
    )
    r.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="S",
        help="wait this long for the cloud to be SERVING at start (600)",
    )
    r.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="requests in flight at once (4; at most run.batch_size are available)",
    )
    r.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(args)


def _overrides(args) -> list[str]:
    from pathlib import Path

    from semcom.config import load_raw
    from semcom.errors import DataError

    overrides = list(args.overrides)
    if args.images:
        from semcom.data.folder import list_images

        root = Path(args.images).expanduser()
        if not root.is_dir():
            raise DataError(f"--images: not a folder: {root}")
        if not list_images(root):
            raise DataError(f"--images: no images (any format Pillow reads) in {root}")
        raw_data = load_raw(args.config).get("data") or {}
        overrides[:0] = ["data.dataset=folder", f"data.path={root.resolve()}"]
        if "num_images" not in raw_data and not any(
            o.startswith("data.num_images=") for o in overrides
        ):
            overrides.insert(2, "data.num_images=null")  # every image in the folder
    if args.questions:
        if not args.images:
            raise DataError("--questions needs --images DIR")
        q = Path(args.questions).expanduser().resolve()
        if not q.is_file():
            raise DataError(f"--questions: {q} not found (a list of {{file, question, answers}})")
        overrides.append(f"data.questions={q}")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.quiet:
        overrides.append("run.progress=false")
    return overrides


def run_main(args) -> int:
    setup_logging(args.verbose)
    from pathlib import Path

    from edge.client import JOURNAL_NAME, CloudClient, GrpcTransport
    from semcom import security
    from semcom.commands.runner import run
    from semcom.config import load_config
    from semcom.errors import DataError
    from semcom.fingerprint import run_id
    from semcom.results import RunPaths, atomic_write_json, read_record

    cfg = load_config(args.config, _overrides(args))
    if args.questions and "vqa" not in cfg.cloud.tasks:
        raise DataError("--questions given but cloud.tasks has no vqa (--set cloud.tasks=[vqa])")
    if args.concurrency < 1:
        raise security.SecurityError("--concurrency must be >= 1")
    token = security.load_token(args.token_file)
    paths = RunPaths(Path(cfg.run.out_dir), run_id(cfg))
    journal = paths.dir / JOURNAL_NAME
    if paths.done() and not args.overwrite:
        res = run(cfg)  # skipped: the record exists
        print(res.summary())
        return res.exit_code
    if args.overwrite and journal.exists():
        journal.unlink()
    client = CloudClient(
        args.cloud,
        token=token,
        ca=args.ca,
        cert=args.tls_cert,
        key=args.tls_key,
        insecure=args.insecure,
        server_name=args.server_name,
        timeout_s=args.timeout,
        retry_for_s=args.retry_for,
    )
    transport = GrpcTransport(
        cfg, client, journal=journal, concurrency=args.concurrency, wait_s=args.wait
    )
    try:
        transport.connect()
        result = run(cfg, overwrite=args.overwrite, transport=transport)
    finally:
        transport.close()
    record = read_record(result.record_path)
    record["transport"] = {
        "kind": "grpc",
        "cloud": args.cloud,
        "cloud_model_id": transport._model_id,
        "cloud_version": transport.status.version if transport.status else None,
        "journal": str(journal),
        **transport.stats,
        "retries": client.retries,
        "retries_by_code": dict(client.retries_by_code),
        **transport.latency_summary(),
    }
    atomic_write_json(result.record_path, record)
    print(result.summary())
    s = transport.stats
    why = ", ".join(f"{n} {c}" for c, n in sorted(client.retries_by_code.items()))
    print(
        f"  cloud {args.cloud}: {s['sent']} sent, {s['from_journal']} from the journal, "
        f"{s['cloud_replayed']} replayed by the cloud, {client.retries} retries"
        + (f" ({why})" if why else "")
    )
    lat = record["transport"]
    if lat["latency_ms"]:
        a, b = lat["latency_ms"], lat["transport_ms"]
        print(
            f"  latency p50 {a['p50']:.1f} ms, p90 {a['p90']:.1f} ms, p99 {a['p99']:.1f} ms; "
            f"transport (latency minus cloud time) p50 {b['p50']:.2f} ms, p99 {b['p99']:.2f} ms"
        )
    return result.exit_code  # 0 ok, 1 failed, 3 some samples could not be read
