"""Load benchmark of the daemons: 32 concurrent edge clients against one cloud daemon.

``run()`` starts ``semcom cloud serve`` in a subprocess (plaintext on loopback, a bearer
token, 2 workers) with a *cheap* cloud: the JPEG method and a fake backend whose
"vision encoder" is four quadrant means and whose "captioner" is a threshold, so the
cloud's work per request is a JPEG decode plus microseconds of tensor code. What is
measured is the daemon: stream parsing and checks, admission, the idempotency cache,
the worker hand-off, CloudSession plumbing, gRPC and HTTP/2 on loopback, and the edge
client (:class:`edge.client.CloudClient`, one channel each, sync stubs in threads).

Each client sends 96 x 96 JPEG descriptions (one per request, every 8th erased) with
unique idempotency keys for ``run(seconds=...)`` seconds (default ``SEMCOM_BENCH_SECONDS``,
else 60, what ``make bench`` uses; ``python -m benchmarks.bench_grpc bench --seconds S
--clients N`` runs it alone). Reported: requests/s, p50 / p90 / p99 latency, and
exactly-once accounting, checked key by key: ``lost`` = keys sent without an OK answer
for that key, ``duplicated`` = keys answered more than once plus results the cloud
computed beyond one per key (its Status counters), ``unexpected`` = answers for keys
never sent, ``mismatched`` = answers whose output differs from the answer to the same
content (every request for the same pool image and erasure pattern must get the same
caption).

The fakes here (``fake_backend``, ``fake_samples``, ``fake_score``, ``install_fakes``,
on :class:`semcom.models.fake.FakeBackend` and :class:`semcom.testing.FakeLink`) are
shared with tests/test_grpc_*.py, and
``python -m benchmarks.bench_grpc {cloud|edge} ARGS`` runs ``semcom cloud`` / ``semcom
edge`` with them installed (the fault test's subprocesses).
"""

from __future__ import annotations

import os
import sys
import time
import types

import numpy as np

CLIENTS = 32
SECONDS = float(os.environ.get("SEMCOM_BENCH_SECONDS", "60"))


# ------------------------------------------------------------------------------ fakes

MODEL_ID = "fake-backend-0001"


def fake_backend(delay_s: float = 0.0):
    """The shared fake (:mod:`semcom.models.fake`) as the daemons use it here: 1 + 4
    tokens of dim 3 (quadrant means), captions "<bright|dark> <quadrant> <mean>",
    yes / no answers, ``delay_s`` of model time per sample."""
    from semcom.models.fake import FakeBackend

    return FakeBackend(
        encoder="means", grid=2, tasks=("caption", "vqa"), delay_s=delay_s, model_id=MODEL_ID
    )


def fake_samples(n: int = 12, hw=(96, 96), task: str = "caption"):
    from semcom.seeding import rng
    from semcom.types import Sample

    out = []
    for i in range(n):
        g = rng(7, "fake-image", i)
        base = g.integers(0, 256, size=3)
        img = np.empty((*hw, 3), np.uint8)
        img[:] = base
        h2, w2 = hw[0] // 2, hw[1] // 2
        qy, qx = g.integers(0, 2, size=2)
        img[qy * h2 : (qy + 1) * h2, qx * w2 : (qx + 1) * w2] = 255 - base
        cap = "bright" if img.mean() / 255 > 0.5 else "dark"
        if task == "vqa":
            for k in range(2):
                out.append(
                    Sample(
                        f"im{i}-q{k}",
                        f"im{i}",
                        img,
                        [cap],
                        question="is it bright?" if k else "what is in the corner?",
                        answers=["yes"],
                    )
                )
        else:
            out.append(Sample(f"im{i}", f"im{i}", img, [cap]))
    return out


def caption_request(key: str, received, model_id: str, cfg, *, hw=(96, 96), settings=None):
    """``(header, payloads)`` of one caption request for ``received`` (descriptions or
    erasures) under the key ``<run>/caption/<sample>``: seed 0, no codebook, ``settings``
    (default: ``cfg``'s agreed settings; give them once for many requests)."""
    from semcom import wire

    run, _, sample = key.split("/", 2)
    return wire.make_header(
        key=key,
        run_id=run,
        sample_id=sample,
        image_id=received[0].image_id,
        tasks=["caption"],
        question=None,
        original_hw=hw,
        model_id=model_id,
        codebook_id="",
        settings=wire.agreed_settings(cfg) if settings is None else settings,
        seed=0,
        received=list(received),
        link_cfg=cfg.channel,
    )


def fake_score(task, samples, outputs, *, seed: int = 0):
    if task == "vqa":
        per = [{"accuracy": float(o == (s.answers or [""])[0])} for s, o in zip(samples, outputs)]
        name = "accuracy"
    else:
        per = [
            {"exact_match": float(o.split()[0] == s.captions[0])} for s, o in zip(samples, outputs)
        ]
        name = "exact_match"
    v = sum(p[name] for p in per) / max(1, len(per))
    return per, {name: {"value": v, "ci95": [v, v]}}


