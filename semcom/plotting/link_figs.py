"""Link figures: transport-block error rate and description loss versus SNR; latency.

BLER per link setting is pooled over the methods that used it; when code rate or
modulation vary the settings are coloured by code rate and marked by modulation (as
the rate-accuracy figures), so 15+ settings stay readable, with the legend outside.
Latency: edge compute, airtime and cloud compute per transmission at each method's
operating point nearest the fixed rate.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from semcom.plotting.canvas import FigureOut, mpl, save, stamp_synthetic
from semcom.plotting.encoding import MOD_MARKERS, rate_colors, setting_name
from semcom.plotting.points import (
    Point,
    choose_fixed_rate,
    condition_of,
    label_order,
    label_order_from_records,
    op_near_rate,
)
from semcom.plotting.style import MARKERS, PALETTE, STYLE, ColorMap, log_axis, snr_symbol


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
    matplotlib, Figure = mpl()
    series = []
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.2, 3.0))
        ax1, ax2 = fig.subplots(1, 2, sharex=True)
        floor = []
        settings = sorted(blocks, key=str)
        by_rate = len({s[2] for s in settings}) > 1 or len({s[1] for s in settings}) > 1
        rcol = rate_colors([s[2] for s in settings if s[2] is not None]) if by_rate else {}
        for i, ((link, mod, cr), by_snr) in enumerate(sorted(blocks.items(), key=str)):
            snrs = sorted(by_snr)
            pts = [(s, by_snr[s][0] / by_snr[s][1], by_snr[s][1]) for s in snrs]
            nz = [(s, v) for s, v, _ in pts if v > 0]
            floor += [1.0 / n for _, v, n in pts if v == 0]
            if nz:
                ax1.semilogy(
                    [s for s, _ in nz],
                    [v for _, v in nz],
                    marker=MOD_MARKERS.get(str(mod).lower(), MARKERS[i % len(MARKERS)])
                    if by_rate
                    else MARKERS[i % len(MARKERS)],
                    color=rcol.get(cr, PALETTE[i % len(PALETTE)])
                    if by_rate
                    else PALETTE[i % len(PALETTE)],
                    ls="-",
                    label=f"{setting_name(mod, cr)} ({link})",
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
            if ax.lines and (ax is ax2 or len(ax.lines) <= 5):
                ax.legend(loc="lower left")
        if len(ax1.lines) > 5:  # many settings: their legend outside, right of both panels
            fig.legend(
                *ax1.get_legend_handles_labels(),
                loc="upper left",
                bbox_to_anchor=(1.0, 0.98),
                fontsize=6.5,
                title="link setting (BLER)",
            )
        fig.text(
            0.99,
            -0.02,
            "points with no errors observed are not drawn (log scale)",
            ha="right",
            va="top",
            fontsize=7,
            color="0.4",
        )
        stamp_synthetic(fig, records)
        return save(fig, out_dir, "bler_vs_snr", formats, {"kind": "bler-vs-snr", "series": series})


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
    matplotlib, Figure = mpl()
    parts = (
        ("edge_s_mean", "edge compute", "#56B4E9"),
        ("airtime_s_mean", "airtime", "#E69F00"),
        ("cloud_s_mean", "cloud compute", "#009E73"),
    )
    with matplotlib.rc_context(STYLE):
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
        stamp_synthetic(fig, records)
        series = [
            {"label": r[0], "rate": r[1], "runs": r[2], **{k: r[3][k] for k, _, _ in parts}}
            for r in rows
        ]
        return save(
            fig,
            out_dir,
            "latency",
            formats,
            {"kind": "latency", "unit": "ms", "target_rate": target, "series": series},
        )
