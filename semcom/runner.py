"""The in-process run: data -> edge -> link -> cloud -> task metrics -> one record.

``run(cfg)`` is what ``semcom run``, the sweeps and the demo call. It is resumable at
the run level: a complete record (``RunPaths.done()``) makes it a no-op unless
``overwrite``. Per-sample rows go to ``samples.jsonl`` and the record is written last,
atomically; a failing run writes a record with ``status: "error"`` and its traceback
(redone next time), so a sweep goes on.

Per-sample randomness (link noise, random selection) comes from
``semcom.seeding.rng(seed, purpose, sample_id)``, so results do not depend on batching,
order or process: the daemons reproduce them exactly.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.config import Config, run_id, to_dict
from semcom.errors import SemcomError
from semcom.results import RECORD_SCHEMA, RunPaths, atomic_write_json, atomic_write_text, \
    read_record, write_jsonl

log = logging.getLogger(__name__)

IMAGE_TASKS = ("caption", "retrieval")  # share one transmission per image


@dataclass
class RunResult:
    run_id: str
    record_path: Path
    record: dict
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"

    def summary(self) -> str:
        return summarize(self.record, skipped=self.skipped, path=self.record_path)


def summarize(rec: dict, *, skipped: bool = False, path: Path | None = None) -> str:
    head = f"run {rec.get('run_id')} [{rec.get('label')}]"
    if skipped:
        head += " (record exists: skipped; --overwrite to redo)"
    lines = [head]
    if rec.get("status") != "ok":
        err = rec.get("error") or {}
        lines.append(f"  FAILED: {err.get('type')}: {err.get('message')}")
    else:
        for task, metrics in (rec.get("metrics") or {}).items():
            vals = ", ".join(f"{k} {v['value']:.4g}" for k, v in metrics.items()
                             if isinstance(v, dict) and v.get("value") is not None)
            lines.append(f"  {task}: {vals}")
        rate = rec.get("rate") or {}
        if rate:
            lines.append(f"  rate: bpp_wire {rate['bpp_wire']:.5g}, bpp_payload "
                         f"{rate['bpp_payload']:.5g}, cpp {rate['cpp']:.5g}")
        link = rec.get("link") or {}
        if link:
            lines.append(f"  link: {link.get('erasures')}/{link.get('descriptions')} "
                         f"descriptions lost, BLER {link.get('bler')}")
    if path:
        lines.append(f"  record: {path}")
    return "\n".join(lines)


def default_label(cfg: Config) -> str:
    e = cfg.edge
    if e.method == "tokens":
        label = f"tokens {e.select.scorer}/{e.select.reducer}"
        if e.quant.type != "none":
            label += f" {e.quant.type}{e.quant.bits}"
        if e.mdc.descriptions > 1:
            label += f" D={e.mdc.descriptions}"
        return label
    return {"jpeg": "JPEG", "webp": "WebP"}.get(e.method, e.method)


# Loaded models, reused across runs in one process (sweeps).
_BACKENDS: dict[tuple, Any] = {}


def get_backend(ref, device: str):
    key = (ref.name, ref.path, device)
    if key not in _BACKENDS:
        from semcom.models import load_backend

        _BACKENDS[key] = load_backend(ref, device=device)
    return _BACKENDS[key]


def build_link(channel_cfg):
    from channel import build_link as _build

    return _build(channel_cfg)


def score_task(task: str, samples, outputs, *, seed: int = 0):
    from semcom.metrics.score import score_task as _score

    return _score(task, samples, outputs, seed=seed)


def load_samples(cfg: Config, task: str):
    from semcom.data import load_samples as _load

    samples = _load(cfg.data, task, seed=cfg.run.seed)
    return samples[: cfg.run.limit] if cfg.run.limit else samples


def run(cfg: Config, *, overwrite: bool = False, settings: dict | None = None,
        transport=None) -> RunResult:
    """Run ``cfg`` (or skip it if its record exists) and return the record.

    ``transport`` reaches the cloud (default: :class:`cloud.session.InProcessTransport`);
    the edge daemon passes its gRPC transport, and everything else stays the same.
    """
    rid = run_id(cfg)
    paths = RunPaths(Path(cfg.run.out_dir), rid)
    if paths.done() and not overwrite:
        return RunResult(rid, paths.record, read_record(paths.record), skipped=True)
    import yaml

    paths.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.config, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    from semcom.fingerprint import fingerprint
    from semcom.provenance import provenance

    record: dict[str, Any] = {
        "schema": RECORD_SCHEMA, "run_id": rid, "status": "ok", "error": None,
        "label": cfg.run.label or default_label(cfg), "method": cfg.edge.method,
        "tasks": list(cfg.cloud.tasks), "config": to_dict(cfg), "settings": settings or {},
        "assets": fingerprint(cfg),
    }
    t0 = time.perf_counter()
    try:
        record.update(_execute(cfg, paths, transport))
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        log.debug("run %s failed", rid, exc_info=True)
        record["status"] = "error"
        record["error"] = {"type": type(exc).__name__, "message": str(exc),
                           "user_error": isinstance(exc, SemcomError),
                           "traceback": traceback.format_exc()}
    record["wall_s"] = time.perf_counter() - t0
    record["provenance"] = provenance()
    atomic_write_json(paths.record, record)
    return RunResult(rid, paths.record, record)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _execute(cfg: Config, paths: RunPaths, transport=None) -> dict:
    from cloud.pipeline import CloudItem
    from edge.pipeline import EdgePipeline
    from semcom import registry
    from semcom.rate import SampleRate, aggregate
    from semcom.seeding import rng, seed_everything

    seed = cfg.run.seed
    seed_everything(seed)
    device = cfg.run.torch_device()
    import edge.methods  # noqa: F401

    edge_cls = registry.get("edge-method", cfg.edge.method)
    edge_backend = None
    if transport is None:
        from cloud.session import InProcessTransport

        cloud_backend = get_backend(cfg.cloud.model, device)
        transport = InProcessTransport(cfg, cloud_backend)
        if getattr(edge_cls, "needs_backend", True) and cfg.edge.model == cfg.cloud.model:
            edge_backend = cloud_backend
    if getattr(edge_cls, "needs_backend", True) and edge_backend is None:
        edge_backend = get_backend(cfg.edge.model, device)
    edge = EdgePipeline(cfg, backend=edge_backend)
    link = build_link(cfg.channel)

    groups = [g for g in ([t for t in cfg.cloud.tasks if t in IMAGE_TASKS],
                          [t for t in cfg.cloud.tasks if t not in IMAGE_TASKS]) if g]
    rows: list[dict] = []
    metrics: dict[str, dict] = {}
    rates_by_task: dict[str, list] = {}
    progress = _progress(cfg)
    for group in groups:
        samples = load_samples(cfg, group[0])
        session = transport.open(group, samples)
        group_rows: list[dict] = []
        bar = progress(total=len(samples), desc=f"{'+'.join(group)}", unit="sample")
        for batch in _chunks(samples, cfg.run.batch_size):
            edge_results = edge.encode(batch, group[0])
            items, txs = [], []
            for s, er in zip(batch, edge_results):
                tx = link.transmit(er.descriptions, rng(seed, "link", s.sample_id))
                txs.append(tx)
                items.append(CloudItem(s.sample_id, list(tx.received), s.hw, s.question,
                                       link_stats=list(getattr(tx, "stats", []))))
            replies = session.process(items, batch)
            for s, er, tx, reply in zip(batch, edge_results, txs, replies):
                row = _row(s, er, tx, reply["info"], group)
                row["outputs"] = dict(reply["outputs"])
                group_rows.append(row)
            bar.update(len(batch))
        bar.close()
        for t, outs in session.finalize().items():
            for row, out in zip(group_rows, outs):
                row["outputs"][t] = out
        scored = session.scores() if hasattr(session, "scores") else {}
        for t in group:
            if t in scored:
                per_sample, metrics[t] = scored[t]
            else:
                per_sample, metrics[t] = score_task(t, samples,
                                                    [r["outputs"][t] for r in group_rows],
                                                    seed=seed)
            for row, sc in zip(group_rows, per_sample):
                row["scores"][t] = sc
        rates = [SampleRate.from_dict(r["rate"]) for r in group_rows]
        for t in group:
            rates_by_task[t] = rates
        rows.extend(group_rows)

    write_jsonl(paths.samples, rows)
    return aggregate_rows(rows, metrics, rates_by_task, cfg, getattr(link, "snr_report", None))


def aggregate_rows(rows, metrics, rates_by_task, cfg: Config, snr_report=None) -> dict:
    """The record's measured part from per-sample rows (shared with the edge daemon)."""
    from semcom.rate import SampleRate, aggregate

    all_rates = [SampleRate.from_dict(r["rate"]) for r in rows]
    n_desc = sum(r["descriptions_sent"] for r in rows)
    n_recv = sum(r["descriptions_received"] for r in rows)
    blocks = sum(r["blocks"] for r in rows)
    block_errors = sum(r["block_errors"] for r in rows)
    return {
        "num_samples": len(rows),
        "metrics": metrics,
        "rate": aggregate(all_rates),
        "rate_by_task": {t: aggregate(r) for t, r in rates_by_task.items()},
        "tokens": {"sent_mean": _mean(r["tokens_sent"] for r in rows),
                   "to_model_mean": _mean(r["tokens_to_model"] for r in rows)},
        "link": {"type": cfg.channel.link, "descriptions": n_desc, "erasures": n_desc - n_recv,
                 "description_loss_rate": (n_desc - n_recv) / n_desc if n_desc else None,
                 "blocks": blocks, "block_errors": block_errors,
                 "bler": block_errors / blocks if blocks else None,
                 "harq_rounds_mean": _mean(r["harq_rounds"] for r in rows),
                 **(snr_report() if snr_report else {})},
        "latency": {"edge_s_mean": _mean(r["edge_s"] for r in rows),
                    "airtime_s_mean": _mean(r["airtime_s"] for r in rows),
                    "cloud_s_mean": _mean(r["cloud_s"] for r in rows)},
    }


