"""The aggregate of a sweep: one flat row per point, ``aggregate.{csv,json}``, summaries.

``<run.out_dir>/sweeps/<name>/aggregate.json`` holds the table and embeds every record,
so ``semcom plot`` can read it alone; ``aggregate.csv`` is the same table.

Presentation is the sweep's: the label (the colour key of the figures) and the settings
of each row and embedded record come from the point of the sweep being run
(:func:`present`), never from the record on disk, which keeps only what determines
results and may have been written by another sweep. Also the
stdout table of ``semcom sweep`` (:func:`format_table`) and the executor-independence
check (:func:`measured`, :func:`compare_runs`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcom.results import (
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    dumps,
    read_jsonl,
    read_record,
)

if TYPE_CHECKING:
    from semcom.commands.sweep.report import Outcome, SweepReport

AGGREGATE_SCHEMA = "semcom.sweep/1"  # the file format (in every aggregate.json)

RATE_COLUMNS = ("bpp_wire", "bpp_payload", "bpp_channel", "cpp", "bpp_est", "bpp_wire_mean")
LINK_COLUMNS = ("snr_db", "esno_db", "ebno_db", "bler", "description_loss_rate", "harq_rounds_mean")
LATENCY_COLUMNS = ("edge_s_mean", "airtime_s_mean", "cloud_s_mean")


def point_label(point) -> str:
    """The label a sweep point is shown with: ``run.label`` of the point, else the
    default label of its method (:func:`semcom.commands.runner.default_label`)."""
    from semcom.commands.runner import default_label

    return point.config.run.label or default_label(point.config)


def present(rec: dict, point) -> dict:
    """``rec`` with the presentation of ``point`` (label, settings, run folder) and its
    per-sample columns (``per_sample``, for paired statistics from the aggregate alone)."""
    from semcom.results import compact_samples

    run_dir = Path(point.config.run.out_dir) / point.run_id
    out = dict(rec, label=point_label(point), settings=dict(point.settings), run_dir=str(run_dir))
    samples = run_dir / "samples.jsonl"
    if rec.get("status") == "ok" and samples.is_file():
        try:
            out["per_sample"] = compact_samples(read_jsonl(samples))
        except (OSError, ValueError):
            pass
    return out


PAIRED_COLUMNS = ("baseline", "ref_run_id", "diff", "ci_lo", "ci_hi", "test", "p")


def paired_columns(records: list[dict], baseline: str | None) -> dict[str, dict]:
    """``{run_id: {"paired.<col>": value}}``: each run against ``baseline`` (a label) on
    the same samples, in the sweep's default metric (see
    :func:`semcom.plotting.compare.paired_against`); empty without a baseline."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not baseline or not ok or baseline not in {r.get("label") for r in ok}:
        return {}
    from semcom.plotting.compare import paired_against
    from semcom.plotting.points import collect_points, default_metric, metric_spec

    metric = default_metric(ok)
    if metric is None:
        return {}
    spec = metric_spec(ok, *metric)
    out = {}
    for row in paired_against(collect_points(ok, "bpp_wire", spec), baseline, spec, "bpp_wire"):
        ci = row.get("ci95") or [None, None]
        vals = {
            "baseline": baseline,
            "ref_run_id": row.get("ref_run_id"),
            "diff": row.get("diff"),
            "ci_lo": ci[0],
            "ci_hi": ci[1],
            "test": row.get("test") or row.get("note"),
            "p": row.get("p"),
        }
        out[row["run_id"]] = {f"paired.{k}": v for k, v in vals.items()}
    return out