def install_fakes(
    monkeypatch=None,
    *,
    n: int | None = None,
    loss: float | None = None,
    delay_s: float | None = None,
):
    """Point the runner and the model loader at the fakes (the real tasks run on the
    fake backend).

    With ``monkeypatch`` (pytest) the patches are undone after the test; without it
    (subprocesses) they last for the process. Defaults come from ``SEMCOM_FAKE_N``,
    ``SEMCOM_FAKE_LOSS`` and ``SEMCOM_FAKE_DELAY``.
    """
    from semcom.commands import runner
    from semcom.testing import FakeLink

    n = int(os.environ.get("SEMCOM_FAKE_N", "12")) if n is None else n
    loss = float(os.environ.get("SEMCOM_FAKE_LOSS", "0.25")) if loss is None else loss
    delay_s = float(os.environ.get("SEMCOM_FAKE_DELAY", "0")) if delay_s is None else delay_s

    def setattr_(obj, name, value):
        if monkeypatch is not None:
            monkeypatch.setattr(obj, name, value, raising=False)
        else:
            setattr(obj, name, value)

    backend = fake_backend(delay_s)
    link = FakeLink(loss)
    setattr_(runner, "get_backend", lambda ref, device: backend)
    setattr_(runner, "build_link", lambda cfg: link)
    setattr_(
        runner,
        "load_samples",
        lambda cfg, task: fake_samples(n, task=task)[: cfg.run.limit or None],
    )
    setattr_(runner, "score_task", fake_score)
    import semcom.models

    setattr_(semcom.models, "load_backend", lambda ref, device="cpu": backend)
    return types.SimpleNamespace(backend=backend, link=link)


# ------------------------------------------------------------------------------ benchmark


def _free_port_file(tmp) -> str:
    return os.path.join(tmp, "port")


