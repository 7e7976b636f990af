"""Rate-accuracy figures: all methods and conditions in one axes, and one panel per
channel condition (SNR).

Encoding from :class:`~semcom.plotting.encoding.Encoding` (by method, or by code rate
and modulation when those vary). Error bars of points at the same rate are dodged
(:func:`~semcom.plotting.canvas.dodge`; the sidecar keeps the true and the drawn x).
Upper bounds (full tokens) are levels, not curves: a dotted line; one measured on the
ideal link is the ceiling of every condition and is drawn as such: a dotted line with
its CI as a light band, labelled "ideal link" in the legend and in the panel, without a
condition marker (it did not go through the link).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from semcom.plotting.canvas import (
    FigureOut,
    band,
    dodge,
    errorbar,
    mpl,
    save,
    series_data,
    stamp_synthetic,
)
from semcom.plotting.encoding import Encoding, held_fixed, place_legend
from semcom.plotting.points import MetricSpec, Point
from semcom.plotting.style import RATE_LABELS, STYLE, ColorMap, log_axis, needs_log


def draw_rate_curves(ax, points: Sequence[Point], enc: Encoding, *, logx: bool) -> list[dict]:
    """The lines of ``points`` (dodged), then the upper bounds; the sidecar series."""
    groups = enc.line_groups(points)
    drawn = dodge([[p.x for p in pts] for _, _, pts in groups], log=logx)
    series = []
    for (label, _key, pts), xs in zip(groups, drawn):
        ls = enc.linestyle(label)
        # one line per group; markers coloured per point (code rate) in setting mode
        line_color = "0.55" if enc.by_setting and len({enc.color(p) for p in pts}) > 1 else None
        if line_color:
            ax.plot(xs, [p.y for p in pts], color=line_color, ls=ls, lw=1.0, zorder=2)
            for x, p in zip(xs, pts):
                c = enc.color(p)
                errorbar(
                    ax,
                    [x],
                    [p.y],
                    [p.lo],
                    [p.hi],
                    color=c,
                    ls="",
                    marker=enc.marker(p),
                    mfc=c if enc.filled(p) else "white",
                    mec=c,
                    mew=1.0,
                    zorder=3,
                )
        else:
            c = enc.color(pts[0])
            errorbar(
                ax,
                xs,
                [p.y for p in pts],
                [p.lo for p in pts],
                [p.hi for p in pts],
                color=c,
                ls=ls,
                marker=enc.marker(pts[0]),
                mfc=c if enc.filled(pts[0]) else "white",
                mec=c,
                mew=1.0,
                zorder=3,
            )
        conds = {p.cond for p in pts}
        s = series_data(label, pts[0].cond if len(conds) == 1 else None, pts, xs)
        if len(conds) > 1:
            s["conditions"] = [p.cond.describe() for p in pts]
        series.append(s)
    seen = set()
    for p in points:
        if not p.upper:
            continue
        key = (p.rec.get("run_id"), p.cond if not p.ideal_ref else None)
        if key in seen:
            continue
        seen.add(key)
        color = enc.colors(p.label)
        if p.ideal_ref:
            band(ax, p.y, p.lo, p.hi, color)
        else:
            ax.axhline(p.y, color=color, ls=":", lw=1.1, zorder=2)
            ax.plot(
                [1.0],
                [p.y],
                transform=ax.get_yaxis_transform(),
                marker=enc.marker(p),
                color=color,
                ms=4,
                clip_on=False,
                zorder=4,
            )
        series.append(
            dict(series_data(p.label, p.cond, [p]), upper_bound=True, ideal_link=p.ideal_ref)
        )
    return series


def _ceiling_note(ax, points: Sequence[Point]) -> None:
    ideal = [p for p in points if p.ideal_ref]
    if ideal:
        p = ideal[0]
        ax.annotate(
            "ceiling: ideal link",
            xy=(0.01, p.y),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            fontsize=6.5,
            color="0.3",
            va="bottom",
            ha="left",
        )


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
    """All methods and conditions in one figure."""
    matplotlib, Figure = mpl()
    enc = Encoding(points, colors)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.8))
        ax = fig.add_subplot()
        xs = [p.x for p in points if not p.upper]
        logx = needs_log(xs)
        series = draw_rate_curves(ax, points, enc, logx=logx)
        if logx:
            log_axis(ax, "x", xs)
        _ceiling_note(ax, points)
        ax.set_xlabel(RATE_LABELS.get(x, x))
        ax.set_ylabel(spec.ylabel())
        ax.grid(True, which="both", alpha=0.3)
        fixed = held_fixed(records or [p.rec for p in points])
        ax.set_title(
            f"{spec.ylabel()} vs {RATE_LABELS.get(x, x).split(' [')[0].lower()}"
            + (f"\nfixed: {fixed}" if fixed else ""),
            fontsize=8,
        )
        place_legend(ax, enc.legend_entries(points))
        stamp_synthetic(fig, records)
        return save(
            fig,
            out_dir,
            f"{spec.key}_vs_{x}",
            formats,
            {
                "kind": "rate-accuracy",
                "x": x,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "encoding": "setting" if enc.by_setting else "method",
                "fixed": fixed,
                "series": series,
            },
        )


def plot_rate_accuracy_by_condition(
    points, spec, x, out_dir, colors, *, formats=("png", "pdf"), records=()
) -> FigureOut | None:
    """One panel per channel condition (per SNR when code rate / modulation vary too);
    None if there is only one panel."""
    enc = Encoding(points, colors)
    if enc.by_setting:

        def key(p):
            return (p.cond.link, p.cond.snr_db, p.cond.loss_prob)
    else:

        def key(p):
            return p.cond

    keys = sorted(
        {key(p) for p in points}, key=lambda k: str(k) if enc.by_setting else k.sort_key()
    )
    if len(keys) < 2:
        return None
    matplotlib, Figure = mpl()
    ncols = min(4, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(2.6 * ncols + 2.2, 2.5 * nrows + 0.6))
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        xs = [p.x for p in points if not p.upper]
        logx = needs_log(xs)
        series = []
        for i, k in enumerate(keys):
            ax = axes[i // ncols][i % ncols]
            sub = [p for p in points if key(p) == k]
            series += draw_rate_curves(ax, sub, enc, logx=logx)
            first = sub[0].cond
            title = first.describe({"snr_db"}) if enc.by_setting else first.describe(enc.varying)
            ax.set_title(title)
            if logx:
                log_axis(ax, "x", xs)
            _ceiling_note(ax, sub)
            ax.grid(True, which="both", alpha=0.3)
            if i // ncols == nrows - 1:
                ax.set_xlabel(RATE_LABELS.get(x, x))
            if i % ncols == 0:
                ax.set_ylabel(spec.ylabel())
        for j in range(len(keys), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        place_legend(axes[0][ncols - 1], enc.legend_entries(points, show_cond=False))
        fixed = held_fixed(records or [p.rec for p in points], skip=("snr_db",))
        if fixed:
            fig.suptitle(f"fixed: {fixed}", fontsize=8, y=1.0)
        stamp_synthetic(fig, records)
        return save(
            fig,
            out_dir,
            f"{spec.key}_vs_{x}_by_snr",
            formats,
            {
                "kind": "rate-accuracy-by-condition",
                "x": x,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "encoding": "setting" if enc.by_setting else "method",
                "fixed": fixed,
                "series": series,
            },
        )
