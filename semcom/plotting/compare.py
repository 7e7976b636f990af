"""Paired statistics from saved records: each method against a named baseline on the
same samples, and bootstrap intervals of BD-rate / BD-accuracy.

Every run of a sweep answers the same samples, so comparisons are paired:

- :func:`paired_against`: for every point, the baseline's operating point in the same
  channel condition nearest in rate (log distance) is its reference; the per-sample
  difference, its bootstrap CI and McNemar (right/wrong scores) or Wilcoxon test come
  from :func:`semcom.metrics.paired.paired_difference`;
- :func:`bd_intervals`: a paired bootstrap of the BD values: each resample draws one
  set of samples (with replacement) and recomputes every run's metric *and* rate on it
  (the rate scaled by the resampled bits / pixels over the measured ones, so the point
  estimate is the recorded one), then the BD value with the same rules as the point
  estimate (:mod:`semcom.metrics.bd`, the monotone rule included). The loop is ours and
  not :func:`scipy.stats.bootstrap` because BD is undefined on some resamples (no
  overlap, a flat curve), which scipy cannot skip; those are counted and reported.

Per-sample columns come from :func:`semcom.results.run_samples` (embedded in a
sweep's aggregate, or the ``samples.jsonl`` beside a record). :func:`write_paired`
writes the paired table (``paired_<task>-<metric>_<x>.{md,csv,json}``) beside the BD
table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from semcom.plotting.points import MetricSpec, Point

BD_RESAMPLES = 400
# per-sample rate field behind each x axis (the others are held at the measured value)
X_BITS = {
    "bpp_wire": "wire_bits",
    "bpp_payload": "payload_bits",
    "bpp_channel": "coded_bits",
    "cpp": "channel_uses",
}


def _columns(p: Point, spec: MetricSpec, x: str):
    """``(ids, scores, bits, pixels)`` of a point's run, or None without per-sample data."""
    from semcom.results import run_samples

    s = run_samples(p.rec)
    if not s:
        return None
    key = f"{spec.task}.{spec.name}"
    scores = (s.get("scores") or {}).get(key)
    if scores is None:
        return None
    bits = s.get(X_BITS.get(x, ""), None)
    return s["sample_id"], scores, bits, s.get("pixels")


def paired_against(
    points: Sequence[Point], baseline: str, spec: MetricSpec, x: str, *, seed: int = 0
) -> list[dict]:
    """One row per point not of ``baseline``: the paired difference to the baseline's
    nearest-rate operating point in the same condition (``diff`` in the metric's units,
    ``ci95``, ``p``, ``test``, ``ref_run_id``, ``ref_x``), or a ``note`` saying why not."""
    from semcom.metrics.paired import align, paired_difference

    rows = []
    for p in points:
        if p.label == baseline:
            continue
        base = [b for b in points if b.label == baseline and b.cond == p.cond and not b.upper]
        row = {
            "condition": p.cond,
            "label": p.label,
            "run_id": p.rec.get("run_id"),
            "x": p.x,
            "y": p.y,
            "baseline": baseline,
        }
        if not base:
            rows.append({**row, "note": f"no {baseline} point in this condition"})
            continue
        ref = min(base, key=lambda b: (abs(math.log(b.x / p.x)), b.x))
        row.update(ref_run_id=ref.rec.get("run_id"), ref_x=ref.x, ref_y=ref.y)
        cp, cr = _columns(p, spec, x), _columns(ref, spec, x)
        if cp is None or cr is None:
            rows.append({**row, "note": "no per-sample scores"})
            continue
        a, b = align(cr[0], cr[1], cp[0], cp[1])
        res = paired_difference([v * spec.scale for v in a], [v * spec.scale for v in b], seed=seed)
        rows.append({**row, **res})
    return rows


def _run_arrays(p: Point, spec: MetricSpec, x: str, ids: list[str]):
    cols = _columns(p, spec, x)
    pos = {i: k for k, i in enumerate(cols[0])}
    take = [pos[i] for i in ids]
    s = np.array([cols[1][k] for k in take], float) * spec.scale
    if cols[2] is not None and cols[3] is not None and None not in cols[2] and None not in cols[3]:
        bits = np.array([cols[2][k] for k in take], float)
        pix = np.array([cols[3][k] for k in take], float)
    else:
        bits = pix = None
    return s, bits, pix


