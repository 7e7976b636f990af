"""The points model: records -> conditions and points, the y metric, the fixed rate.

Input is records (``record.json`` files, run folders, or a sweep's ``aggregate.json``,
see :func:`semcom.results.iter_records`); nothing is recomputed. A :class:`Point` is one
record seen on the chosen axes (rate ``x``, task metric ``y`` with its 95% CI), tagged
with its channel :class:`Condition`, its operating point (everything but the SNR), and
whether it is an anchor (image codecs) or the upper bound (full tokens).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from semcom.plotting.style import METRIC_NAMES, TASK_NAMES, snr_symbol

ANCHOR_METHODS = ("jpeg", "webp", "codec")
UPPER_BOUND_NAME = "Full tokens"
AUTO = "auto"  # channel.mcs: auto (link adaptation): the condition's modulation

PREFERRED_METRICS = {
    "vqa": ("accuracy",),
    "caption": ("cider_d", "bleu_4", "rouge_l", "exact_match"),
    "retrieval": ("r_mean", "txt_r1", "img_r1"),
}
# semcom.metrics reports these in percent already (accuracies, exact match, recalls).
PERCENT_METRIC = re.compile(r"^(accuracy(/.*)?|exact_match|(txt|img)_r\d+|((txt|img)_)?r_mean)$")


# --------------------------------------------------------------------------- records


def load_records(paths: Iterable[str | Path]) -> tuple[list[dict], dict]:
    """Records from files/folders, de-duplicated by run id (later inputs win).

    Returns ``(records, info)``; ``info`` has ``inputs`` (paths), ``skipped_errors``
    (run ids of non-ok records, which are never plotted) and ``hints`` (the ``plot``
    block of sweep aggregates, e.g. the anchor).
    """
    from semcom.errors import DataError
    from semcom.results import iter_records

    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise DataError(f"results not found: {p}")
    hints: dict = {}
    for p in paths:
        if p.is_file() and p.suffix == ".json":
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"{p} is not valid JSON: {exc}") from None
            if isinstance(doc, dict) and isinstance(doc.get("plot"), dict):
                hints.update({k: v for k, v in doc["plot"].items() if v is not None})
    by_id: OrderedDict[str, dict] = OrderedDict()
    errors = []
    for rec in iter_records(paths):
        if not isinstance(rec, dict) or "run_id" not in rec:
            continue
        if rec.get("status") != "ok":
            errors.append(rec["run_id"])
            by_id.pop(rec["run_id"], None)
            continue
        by_id[rec["run_id"]] = rec
    errors = [e for e in errors if e not in by_id]
    return list(by_id.values()), {
        "inputs": [str(p) for p in paths],
        "skipped_errors": errors,
        "hints": hints,
    }


def default_metric(records: Sequence[dict]) -> tuple[str, str] | None:
    """The (task, metric) shown by default: the first task's preferred metric."""
    for rec in records:
        metrics = rec.get("metrics") or {}
        for task in list(rec.get("tasks") or []) + list(metrics):
            names = [k for k, v in (metrics.get(task) or {}).items() if isinstance(v, Mapping)]
            if not names:
                continue
            for pref in PREFERRED_METRICS.get(task, ()):
                if pref in names:
                    return task, pref
            return task, names[0]
    return None


def parse_metric(text: str | None, records: Sequence[dict]) -> tuple[str, str]:
    """``"task.metric"`` (or just ``"task"``) -> (task, metric), checked against the records."""
    from semcom.errors import DataError

    if not text:
        found = default_metric(records)
        if found is None:
            raise DataError("no metrics in the records")
        return found
    task, _, name = text.partition(".")
    available = sorted(
        {
            f"{t}.{m}"
            for r in records
            for t, ms in (r.get("metrics") or {}).items()
            for m in (ms or {})
        }
    )
    if not name:
        found = default_metric(
            [
                {"tasks": [task], "metrics": {task: (r.get("metrics") or {}).get(task) or {}}}
                for r in records
            ]
        )
        if found is None:
            raise DataError(f"no metrics for task '{task}'; available: {', '.join(available)}")
        return found
    if f"{task}.{name}" not in available:
        raise DataError(f"metric '{text}' not in the records; available: {', '.join(available)}")
    return task, name


def metric_of(rec: dict, task: str, name: str) -> tuple[float | None, float | None, float | None]:
    m = ((rec.get("metrics") or {}).get(task) or {}).get(name) or {}
    ci = m.get("ci95") or [None, None]
    return m.get("value"), ci[0], ci[1]


