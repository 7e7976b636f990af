"""The figures: rate-accuracy, accuracy versus SNR, BLER, latency; :func:`make_figures`.

Conventions (``docs/sweeps.md``; colours and markers from :mod:`semcom.plotting.style`):

- colour = method label, fixed for the whole invocation; marker = channel condition
  (SNR; code rate and modulation too when they vary);
- proposed methods solid, anchors (image codecs: JPEG, WebP, neural codecs) dashed;
- full tokens (no selection, no quantisation) are the upper bound: a dotted
  horizontal line, not a curve;
- x is ``bpp_wire`` by default, log-scaled when the points span more than a decade; y
  is the task metric (accuracies and recalls in percent) with 95% CI error bars;
- every figure is written as PNG (300 dpi) and PDF, with a sidecar JSON listing the
  input files, run ids, git commit and the plotted numbers.

matplotlib is imported inside the functions (``semcom plot --help`` stays light) and
only through its object-oriented API (no pyplot global state).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.plotting.bdtable import write_bd
from semcom.plotting.points import (
    MetricSpec,
    Point,
    choose_fixed_rate,
    collect_points,
    condition_of,
    label_order,
    label_order_from_records,
    load_records,
    metric_spec,
    op_near_rate,
    parse_metric,
    spread_ideal_upper,
    varying_fields,
)
from semcom.plotting.style import (
    MARKERS,
    PALETTE,
    RATE_LABELS,
    STYLE,
    ColorMap,
    log_axis,
    marker_map,
    needs_log,
    snr_symbol,
)

# --------------------------------------------------------------------------- figure helpers


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return matplotlib, Figure


def _stamp_synthetic(fig, records: Sequence[dict]) -> None:
    if any(r.get("synthetic") for r in records):
        fig.text(
            0.5,
            0.5,
            "SYNTHETIC",
            fontsize=40,
            color="0.6",
            alpha=0.25,
            rotation=25,
            ha="center",
            va="center",
            zorder=0,
        )


@dataclass
class FigureOut:
    name: str
    files: list[Path]
    sidecar: Path
    series: list[dict] = field(default_factory=list)


_DPI = [300]


def _save(fig, out_dir: Path, stem: str, formats: Sequence[str], meta: dict) -> FigureOut:
    from semcom.provenance import git_info, utc_now
    from semcom.results import atomic_write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        kwargs: dict[str, Any] = {"bbox_inches": "tight", "pad_inches": 0.04}
        if fmt == "png":
            kwargs["dpi"] = _DPI[0]
        if fmt == "pdf":
            kwargs["metadata"] = {"CreationDate": None, "Creator": "semcom plot"}
        fig.savefig(path, format=fmt, **kwargs)
        files.append(path)
    import sys

    side = dict(meta)
    side.update(
        {
            "figure": stem,
            "files": [p.name for p in files],
            "git": git_info(),
            "utc": utc_now(),
            "argv": sys.argv,
        }
    )
    sidecar = atomic_write_json(out_dir / f"{stem}.json", side)
    return FigureOut(stem, files, sidecar, meta.get("series", []))


def _errorbar(ax, xs, ys, los, his, **kw):
    import numpy as np

    yerr = None
    if all(v is not None for v in (*los, *his)):
        yerr = np.array(
            [
                [max(0.0, y - lo) for y, lo in zip(ys, los)],
                [max(0.0, hi - y) for y, hi in zip(ys, his)],
            ]
        )
    return ax.errorbar(xs, ys, yerr=yerr, capsize=2, elinewidth=0.7, capthick=0.7, **kw)


def _series(label, cond, pts) -> dict:
    return {
        "label": label,
        "condition": cond.describe() if cond else None,
        "x": [p.x for p in pts],
        "y": [p.y for p in pts],
        "ci95": [[p.lo, p.hi] for p in pts],
        "run_ids": [p.rec.get("run_id") for p in pts],
    }


def _draw_rate_curves(ax, points, colors, markers, varying, *, with_upper=True):
    """Curves (label, condition) sorted by rate; upper bounds as dotted lines."""
    series = []
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for p in points:
        groups[(p.label, p.cond)].append(p)
    order = label_order(points)
    for label, cond in sorted(groups, key=lambda k: (order.index(k[0]), k[1].sort_key())):
        pts = sorted(groups[(label, cond)], key=lambda p: p.x)
        if pts[0].upper:
            continue
        ls = "--" if pts[0].anchor else "-"
        _errorbar(
            ax,
            [p.x for p in pts],
            [p.y for p in pts],
            [p.lo for p in pts],
            [p.hi for p in pts],
            color=colors(label),
            ls=ls,
            marker=markers[cond],
            mfc="white" if pts[0].anchor else colors(label),
            mec=colors(label),
            mew=1.0,
            zorder=3,
        )
        series.append(_series(label, cond, pts))
    if with_upper:
        for (label, cond), pts in groups.items():
            if not pts[0].upper:
                continue
            for p in pts:
                ax.axhline(p.y, color=colors(label), ls=":", lw=1.1, zorder=2)
                ax.plot(
                    [1.0],
                    [p.y],
                    transform=ax.get_yaxis_transform(),
                    marker=markers[cond],
                    color=colors(label),
                    ms=4,
                    clip_on=False,
                    zorder=4,
                )
            series.append(dict(_series(label, cond, pts), upper_bound=True))
    return series


def _legends(ax, points, colors, markers, varying, *, outside=True, show_cond=True):
    from matplotlib.lines import Line2D

    order = label_order(points)
    rates, ideal = {}, set()
    for p in points:
        if p.upper:
            rates.setdefault(p.label, []).append(p.x)
            if p.ideal_ref:
                ideal.add(p.label)
    handles = []
    for lab in order:
        anchor = any(p.anchor for p in points if p.label == lab)
        upper = lab in rates
        text = lab
        if upper:
            where = ", ideal link" if lab in ideal else ""
            text = f"{lab} ({statistics.median(rates[lab]):.3g} bpp{where}, upper bound)"
        handles.append(
            Line2D([], [], color=colors(lab), ls=":" if upper else "--" if anchor else "-", lw=1.4)
        )
        handles[-1].set_label(text)
    kw = (
        dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        if outside
        else dict(loc="lower right")
    )
    leg = ax.legend(handles=handles, title="method", **kw)
    leg._legend_box.align = "left"
    conds = sorted(markers, key=lambda c: c.sort_key())
    if show_cond and len(conds) > 1:
        ax.add_artist(leg)
        leg.set_clip_on(False)  # add_artist clips to the axes, which would crop it
        ch = [
            Line2D([], [], color="0.35", ls="", marker=markers[c], label=c.describe(varying))
            for c in conds
        ]
        kw2 = (
            dict(loc="lower left", bbox_to_anchor=(1.02, 0.0), borderaxespad=0.0)
            if outside
            else dict(loc="upper left")
        )
        leg2 = ax.legend(handles=ch, title="channel", **kw2)
        leg2._legend_box.align = "left"


# --------------------------------------------------------------------------- figures


def plot_rate_accuracy(
    points: Sequence[Point],
    spec: MetricSpec,
    x: str,
    out_dir: Path,
    colors: ColorMap,
    *,
    formats=("png", "pdf"),
    records=(),
) -> FigureOut:
    """All methods and conditions in one figure: colour = method, marker = condition."""
    mpl, Figure = _mpl()
    markers = marker_map(points)
    varying = varying_fields(markers)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.8))
        ax = fig.add_subplot()
        series = _draw_rate_curves(ax, points, colors, markers, varying)
        xs = [p.x for p in points if not p.upper]
        if needs_log(xs):
            log_axis(ax, "x", xs)
        ax.set_xlabel(RATE_LABELS.get(x, x))
        ax.set_ylabel(spec.ylabel())
        ax.grid(True, which="both", alpha=0.3)
        _legends(ax, points, colors, markers, varying)
        _stamp_synthetic(fig, records)
        stem = f"{spec.key}_vs_{x}"
        return _save(
            fig,
            out_dir,
            stem,
            formats,
            {
                "kind": "rate-accuracy",
                "x": x,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "series": series,
            },
        )


def plot_rate_accuracy_by_condition(
    points, spec, x, out_dir, colors, *, formats=("png", "pdf"), records=()
) -> FigureOut | None:
    """One panel per channel condition (shared axes); None if there is only one."""
    markers = marker_map(points)
    conds = sorted(markers, key=lambda c: c.sort_key())
    if len(conds) < 2:
        return None
    mpl, Figure = _mpl()
    varying = varying_fields(conds)
    ncols = min(4, len(conds))
    nrows = math.ceil(len(conds) / ncols)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(2.6 * ncols + 1.9, 2.5 * nrows + 0.3))
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        xs = [p.x for p in points if not p.upper]
        logx = needs_log(xs)
        series = []
        for i, cond in enumerate(conds):
            ax = axes[i // ncols][i % ncols]
            sub = [p for p in points if p.cond == cond]
            series += _draw_rate_curves(ax, sub, colors, markers, varying)
            ax.set_title(cond.describe(varying))
            if logx:
                log_axis(ax, "x", xs)
            ax.grid(True, which="both", alpha=0.3)
            if i // ncols == nrows - 1:
                ax.set_xlabel(RATE_LABELS.get(x, x))
            if i % ncols == 0:
                ax.set_ylabel(spec.ylabel())
        for j in range(len(conds), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        _legends(axes[0][ncols - 1], points, colors, markers, varying, show_cond=False)
        _stamp_synthetic(fig, records)
        stem = f"{spec.key}_vs_{x}_by_snr"
        return _save(
            fig,
            out_dir,
            stem,
            formats,
            {
                "kind": "rate-accuracy-by-condition",
                "x": x,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "series": series,
            },
        )


def plot_accuracy_vs_snr(
    points, spec, x, out_dir, colors, *, rate=None, formats=("png", "pdf"), records=()
) -> FigureOut | None:
    """Accuracy versus SNR at (about) one rate: each method's operating point nearest to it.

    Shows the cliff of a single description (separate source-channel coding) against
    the graceful degradation of multiple descriptions. None without two SNRs.
    """
    pts = [p for p in points if p.cond.snr_db is not None]
    if len({p.cond.snr_db for p in pts}) < 2:
        return None
    target = rate or choose_fixed_rate(pts)
    if target is None:
        return None
    mpl, Figure = _mpl()
    snr_type = pts[0].cond.snr_type
    series = []
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.8))
        ax = fig.add_subplot()
        for label in label_order(pts):
            op = (
                op_near_rate(pts, label, target)
                if not any(p.upper for p in pts if p.label == label)
                else None
            )
            sel = [p for p in pts if p.label == label and (op is None or p.op == op)]
            # one curve per remaining channel setting (code rate, modulation)
            by_setting: dict[tuple, list[Point]] = defaultdict(list)
            for p in sel:
                by_setting[(p.cond.link, p.cond.code_rate, p.cond.modulation)].append(p)
            multi = len(by_setting) > 1
            for i, (setting, group) in enumerate(sorted(by_setting.items(), key=str)):
                group = sorted(group, key=lambda p: p.cond.snr_db)
                r = statistics.median(p.x for p in group)
                upper, anchor = group[0].upper, group[0].anchor
                text = f"{label} ({r:.3g} bpp{', ideal link' if group[0].ideal_ref else ''})"
                if multi:
                    text += f", R={setting[1]:g} {str(setting[2]).upper()}"
                if group[0].ideal_ref:  # one ideal-link run: a level, not a measurement per SNR
                    ax.plot(
                        [p.cond.snr_db for p in group],
                        [p.y for p in group],
                        color=colors(label),
                        ls=":",
                        lw=1.4,
                        label=text,
                        zorder=2,
                    )
                else:
                    _errorbar(
                        ax,
                        [p.cond.snr_db for p in group],
                        [p.y for p in group],
                        [p.lo for p in group],
                        [p.hi for p in group],
                        color=colors(label),
                        ls=":" if upper else "--" if anchor else "-",
                        marker=MARKERS[i % len(MARKERS)],
                        mfc="white" if anchor else None,
                        mec=colors(label),
                        label=text,
                        zorder=3,
                    )
                series.append(
                    {
                        "label": label,
                        "text": text,
                        "rate": r,
                        "setting": list(setting),
                        "snr_db": [p.cond.snr_db for p in group],
                        "y": [p.y for p in group],
                        "ci95": [[p.lo, p.hi] for p in group],
                        "run_ids": [p.rec.get("run_id") for p in group],
                    }
                )
        ax.set_xlabel(f"{snr_symbol(snr_type)} [dB]")
        ax.set_ylabel(spec.ylabel())
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(
            f"at {RATE_LABELS.get(x, x).split(' [')[0].lower()} ≈ {target:.3g} bpp "
            "(each method's nearest operating point)"
        )
        handles, texts = ax.get_legend_handles_labels()  # lines first: restore plot order
        order = {t: i for i, t in enumerate(s["text"] for s in series)}
        pairs = sorted(zip(handles, texts), key=lambda ht: order.get(ht[1], len(order)))
        leg = ax.legend(
            [h for h, _ in pairs],
            [t for _, t in pairs],
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            title="method (rate)",
        )
        leg._legend_box.align = "left"
        _stamp_synthetic(fig, records)
        stem = f"{spec.key}_vs_snr"
        return _save(
            fig,
            out_dir,
            stem,
            formats,
            {
                "kind": "accuracy-vs-snr",
                "x": x,
                "target_rate": target,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "series": series,
            },
        )


def plot_bler(
    records: Sequence[dict], out_dir: Path, colors: ColorMap, *, formats=("png", "pdf")
) -> FigureOut | None:
    """Transport-block error rate versus SNR per channel setting (pooled over methods), and
    description loss rate per method. None if no record has link blocks over an SNR."""
    blocks: dict[tuple, dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    desc: dict[str, dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    snr_type = "esno"
    for rec in records:
        cond, link = condition_of(rec), rec.get("link") or {}
        if cond.snr_db is None or not link.get("blocks"):
            continue
        snr_type = cond.snr_type
        b = blocks[(cond.link, cond.modulation, cond.code_rate)][cond.snr_db]
        b[0] += int(link.get("block_errors") or 0)
        b[1] += int(link["blocks"])
        if link.get("descriptions"):
            d = desc[str(rec.get("label"))][cond.snr_db]
            d[0] += int(link.get("erasures") or 0)
            d[1] += int(link["descriptions"])
    if not blocks or all(len(v) < 2 for v in blocks.values()):
        return None
    mpl, Figure = _mpl()
    series = []
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(7.2, 3.0))
        ax1, ax2 = fig.subplots(1, 2, sharex=True)
        floor = []
        for i, ((link, mod, cr), by_snr) in enumerate(sorted(blocks.items(), key=str)):
            snrs = sorted(by_snr)
            pts = [(s, by_snr[s][0] / by_snr[s][1], by_snr[s][1]) for s in snrs]
            nz = [(s, v) for s, v, _ in pts if v > 0]
            floor += [1.0 / n for _, v, n in pts if v == 0]
            if nz:
                ax1.semilogy(
                    [s for s, _ in nz],
                    [v for _, v in nz],
                    marker=MARKERS[i % 10],
                    color=PALETTE[i % len(PALETTE)],
                    ls="-",
                    label=f"{str(mod).upper()}, R={cr:g} ({link})",
                )
            series.append(
                {
                    "setting": [link, mod, cr],
                    "snr_db": snrs,
                    "bler": [v for _, v, _ in pts],
                    "blocks": [n for _, _, n in pts],
                }
            )
        order = [lab for lab in label_order_from_records(records) if lab in desc]
        for lab in order:
            by_snr = desc[lab]
            nz = [(s, by_snr[s][0] / by_snr[s][1]) for s in sorted(by_snr) if by_snr[s][0] > 0]
            if nz:
                ax2.semilogy(
                    [s for s, _ in nz],
                    [v for _, v in nz],
                    marker="o",
                    ms=3.5,
                    color=colors(lab),
                    ls="--",
                    label=lab,
                )
            series.append(
                {
                    "label": lab,
                    "snr_db": sorted(by_snr),
                    "description_loss_rate": [by_snr[s][0] / by_snr[s][1] for s in sorted(by_snr)],
                }
            )
        for ax, yl in ((ax1, "BLER (transport blocks)"), (ax2, "Description loss rate")):
            if ax.lines:
                log_axis(ax, "y", [v for ln in ax.lines for v in ln.get_ydata()])
            ax.set_xlabel(f"{snr_symbol(snr_type)} [dB]")
            ax.set_ylabel(yl)
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(loc="lower left")
        fig.text(
            0.99,
            -0.02,
            "points with no errors observed are not drawn (log scale)",
            ha="right",
            va="top",
            fontsize=7,
            color="0.4",
        )
        _stamp_synthetic(fig, records)
        return _save(
            fig, out_dir, "bler_vs_snr", formats, {"kind": "bler-vs-snr", "series": series}
        )


def plot_latency(
    points: Sequence[Point],
    out_dir: Path,
    colors: ColorMap,
    *,
    rate=None,
    formats=("png", "pdf"),
    records=(),
) -> FigureOut | None:
    """Per method: mean edge compute, airtime and cloud compute per transmission (ms), at
    each method's operating point nearest to the fixed rate, averaged over conditions."""
    target = rate or choose_fixed_rate(points)
    rows = []
    for label in label_order(points):
        op = op_near_rate(points, label, target) if target else None
        sel = [p for p in points if p.label == label and (op is None or p.op == op)]
        lat = [p.rec.get("latency") or {} for p in sel]
        vals = {}
        for k in ("edge_s_mean", "airtime_s_mean", "cloud_s_mean"):
            v = [x[k] for x in lat if x.get(k) is not None]
            vals[k] = 1e3 * sum(v) / len(v) if v else 0.0
        if any(vals.values()):
            rows.append(
                (
                    label,
                    statistics.median(p.x for p in sel),
                    len({p.rec.get("run_id") for p in sel}),
                    vals,
                )
            )
    if not rows:
        return None
    mpl, Figure = _mpl()
    parts = (
        ("edge_s_mean", "edge compute", "#56B4E9"),
        ("airtime_s_mean", "airtime", "#E69F00"),
        ("cloud_s_mean", "cloud compute", "#009E73"),
    )
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 0.45 * len(rows) + 1.2))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for key, name, color in parts:
            left = [
                sum(r[3][k] for k, _, _ in parts[: [p[0] for p in parts].index(key)]) for r in rows
            ]
            ax.barh(
                ys,
                [r[3][key] for r in rows],
                left=left,
                color=color,
                label=name,
                height=0.6,
                edgecolor="white",
                lw=0.5,
            )
        for y, r in zip(ys, rows):
            total = sum(r[3].values())
            ax.text(total, y, f" {total:.3g} ms", va="center", fontsize=7.5)
        ax.set_yticks(
            ys, [f"{r[0]}\n({r[1]:.3g} bpp, {r[2]} run{'s' if r[2] != 1 else ''})" for r in rows]
        )
        for tick, r in zip(ax.get_yticklabels(), rows):
            tick.set_color(colors(r[0]))
        ax.set_xlabel("Latency per transmission [ms]")
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        _stamp_synthetic(fig, records)
        series = [
            {"label": r[0], "rate": r[1], "runs": r[2], **{k: r[3][k] for k, _, _ in parts}}
            for r in rows
        ]
        return _save(
            fig,
            out_dir,
            "latency",
            formats,
            {"kind": "latency", "unit": "ms", "target_rate": target, "series": series},
        )