def bd_intervals(
    curves: dict[str, dict[str, list[Point]]],
    rows: list[dict],
    spec: MetricSpec,
    x: str,
    *,
    method: str = "pchip",
    min_points: int = 4,
    resamples: int = BD_RESAMPLES,
    seed: int = 0,
) -> None:
    """Add ``bd_rate_ci95``, ``bd_accuracy_ci95`` (95 % percentile intervals of the
    paired bootstrap) and ``ci_note`` to the BD ``rows`` in place. ``curves`` maps a
    condition name to ``{label: points}``, as the rows were computed from."""
    from semcom.metrics.bd import bd_accuracy, bd_rate

    for row in rows:
        if row.get("bd_rate_pct") is None and row.get("bd_accuracy") is None:
            continue
        by_label = curves.get(row["condition"]) or {}
        runs = list(by_label.get(row["anchor"], [])) + list(by_label.get(row["test"], []))
        cols = [_columns(p, spec, x) for p in runs]
        if not runs or any(c is None for c in cols):
            row["ci_note"] = "no interval: per-sample scores missing"
            continue
        common = set(cols[0][0])
        for c in cols[1:]:
            common &= {i for i, v in zip(c[0], c[1]) if v is not None}
        ids = [i for i, v in zip(cols[0][0], cols[0][1]) if i in common and v is not None]
        if len(ids) < 2:
            row["ci_note"] = "no interval: fewer than 2 common samples"
            continue
        arrays = [_run_arrays(p, spec, x, ids) for p in runs]
        n_a = len(by_label.get(row["anchor"], []))
        g = np.random.default_rng([seed, len(ids), 0xBD])
        idx = g.integers(0, len(ids), size=(resamples, len(ids)))
        vals: dict[str, list[float]] = {"rate": [], "acc": []}
        for k in idx:
            rates, accs = [], []
            for p, (s, bits, pix) in zip(runs, arrays):
                accs.append(float(s[k].mean()))
                if bits is not None and bits.sum() > 0 and pix[k].sum() > 0:
                    scale = (bits[k].sum() / pix[k].sum()) / (bits.sum() / pix.sum())
                    rates.append(p.x * float(scale))
                else:
                    rates.append(p.x)
            a = (rates[:n_a], accs[:n_a])
            t = (rates[n_a:], accs[n_a:])
            br = bd_rate(*a, *t, method=method, min_points=min_points)
            ba = bd_accuracy(*a, *t, method=method, min_points=min_points)
            if br.ok:
                vals["rate"].append(br.value)
            if ba.ok:
                vals["acc"].append(ba.value)
        notes = []
        for key, col, name, point in (
            ("rate", "bd_rate_ci95", "BD-rate", row.get("bd_rate_pct")),
            ("acc", "bd_accuracy_ci95", "BD-acc", row.get("bd_accuracy")),
        ):
            if point is None:  # no point estimate: its reason is the row's note
                row[col] = None
                continue
            v = vals[key]
            if len(v) >= 0.5 * resamples:
                row[col] = [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]
            else:
                row[col] = None
            if len(v) < resamples:
                notes.append(f"{name} defined in {len(v)}/{resamples} resamples")
        row["ci_resamples"] = resamples
        row["ci_samples"] = len(ids)
        row["ci_note"] = f"95 % CI: paired bootstrap over {len(ids)} samples" + (
            f" ({'; '.join(notes)})" if notes else ""
        )


def _cond_text(cond, varying) -> str:
    text = cond.describe(varying)
    for ch in "$_{}":
        text = text.replace(ch, "")
    return text


def write_paired(
    points: Sequence[Point], anchor: str, spec: MetricSpec, x: str, out_dir, *, seed: int = 0
) -> tuple[list[dict], dict]:
    """Every operating point (upper bounds aside) against the anchor's nearest-rate point
    in its condition: ``paired_<task>-<metric>_<x>.{md,csv,json}``."""
    import csv
    import io
    from pathlib import Path

    from semcom.plotting.points import varying_fields
    from semcom.results import atomic_write_json, atomic_write_text

    pts = [p for p in points if not p.ideal_ref]
    rows = [r for r in paired_against([p for p in pts if not p.upper], anchor, spec, x, seed=seed)]
    varying = varying_fields({p.cond for p in pts}) or {"snr_db"}
    for r in rows:
        r["condition"] = _cond_text(r["condition"], varying)
    units = " [pp]" if spec.percent else ""
    md = [
        f"Each operating point against the **{anchor}** point nearest in `{x}` at the same "
        f"channel condition, on the same samples: the mean per-sample difference of "
        f"{spec.name}{units} with its bootstrap 95 % CI (`scipy.stats.bootstrap`, BCa), and "
        f"the exact McNemar test on the discordant pairs ({anchor} wrong and the method "
        "right / the reverse) for right/wrong scores, the Wilcoxon signed-rank test "
        "otherwise.",
        "",
        f"| condition | method | {x} | {anchor}'s {x} | difference [95% CI] | test, p "
        "| discordant | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("diff") is None:
            md.append(
                f"| {r['condition']} | {r['label']} | {r['x']:.3g} | - | "
                f"n/a ({r.get('note')}) | | | |"
            )
            continue
        lo, hi = r["ci95"]
        test = {"mcnemar-exact": "McNemar", "wilcoxon": "Wilcoxon"}.get(r["test"], r["test"])
        disc = "/".join(map(str, r.get("discordant") or [])) or "-"
        md.append(
            f"| {r['condition']} | {r['label']} | {r['x']:.3g} | {r['ref_x']:.3g} | "
            f"{r['diff']:+.1f} [{lo:+.1f}, {hi:+.1f}] | {test} {r['p']:.2g} | {disc} | "
            f"{r['n']} |"
        )
    stem = f"paired_{spec.key}_{x}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": atomic_write_text(out_dir / f"{stem}.md", "\n".join(md) + "\n")}
    cols = [
        "condition",
        "label",
        "run_id",
        "x",
        "y",
        "baseline",
        "ref_run_id",
        "ref_x",
        "ref_y",
        "n",
        "diff",
        "ci_lo",
        "ci_hi",
        "test",
        "p",
        "note",
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        ci = r.get("ci95") or [None, None]
        flat = dict(r, ci_lo=ci[0], ci_hi=ci[1])
        w.writerow({k: ("" if flat.get(k) is None else flat.get(k)) for k in cols})
    files["csv"] = atomic_write_text(out_dir / f"{stem}.csv", buf.getvalue())
    files["json"] = atomic_write_json(
        out_dir / f"{stem}.json",
        {"anchor": anchor, "x": x, "metric": f"{spec.task}.{spec.name}", "rows": rows},
    )
    return rows, files