def rate_of(rec: dict, x: str, task: str | None = None) -> float | None:
    """The rate column ``x`` of a record (the task's own rate when the record has it)."""
    by_task = (rec.get("rate_by_task") or {}).get(task or "") or {}
    value = by_task.get(x)
    if value is None:
        value = (rec.get("rate") or {}).get(x)
    return value


# --------------------------------------------------------------------------- channel conditions


@dataclass(frozen=True)
class Condition:
    """The channel condition of a record (what the marker encodes)."""

    link: str
    snr_db: float | None
    snr_type: str = "esno"
    code_rate: float | None = None
    modulation: str | None = None
    loss_prob: float | None = None

    def sort_key(self) -> tuple:
        return (
            self.link,
            -1e9 if self.snr_db is None else self.snr_db,
            self.code_rate or 0,
            self.modulation or "",
            self.loss_prob or 0,
        )

    def describe(self, varying: set[str] | None = None) -> str:
        """Short text; ``varying`` limits it to the fields that differ between conditions."""
        v = varying if varying is not None else {"link", "snr_db", "code_rate", "modulation"}
        if self.link == "ideal":
            return "ideal link"
        parts = []
        if self.link == "erasure":
            parts.append(f"loss {self.loss_prob:g}")
        elif "snr_db" in v or not v:
            parts.append(f"{snr_symbol(self.snr_type, tex=True)} {self.snr_db:g} dB")
        if "code_rate" in v and self.code_rate is not None and self.link != "erasure":
            parts.append(f"R={self.code_rate:g}")
        if "modulation" in v and self.modulation and self.link != "erasure":
            parts.append(self.modulation.upper().replace("QAM", "-QAM"))
        if "link" in v and len(parts) == 0:
            parts.append(self.link)
        return ", ".join(parts)


def condition_of(rec: dict) -> Condition:
    ch = (rec.get("config") or {}).get("channel") or {}
    link = ch.get("link") or (rec.get("link") or {}).get("type") or "ideal"
    snr_type = ch.get("snr_type") or "esno"
    if link in ("ideal",):
        return Condition("ideal", None, snr_type)
    if link == "erasure":
        return Condition("erasure", None, snr_type, loss_prob=ch.get("loss_prob"))
    measured = (rec.get("link") or {}).get(f"{snr_type}_db")
    snr = measured if measured is not None else ch.get("snr_db")
    snr = None if snr is None else round(float(snr), 3)
    if ch.get("mcs") == AUTO:  # the link picks code rate and modulation per transmission
        return Condition(link, snr, snr_type, None, AUTO)
    return Condition(link, snr, snr_type, ch.get("code_rate"), ch.get("modulation"))


def varying_fields(conds: Iterable[Condition]) -> set[str]:
    conds = list(conds)
    out = set()
    for f in ("link", "snr_db", "code_rate", "modulation", "loss_prob"):
        if len({getattr(c, f) for c in conds}) > 1:
            out.add(f)
    return out


def is_upper_bound(rec: dict, labels: Sequence[str] = ()) -> bool:
    """Full tokens: the token path with every token, unquantised, in one description."""
    if rec.get("label") in labels:
        return True
    cfg = rec.get("config") or {}
    edge = cfg.get("edge") or {}
    if rec.get("method") != "tokens" and edge.get("method") != "tokens":
        return False
    sel, quant = edge.get("select") or {}, edge.get("quant") or {}
    return (
        sel.get("budget") is None
        and sel.get("ratio") in (None, 1.0)
        and quant.get("type", "none") == "none"
    )


def is_anchor(rec: dict) -> bool:
    return (
        rec.get("method") or ((rec.get("config") or {}).get("edge") or {}).get("method")
    ) in ANCHOR_METHODS


def operating_point(rec: dict) -> str:
    """Everything that defines a point except the channel SNR (a curve over SNR)."""
    cfg = json.loads(json.dumps(rec.get("config") or {}))
    (cfg.get("channel") or {}).pop("snr_db", None)
    run = cfg.get("run") or {}
    for k in ("out_dir", "label", "progress", "batch_size", "device"):
        run.pop(k, None)
    cfg.pop("sweep", None)
    return json.dumps({"label": rec.get("label"), "config": cfg}, sort_keys=True)


# --------------------------------------------------------------------------- points


