"""Percentile bootstrap confidence intervals, seeded and reproducible."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from semcom.seeding import rng as derive_rng

DEFAULT_RESAMPLES = 1000


def bootstrap_ci(
    values,
    stat: Callable | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
    key: str = "bootstrap",
) -> list[float]:
    """``[lo, hi]`` of ``stat`` over resamples (with replacement) of the rows of ``values``.

    ``values``: an array whose first axis is the sample; ``stat(resampled) -> float``
    (default: the mean). Resampling indices come from ``rng(seed, key)``, so the
    interval is reproducible. With fewer than 2 samples the interval is the value itself.
    """
    values = np.asarray(values)
    stat = stat or (lambda v: float(np.mean(v)))
    n = len(values)
    if n < 2:
        v = float(stat(values)) if n else float("nan")
        return [v, v]
    r = derive_rng(seed, key, n)
    idx = r.integers(0, n, size=(resamples, n))
    stats = np.array([stat(values[i]) for i in idx], dtype=np.float64)
    a = (1.0 - level) / 2.0
    return [float(np.quantile(stats, a)), float(np.quantile(stats, 1.0 - a))]


def metric(value: float, ci95) -> dict:
    """The record form of one metric."""
    return {"value": float(value), "ci95": [float(ci95[0]), float(ci95[1])]}
