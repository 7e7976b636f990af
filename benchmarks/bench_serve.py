"""The daemons on the real path: throughput with the tiny LLaVA, and memory under 60 MB streams.

``throughput(seconds, clients, setting=...)``: VQA with the trained tiny LLaVA on world
seed 5151 (never used for training or tuning), ideal link, in one of two settings:
``defaults`` (the token method's defaults: every patch token, float16) or ``run.yaml``
(the README's token point: 16 language-guided tokens, the position-residual codebook, 4
descriptions). The edge's work is done once, up front: every sample's descriptions and
the stream setup. Then

- **in process**: :class:`cloud.session.CloudSession` (what ``semcom run`` calls) on
  batches of ``batch`` of those items, round after round for ``ref_seconds`` before the
  daemons and again after them (the speed of a shared machine drifts; the ratio is taken
  against both together, and both are reported): samples/s and each sample's answer;
- **daemons**: ``semcom cloud serve`` in a subprocess (``--max-batch`` = ``batch``, 1
  worker, a queue that admits every request in flight, ``--max-wait-ms`` and
  ``--refill-ms`` 25: long enough for 32 callers' next requests to arrive on a loaded
  machine, so a batch is not cut into halves) and ``clients`` edge clients in
  this process (each its own channel, the edge's :class:`edge.client.CloudClient`, with
  ``inflight`` requests in flight as ``semcom edge run --concurrency``), submitting
  samples in turn with unique idempotency keys for ``seconds``; then one client with one
  request in flight for 10 s (the transport unloaded).

Both sides use ``threads`` torch threads. Reported: daemon requests/s against in-process
samples/s (the ratio), latency p50 / p99, the transport's part of each request (its
latency minus the time the cloud held it, ``SubmitReply.server_s``) at p50 / p99, batch
sizes, and the accounting key by key: ``lost``, ``duplicated``, and ``mismatched`` =
answers that differ from the in-process answer for the same sample.

``transport()``: one client, one request at a time, against the cheap JPEG cloud whose
"model" sleeps 0 or 17 ms: the transport's own cost, and what idling between requests
adds to it.

``memory(streams, mib, cap_mib)``: a cloud daemon (the cheap JPEG cloud of
:mod:`benchmarks.bench_grpc`) with ``--max-inflight-mib cap_mib``; ``streams`` edge
clients each send one ``mib`` MB description at once (bytes that are not a JPEG: the
request is received whole, held, and finally rejected at decoding, INVALID_ARGUMENT,
the case that used to keep its memory); a client told RESOURCE_EXHAUSTED waits for
the hint and retries. The cloud's RSS (``/proc/PID/status``) is sampled every 10 ms:
idle before, peak during, and after the last answer, the time until it is back within
``idle + 5%``, and the RSS 5 s later.

``python -m benchmarks.bench_serve [throughput|transport|memory] [--setting S]
[--seconds S] [--clients N]`` runs one part; ``make bench`` runs every part
(``SEMCOM_BENCH_SECONDS`` shortens the throughput phases).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("SEMCOM_BENCH_SECONDS", "60"))
CLIENTS = 32
# the cloud's --max-wait-ms and --refill-ms: long enough for 32 callers' next requests to
# arrive on a loaded machine, so a batch is not cut into halves
BATCH_WAIT_MS = 25.0
WORLD_SEED = 5151
COMMON = [
    "channel.link=ideal",
    f"data.world_seed={WORLD_SEED}",
    "data.num_images=100",
    "run.progress=false",
]
# name -> (config file or None, overrides): the token method's defaults (every patch
# token, float16), and the README's token point (16 tokens, the codebook, 4 descriptions)
SETTINGS = {
    "defaults": (None, ["edge.model.name=llava", "cloud.model.name=llava", "cloud.tasks=[vqa]"]),
    "run.yaml": (str(ROOT / "configs" / "run.yaml"), []),
}


def _rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _start(cmd: list[str], port_file: Path, env=None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    t0 = time.time()
    while not port_file.exists():
        if proc.poll() is not None or time.time() - t0 > 120:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            proc.kill()
            raise RuntimeError(f"cloud daemon did not start: {out[-2000:]}")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=60)[0] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] or ""


JPEG_CLOUD = ["--set", "edge.method=jpeg", "--set", "edge.image.quality=75"]


def _serve(tmp: Path, module: str, args: list[str], env=None):
    """``python -m MODULE cloud serve`` on a loopback port (plaintext, a throwaway token)
    with ``args``: ``(process, target, token)``."""
    from semcom import security

    paths = security.make_dev_pki(tmp, client=False)
    cmd = [sys.executable, "-m", module, "cloud", "serve", "--insecure", "-q"]
    cmd += ["--listen", "127.0.0.1:0", "--port-file", str(tmp / "port")]
    cmd += ["--token-file", str(paths["token"]), *args]
    proc, port = _start(cmd, tmp / "port", env=env)
    return proc, f"127.0.0.1:{port}", paths["token"].read_text().strip()


def _cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (this one by default; Linux /proc)."""
    if pid is None:
        return time.process_time()
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _load(target, token, reqs, clients: int, seconds: float, tag: str, inflight: int = 1) -> dict:
    """``clients`` edge clients (one channel each), each keeping ``inflight`` requests in
    flight (as ``semcom edge run --concurrency``), submitting ``reqs`` in turn with unique
    idempotency keys for ``seconds``: latencies, the transport's part, the keys sent and
    answered, the answers, and this process's CPU seconds."""
    from edge.client import CloudClient

    n = len(reqs)
    lat, ovh, acked, sent, answers = [], [], [], [], []
    lock = threading.Lock()
    stop_at = [float("inf")]
    go = threading.Barrier(clients * inflight + 1)
    channels = [
        CloudClient(target, token=token, insecure=True, timeout_s=120) for _ in range(clients)
    ]
    for cl in channels:
        cl.status()

    def worker(c: int, w: int) -> None:
        cl = channels[c]
        mine = []
        try:
            go.wait()
            i = 0
            while time.perf_counter() < stop_at[0]:
                sid, header, payloads = reqs[(c * 7 + w * 3 + i) % n]
                h = type(header)()
                h.CopyFrom(header)
                h.idempotency_key = f"bench-serve/vqa/{tag}{c}.{w}-{i}"
                i += 1
                t = time.perf_counter()
                try:
                    reply = cl.submit(h, payloads)
                except Exception:
                    mine.append((h.idempotency_key, None, None, None))
                    continue
                dt = time.perf_counter() - t
                mine.append((h.idempotency_key, dt, reply, sid))
        finally:
            with lock:
                for key, dt, reply, sid in mine:
                    sent.append(key)
                    if reply is not None:
                        lat.append(dt)
                        ovh.append(max(0.0, dt - reply.server_s))
                        acked.append(reply.idempotency_key)
                        answers.append((sid, reply.outputs["vqa"]))

    threads = [
        threading.Thread(target=worker, args=(c, w))
        for c in range(clients)
        for w in range(inflight)
    ]
    for t in threads:
        t.start()
    go.wait()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for cl in channels:
        cl.close()
    return {
        "lat": lat,
        "ovh": ovh,
        "acked": acked,
        "sent": sent,
        "answers": answers,
        "wall": wall,
        "cpu": _cpu_s() - cpu0,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(port: int) -> dict:
    """Batch sizes, queue wait and model time from the cloud's Prometheus endpoint."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    val = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            val[name] = float(v)

    def mean(metric, scale=1.0):
        n = val.get(f"{metric}_count", 0.0)
        return scale * val.get(f"{metric}_sum", float("nan")) / n if n else float("nan")

    return {
        "batches": val.get("semcom_cloud_batch_size_count", 0.0),
        "batch_mean": mean("semcom_cloud_batch_size"),
        "queue_wait_ms_mean": mean("semcom_cloud_queue_wait_seconds", 1e3),
        "model_ms_mean": mean("semcom_cloud_model_seconds", 1e3),
    }


def _pct(xs, q) -> float:
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


# ------------------------------------------------------------------------------ throughput


def _edge_items(cfg):
    """Every sample's (sample, descriptions) through the edge, and the stream setup."""
    from edge.pipeline import EdgePipeline
    from semcom.commands.runner import get_backend, load_samples
    from semcom.data import read_batch

    backend = get_backend(cfg.cloud.model, "cpu")
    edge = EdgePipeline(cfg, backend=backend)
    samples = load_samples(cfg, "vqa")
    setup = edge.setup(samples)
    out = []
    for b in range(0, len(samples), 32):
        batch, failed = read_batch(samples[b : b + 32])
        assert not failed, failed
        for s, er in zip(batch, edge.encode(batch, "vqa")):
            out.append((s, list(er.descriptions)))
    return backend, setup, out


def _in_process(cfg, backend, setup, items, batch: int, seconds: float, ref: dict) -> dict:
    """:class:`cloud.session.CloudSession` on batches of ``batch`` of ``items``, round
    after round for ``seconds`` (and at least once through): samples and wall time; each
    sample's first answer goes into ``ref``."""
    from cloud.pipeline import CloudItem
    from cloud.session import CloudSession

    session = CloudSession(cfg, backend, ["vqa"], setup=setup)
    n = len(items)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done < n:
        for b in range(0, n, batch):
            chunk = items[b : b + batch]
            citems = [CloudItem(s.sample_id, d, s.hw, s.question) for s, d in chunk]
            replies = session.process(citems, [s for s, _ in chunk])
            for (s, _), r in zip(chunk, replies):
                ref.setdefault(s.sample_id, r["outputs"]["vqa"])
            done += len(chunk)
    return {"samples": done, "wall_s": time.perf_counter() - t0}


def throughput(
    seconds: float | None = None,
    clients: int = CLIENTS,
    *,
    setting: str = "defaults",
    batch: int = 32,
    inflight: int = 4,
    threads: int = 2,
    ref_seconds: float = 15.0,
    max_wait_ms: float = BATCH_WAIT_MS,
    refill_ms: float = BATCH_WAIT_MS,
) -> dict:
    import torch

    from edge.client import CloudClient
    from semcom import wire
    from semcom.config import load_config

    seconds = SECONDS if seconds is None else float(seconds)
    torch.set_num_threads(threads)
    config, sets = SETTINGS[setting]
    sets = [*sets, *COMMON]
    cfg = load_config(config, sets)
    backend, setup, items = _edge_items(cfg)
    n = len(items)

    # in process: the cloud session on batches, round after round, before and after the
    # daemons (the ratio is taken against both together: a shared machine's speed drifts)
    ref: dict[str, str] = {}
    before = _in_process(cfg, backend, setup, items, batch, ref_seconds, ref)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        args = ["--max-batch", str(batch), "--workers", "1", "--threads", str(threads)]
        args += ["--max-wait-ms", f"{max_wait_ms:g}", "--refill-ms", f"{refill_ms:g}"]
        args += ["--max-queue", str(clients * inflight)]  # every request in flight admitted
        mport = _free_port()
        args += ["--metrics-listen", f"127.0.0.1:{mport}"]
        args += ["--config", config] if config else []
        for s in sets:
            args += ["--set", s]
        proc, target, token = _serve(tmp, "semcom", args)
        try:
            probe = CloudClient(target, token=token, insecure=True)
            st = probe.wait_until_serving(300)
            setup_id = probe.setup(setup) if setup else ""
            settings = wire.agreed_settings(cfg)
            codebook_id = wire.codebook_id(cfg)
            # every request's header and payloads, built before the clock starts
            reqs = []
            for s, descs in items:
                header, payloads = wire.make_header(
                    key="",
                    run_id="bench-serve",
                    sample_id=s.sample_id,
                    image_id=s.image_id,
                    tasks=["vqa"],
                    question=s.question,
                    original_hw=s.hw,
                    model_id=st.model_id,
                    codebook_id=codebook_id,
                    settings=settings,
                    seed=cfg.run.seed,
                    received=descs,
                    link_cfg=cfg.channel,
                    setup=setup_id,
                )
                reqs.append((s.sample_id, header, payloads))
            cpu0 = _cpu_s(proc.pid)
            main = _load(target, token, reqs, clients, seconds, "c", inflight)
            cloud_cpu = _cpu_s(proc.pid) - cpu0
            batches = _scrape(mport)
            solo = _load(target, token, reqs, 1, min(10.0, seconds), "solo")
            final = probe.status()
            probe.close()
        finally:
            log = _stop(proc)

    after = _in_process(cfg, backend, setup, items, batch, ref_seconds, ref)
    done = before["samples"] + after["samples"]
    ref_wall = before["wall_s"] + after["wall_s"]
    ref_sps = done / ref_wall

    from collections import Counter

    keys = Counter(k for ph in (main, solo) for k in ph["acked"])
    sent_keys = {k for ph in (main, solo) for k in ph["sent"]}
    lost = len(sent_keys - set(keys))
    duplicated = sum(v - 1 for v in keys.values()) + max(0, final.counters.computed - len(keys))
    mismatched = sum(ref[sid] != out for ph in (main, solo) for sid, out in ph["answers"])
    all_lat, all_ovh = np.array(main["lat"]) * 1e3, np.array(main["ovh"]) * 1e3
    solo_ovh = np.array(solo["ovh"]) * 1e3
    n_ok, wall = len(main["acked"]), main["wall"]
    rps = n_ok / wall
    del log
    result = {
        "setting": setting,
        "world_seed": WORLD_SEED,
        "samples": n,
        "clients": clients,
        "inflight": inflight,
        "threads": threads,
        "max_batch": batch,
        "max_wait_ms": max_wait_ms,
        "refill_ms": refill_ms,
        "in_process": {
            "samples_per_s": ref_sps,
            "samples": done,
            "wall_s": ref_wall,
            "before_samples_per_s": before["samples"] / before["wall_s"],
            "after_samples_per_s": after["samples"] / after["wall_s"],
        },
        "daemons": {
            "requests_per_s": rps,
            "seconds": wall,
            "sent": len(main["sent"]),
            "ok": n_ok,
            "cpu_ms_per_request": {
                "cloud": 1e3 * cloud_cpu / max(1, n_ok),
                "edge_clients": 1e3 * main["cpu"] / max(1, n_ok),
            },
            "latency_ms": {q: _pct(all_lat, int(q[1:])) for q in ("p50", "p90", "p99")},
            "transport_ms": {q: _pct(all_ovh, int(q[1:])) for q in ("p50", "p90", "p99")},
            "cloud_computed": final.counters.computed,
            "cloud_busy": final.counters.resource_exhausted,
            **batches,
        },
        "one_client": {
            "requests": len(solo["acked"]),
            "transport_ms": {q: _pct(solo_ovh, int(q[1:])) for q in ("p50", "p90", "p99")},
        },
        "ratio": rps / ref_sps,
        "lost": lost,
        "duplicated": duplicated,
        "mismatched": mismatched,
    }
    d = result["daemons"]
    result["summary"] = (
        f"tiny LLaVA VQA, {setting} (world seed {WORLD_SEED}, {n} samples, {threads} torch threads, "
        f"{os.cpu_count()} cores): in process (CloudSession, batches of {batch}) "
        f"{ref_sps:.1f} samples/s ({result['in_process']['before_samples_per_s']:.1f} before "
        f"the daemons, {result['in_process']['after_samples_per_s']:.1f} after); {clients} edge "
        f"clients ({inflight} requests in flight each) x {wall:.0f} s against `semcom cloud "
        f"serve --max-batch {batch} --max-wait-ms {max_wait_ms:g} --refill-ms {refill_ms:g}` "
        f"on loopback: {rps:.1f} requests/s = "
        f"{result['ratio']:.2f}x; latency p50 {d['latency_ms']['p50']:.0f} ms, p99 "
        f"{d['latency_ms']['p99']:.0f} ms; transport p50 {d['transport_ms']['p50']:.2f} ms, "
        f"p99 {d['transport_ms']['p99']:.2f} ms (queueing on the cloud's event loop included); "
        f"CPU per request: cloud {d['cpu_ms_per_request']['cloud']:.2f} ms (model included), "
        f"edge clients {d['cpu_ms_per_request']['edge_clients']:.2f} ms; one client alone: "
        f"transport p50 {result['one_client']['transport_ms']['p50']:.2f} ms, p99 "
        f"{result['one_client']['transport_ms']['p99']:.2f} ms over "
        f"{result['one_client']['requests']} requests; batches of {d['batch_mean']:.1f} on "
        f"average, queue wait {d['queue_wait_ms_mean']:.0f} ms, model {d['model_ms_mean']:.0f} "
        f"ms per batch; sent {len(sent_keys)}, ok "
        f"{sum(keys.values())}, lost {lost}, duplicated {duplicated}, mismatched "
        f"{mismatched} (vs in process)"
    )
    return result


# ------------------------------------------------------------------------------ memory


def memory(streams: int = 8, mib: float = 60.0, cap_mib: float = 128.0, rounds: int = 2) -> dict:
    from edge.client import CloudClient
    from semcom import wire
    from semcom.config import load_config
    from semcom.stages.envelope import Envelope
    from semcom.types import Description, RateLedger

    size = int(mib * 1e6)
    hw = (4000, 3000)
    cfg = load_config(None, ["edge.method=jpeg", "edge.image.quality=75"])
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()  # not a JPEG
    data, led = Envelope("jpeg", 0, 1, *hw).wrap(
        blob, RateLedger().add("image", "payload", 8 * size)
    )
    desc = Description("big", 0, 1, data, hw, led)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, target, token = _serve(
            tmp, "benchmarks.bench_grpc", ["--max-inflight-mib", f"{cap_mib:g}", *JPEG_CLOUD]
        )
        try:
            probe = CloudClient(target, token=token, insecure=True)
            st = probe.wait_until_serving(120)
            time.sleep(2.0)
            idle = min(_rss_mb(proc.pid) for _ in range(5) if not time.sleep(0.1))
            settings = wire.agreed_settings(cfg)
            rounds_out = []
            for rnd in range(rounds):
                rounds_out.append(
                    _memory_round(
                        target, token, st.model_id, settings, cfg, desc, hw, proc.pid, streams, rnd
                    )
                )
            final = probe.status()
            probe.close()
        finally:
            _stop(proc)
    bound = idle + 1.5 * cap_mib * (1 << 20) / 1e6
    for r in rounds_out:
        r["back_to_idle_s"] = next((t for t, m in r.pop("after") if m <= idle * 1.05), None)
        r["within_bound"] = bool(r["peak_rss_mb"] <= bound)
    result = {
        "streams": streams,
        "stream_mb": mib,
        "cap_mib": cap_mib,
        "idle_rss_mb": idle,
        "bound_mb": bound,
        "rounds": rounds_out,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds_out),
        "within_bound": all(r["within_bound"] for r in rounds_out),
        "back_to_idle_s": max(
            (r["back_to_idle_s"] for r in rounds_out),
            key=lambda v: float("inf") if v is None else v,
        ),
        "cloud_busy": final.counters.resource_exhausted,
        "cloud_invalid": final.counters.invalid_argument,
    }
    per = "; ".join(
        f"round {k + 1}: peak {r['peak_rss_mb']:.0f} MB, "
        + (
            f"back within 5% of idle {r['back_to_idle_s']:.2f} s after the last answer"
            if r["back_to_idle_s"] is not None
            else "not back within 5% of idle in 5 s"
        )
        + f", {r['rss_after_5s_mb']:.0f} MB at 5 s, answers {dict(_count(r['codes']))}"
        for k, r in enumerate(rounds_out)
    )
    result["summary"] = (
        f"{rounds} x {streams} concurrent {mib:g} MB streams (not JPEG: received whole, "
        f"then rejected) into a cloud with --max-inflight-mib {cap_mib:g}: RSS idle "
        f"{idle:.0f} MB, bound idle + 1.5 x cap = {bound:.0f} MB "
        f"({'within' if result['within_bound'] else 'OVER'}); {per}; "
        f"{final.counters.resource_exhausted} RESOURCE_EXHAUSTED answers, retried"
    )
    return result