@dataclass
class Point:
    rec: dict
    label: str
    cond: Condition
    x: float
    y: float
    lo: float | None
    hi: float | None
    op: str
    upper: bool
    anchor: bool
    ideal_ref: bool = False  # an upper bound measured on the ideal link, shown in every condition


@dataclass
class MetricSpec:
    """The y axis: a task metric (values as recorded; ``percent`` only sets the unit)."""

    task: str
    name: str
    percent: bool = False
    scale: float = 1.0

    def ylabel(self) -> str:
        task = TASK_NAMES.get(self.task, self.task)
        name = METRIC_NAMES.get(self.name, self.name)
        return f"{task} {name}" + (" [%]" if self.percent else "")

    @property
    def key(self) -> str:
        return f"{self.task}-{self.name}".replace("/", "_")


def metric_spec(records: Sequence[dict], task: str, name: str) -> MetricSpec:
    return MetricSpec(task, name, percent=bool(PERCENT_METRIC.match(name)))


def collect_points(
    records: Sequence[dict], x: str, spec: MetricSpec, upper_labels: Sequence[str] = ()
) -> list[Point]:
    pts = []
    for rec in records:
        y, lo, hi = metric_of(rec, spec.task, spec.name)
        xv = rate_of(rec, x, spec.task)
        if y is None or xv is None or not (xv > 0):
            continue
        s = spec.scale
        upper = is_upper_bound(rec, upper_labels)
        label = str(rec.get("label") or rec.get("method") or "?")
        pts.append(
            Point(
                rec,
                label,
                condition_of(rec),
                float(xv),
                y * s,
                None if lo is None else lo * s,
                None if hi is None else hi * s,
                operating_point(rec),
                upper,
                is_anchor(rec),
            )
        )
    return pts


def spread_ideal_upper(points: Sequence[Point]) -> list[Point]:
    """Upper bounds measured on the ideal link become the ceiling of every link condition.

    Full tokens over an error-free link is the accuracy ceiling whatever the SNR, so one
    run suffices: when the results also hold non-ideal conditions, each such point is
    copied into every one of them (``ideal_ref=True``; legends say "ideal link") instead of
    forming an "ideal link" condition of its own. Anything else is returned unchanged.
    """
    from dataclasses import replace

    others = sorted({p.cond for p in points if p.cond.link != "ideal"}, key=lambda c: c.sort_key())
    if not others:
        return list(points)
    out = []
    for p in points:
        if p.upper and p.cond.link == "ideal":
            out += [replace(p, cond=c, ideal_ref=True) for c in others]
        else:
            out.append(p)
    return out


# --------------------------------------------------------------------------- order, fixed rate


def label_order(points: Sequence[Point]) -> list[str]:
    """Proposed methods first, then anchors, then the upper bound; by name within each."""
    labels = {p.label: (2 if p.upper else 1 if p.anchor else 0) for p in points}
    return sorted(labels, key=lambda lab: (labels[lab], lab))


def label_order_from_records(records: Sequence[dict]) -> list[str]:
    kinds = {}
    for r in records:
        lab = str(r.get("label") or r.get("method") or "?")
        kinds[lab] = 2 if is_upper_bound(r) else 1 if is_anchor(r) else 0
    return sorted(kinds, key=lambda lab: (kinds[lab], lab))


def choose_fixed_rate(points: Sequence[Point]) -> float | None:
    """The rate at which most methods have an operating point nearby (log distance)."""
    per_label: dict[str, list[float]] = defaultdict(list)
    by_op: dict[tuple[str, str], list[float]] = defaultdict(list)
    for p in points:
        if not p.upper:
            by_op[(p.label, p.op)].append(p.x)
    for (label, _), xs in by_op.items():
        per_label[label].append(statistics.median(xs))
    cands = sorted({r for rs in per_label.values() for r in rs})
    if not cands:
        return None

    def score(r):
        return sum(min(abs(math.log(q / r)) for q in rs) for rs in per_label.values())

    return min(cands, key=lambda r: (score(r), r))


def op_near_rate(points: Sequence[Point], label: str, rate: float) -> str | None:
    by_op: dict[str, list[float]] = defaultdict(list)
    for p in points:
        if p.label == label:
            by_op[p.op].append(p.x)
    if not by_op:
        return None
    return min(by_op, key=lambda op: abs(math.log(statistics.median(by_op[op]) / rate)))
