"""Bjøntegaard deltas for rate-accuracy curves: BD-rate and BD-accuracy.

Computed by the FAU-LMS ``bjontegaard`` package (the JCT-VC/JVET definition; PCHIP,
the method of the CTC Excel sheets, or Akima):

- **BD-rate** [%]: the mean of ``log10(rate_test) - log10(rate_anchor)`` as functions of
  accuracy, over the accuracy interval both curves cover, as ``(10**mean - 1) * 100``.
  Negative: the test needs fewer bits for the same accuracy.
- **BD-accuracy** [metric units]: the mean of ``acc_test - acc_anchor`` as functions of
  ``log10(rate)``, over the rate interval both curves cover. Positive: better.

Preconditions (:func:`check_curve`): at least ``min_points`` operating points per
curve, distinct positive rates, accuracy strictly increasing with rate, and a non-empty
overlap. Task accuracy is noisy, so a measured curve often dips or ties (a larger JPEG
answering one question fewer). Such a curve is not interpolated as measured; the
**monotone rule** applies instead, and the result says so (``fit = "monotone"``):

- the curve is replaced by its isotonic regression, the least-squares non-decreasing
  fit of accuracy over rate (:func:`scipy.optimize.isotonic_regression`, pool adjacent
  violators): every run of points that dips or ties is pooled into one point at the
  pool's mean accuracy and geometric-mean rate (:func:`monotone_fit`);
- it is conservative: it never creates a rise the data do not show (a dip is
  flattened to the mean of the points involved, not bridged), keeps every measured
  point's weight, and leaves an increasing curve unchanged;
- the fitted curve must keep at least 2 points (``MIN_FIT_POINTS``), else ``n/a``.

Everything else that fails (too few points, repeated or non-positive rates, no
overlap) gives a :class:`BDResult` whose ``value`` is ``None`` and whose ``reason``
says why (shown as ``n/a (...)``).

>>> r = [0.1, 0.2, 0.4, 0.8]; a = [0.50, 0.60, 0.70, 0.80]
>>> round(bd_rate(r, a, [x * 0.8 for x in r], a).value, 6)   # same accuracy at 80% of the bits
-20.0
>>> round(bd_accuracy(r, a, r, [x + 0.05 for x in a]).value, 6)
0.05
>>> res = bd_rate(r, a, r, [0.5, 0.7, 0.6, 0.8])
>>> res.fit, res.caveat
('monotone', 'test: monotone fit, 4 -> 3 points')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

METHODS = ("pchip", "akima")
MIN_FIT_POINTS = 2
NOT_INCREASING = "accuracy not increasing with rate"


@dataclass(frozen=True)
class BDResult:
    """A BD value, or ``None`` with the reason it is not defined.

    ``fit``: ``raw`` (the measured curves) or ``monotone`` (at least one curve replaced by
    its isotonic fit; ``caveat`` says which and how many points were left)."""

    value: float | None
    reason: str = ""
    overlap: float | None = None  # overlap / union of the integration variable's ranges
    method: str = "pchip"
    fit: str = "raw"
    caveat: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None

    def text(self, fmt: str = "{:+.2f}") -> str:
        if self.value is None:
            return f"n/a ({self.reason})"
        return fmt.format(self.value) + (" (monotone fit)" if self.fit == "monotone" else "")

    def to_dict(self) -> dict:
        return asdict(self)


def check_curve(
    rates: Sequence[float], acc: Sequence[float], *, min_points: int = 4, name: str = "curve"
) -> str:
    """'' if the curve can be used for BD as measured, else the reason it cannot."""
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
        return f"{name}: {NOT_INCREASING}"
    return ""


def monotone_fit(rates: Sequence[float], acc: Sequence[float]) -> tuple[list[float], list[float]]:
    """The isotonic (non-decreasing) fit of ``acc`` over ``rates``, ties pooled too:
    one point per pool, at its geometric-mean rate and mean accuracy, so the result is
    strictly increasing in both."""
    import numpy as np
    from scipy.optimize import isotonic_regression

    order = np.argsort(rates)
    r = np.asarray(rates, float)[order]
    a = np.asarray(acc, float)[order]
    fit = isotonic_regression(a, increasing=True)
    blocks = list(fit.blocks)
    # pool equal neighbouring blocks (a tie is no increase either)
    pools: list[list[int]] = []
    for lo, hi in zip(blocks[:-1], blocks[1:]):
        if pools and fit.x[lo] <= fit.x[pools[-1][0]]:
            pools[-1][1] = hi
        else:
            pools.append([lo, hi])
    out_r = [float(np.exp(np.mean(np.log(r[lo:hi])))) for lo, hi in pools]
    out_a = [float(np.mean(a[lo:hi])) for lo, hi in pools]
    return out_r, out_a


def _prepare(curve, min_points: int, name: str):
    """``(rates, acc, caveat, reason)``: the curve to use, or the reason there is none."""
    rates, acc = list(curve[0]), list(curve[1])
    reason = check_curve(rates, acc, min_points=min_points, name=name)
    if not reason:
        return rates, acc, "", ""
    if not reason.endswith(NOT_INCREASING):
        return None, None, "", reason
    fr, fa = monotone_fit(rates, acc)
    if len(fr) < MIN_FIT_POINTS:
        return None, None, "", f"{name}: flat (monotone fit leaves {len(fr)} point)"
    return fr, fa, f"{name}: monotone fit, {len(rates)} -> {len(fr)} points", ""


def _overlap(xa, xt) -> float:
    lo, hi = max(min(xa), min(xt)), min(max(xa), max(xt))
    union = max(max(xa), max(xt)) - min(min(xa), min(xt))
    return float(max(hi - lo, 0.0) / union) if union > 0 else 0.0


def _bd(kind, rate_anchor, acc_anchor, rate_test, acc_test, method, min_points) -> BDResult:
    import bjontegaard

    if method not in METHODS:
        raise ValueError(f"unknown BD interpolation {method!r}; choose one of {METHODS}")
    ra, aa, cav_a, why = _prepare((rate_anchor, acc_anchor), min_points, "anchor")
    if why:
        return BDResult(None, why, method=method)
    rt, at, cav_t, why = _prepare((rate_test, acc_test), min_points, "test")
    if why:
        return BDResult(None, why, method=method)
    caveat = "; ".join(c for c in (cav_a, cav_t) if c)
    fit = "monotone" if caveat else "raw"
    la, lt = [math.log10(x) for x in ra], [math.log10(x) for x in rt]
    if kind == "rate":
        overlap = _overlap(aa, at)
        if overlap <= 0:
            return BDResult(None, "no accuracy overlap", overlap, method, fit, caveat)
        fn = bjontegaard.bd_rate
    else:
        overlap = _overlap(la, lt)
        if overlap <= 0:
            return BDResult(None, "no rate overlap", overlap, method, fit, caveat)
        fn = bjontegaard.bd_psnr
    sa, st = sorted(zip(ra, aa)), sorted(zip(rt, at))
    with warnings.catch_warnings():  # small overlaps are reported, not warned about
        warnings.simplefilter("ignore")
        value = fn(
            [p[0] for p in sa],
            [p[1] for p in sa],
            [p[0] for p in st],
            [p[1] for p in st],
            method=method,
            require_matching_points=False,
            min_overlap=0,
        )
    return BDResult(float(value), "", overlap, method, fit, caveat)


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
    return _bd("rate", rate_anchor, acc_anchor, rate_test, acc_test, method, min_points)


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
    return _bd("accuracy", rate_anchor, acc_anchor, rate_test, acc_test, method, min_points)


Curve = tuple[Sequence[float], Sequence[float]]  # (rates, accuracies)


def bd_row(
    cond: str,
    anchor: str,
    label: str,
    a: Curve,
    t: Curve,
    *,
    method: str = "pchip",
    min_points: int = 4,
    scale: float = 1.0,
) -> dict:
    """One row of a BD table (BD-rate and BD-accuracy of ``t`` against ``a``)."""
    br = bd_rate(*a, *t, method=method, min_points=min_points)
    ba = bd_accuracy(*a, *t, method=method, min_points=min_points)
    return {
        "condition": cond,
        "anchor": anchor,
        "test": label,
        "points_anchor": len(a[0]),
        "points_test": len(t[0]),
        "bd_rate_pct": br.value,
        "bd_rate": br.text("{:+.1f} %"),
        "bd_accuracy": None if ba.value is None else ba.value * scale,
        "bd_accuracy_text": (
            (f"{ba.value * scale:+.2f}" + (" (monotone fit)" if ba.fit == "monotone" else ""))
            if ba.ok
            else f"n/a ({ba.reason})"
        ),
        "overlap_accuracy": br.overlap,
        "overlap_rate": ba.overlap,
        "method": method,
        "fit": br.fit if br.ok else ba.fit,
        "note": "; ".join(
            dict.fromkeys(x for x in (br.reason, ba.reason, br.caveat or ba.caveat) if x)
        ),
    }


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
        for label, curve in by_label.items():
            if label != anchor:
                rows.append(
                    bd_row(
                        cond,
                        anchor,
                        label,
                        by_label[anchor],
                        curve,
                        method=method,
                        min_points=min_points,
                        scale=scale,
                    )
                )
    return rows


def _with_ci(text: str, ci) -> str:
    if not ci or ci[0] is None or text.startswith("n/a"):
        return text
    return f"{text} [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def table_markdown(rows: list[dict], *, metric: str = "accuracy", units: str = "") -> str:
    """A markdown table of :func:`bd_table` rows (with the 95 % intervals and the fit
    rule where the rows have them)."""
    u = f" [{units}]" if units else ""
    head = ["condition", "test", "anchor", "points", "BD-rate [%]", f"BD-{metric}{u}", "note"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        pts = f"{r.get('points_test', '-')}/{r.get('points_anchor', '-')}"
        rate = str(r.get("bd_rate") or f"n/a ({r.get('note')})")
        acc = str(r.get("bd_accuracy_text") or "n/a")
        note = r.get("note") or ""
        # a reason given in the note is not repeated in the cells
        rate, acc = ("n/a" if t.startswith("n/a (") and t[5:-1] in note else t for t in (rate, acc))
        if r.get("ci_note"):
            note = f"{note}; {r['ci_note']}" if note else r["ci_note"]
        out.append(
            "| "
            + " | ".join(
                [
                    str(r["condition"]),
                    str(r["test"]),
                    str(r["anchor"]),
                    pts,
                    _with_ci(rate, r.get("bd_rate_ci95")),
                    _with_ci(acc, r.get("bd_accuracy_ci95")),
                    note,
                ]
            )
            + " |"
        )
    return "\n".join(out)
