"""Bjøntegaard deltas for rate-accuracy curves: BD-rate and BD-accuracy.

The JCT-VC/JVET definition with piecewise cubic Hermite interpolation (PCHIP, the
method of the CTC Excel sheets; ``akima`` is the alternative), as in the FAU-LMS
``bjontegaard`` package, implemented here on SciPy so that no extra dependency is
needed (the tests check both agree when the package is installed):

- **BD-rate** [%]: the mean of ``log10(rate_test) - log10(rate_anchor)`` as functions of
  accuracy, over the accuracy interval both curves cover, as a percentage
  ``(10**mean - 1) * 100``. Negative: the test needs fewer bits for the same accuracy.
- **BD-accuracy** [metric units]: the mean of ``acc_test - acc_anchor`` as functions of
  ``log10(rate)``, over the rate interval both curves cover. Positive: better.

Preconditions are checked, never papered over: at least ``min_points`` operating points
per curve, rates strictly increasing, accuracy **strictly increasing with rate**
(task-accuracy curves are noisy; interpolating through a dip would be made-up
precision) and a non-empty overlap. A failed precondition gives a :class:`BDResult`
whose ``value`` is ``None`` and whose ``reason`` says why (shown as ``n/a (...)``).

>>> r = [0.1, 0.2, 0.4, 0.8]; a = [0.50, 0.60, 0.70, 0.80]
>>> round(bd_rate(r, a, [x * 0.8 for x in r], a).value, 6)   # same accuracy at 80% of the bits
-20.0
>>> round(bd_accuracy(r, a, r, [x + 0.05 for x in a]).value, 6)
0.05
>>> bd_rate(r, a, r, [0.5, 0.7, 0.6, 0.8]).text()
'n/a (test: accuracy not increasing with rate)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

METHODS = ("pchip", "akima")


@dataclass(frozen=True)
class BDResult:
    """A BD value, or ``None`` with the reason it is not defined."""

    value: float | None
    reason: str = ""
    overlap: float | None = None  # overlap / union of the integration variable's ranges
    method: str = "pchip"

    @property
    def ok(self) -> bool:
        return self.value is not None

    def text(self, fmt: str = "{:+.2f}") -> str:
        return fmt.format(self.value) if self.value is not None else f"n/a ({self.reason})"

    def to_dict(self) -> dict:
        return asdict(self)


def check_curve(
    rates: Sequence[float], acc: Sequence[float], *, min_points: int = 4, name: str = "curve"
) -> str:
    """'' if the curve can be used for BD, else the reason it cannot."""
    if len(rates) != len(acc):
        return f"{name}: {len(rates)} rates but {len(acc)} accuracies"
    if len(rates) < min_points:
        return f"{name}: {len(rates)} points < {min_points}"
    if any(v is None or not math.isfinite(v) for v in (*rates, *acc)):
        return f"{name}: missing values"
    if any(r <= 0 for r in rates):
        return f"{name}: rates must be > 0"
    pairs = sorted(zip(rates, acc))
    if any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])):
        return f"{name}: repeated rates"
    if any(b[1] <= a[1] for a, b in zip(pairs, pairs[1:])):
        return f"{name}: accuracy not increasing with rate"
    return ""


def _interp(x, y, method: str):
    from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

    if method == "pchip":
        return PchipInterpolator(x, y)
    if method == "akima":
        if len(x) < 3:
            from scipy.interpolate import make_interp_spline

            return make_interp_spline(x, y, k=1)
        return Akima1DInterpolator(x, y)
    raise ValueError(f"unknown BD interpolation {method!r}; choose one of {METHODS}")


def _delta(base_a, val_a, base_t, val_t, method: str) -> tuple[float | None, float]:
    """Mean of f_test - f_anchor over the overlap of the base ranges, and the overlap."""
    import numpy as np

    ia, it = np.argsort(base_a), np.argsort(base_t)
    ba, va = np.asarray(base_a, float)[ia], np.asarray(val_a, float)[ia]
    bt, vt = np.asarray(base_t, float)[it], np.asarray(val_t, float)[it]
    lo, hi = max(ba[0], bt[0]), min(ba[-1], bt[-1])
    union = max(ba[-1], bt[-1]) - min(ba[0], bt[0])
    overlap = float(max(hi - lo, 0.0) / union) if union > 0 else 0.0
    if hi <= lo:
        return None, overlap
    fa, ft = _interp(ba, va, method), _interp(bt, vt, method)
    return float((ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)), overlap


def _prepare(rate_anchor, acc_anchor, rate_test, acc_test, min_points, method):
    if method not in METHODS:
        raise ValueError(f"unknown BD interpolation {method!r}; choose one of {METHODS}")
    reason = check_curve(
        rate_anchor, acc_anchor, min_points=min_points, name="anchor"
    ) or check_curve(rate_test, acc_test, min_points=min_points, name="test")
    return reason


def bd_rate(
    rate_anchor: Sequence[float],
    acc_anchor: Sequence[float],
    rate_test: Sequence[float],
    acc_test: Sequence[float],
    *,
    method: str = "pchip",
    min_points: int = 4,
) -> BDResult:
    """BD-rate in percent (negative = the test saves bits at equal accuracy)."""
    reason = _prepare(rate_anchor, acc_anchor, rate_test, acc_test, min_points, method)
    if reason:
        return BDResult(None, reason, method=method)
    la = [math.log10(r) for r in rate_anchor]
    lt = [math.log10(r) for r in rate_test]
    d, overlap = _delta(acc_anchor, la, acc_test, lt, method)
    if d is None:
        return BDResult(None, "no accuracy overlap", overlap, method)
    return BDResult((10.0**d - 1.0) * 100.0, "", overlap, method)


def bd_accuracy(
    rate_anchor: Sequence[float],
    acc_anchor: Sequence[float],
    rate_test: Sequence[float],
    acc_test: Sequence[float],
    *,
    method: str = "pchip",
    min_points: int = 4,
) -> BDResult:
    """BD-accuracy in the metric's units (positive = the test is better at equal rate)."""
    reason = _prepare(rate_anchor, acc_anchor, rate_test, acc_test, min_points, method)
    if reason:
        return BDResult(None, reason, method=method)
    la = [math.log10(r) for r in rate_anchor]
    lt = [math.log10(r) for r in rate_test]
    d, overlap = _delta(la, acc_anchor, lt, acc_test, method)
    if d is None:
        return BDResult(None, "no rate overlap", overlap, method)
    return BDResult(d, "", overlap, method)


