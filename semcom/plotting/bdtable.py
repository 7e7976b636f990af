"""BD tables: BD-rate and BD-accuracy per channel condition against an anchor label.

:func:`bd_curves` turns points into one rate-accuracy curve per (condition, label), upper
bounds excluded; :func:`write_bd` computes the table with :mod:`semcom.metrics.bd`
(PCHIP or Akima, preconditions checked per curve) and writes it as markdown, CSV and
JSON (``bd_<task>-<metric>_<x>.{md,csv,json}``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from semcom.plotting.points import MetricSpec, Point, varying_fields
from semcom.plotting.style import METRIC_NAMES


def _cond_name(cond, varying) -> str:
    return (
        cond.describe(varying).replace("$", "").replace("_", "").replace("{", "").replace("}", "")
    )


def bd_points(points: Sequence[Point]) -> dict[str, dict[str, list[Point]]]:
    """``{condition: {label: points by rate}}`` (upper bounds excluded), for BD."""
    conds = sorted({p.cond for p in points}, key=lambda c: c.sort_key())
    varying = varying_fields(conds) or {"snr_db"}
    out: dict[str, dict[str, list[Point]]] = {}
    for cond in conds:
        by_label: dict[str, list[Point]] = defaultdict(list)
        for p in points:
            if p.cond == cond and not p.upper:
                by_label[p.label].append(p)
        out[_cond_name(cond, varying)] = {
            lab: sorted(ps, key=lambda p: p.x) for lab, ps in sorted(by_label.items())
        }
    return out


def bd_curves(points: Sequence[Point]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """``{condition: {label: (rates, accuracies)}}`` (upper bounds excluded), for BD."""
    return {
        name: {lab: ([p.x for p in ps], [p.y for p in ps]) for lab, ps in by_label.items()}
        for name, by_label in bd_points(points).items()
    }


def write_bd(
    points: Sequence[Point],
    spec: MetricSpec,
    x: str,
    anchor: str,
    out_dir: Path,
    *,
    method: str = "pchip",
    min_points: int = 4,
) -> tuple[list[dict], dict[str, Path]]:
    """BD-rate / BD-accuracy per condition against ``anchor``: markdown, CSV and JSON."""
    import csv
    import io

    from semcom.errors import DataError
    from semcom.metrics.bd import bd_table, table_markdown
    from semcom.results import atomic_write_json, atomic_write_text

    labels = {p.label for p in points}
    if anchor not in labels:
        raise DataError(
            f"anchor '{anchor}' is not a label in the results; labels: {', '.join(sorted(labels))}"
        )
    from semcom.plotting.compare import bd_intervals

    rows = bd_table(bd_curves(points), anchor, method=method, min_points=min_points)
    bd_intervals(bd_points(points), rows, spec, x, method=method, min_points=min_points)
    units = "pp" if spec.percent else METRIC_NAMES.get(spec.name, spec.name)
    name = METRIC_NAMES.get(spec.name, spec.name)
    md = (
        f"BD against **{anchor}** on `{x}` and {spec.ylabel()}, per channel condition "
        f"(the `bjontegaard` package, {method.upper()}, >= {min_points} points per curve; "
        f"negative BD-rate = fewer bits, positive BD-{name} = better). A curve whose "
        "accuracy does not rise with rate is replaced by its monotone (isotonic) fit, "
        "marked *(monotone fit)*, with the points it keeps in the note. Brackets: 95 % "
        "intervals of a paired bootstrap over the samples (every run of the condition "
        "resampled on the same samples, metric and rate recomputed).\n\n"
        + table_markdown(rows, metric=METRIC_NAMES.get(spec.name, spec.name), units=units)
        + "\n"
    )
    stem = f"bd_{spec.key}_{x}"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": atomic_write_text(out_dir / f"{stem}.md", md)}
    buf = io.StringIO()
    cols = [
        "condition",
        "test",
        "anchor",
        "points_test",
        "points_anchor",
        "bd_rate_pct",
        "bd_rate_ci_lo",
        "bd_rate_ci_hi",
        "bd_accuracy",
        "bd_accuracy_ci_lo",
        "bd_accuracy_ci_hi",
        "fit",
        "overlap_accuracy",
        "overlap_rate",
        "method",
        "note",
    ]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = dict(r)
        for key in ("bd_rate", "bd_accuracy"):
            ci = r.get(f"{key}_ci95") or [None, None]
            flat[f"{key}_ci_lo"], flat[f"{key}_ci_hi"] = ci[0], ci[1]
        w.writerow({k: ("" if flat.get(k) is None else flat.get(k)) for k in cols})
    files["csv"] = atomic_write_text(out_dir / f"{stem}.csv", buf.getvalue())
    files["json"] = atomic_write_json(
        out_dir / f"{stem}.json",
        {
            "anchor": anchor,
            "x": x,
            "metric": f"{spec.task}.{spec.name}",
            "scale": spec.scale,
            "method": method,
            "min_points": min_points,
            "rows": [{k: v for k, v in r.items()} for r in rows],
        },
    )
    return rows, files
