"""All figures the results support, and the BD table: :func:`make_figures`.

The figures live by kind: :mod:`semcom.plotting.rate_figs` (rate-accuracy, all in one
and per condition), :mod:`semcom.plotting.snr_figs` (accuracy versus SNR at a fixed
rate), :mod:`semcom.plotting.link_figs` (BLER, latency); drawing and saving helpers in
:mod:`semcom.plotting.canvas`, the colour / marker / line encoding in
:mod:`semcom.plotting.encoding`. Conventions are in ``docs/sweeps.md``:

- colour = method label (fixed for the invocation), marker = channel condition; when
  code rate or modulation vary: colour = code rate, marker = modulation, line style =
  method; the legend is outside the axes;
- error bars at one x are dodged; titles say what is held fixed;
- full tokens are the upper bound, a level, not a curve; one measured on the ideal link
  is drawn as the ceiling of every condition and labelled as such;
- every figure is written as PNG (300 dpi) and PDF with a sidecar JSON listing the
  input files, run ids, git commit and the plotted numbers;
- with an anchor: the BD table (:mod:`semcom.plotting.bdtable`) and the paired table
  (:func:`semcom.plotting.compare.write_paired`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from semcom.plotting.bdtable import write_bd
from semcom.plotting.canvas import DPI, FigureOut
from semcom.plotting.deadline_figs import plot_deadline
from semcom.plotting.link_figs import plot_bler, plot_latency
from semcom.plotting.points import (
    MetricSpec,
    collect_points,
    label_order,
    load_records,
    metric_spec,
    parse_metric,
    spread_ideal_upper,
)
from semcom.plotting.rate_figs import plot_rate_accuracy, plot_rate_accuracy_by_condition
from semcom.plotting.snr_figs import plot_accuracy_vs_snr
from semcom.plotting.style import ColorMap

__all__ = [
    "FigureOut",
    "PlotResult",
    "make_figures",
    "plot_accuracy_vs_snr",
    "plot_bler",
    "plot_latency",
    "plot_deadline",
    "plot_rate_accuracy",
    "plot_rate_accuracy_by_condition",
]

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
    paired_rows: list[dict] | None = None  # each point against the anchor (write_paired)
    paired_files: dict[str, Path] = field(default_factory=dict)


def make_figures(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    x: str | None = None,
    metric: str | None = None,
    anchor: str | None = None,
    rate: float | None = None,
    upper_bound: Sequence[str] = (),
    formats: Sequence[str] = ("png", "pdf"),
    bd_method: str = "pchip",
    min_points: int = 4,
    kinds: Sequence[str] = ("rate", "snr", "bler", "latency", "deadline"),
    dpi: int = 300,
) -> PlotResult:
    """Every figure the results support, plus the BD table when an anchor is named."""
    from semcom.errors import DataError

    DPI[0] = int(dpi)

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
    if "deadline" in kinds:
        keep(plot_deadline(points, spec, out, formats=formats, records=records))
    bd_rows, bd_files, paired_rows, paired_files = None, {}, None, {}
    if anchor:
        from semcom.plotting.compare import write_paired

        bd_rows, bd_files = write_bd(
            points, spec, x, anchor, out, method=bd_method, min_points=min_points
        )
        paired_rows, paired_files = write_paired(points, anchor, spec, x, out)
    return PlotResult(
        figs,
        bd_rows,
        bd_files,
        len(records),
        info["skipped_errors"],
        spec,
        x,
        anchor,
        paired_rows=paired_rows,
        paired_files=paired_files,
    )
