"""A model-free run function for sweep tests and the executor benchmark.

:func:`synthetic_run` stands in for :func:`semcom.commands.sweep.executors.run_point`
and writes records in the real schema. Executors import run functions by name
(``--run-fn sweep_fakes:synthetic_run``, pickled references in spawned workers, Ray
workers), so this directory has to be importable there: pytest puts it on
``sys.path`` of the test process (spawned workers inherit that), and
:func:`env_with_fakes` puts it on ``PYTHONPATH`` for subprocesses and Ray.
``benchmarks/bench_sweep.py`` imports it as ``tests.sweep_fakes`` from the repo root.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

from semcom.config import to_dict
from semcom.results import (
    RECORD_SCHEMA,
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    dumps,
    read_record,
)

TESTS_DIR = Path(__file__).resolve().parent
RUN_FN = "sweep_fakes:synthetic_run"  # for --run-fn (needs TESTS_DIR importable)


def env_with_fakes(env: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``env`` (default ``os.environ``) plus ``extra``, with this directory first on
    ``PYTHONPATH`` so that a subprocess can import :mod:`sweep_fakes`."""
    out = dict(os.environ if env is None else env, **extra)
    path = out.get("PYTHONPATH")
    out["PYTHONPATH"] = str(TESTS_DIR) + (os.pathsep + path if path else "")
    return out


def synthetic_run(config: dict, overwrite: bool = False, settings: dict | None = None) -> dict:
    """A model-free stand-in for ``run_point`` that writes records in the real schema.

    For tests and executor benchmarks only: the numbers come from a toy rate and
    accuracy model (tokens kept / JPEG quality, and a logistic description-loss curve
    versus SNR), drawn per sample from ``rng(seed, "synthetic", run_id, i)``, so they are
    deterministic whatever the process. Records carry ``"synthetic": true`` and plots of
    them are stamped SYNTHETIC. ``SEMCOM_SYNTHETIC_WORK_MS`` adds that much busy CPU work
    per run (to measure executor throughput).
    """
    import numpy as np

    from semcom.commands.runner import default_label
    from semcom.config import resolve
    from semcom.fingerprint import run_id
    from semcom.provenance import provenance
    from semcom.rate import SampleRate, aggregate
    from semcom.seeding import rng

    t0 = time.perf_counter()
    cfg = resolve(config)
    rid = run_id(cfg)
    paths = RunPaths(Path(cfg.run.out_dir), rid)
    if paths.done() and not overwrite:
        return read_record(paths.record)
    work_ms = float(os.environ.get("SEMCOM_SYNTHETIC_WORK_MS", "0") or 0)
    if work_ms > 0:
        end, x = time.process_time() + work_ms / 1000, 0
        while time.process_time() < end:
            x += sum(i * i for i in range(2000))
    n = min(cfg.data.num_images, cfg.run.limit or cfg.data.num_images)
    e, ch = cfg.edge, cfg.channel
    if e.method == "tokens":
        kept = e.select.budget or round((e.select.ratio or 1.0) * 144)
        bits = {
            "none": 16 * 64,
            "scalar": e.quant.bits_for(e.model.name) * 64,
            "codebook": e.quant.bits_for(e.model.name),
        }[e.quant.type]
        payload, side = kept * bits, 144 if kept < 144 else 0
        quality, parts = 1.0 - math.exp(-kept / 12.0), e.mdc.descriptions
    else:
        payload, side = int(400 + 60 * e.image.quality), 0
        quality, parts = 1.0 - math.exp(-e.image.quality / 15.0), 1
    if ch.link in ("nr", "nr-table"):
        threshold = 1.0 + 6.0 * ch.code_rate + 2.0 * math.log2(ch.bits_per_symbol)
        p_loss = 1.0 / (1.0 + math.exp(2.0 * (ch.snr_db - threshold)))
    else:
        p_loss = ch.loss_prob if ch.link == "erasure" else 0.0
    pixels = 96 * 96
    rows, rates = [], []
    for i in range(n):
        # seeded by what the fake's model depends on, not by the run id: a new config
        # key elsewhere must not reshuffle every synthetic curve
        g = rng(cfg.run.seed, "synthetic", e.method, payload, side, parts, ch.snr_db, i)
        received = int((g.random(parts) >= p_loss).sum())
        p_correct = 0.05 + 0.9 * quality * received / parts
        correct = bool(g.random() < p_correct)
        header = 32 * parts
        coded = int((payload + side + header) / ch.code_rate)
        r = SampleRate(
            pixels=pixels,
            payload_bits=payload,
            side_info_bits=side,
            header_bits=header,
            coded_bits=coded,
            channel_uses=math.ceil(coded / ch.bits_per_symbol),
            airtime_s=coded / ch.bits_per_symbol / 1e6,
        )
        rates.append(r)
        rows.append(
            {
                "sample_id": f"s{i}",
                "image_id": i,
                "outputs": {"vqa": "yes" if correct else "no"},
                "scores": {"vqa": {"accuracy": 100.0 * correct}},
                "rate": r.to_dict(),
                "descriptions_sent": parts,
                "descriptions_received": received,
                "edge_s": 1e-3,
                "cloud_s": 2e-3,
                "airtime_s": r.airtime_s,
            }
        )
    acc = np.array([r["scores"]["vqa"]["accuracy"] / 100 for r in rows])
    p_hat = float(acc.mean()) if n else 0.0
    half = 1.96 * math.sqrt(max(p_hat * (1 - p_hat), 1e-12) / max(n, 1))
    sent = parts * n
    recv = sum(r["descriptions_received"] for r in rows)
    record = {
        "schema": RECORD_SCHEMA,
        "run_id": rid,
        "status": "ok",
        "error": None,
        "synthetic": True,
        "label": default_label(cfg),
        "method": e.method,
        "tasks": ["vqa"],
        "config": to_dict(cfg, hashed_only=True),
        "num_samples": n,
        "metrics": {
            "vqa": {
                "accuracy": {  # in percent, as semcom.metrics reports it
                    "value": 100 * p_hat,
                    "ci95": [100 * max(0.0, p_hat - half), 100 * min(1.0, p_hat + half)],
                }
            }
        },
        "rate": aggregate(rates),
        "rate_by_task": {"vqa": aggregate(rates)},
        "tokens": {"sent_mean": None, "to_model_mean": None},
        "link": {
            "type": ch.link,
            "descriptions": sent,
            "erasures": sent - recv,
            "description_loss_rate": (sent - recv) / sent if sent else None,
            "blocks": sent,
            "block_errors": sent - recv,
            "bler": (sent - recv) / sent if sent else None,
            "harq_rounds_mean": 1.0,
            "snr_db": ch.snr_db,
        },
        "latency": {
            "edge_s_mean": 1e-3,
            "airtime_s_mean": sum(r.airtime_s for r in rates) / max(n, 1),
            "cloud_s_mean": 2e-3,
        },
    }
    paths.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.samples, "".join(dumps(r) + "\n" for r in rows))
    record["wall_s"] = time.perf_counter() - t0
    record["provenance"] = provenance()
    atomic_write_json(paths.record, record)
    return record
