"""Drawing helpers shared by every figure: matplotlib, saving with sidecars, error bars,
dodging, the SYNTHETIC stamp.

Every figure is written as PNG and PDF (or the formats asked for) with a sidecar JSON
beside it: the input files, run ids, git commit, command line and the plotted numbers
(the data of the figure). matplotlib is imported inside the functions and only through
its object-oriented API (no pyplot global state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.plotting.points import Point


def mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return matplotlib, Figure


def stamp_synthetic(fig, records: Sequence[dict]) -> None:
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


DPI = [300]  # the PNG resolution of this invocation (make_figures sets it)


def save(fig, out_dir: Path, stem: str, formats: Sequence[str], meta: dict) -> FigureOut:
    """Write ``fig`` in ``formats`` and its sidecar ``<stem>.json`` (``meta`` + provenance)."""
    import sys

    from semcom.provenance import git_info, utc_now
    from semcom.results import atomic_write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        kwargs: dict[str, Any] = {"bbox_inches": "tight", "pad_inches": 0.04}
        if fmt == "png":
            kwargs["dpi"] = DPI[0]
        if fmt == "pdf":
            kwargs["metadata"] = {"CreationDate": None, "Creator": "semcom plot"}
        fig.savefig(path, format=fmt, **kwargs)
        files.append(path)
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


def errorbar(ax, xs, ys, los, his, **kw):
    """``ax.errorbar`` with asymmetric bars from CI bounds (none if a bound is missing)."""
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


def series_data(label, cond, pts: Sequence[Point], xs_drawn=None) -> dict:
    """The sidecar entry of one drawn series (true x, drawn x when dodged, y, CI, runs)."""
    out = {
        "label": label,
        "condition": cond.describe() if cond else None,
        "x": [p.x for p in pts],
        "y": [p.y for p in pts],
        "ci95": [[p.lo, p.hi] for p in pts],
        "run_ids": [p.rec.get("run_id") for p in pts],
    }
    if xs_drawn is not None and list(xs_drawn) != out["x"]:
        out["x_drawn"] = list(xs_drawn)
    return out


def dodge(
    series_xs: Sequence[Sequence[float]], *, log: bool, width: float = 0.012, tol: float = 0.01
) -> list[list[float]]:
    """Drawn x positions so that error bars at (nearly) the same x do not stack.

    Points of different series within ``tol`` (relative) of each other form a cluster;
    the series of a cluster are spread symmetrically around its x, in series order, by
    ``width`` decades apart (log axes) or ``width`` of the x span (linear axes). The
    values plotted never change, only where they are drawn (sidecars keep both).
    """
    flat = sorted(
        (x, i, j) for i, xs in enumerate(series_xs) for j, x in enumerate(xs) if x is not None
    )
    out = [list(xs) for xs in series_xs]
    if not flat:
        return out
    span = (flat[-1][0] - flat[0][0]) or 1.0
    clusters: list[list[tuple[float, int, int]]] = []
    for item in flat:
        x = item[0]
        if clusters and abs(x - clusters[-1][0][0]) <= tol * max(abs(clusters[-1][0][0]), 1e-12):
            clusters[-1].append(item)
        else:
            clusters.append([item])
    for cl in clusters:
        members = sorted({i for _, i, _ in cl})
        k = len(members)
        if k < 2:
            continue
        for x, i, j in cl:
            off = (members.index(i) - (k - 1) / 2) * width
            out[i][j] = x * 10**off if log and x > 0 else x + off * span
    return out


def band(ax, y: float, lo: float | None, hi: float | None, color: str) -> None:
    """A horizontal level with its CI as a light band (a ceiling, not a curve)."""
    ax.axhline(y, color=color, ls=":", lw=1.2, zorder=2)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        ax.axhspan(lo, hi, color=color, alpha=0.08, lw=0, zorder=1)
