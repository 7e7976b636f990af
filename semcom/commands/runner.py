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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcom.config import Config, to_dict
from semcom.errors import SemcomError
from semcom.fingerprint import run_id
from semcom.results import (
    RECORD_SCHEMA,
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    read_record,
    write_jsonl,
)

log = logging.getLogger(__name__)
EXIT_SAMPLES_FAILED = 3  # exit status of a run that went through with some samples unread
MAX_LISTED_FAILURES = 100  # samples whose read failed, listed in the record (all in samples.jsonl)


@dataclass
class RunResult:
    run_id: str
    record_path: Path
    record: dict
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"

    @property
    def samples_failed(self) -> int:
        """Samples whose image could not be read (their rows in samples.jsonl say why)."""
        return int(self.record.get("samples_failed") or 0)

    @property
    def exit_code(self) -> int:
        """The commands' exit status: 0 ok, 1 the run failed, 3 it ran but some samples
        could not be read."""
        if not self.ok:
            return 1
        return EXIT_SAMPLES_FAILED if self.samples_failed else 0

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
            vals = ", ".join(
                f"{k} {v['value']:.4g}"
                for k, v in metrics.items()
                if isinstance(v, dict) and v.get("value") is not None
            )
            absent = {v.get("absent") for v in metrics.values() if isinstance(v, dict)} - {None}
            if absent and not vals:
                vals = f"metrics absent ({'; '.join(sorted(absent))}); outputs in samples.jsonl"
            lines.append(f"  {task}: {vals}")
        rate = rec.get("rate") or {}
        if rate:
            lines.append(
                f"  rate: bpp_wire {rate['bpp_wire']:.5g}, bpp_payload "
                f"{rate['bpp_payload']:.5g}, cpp {rate['cpp']:.5g}"
            )
        link = rec.get("link") or {}
        if link:
            lines.append(
                f"  link: {link.get('erasures')}/{link.get('descriptions')} "
                f"descriptions lost, BLER {link.get('bler')}"
            )
    if rec.get("samples_failed"):
        first = (rec.get("failures") or [{}])[0]
        lines.append(
            f"  {rec['samples_failed']} sample(s) could not be read (error rows in "
            f"samples.jsonl); first: {first.get('file')}: {first.get('reason')}"
        )
    if path:
        lines.append(f"  record: {path}")
    return "\n".join(lines)


def default_label(cfg: Config) -> str:
    e = cfg.edge
    if e.method == "tokens":
        label = f"tokens {e.select.scorer}/{e.select.reducer}"
        if e.quant.type != "none":
            label += f" {e.quant.type}{e.quant.bits_for(e.model.name)}"
        if e.mdc.descriptions > 1:
            label += f" D={e.mdc.descriptions}"
        return label
    return {"jpeg": "JPEG", "webp": "WebP"}.get(e.method, e.method)


def get_backend(ref, device: str):
    from semcom.models import get_backend as _get

    return _get(ref, device)


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