def _start_cloud(tmp: str, token_file: str, extra=()) -> tuple:
    import subprocess

    port_file = _free_port_file(tmp)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_grpc",
        "cloud",
        "serve",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--port-file",
        port_file,
        "--token-file",
        token_file,
        "--set",
        "edge.method=jpeg",
        "--set",
        "edge.image.quality=75",
        "-q",
        *extra,
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    t0 = time.time()
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.time() - t0 > 60:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            proc.kill()
            raise RuntimeError(f"cloud daemon did not start: {out}")
        time.sleep(0.05)
    return proc, int(open(port_file).read())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; nan elsewhere)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def run(seconds: float | None = None, clients: int = CLIENTS) -> dict:
    """The benchmark: ``clients`` edge clients for ``seconds`` (see the module docstring)."""
    import tempfile
    import threading

    from edge.client import CloudClient
    from semcom import security, wire
    from semcom.config import load_config
    from semcom.stages.envelope import Envelope
    from semcom.stages.image import PillowCodec
    from semcom.types import Description, Erasure

    seconds = SECONDS if seconds is None else float(seconds)
    if seconds <= 0 or clients < 1:
        raise ValueError(f"seconds must be > 0 and clients >= 1, got {seconds}, {clients}")
    cfg = load_config(None, ["edge.method=jpeg", "edge.image.quality=75"])
    settings = wire.agreed_settings(cfg)
    # A pool of distinct 96 x 96 JPEG descriptions (envelope + JPEG bytes, as the edge sends).
    codec = PillowCodec("jpeg", 75)
    pool = []
    for s in fake_samples(16):
        p = codec.encode(s.image)
        data, led = Envelope("jpeg", 0, 1, 96, 96).wrap(p.data, p.ledger)
        pool.append(Description(s.image_id, 0, 1, data, (96, 96), led))
    req_bytes = int(np.mean([len(d.data) for d in pool]))

    with tempfile.TemporaryDirectory() as tmp:
        paths = security.make_dev_pki(tmp, client=False)
        token = paths["token"].read_text().strip()
        proc, port = _start_cloud(tmp, str(paths["token"]), ["--workers", "2"])
        target = f"127.0.0.1:{port}"
        try:
            probe = CloudClient(target, token=token, insecure=True)
            st = probe.wait_until_serving(60)
            lat: list[list[float]] = [[] for _ in range(clients)]
            acked: list[list[str]] = [[] for _ in range(clients)]
            sent_keys: list[list[str]] = [[] for _ in range(clients)]
            answers: list[list[tuple]] = [[] for _ in range(clients)]  # (content, output)
            failed: list[list[str]] = [[] for _ in range(clients)]
            sent = [0] * clients
            stop_at = [0.0]
            go = threading.Barrier(clients + 1)

            def client(c: int) -> None:
                cl = CloudClient(target, token=token, insecure=True, timeout_s=30, retry_for_s=30)
                try:
                    cl.status()
                    go.wait()
                    i = 0
                    while time.perf_counter() < stop_at[0]:
                        j = (c + i) % len(pool)
                        d = pool[j]
                        erased = i % 8 == 7
                        rec = [Erasure(d.image_id, 0, 1, d.original_hw)] if erased else [d]
                        key = f"bench/caption/c{c}-{i}"
                        header, payloads = caption_request(
                            key, rec, st.model_id, cfg, settings=settings
                        )
                        t0 = time.perf_counter()
                        sent[c] += 1
                        sent_keys[c].append(key)
                        try:
                            reply = cl.submit(header, payloads)
                            lat[c].append(time.perf_counter() - t0)
                            acked[c].append(reply.idempotency_key)
                            answers[c].append(((j, erased), reply.outputs["caption"]))
                        except Exception:
                            failed[c].append(key)
                        i += 1
                finally:
                    cl.close()

            threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
            for t in threads:
                t.start()
            stop_at[0] = time.perf_counter() + 1e9
            go.wait()
            cloud_cpu0 = _cpu_seconds(proc.pid)
            edge_cpu0 = time.process_time()
            t_start = time.perf_counter()
            stop_at[0] = t_start + seconds
            for t in threads:
                t.join()
            wall = time.perf_counter() - t_start
            final = probe.status()
            probe.close()
            cloud_cpu = _cpu_seconds(proc.pid)
            edge_cpu = time.process_time() - edge_cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except Exception:
                proc.kill()

    from collections import Counter

    all_lat = np.array([x for xs in lat for x in xs]) * 1e3
    keys = [k for ks in acked for k in ks]
    sent_set = {k for ks in sent_keys for k in ks}
    n_sent = sum(sent)
    assert n_sent == len(sent_set), "the benchmark itself sent a key twice"
    n_ok = len(keys)
    per_key = Counter(keys)
    c = final.counters
    lost = len(sent_set - set(per_key))
    unexpected = len(set(per_key) - sent_set)
    duplicated = sum(v - 1 for v in per_key.values()) + max(0, c.computed - len(per_key))
    first: dict = {}
    mismatched = 0
    for content, out in (a for xs in answers for a in xs):
        mismatched += first.setdefault(content, out) != out
    p50, p90, p99 = (
        float(np.percentile(all_lat, q)) if n_ok else float("nan") for q in (50, 90, 99)
    )
    rps = n_ok / wall
    cloud_ms = 1e3 * (cloud_cpu - cloud_cpu0) / max(1, n_sent)
    edge_ms = 1e3 * edge_cpu / max(1, n_sent)
    summary = (
        f"{clients} edge clients x {wall:.0f} s against one cloud daemon on loopback "
        f"(JPEG 96x96, ~{req_bytes} B/request, fake backend, 2 workers, token auth, "
        f"plaintext, {os.cpu_count()} cores): {rps:.0f} req/s, latency p50 {p50:.1f} ms, "
        f"p90 {p90:.1f} ms, p99 {p99:.1f} ms; sent {n_sent}, ok {n_ok}, lost {lost}, "
        f"duplicated {duplicated}, unexpected {unexpected}, mismatched {mismatched}; cloud computed {c.computed}, replayed {c.replayed}, "
        f"busy {c.resource_exhausted}; CPU per request: cloud {cloud_ms:.2f} ms, "
        f"edge clients {edge_ms:.2f} ms"
    )
    return {
        "summary": summary,
        "clients": clients,
        "seconds": wall,
        "requests_per_s": rps,
        "latency_ms": {
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": float(all_lat.max()) if n_ok else None,
        },
        "sent": n_sent,
        "ok": n_ok,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "mismatched": mismatched,
        "cloud": {
            "computed": c.computed,
            "replayed": c.replayed,
            "resource_exhausted": c.resource_exhausted,
            "requests": c.requests,
            "cpu_ms_per_request": cloud_ms,
        },
        "edge_cpu_ms_per_request": edge_ms,
        "request_bytes": req_bytes,
        "cores": os.cpu_count(),
    }


def _main(argv: list[str]) -> int:
    """``python -m benchmarks.bench_grpc {cloud|edge} ARGS``: the daemons with the fakes;
    ``python -m benchmarks.bench_grpc bench [--seconds S] [--clients N]``: the benchmark."""
    if argv and argv[0] == "bench":
        import argparse
        import json

        p = argparse.ArgumentParser(prog="python -m benchmarks.bench_grpc bench")
        p.add_argument("--seconds", type=float, default=SECONDS, help=f"duration ({SECONDS:g})")
        p.add_argument("--clients", type=int, default=CLIENTS, help=f"edge clients ({CLIENTS})")
        p.add_argument("--json", metavar="FILE", help="also write the result here")
        a = p.parse_args(argv[1:])
        result = run(a.seconds, a.clients)
        print(result["summary"])
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return (
            0
            if result["lost"]
            == result["duplicated"]
            == result["unexpected"]
            == result["mismatched"]
            == 0
            else 1
        )
    if not argv or argv[0] not in ("cloud", "edge"):
        print(
            "usage: python -m benchmarks.bench_grpc {cloud|edge} ARGS "
            "(the daemons with fakes installed) | bench [--seconds S] [--clients N]",
            file=sys.stderr,
        )
        return 2
    install_fakes()
    from semcom.commands.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