def table_row(rec: dict, *, sweep: str = "", skipped: bool = False) -> dict[str, Any]:
    """One flat row of the aggregate table from a (presented) record."""
    row: dict[str, Any] = {
        "sweep": sweep,
        "run_id": rec.get("run_id"),
        "status": rec.get("status"),
        "resumed": skipped,
        "label": rec.get("label"),
        "method": rec.get("method"),
    }
    for key, value in (rec.get("settings") or {}).items():
        row[f"set:{key}"] = value
    row["num_samples"] = rec.get("num_samples")
    for task, metrics in (rec.get("metrics") or {}).items():
        for name, m in (metrics or {}).items():
            if isinstance(m, Mapping):
                row[f"{task}.{name}"] = m.get("value")
                ci = m.get("ci95") or [None, None]
                row[f"{task}.{name}.ci_lo"], row[f"{task}.{name}.ci_hi"] = ci[0], ci[1]
    rate = rec.get("rate") or {}
    for col in RATE_COLUMNS:
        row[col] = rate.get(col)
    link = rec.get("link") or {}
    for col in LINK_COLUMNS:
        row[col] = link.get(col)
    if row.get("snr_db") is None:
        row["snr_db"] = ((rec.get("config") or {}).get("channel") or {}).get("snr_db")
    lat = rec.get("latency") or {}
    for col in LATENCY_COLUMNS:
        row[col] = lat.get(col)
    row["wall_s"] = rec.get("wall_s")
    err = rec.get("error") or {}
    row["error"] = f"{err.get('type')}: {err.get('message')}" if err else ""
    return row


def _missing_row(o: Outcome, sweep: str) -> dict:
    row = {
        "sweep": sweep,
        "run_id": o.point.run_id,
        "status": "missing",
        "resumed": False,
        "label": point_label(o.point),
        "method": o.point.config.edge.method,
    }
    for key, value in o.point.settings.items():
        row[f"set:{key}"] = value
    return row


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def _strip_record(rec: dict) -> dict:
    """A record as embedded in the aggregate (tracebacks shortened)."""
    rec = dict(rec)
    if rec.get("error") and rec["error"].get("traceback"):
        rec["error"] = dict(rec["error"], traceback=rec["error"]["traceback"][-2000:])
    return rec


def write_aggregate(report: SweepReport, baseline: str | None = None) -> dict[str, Path]:
    """``aggregate.json`` (table + records) and ``aggregate.csv`` for the whole sweep.

    ``baseline`` (default: the sweep's ``plot.anchor``) adds the paired comparison of
    every run against it (``paired.*`` columns, :func:`paired_columns`)."""
    sweep = report.sweep
    shown = [present(o.record, o.point) if o.record is not None else None for o in report.outcomes]
    baseline = baseline or sweep.plot.get("anchor")
    paired = paired_columns([r for r in shown if r is not None], baseline)
    report.paired = paired
    rows = [
        {**table_row(rec, sweep=sweep.name, skipped=o.skipped), **paired.get(rec.get("run_id"), {})}
        if rec is not None
        else _missing_row(o, sweep.name)
        for o, rec in zip(report.outcomes, shown)
    ]
    cols = _columns(rows)
    from semcom.provenance import git_info, utc_now

    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "error", "missing")}
    doc = {
        "schema": AGGREGATE_SCHEMA,
        "name": sweep.name,
        "description": sweep.description,
        "source": sweep.source,
        "plot": sweep.plot,
        "baseline": baseline if paired else None,
        "utc": utc_now(),
        "git": git_info(),
        "executor": report.executor,
        "workers": report.workers,
        "wall_s": report.wall_s,
        "interrupted": report.interrupted,
        "points": len(rows),
        "counts": counts,
        "ran": report.ran,
        "resumed": report.skipped,
        "columns": cols,
        "rows": rows,
        "records": [_strip_record(rec) for rec in shown if rec is not None],
    }
    out = sweep.results_dir
    json_path = atomic_write_json(out / "aggregate.json", doc)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    csv_path = atomic_write_text(out / "aggregate.csv", buf.getvalue())
    return {"json": json_path, "csv": csv_path}