# --------------------------------------------------------------------------- all figures


@dataclass
class PlotResult:
    figures: list[FigureOut]
    bd_rows: list[dict] | None
    bd_files: dict[str, Path]
    records: int
    skipped_errors: list[str]
    metric: MetricSpec
    x: str
    anchor: str | None
    markdown: str = ""


def make_figures(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    x: str = "bpp_wire",
    metric: str | None = None,
    anchor: str | None = None,
    rate: float | None = None,
    upper_bound: Sequence[str] = (),
    formats: Sequence[str] = ("png", "pdf"),
    bd_method: str = "pchip",
    min_points: int = 4,
    kinds: Sequence[str] = ("rate", "snr", "bler", "latency"),
    dpi: int = 300,
) -> PlotResult:
    """Every figure the results support, plus the BD table when an anchor is named."""
    from semcom.errors import DataError

    _DPI[0] = int(dpi)

    records, info = load_records(inputs)
    if not records:
        extra = (
            f" ({len(info['skipped_errors'])} failed runs skipped)"
            if info["skipped_errors"]
            else ""
        )
        raise DataError(f"no ok records in {', '.join(map(str, inputs))}{extra}")
    hints = info["hints"]
    x = x or hints.get("x") or "bpp_wire"
    task, name = parse_metric(metric or hints.get("metric"), records)
    spec = metric_spec(records, task, name)
    anchor = anchor or hints.get("anchor")
    ub = list(upper_bound) or ([hints["upper_bound"]] if hints.get("upper_bound") else [])
    points = spread_ideal_upper(collect_points(records, x, spec, ub))
    if not points:
        raise DataError(f"no record has both {x} and {task}.{name}")
    if anchor and anchor not in {p.label for p in points}:
        raise DataError(
            f"anchor '{anchor}' is not a label in the results; labels: "
            f"{', '.join(sorted({p.label for p in points}))}"
        )
    out = Path(out_dir)
    colors = ColorMap(label_order(points))
    meta_inputs = {"inputs": info["inputs"], "run_ids": sorted({p.rec["run_id"] for p in points})}
    figs: list[FigureOut] = []

    def keep(f):
        if f is not None:
            side = json.loads(f.sidecar.read_text())
            side.update(meta_inputs)
            from semcom.results import atomic_write_json

            atomic_write_json(f.sidecar, side)
            figs.append(f)

    if "rate" in kinds:
        keep(plot_rate_accuracy(points, spec, x, out, colors, formats=formats, records=records))
        keep(
            plot_rate_accuracy_by_condition(
                points, spec, x, out, colors, formats=formats, records=records
            )
        )
    if "snr" in kinds:
        keep(
            plot_accuracy_vs_snr(
                points, spec, x, out, colors, rate=rate, formats=formats, records=records
            )
        )
    if "bler" in kinds:
        keep(plot_bler(records, out, colors, formats=formats))
    if "latency" in kinds:
        keep(plot_latency(points, out, colors, rate=rate, formats=formats, records=records))
    bd_rows, bd_files = None, {}
    if anchor:
        bd_rows, bd_files = write_bd(
            points, spec, x, anchor, out, method=bd_method, min_points=min_points
        )
    return PlotResult(
        figs, bd_rows, bd_files, len(records), info["skipped_errors"], spec, x, anchor
    )