def _memory_round(target, token, model_id, settings, cfg, desc, hw, pid, streams, rnd) -> dict:
    """One round: ``streams`` clients send ``desc`` at once; RSS sampled every 10 ms until
    5 s after the last answer."""
    from benchmarks.bench_grpc import caption_request
    from edge.client import CloudClient, CloudError

    samples: list[tuple[float, float]] = []
    sampling = [True]

    def sample() -> None:
        while sampling[0]:
            samples.append((time.perf_counter(), _rss_mb(pid)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    codes: list[str] = []
    go = threading.Barrier(streams)

    def client(c: int) -> None:
        cl = CloudClient(target, token=token, insecure=True, timeout_s=120)
        header, payloads = caption_request(
            f"bench-mem/caption/r{rnd}s{c}", [desc], model_id, cfg, hw=hw, settings=settings
        )
        go.wait()
        try:
            cl.submit(header, payloads)
            codes.append("OK")
        except CloudError as exc:
            codes.append(exc.code_name)
        finally:
            cl.close()

    t_start = time.perf_counter()
    cs = [threading.Thread(target=client, args=(c,)) for c in range(streams)]
    for t in cs:
        t.start()
    for t in cs:
        t.join()
    t_end = time.perf_counter()
    time.sleep(5.0)
    sampling[0] = False
    sampler.join()
    during = [r for t, r in samples if t <= t_end]
    after = [(t - t_end, r) for t, r in samples if t > t_end]
    return {
        "peak_rss_mb": max(during) if during else float("nan"),
        "rss_after_5s_mb": after[-1][1] if after else float("nan"),
        "after": after,
        "codes": sorted(codes),
        "wall_s": t_end - t_start,
    }


def transport(requests: int = 1000, delays=(0.0, 0.017)) -> dict:
    """The transport alone: one client, one request at a time, against the cheap JPEG
    cloud of :mod:`benchmarks.bench_grpc` (``--max-wait-ms 0``) whose "model" sleeps
    ``delay`` s per request: with 0 the machine never idles between requests; with
    17 ms (the tiny LLaVA's time for one VQA sample) both processes idle while the
    "model" runs, as on the real path. p50 / p99 of latency minus ``server_s``."""
    from benchmarks.bench_grpc import caption_request, fake_samples
    from edge.client import CloudClient
    from semcom import wire
    from semcom.config import load_config
    from semcom.stages.envelope import Envelope
    from semcom.stages.image import PillowCodec
    from semcom.types import Description

    cfg = load_config(None, ["edge.method=jpeg", "edge.image.quality=75"])
    s = fake_samples(1)[0]
    p = PillowCodec("jpeg", 75).encode(s.image)
    data, led = Envelope("jpeg", 0, 1, 96, 96).wrap(p.data, p.ledger)
    desc = Description(s.image_id, 0, 1, data, (96, 96), led)
    settings = wire.agreed_settings(cfg)
    out = {}
    for delay in delays:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = dict(os.environ, SEMCOM_FAKE_DELAY=str(delay))
            proc, target, token = _serve(
                tmp, "benchmarks.bench_grpc", ["--max-wait-ms", "0", *JPEG_CLOUD], env=env
            )
            try:
                cl = CloudClient(target, token=token, insecure=True)
                st = cl.wait_until_serving(60)
                ovh, lat = [], []
                for i in range(requests + 50):
                    header, payloads = caption_request(
                        f"t/caption/{i}", [desc], st.model_id, cfg, settings=settings
                    )
                    t = time.perf_counter()
                    reply = cl.submit(header, payloads)
                    dt = time.perf_counter() - t
                    if i >= 50:  # after a warm-up
                        lat.append(dt * 1e3)
                        ovh.append((dt - reply.server_s) * 1e3)
                cl.close()
            finally:
                _stop(proc)
        out[f"{delay * 1e3:g} ms"] = {
            "transport_ms": {q: _pct(ovh, int(q[1:])) for q in ("p50", "p90", "p99")},
            "latency_ms_p50": _pct(lat, 50),
        }
    out["summary"] = (
        "transport alone (one client, one request at a time, cheap cloud): "
        + "; ".join(
            f"model time {k}: p50 {v['transport_ms']['p50']:.2f} ms, p99 {v['transport_ms']['p99']:.2f} ms"
            for k, v in out.items()
            if k != "summary"
        )
    )
    return out


def _count(xs):
    from collections import Counter

    return Counter(xs)


def run(seconds: float | None = None) -> dict:
    parts = {
        f"throughput[{name}, {k} in flight]": throughput(seconds, setting=name, inflight=k)
        for name in SETTINGS
        for k in (1, 4)
    }
    parts["transport"] = transport()
    parts["memory"] = memory()
    return {"summary": "\n".join(p["summary"] for p in parts.values()), **parts}


def _main(argv: list[str]) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve", description=__doc__)
    p.add_argument(
        "part", nargs="?", choices=("throughput", "transport", "memory", "all"), default="all"
    )
    p.add_argument("--seconds", type=float, default=SECONDS)
    p.add_argument("--clients", type=int, default=CLIENTS)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="defaults")
    p.add_argument("--inflight", type=int, default=4, help="requests in flight per client")
    for flag in ("--max-wait-ms", "--refill-ms"):
        p.add_argument(
            flag, type=float, default=BATCH_WAIT_MS, help=f"the cloud's ({BATCH_WAIT_MS:g})"
        )
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    if a.part == "throughput":
        r = throughput(
            a.seconds,
            a.clients,
            setting=a.setting,
            inflight=a.inflight,
            max_wait_ms=a.max_wait_ms,
            refill_ms=a.refill_ms,
        )
    elif a.part == "transport":
        r = transport()
    elif a.part == "memory":
        r = memory()
    else:
        r = run(a.seconds)
    print(r["summary"])
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
