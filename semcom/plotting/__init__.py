"""Figures from saved results only: rate-accuracy, accuracy versus SNR, BLER, latency.

Input is records (``record.json`` files, run folders, or a sweep's ``aggregate.json``,
see :func:`semcom.results.iter_records`); nothing is recomputed. The package:

- :mod:`semcom.plotting.points`: the points model (loading records, :class:`Condition`,
  :class:`Point`, :class:`MetricSpec`, collecting points, choosing the fixed rate);
- :mod:`semcom.plotting.style`: palette, fixed colours, markers, labels,
  :class:`ColorMap`, log axes;
- :mod:`semcom.plotting.figures`: one ``plot_*`` function per figure, each saved as PNG
  and PDF with a sidecar JSON, and :func:`make_figures` (everything the results support);
- :mod:`semcom.plotting.bdtable`: BD-rate / BD-accuracy tables
  (:mod:`semcom.metrics.bd`) per channel condition.

The names used outside the package are re-exported here (``from semcom.plotting import
make_figures``); everything else is imported from its module. No module of the package
imports matplotlib at import time.
"""

from __future__ import annotations

from semcom.plotting.figures import FigureOut, PlotResult, make_figures
from semcom.plotting.points import (
    Condition,
    MetricSpec,
    Point,
    collect_points,
    condition_of,
    default_metric,
    is_anchor,
    is_upper_bound,
    label_order,
    load_records,
    spread_ideal_upper,
    varying_fields,
)
from semcom.plotting.style import (
    FIXED_COLORS,
    METRIC_NAMES,
    PALETTE,
    RATE_LABELS,
    ColorMap,
    needs_log,
    snr_symbol,
)

__all__ = [
    "FIXED_COLORS",
    "METRIC_NAMES",
    "PALETTE",
    "RATE_LABELS",
    "ColorMap",
    "Condition",
    "FigureOut",
    "MetricSpec",
    "PlotResult",
    "Point",
    "collect_points",
    "condition_of",
    "default_metric",
    "is_anchor",
    "is_upper_bound",
    "label_order",
    "load_records",
    "make_figures",
    "needs_log",
    "snr_symbol",
    "spread_ideal_upper",
    "varying_fields",
]