def format_table(report: SweepReport, max_rows: int = 200) -> str:
    """A compact plain-text table of the sweep (stdout summary)."""
    recs = [o.record for o in report.outcomes if o.record is not None and o.status == "ok"]
    metric = None
    if recs:
        from semcom.plotting.points import default_metric

        metric = default_metric(recs)
    head = ["status", "label", "settings"]
    if metric:
        head.append(f"{metric[0]}.{metric[1]}")
    head += ["bpp_wire", "bler", "wall_s"]
    paired = getattr(report, "paired", None) or {}
    base = next((v["paired.baseline"] for v in paired.values()), None)
    if base:
        head.append(f"vs {base} (paired, 95% CI, p)")
    lines = []
    for o in report.outcomes[:max_rows]:
        rec = o.record or {}
        settings = ", ".join(
            f"{k.split('.')[-1]}={_short(v)}"
            for k, v in o.point.settings.items()
            if k != "run.label"
        )
        status = o.status + (" (resumed)" if o.skipped else "")
        row = [status, point_label(o.point), settings]
        if metric:
            m = ((rec.get("metrics") or {}).get(metric[0]) or {}).get(metric[1]) or {}
            row.append(_num(m.get("value")))
        row += [
            _num((rec.get("rate") or {}).get("bpp_wire")),
            _num((rec.get("link") or {}).get("bler")),
            _num(rec.get("wall_s"), 3),
        ]
        if base:
            row.append(_paired_text(paired.get(o.point.run_id) or {}))
        lines.append(row)
    if len(report.outcomes) > max_rows:
        lines.append(
            ["...", f"{len(report.outcomes) - max_rows} more", ""] + [""] * (len(head) - 3)
        )
    widths = [
        max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(head)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def _paired_text(cols: dict) -> str:
    d = cols.get("paired.diff")
    if d is None:
        return str(cols.get("paired.test") or "-")
    lo, hi, p = cols.get("paired.ci_lo"), cols.get("paired.ci_hi"), cols.get("paired.p")
    ci = f" [{lo:+.3g}, {hi:+.3g}]" if lo is not None else ""
    return f"{d:+.3g}{ci}" + (f" p={p:.2g}" if p is not None else "")


def _short(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


# --------------------------------------------------------------------------- comparing runs

# Fields of a record that are measurements (must not depend on the executor); provenance,
# wall time, latency (timings) and the output folder naturally differ.
MEASURED_FIELDS = (
    "run_id",
    "status",
    "label",
    "method",
    "config",
    "num_samples",
    "metrics",
    "rate",
    "rate_by_task",
    "tokens",
    "link",
)
TIMING_SAMPLE_FIELDS = ("edge_s", "cloud_s")


def measured(record: dict) -> dict:
    """The part of a record that must be identical whatever executed it."""
    return {k: record.get(k) for k in MEASURED_FIELDS}


def measured_samples(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_SAMPLE_FIELDS} for r in rows]


def compare_runs(dir_a: str | Path, dir_b: str | Path, run_ids: Sequence[str]) -> list[str]:
    """Differences of measured fields and per-sample outputs between two results roots."""
    diffs = []
    for rid in run_ids:
        a, b = RunPaths(Path(dir_a), rid), RunPaths(Path(dir_b), rid)
        if not (a.record.is_file() and b.record.is_file()):
            diffs.append(f"{rid}: record missing in {'a' if not a.record.is_file() else 'b'}")
            continue
        ra, rb = measured(read_record(a.record)), measured(read_record(b.record))
        for k in MEASURED_FIELDS:
            if dumps(ra[k]) != dumps(rb[k]):
                diffs.append(f"{rid}: {k} differs")
        sa = measured_samples(read_jsonl(a.samples)) if a.samples.is_file() else None
        sb = measured_samples(read_jsonl(b.samples)) if b.samples.is_file() else None
        if dumps(sa) != dumps(sb):
            diffs.append(f"{rid}: samples.jsonl differs")
    return diffs