Curve = tuple[Sequence[float], Sequence[float]]  # (rates, accuracies)


def bd_table(
    curves: Mapping[str, Mapping[str, Curve]],
    anchor: str,
    *,
    method: str = "pchip",
    min_points: int = 4,
    scale: float = 1.0,
) -> list[dict]:
    """BD rows per condition (e.g. SNR) for every label against ``anchor``.

    ``curves`` maps a condition name to ``{label: (rates, accuracies)}``; BD is computed
    only within a condition, never pooled across conditions. ``scale`` multiplies
    BD-accuracy (e.g. 100 for percentage points).
    """
    rows = []
    for cond, by_label in curves.items():
        if anchor not in by_label:
            for label in by_label:
                rows.append(
                    {
                        "condition": cond,
                        "anchor": anchor,
                        "test": label,
                        "bd_rate_pct": None,
                        "bd_accuracy": None,
                        "note": f"anchor '{anchor}' has no points here",
                    }
                )
            continue
        ra, aa = by_label[anchor]
        for label, (rt, at) in by_label.items():
            if label == anchor:
                continue
            br = bd_rate(ra, aa, rt, at, method=method, min_points=min_points)
            ba = bd_accuracy(ra, aa, rt, at, method=method, min_points=min_points)
            rows.append(
                {
                    "condition": cond,
                    "anchor": anchor,
                    "test": label,
                    "points_anchor": len(ra),
                    "points_test": len(rt),
                    "bd_rate_pct": br.value,
                    "bd_rate": br.text("{:+.1f} %"),
                    "bd_accuracy": None if ba.value is None else ba.value * scale,
                    "bd_accuracy_text": (
                        f"{ba.value * scale:+.2f}" if ba.ok else f"n/a ({ba.reason})"
                    ),
                    "overlap_accuracy": br.overlap,
                    "overlap_rate": ba.overlap,
                    "method": method,
                    "note": br.reason or ba.reason,
                }
            )
    return rows


def table_markdown(rows: list[dict], *, metric: str = "accuracy", units: str = "") -> str:
    """A markdown table of :func:`bd_table` rows."""
    u = f" [{units}]" if units else ""
    head = ["condition", "test", "anchor", "points", "BD-rate", f"BD-{metric}{u}"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        pts = f"{r.get('points_test', '-')}/{r.get('points_anchor', '-')}"
        out.append(
            "| "
            + " | ".join(
                [
                    str(r["condition"]),
                    str(r["test"]),
                    str(r["anchor"]),
                    pts,
                    str(r.get("bd_rate") or f"n/a ({r.get('note')})"),
                    str(r.get("bd_accuracy_text") or "n/a"),
                ]
            )
            + " |"
        )
    return "\n".join(out)