def _row(sample, er, tx, info, group) -> dict:
    from semcom.rate import SampleRate
    from semcom.types import Description, RateLedger

    ledger = RateLedger().merged(*(d.ledger for d in er.descriptions))
    stats = list(getattr(tx, "stats", []))
    rate = SampleRate.from_ledger(
        ledger, pixels=sample.hw[0] * sample.hw[1],
        coded_bits=sum(getattr(s, "coded_bits", 0) for s in stats),
        channel_uses=sum(getattr(s, "channel_uses", 0) for s in stats),
        airtime_s=sum(getattr(s, "airtime_s", 0.0) for s in stats),
        est_bits=er.info.get("est_bits"))
    return {
        "sample_id": sample.sample_id, "image_id": sample.image_id, "tasks": list(group),
        "question": sample.question,
        "references": {"captions": sample.captions, "answers": sample.answers},
        "outputs": {}, "scores": {},
        "rate": rate.to_dict(),
        "descriptions_sent": len(er.descriptions),
        "descriptions_received": sum(isinstance(r, Description) for r in tx.received),
        "tokens_sent": er.info.get("tokens_sent"),
        "tokens_to_model": info.get("tokens_to_model"),
        "edge_s": er.info.get("edge_s"), "cloud_s": info.get("cloud_s"),
        "airtime_s": rate.airtime_s,
        "blocks": sum(getattr(s, "blocks", 0) for s in stats),
        "block_errors": sum(getattr(s, "block_errors", 0) for s in stats),
        "harq_rounds": max((getattr(s, "rounds", 1) for s in stats), default=0),
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _progress(cfg: Config):
    from tqdm import tqdm

    def make(**kw):
        return tqdm(disable=not cfg.run.progress, leave=False, dynamic_ncols=True, **kw)
    return make
