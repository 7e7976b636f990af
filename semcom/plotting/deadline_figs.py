"""Deadline figures: task accuracy and deadline-miss rate versus the latency deadline
(``channel.deadline_ms``), one line per link setting (MCS, or ``auto`` for link
adaptation) and SNR, for sweeps over the deadline (``configs/sweeps/deadline.yaml``).

The miss rate is the record's ``link.deadline_miss_rate`` (descriptions that completed
after the deadline, over those sent); accuracy carries its bootstrap 95% CI, dodged so
that bars at one deadline do not stack.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from semcom.plotting.canvas import FigureOut, dodge, errorbar, mpl, save, stamp_synthetic
from semcom.plotting.points import MetricSpec, Point
from semcom.plotting.style import MARKERS, PALETTE, STYLE


def _setting(rec: dict) -> str:
    ch = (rec.get("config") or {}).get("channel") or {}
    mcs = ch.get("mcs")
    if mcs is None:
        return f"{ch.get('modulation')}, R={ch.get('code_rate')}"
    return "MCS auto (adaptation)" if mcs == "auto" else f"MCS {mcs}"


def _deadline(rec: dict) -> float | None:
    ch = (rec.get("config") or {}).get("channel") or {}
    d = ch.get("deadline_ms")
    return float(d) if d else None


def plot_deadline(
    points: Sequence[Point],
    spec: MetricSpec,
    out_dir: Path,
    *,
    formats=("png", "pdf"),
    records: Sequence[dict] = (),
) -> FigureOut | None:
    """Accuracy (left) and deadline-miss rate (right) versus the deadline; None unless
    the results hold at least two deadlines for one setting."""
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for p in points:
        d = _deadline(p.rec)
        if d is not None and not p.upper:
            groups[(p.label, _setting(p.rec), p.cond.snr_db)].append(p)
    groups = {k: v for k, v in groups.items() if len({_deadline(p.rec) for p in v}) >= 2}
    if not groups:
        return None
    keys = sorted(groups, key=lambda k: (k[0], k[1] != "MCS auto (adaptation)", k[1], k[2]))
    labels = sorted({k[0] for k in keys})
    snrs = sorted({k[2] for k in keys if k[2] is not None})
    settings = sorted({k[1] for k in keys}, key=lambda s: (s != "MCS auto (adaptation)", s))
    color = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(settings)}
    marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(snrs)}
    matplotlib, Figure = mpl()
    series = []
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8.4, 3.2))
        ax1, ax2 = fig.subplots(1, 2, sharex=True)
        pts = [sorted(groups[k], key=lambda p: _deadline(p.rec)) for k in keys]
        xs = [[_deadline(p.rec) for p in ps] for ps in pts]
        drawn = dodge(xs, log=True, width=0.015)
        for k, ps, x, xd in zip(keys, pts, xs, drawn):
            label, setting, snr = k
            auto = setting.startswith("MCS auto")
            name = setting + (f", {snr:g} dB" if len(snrs) > 1 else "")
            name = name + (f" ({label})" if len(labels) > 1 else "")
            kw = dict(
                color=color[setting],
                marker=marker.get(snr, "o"),
                ms=4.5,
                lw=2.0 if auto else 1.2,
                ls="-" if auto else "--",
            )
            errorbar(ax1, xd, [p.y for p in ps], [p.lo for p in ps], [p.hi for p in ps], **kw)
            miss = [(p.rec.get("link") or {}).get("deadline_miss_rate") for p in ps]
            ax2.plot(x, [100 * (m or 0.0) for m in miss], label=name, **kw)
            series.append(
                {
                    "label": label,
                    "setting": setting,
                    "snr_db": snr,
                    "deadline_ms": x,
                    "x_drawn": xd,
                    "y": [p.y for p in ps],
                    "ci95": [[p.lo, p.hi] for p in ps],
                    "deadline_miss_rate": miss,
                    "run_ids": [p.rec.get("run_id") for p in ps],
                }
            )
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_xlabel("Deadline per image [ms]")
            ax.grid(True, which="both", alpha=0.3)
        ax1.set_ylabel(spec.ylabel())
        ax2.set_ylabel("Deadline-miss rate [%]")
        ax2.set_ylim(-3, 103)
        kind = ((points[0].rec.get("config") or {}).get("channel") or {}).get("deadline_kind")
        held = f"SNR {snrs[0]:g} dB, " if len(snrs) == 1 else ""
        fig.suptitle(
            f"accuracy and deadline misses versus the deadline ({held}deadline on "
            f"{kind or 'airtime'}; {', '.join(labels)})",
            fontsize=9,
        )
        ax2.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7.5)
        stamp_synthetic(fig, records)
        return save(
            fig,
            out_dir,
            f"{spec.key}_vs_deadline",
            formats,
            {"kind": "deadline", "metric": f"{spec.task}.{spec.name}", "series": series},
        )
