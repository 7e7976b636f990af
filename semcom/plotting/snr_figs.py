"""Accuracy versus SNR at (about) one rate: each method's operating point nearest to it.

Shows the cliff of a single description against the graceful degradation of multiple
descriptions. The title says what it holds: the target rate, the actual range of the
chosen operating points (each curve's own rate is in the legend) and the link settings
that are fixed. Error bars at the same SNR are dodged. An upper bound measured on the
ideal link did not go through the link: it is a level across the whole SNR range (a
dotted line with its CI band), labelled as the ideal-link ceiling, not a curve over SNR.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from semcom.plotting.canvas import FigureOut, band, dodge, errorbar, mpl, save, stamp_synthetic
from semcom.plotting.encoding import Encoding, held_fixed, place_legend, setting_name
from semcom.plotting.points import Point, choose_fixed_rate, label_order, op_near_rate
from semcom.plotting.style import LINESTYLES_BY_KIND, MARKERS, RATE_LABELS, STYLE, snr_symbol


def plot_accuracy_vs_snr(
    points, spec, x, out_dir, colors, *, rate=None, formats=("png", "pdf"), records=()
) -> FigureOut | None:
    """None without two SNRs."""
    pts = [p for p in points if p.cond.snr_db is not None]
    if len({p.cond.snr_db for p in pts}) < 2:
        return None
    target = rate or choose_fixed_rate(pts)
    if target is None:
        return None
    matplotlib, Figure = mpl()
    snr_type = pts[0].cond.snr_type
    enc = Encoding(pts, colors)
    unit = _unit(x)
    curves = []  # (label, setting, group, legend text, rate)
    for label in label_order(pts):
        mine = [p for p in pts if p.label == label]
        is_upper = any(p.upper for p in mine)
        by_setting: dict[tuple, list[Point]] = defaultdict(list)
        for p in mine:
            by_setting[(p.cond.link, p.cond.code_rate, p.cond.modulation)].append(p)
        multi = len(by_setting) > 1
        for setting, cand in sorted(by_setting.items(), key=str):
            # each setting at its operating point nearest the target rate
            op = op_near_rate(cand, label, target) if not is_upper else None
            group = sorted(
                (p for p in cand if op is None or p.op == op), key=lambda p: p.cond.snr_db
            )
            r = statistics.median(p.x for p in group)
            if group[0].ideal_ref:
                text = f"{label}: ceiling, ideal link ({r:.3g} {unit}; no channel)"
            else:
                text = f"{label} ({r:.3g} {unit})"
                if multi:
                    text += f", {setting_name(setting[2], setting[1])}"
            curves.append((label, setting, group, text, r))
    linked = [c for c in curves if not c[2][0].ideal_ref]
    rates = [c[4] for c in linked if not c[2][0].upper]
    drawn = dodge([[p.cond.snr_db for p in c[2]] for c in linked], log=False, width=0.01)
    series = []
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.8))
        ax = fig.add_subplot()
        for (label, setting, group, text, r), xs in zip(linked, drawn):
            anchor, upper = group[0].anchor, group[0].upper
            if enc.by_setting:
                color, marker = enc.color(group[0]), enc.marker(group[0])
                ls = ":" if upper else enc.linestyle(label)
            else:
                color = colors(label)
                marker = MARKERS[label_order(pts).index(label) % len(MARKERS)]
                ls = LINESTYLES_BY_KIND["upper" if upper else "anchor" if anchor else "proposed"]
            errorbar(
                ax,
                xs,
                [p.y for p in group],
                [p.lo for p in group],
                [p.hi for p in group],
                color=color,
                ls=ls,
                marker=marker,
                mfc="white" if anchor else None,
                mec=color,
                label=None if enc.by_setting else text,
                zorder=3,
            )
            series.append(_series(label, text, r, setting, group, xs))
        for label, setting, group, text, r in curves:
            if not group[0].ideal_ref:
                continue
            p = group[0]
            band(ax, p.y, p.lo, p.hi, colors(label))
            if not enc.by_setting:
                ax.plot([], [], color=colors(label), ls=":", lw=1.4, label=text)
            series.append(dict(_series(label, text, r, setting, group, None), ideal_link=True))
        ax.set_xlabel(f"{snr_symbol(snr_type)} [dB]")
        ax.set_ylabel(spec.ylabel())
        ax.grid(True, which="both", alpha=0.3)
        name = RATE_LABELS.get(x, x).split(" [")[0].lower()
        span = (
            f"actual {min(rates):.3g}-{max(rates):.3g} {unit}" if rates else "rates in the legend"
        )
        fixed = held_fixed(records or [p.rec for p in pts], skip=("snr_db",))
        ax.set_title(
            f"each method at its operating point nearest {name} {target:.3g} {unit} ({span})"
            + (f"\nfixed: {fixed}" if fixed else ""),
            fontsize=8,
        )
        if enc.by_setting:
            place_legend(ax, enc.legend_entries(pts, show_cond=False))
        else:
            leg = ax.legend(
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                borderaxespad=0.0,
                title="method (its rate)",
            )
            leg._legend_box.align = "left"
        stamp_synthetic(fig, records)
        return save(
            fig,
            out_dir,
            f"{spec.key}_vs_snr",
            formats,
            {
                "kind": "accuracy-vs-snr",
                "x": x,
                "target_rate": target,
                "rate_range": [min(rates), max(rates)] if rates else None,
                "metric": f"{spec.task}.{spec.name}",
                "scale": spec.scale,
                "fixed": fixed,
                "series": series,
            },
        )


def _series(label, text, r, setting, group, xs) -> dict:
    out = {
        "label": label,
        "text": text,
        "rate": r,
        "setting": list(setting),
        "snr_db": [p.cond.snr_db for p in group],
        "y": [p.y for p in group],
        "ci95": [[p.lo, p.hi] for p in group],
        "run_ids": [p.rec.get("run_id") for p in group],
    }
    if xs is not None and list(xs) != out["snr_db"]:
        out["snr_db_drawn"] = list(xs)
    return out


def _unit(x: str) -> str:
    label = RATE_LABELS.get(x, "")
    return label.split("[")[-1].rstrip("]") if "[" in label else x