def run(cfg: Config, *, overwrite: bool = False, transport=None) -> RunResult:
    """Run ``cfg`` (or skip it if its record exists) and return the record.

    The record keeps only what determines results: the config's hashed fields (no
    output folder, label or batch size) and ``label`` = :func:`default_label` (derived
    from those fields). Presentation (the label a sweep gives a point, its settings) is
    the sweep's, applied when it aggregates, so a record reused by another sweep never
    brings its first sweep's names along.

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
        "schema": RECORD_SCHEMA,
        "run_id": rid,
        "status": "ok",
        "error": None,
        "label": default_label(cfg),
        "method": cfg.edge.method,
        "tasks": list(cfg.cloud.tasks),
        "config": to_dict(cfg, hashed_only=True),
        "assets": fingerprint(cfg),
    }
    t0 = time.perf_counter()
    try:
        record.update(_execute(cfg, paths, transport))
    except Exception as exc:
        log.debug("run %s failed", rid, exc_info=True)
        record["status"] = "error"
        record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "user_error": isinstance(exc, SemcomError),
            "traceback": traceback.format_exc(),
        }
    record["wall_s"] = time.perf_counter() - t0
    record["provenance"] = provenance()
    atomic_write_json(paths.record, record)
    return RunResult(rid, paths.record, record)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _execute(cfg: Config, paths: RunPaths, transport=None) -> dict:
    from cloud.pipeline import CloudItem
    from edge.pipeline import EdgePipeline
    from semcom import registry
    from semcom.data import check_tasks, read_batch, release, with_header
    from semcom.errors import DataError
    from semcom.metrics.score import score_labelled
    from semcom.rate import SampleRate
    from semcom.seeding import rng, seed_everything

    seed = cfg.run.seed
    seed_everything(seed)
    device = cfg.run.torch_device()
    import edge.methods

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
    setup = None  # the stream setup: made from the first group's samples, sent once
    link = build_link(cfg.channel)

    groups = task_groups(cfg.cloud.tasks)
    rows: list[dict] = []  # every sample in order, failed reads included
    ok_rows: list[dict] = []
    metrics: dict[str, dict] = {}
    scored_counts: dict[str, int] = {}
    rates_by_task: dict[str, list] = {}
    progress = _progress(cfg)
    for group in groups:
        samples = load_samples(cfg, group[0])
        check_tasks(samples, group, cfg.data)
        if setup is None:  # the usual image size, from the headers that can be read
            setup = edge.setup(with_header(samples))
        session = transport.open(group, samples, setup=setup)
        group_rows: list[dict] = []
        done: list = []  # the samples that were read and sent
        bar = progress(total=len(samples), desc=f"{'+'.join(group)}", unit="sample")
        for chunk in _chunks(samples, cfg.run.batch_size):
            batch, failed = read_batch(chunk)  # decodes this batch's images only
            bad = {id(s): err for s, err in failed}
            by_id: dict[int, dict] = {}
            if batch:
                edge_results = edge.encode(batch, group[0])
                items, txs = [], []
                for s, er in zip(batch, edge_results):
                    tx = link.transmit(er.descriptions, rng(seed, "link", s.sample_id))
                    txs.append(tx)
                    items.append(
                        CloudItem(
                            s.sample_id,
                            list(tx.received),
                            s.hw,
                            s.question,
                            link_stats=list(getattr(tx, "stats", [])),
                        )
                    )
                replies = session.process(items, batch)
                for s, er, tx, reply in zip(batch, edge_results, txs, replies):
                    row = _row(s, er, tx, reply["info"], group)
                    row["outputs"] = dict(reply["outputs"])
                    by_id[id(s)] = row
                    group_rows.append(row)
                done.extend(batch)
            for s in chunk:
                rows.append(by_id[id(s)] if id(s) not in bad else _error_row(s, bad[id(s)], group))
            release(chunk)
            bar.update(len(chunk))
        bar.close()
        for t, outs in session.finalize().items():
            for row, out in zip(group_rows, outs):
                row["outputs"][t] = out
        scored = session.scores() if hasattr(session, "scores") else {}
        for t in group:
            if t in scored:
                per_sample, metrics[t] = scored[t]
                scored_counts[t] = len(done)
            else:
                per_sample, metrics[t], scored_counts[t] = score_labelled(
                    t, done, [r["outputs"][t] for r in group_rows], seed=seed, scorer=score_task
                )
            for row, sc in zip(group_rows, per_sample):
                if sc is not None:
                    row["scores"][t] = sc
        rates = [SampleRate.from_dict(r["rate"]) for r in group_rows]
        for t in group:
            rates_by_task[t] = rates
        ok_rows.extend(group_rows)

    write_jsonl(paths.samples, rows)
    failures = [r for r in rows if r.get("error")]
    if failures and not ok_rows:
        raise DataError(
            f"no sample could be read ({len(failures)} failed; first: "
            f"{failures[0]['error']['file']}: {failures[0]['error']['reason']})"
        )
    out = aggregate_rows(
        ok_rows,
        metrics,
        rates_by_task,
        cfg,
        getattr(link, "snr_report", None),
        setup_bits=8 * len(setup or b""),
    )
    out["scored_samples"] = scored_counts
    out["samples_failed"] = len(failures)
    out["failures"] = [
        {"sample_id": r["sample_id"], **r["error"]} for r in failures[:MAX_LISTED_FAILURES]
    ]
    return out


def _sample_fields(sample, group) -> dict:
    """The first fields of a samples.jsonl row: the sample, its tasks and references."""
    return {
        "sample_id": sample.sample_id,
        "image_id": sample.image_id,
        "tasks": list(group),
        "question": sample.question,
        "references": {"captions": sample.captions, "answers": sample.answers},
        "outputs": {},
        "scores": {},
    }


def _error_row(sample, err, group) -> dict:
    """The samples.jsonl row of a sample whose image could not be read."""
    return {
        **_sample_fields(sample, group),
        "error": {
            "type": type(err).__name__,
            "file": getattr(err, "file", None),
            "reason": getattr(err, "reason", str(err)),
        },
    }


def task_groups(tasks) -> list[list[str]]:
    """Tasks that share one transmission: those on the image (caption, retrieval), then
    those with one sample per question (vqa); empty groups dropped."""
    from semcom.tasks import task_spec

    per_image = [t for t in tasks if not task_spec(t).per_question]
    per_question = [t for t in tasks if task_spec(t).per_question]
    return [g for g in (per_image, per_question) if g]


def aggregate_rows(
    rows, metrics, rates_by_task, cfg: Config, snr_report=None, *, setup_bits: int = 0
) -> dict:
    """The record's measured part from per-sample rows (shared with the edge daemon);
    ``setup_bits``: the stream setup, sent once for the run (in ``bpp_wire``)."""
    from semcom.rate import SampleRate, aggregate

    all_rates = [SampleRate.from_dict(r["rate"]) for r in rows]
    n_desc = sum(r["descriptions_sent"] for r in rows)
    n_recv = sum(r["descriptions_received"] for r in rows)
    blocks = sum(r["blocks"] for r in rows)
    block_errors = sum(r["block_errors"] for r in rows)
    return {
        "num_samples": len(rows),
        "metrics": metrics,
        "rate": aggregate(all_rates, setup_bits),
        "rate_by_task": {t: aggregate(r, setup_bits) for t, r in rates_by_task.items()},
        "tokens": {
            "sent_mean": _mean(r["tokens_sent"] for r in rows),
            "to_model_mean": _mean(r["tokens_to_model"] for r in rows),
        },
        "link": {
            "type": cfg.channel.link,
            "descriptions": n_desc,
            "erasures": n_desc - n_recv,
            "description_loss_rate": (n_desc - n_recv) / n_desc if n_desc else None,
            "blocks": blocks,
            "block_errors": block_errors,
            "bler": block_errors / blocks if blocks else None,
            "harq_rounds_mean": _mean(r["harq_rounds"] for r in rows),
            "deadline_miss_rate": (
                sum(r.get("deadline_misses", 0) for r in rows) / n_desc if n_desc else None
            ),
            **(snr_report() if snr_report else {}),
        },
        "latency": {
            "edge_s_mean": _mean(r["edge_s"] for r in rows),
            "airtime_s_mean": _mean(r["airtime_s"] for r in rows),
            "cloud_s_mean": _mean(r["cloud_s"] for r in rows),
        },
    }


def _row(sample, er, tx, info, group) -> dict:
    from semcom.rate import SampleRate
    from semcom.types import Description, RateLedger

    ledger = RateLedger().merged(*(d.ledger for d in er.descriptions))
    stats = list(getattr(tx, "stats", []))
    rate = SampleRate.from_ledger(
        ledger,
        pixels=sample.hw[0] * sample.hw[1],
        coded_bits=sum(getattr(s, "coded_bits", 0) for s in stats),
        channel_uses=sum(getattr(s, "channel_uses", 0) for s in stats),
        airtime_s=sum(getattr(s, "airtime_s", 0.0) for s in stats),
        est_bits=er.info.get("est_bits"),
    )
    return {
        **_sample_fields(sample, group),
        "rate": rate.to_dict(),
        "descriptions_sent": len(er.descriptions),
        "descriptions_received": sum(isinstance(r, Description) for r in tx.received),
        "tokens_sent": er.info.get("tokens_sent"),
        "tokens_to_model": info.get("tokens_to_model"),
        "edge_s": er.info.get("edge_s"),
        "cloud_s": info.get("cloud_s"),
        "airtime_s": rate.airtime_s,
        "blocks": sum(getattr(s, "blocks", 0) for s in stats),
        "block_errors": sum(getattr(s, "block_errors", 0) for s in stats),
        "harq_rounds": max((getattr(s, "rounds", 1) for s in stats), default=0),
        "deadline_misses": sum(getattr(s, "deadline_missed", False) for s in stats),
    }


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _progress(cfg: Config):
    from tqdm import tqdm

    def make(**kw):
        return tqdm(disable=not cfg.run.progress, leave=False, dynamic_ncols=True, **kw)

    return make
