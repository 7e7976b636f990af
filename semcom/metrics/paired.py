"""Paired comparisons of two runs on the same samples: difference, CI, test.

Every method of a sweep is evaluated on the same samples (same seed, same questions),
so a comparison should be paired: per sample ``d_i = test_i - baseline_i``. This gives

- ``diff``: the mean of ``d_i`` (the difference of the two metrics);
- ``ci95``: a bootstrap interval of that mean over the samples
  (:func:`scipy.stats.bootstrap`, BCa; percentile where BCa is undefined, e.g. all
  ``d_i`` equal), seeded from the run seed so it is reproducible;
- ``p``: for per-sample scores that are right/wrong (accuracy 0/100, exact match) the
  **exact McNemar test** on the discordant pairs (:func:`scipy.stats.binomtest`), else
  the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`). The discordant counts
  (baseline wrong and test right, the reverse) are reported with McNemar.

>>> r = paired_difference([0, 0, 100, 100] * 10, [100, 0, 100, 100] * 10)
>>> r["diff"], r["test"], r["discordant"]
(25.0, 'mcnemar-exact', [10, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000


def _binary(a: np.ndarray, b: np.ndarray) -> float | None:
    """The 'right' value if both arrays hold two values {0, right}, else None."""
    vals = set(np.unique(np.concatenate([a, b])).tolist())
    if vals <= {0.0, 1.0}:
        return 1.0
    if vals <= {0.0, 100.0}:
        return 100.0
    return None


def paired_difference(
    baseline: Sequence[float],
    test: Sequence[float],
    *,
    seed: int = 0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
) -> dict:
    """Paired difference ``test - baseline`` on aligned per-sample scores."""
    from scipy import stats

    a, b = np.asarray(baseline, float), np.asarray(test, float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same samples: {a.shape} vs {b.shape}")
    n = int(a.size)
    out: dict = {"n": n, "diff": None, "ci95": [None, None], "test": None, "p": None}
    if n == 0:
        return out
    d = b - a
    out["diff"] = float(d.mean())
    if n >= 2 and np.ptp(d) > 0:
        rng = np.random.default_rng([seed, n, 0x9A1D])
        for method in ("BCa", "percentile"):
            res = stats.bootstrap(
                (d,),
                np.mean,
                n_resamples=resamples,
                confidence_level=level,
                method=method,
                random_state=rng,
            )
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if np.isfinite(lo) and np.isfinite(hi):
                out["ci95"] = [lo, hi]
                break
    else:  # every sample gives the same difference: no spread to resample
        out["ci95"] = [out["diff"], out["diff"]]
    right = _binary(a, b)
    if right is not None:
        b01 = int(np.sum((a == 0) & (b == right)))  # baseline wrong, test right
        b10 = int(np.sum((a == right) & (b == 0)))  # baseline right, test wrong
        out["test"], out["discordant"] = "mcnemar-exact", [b01, b10]
        out["p"] = 1.0 if b01 + b10 == 0 else float(stats.binomtest(b01, b01 + b10, 0.5).pvalue)
    else:
        out["test"] = "wilcoxon"
        out["p"] = 1.0 if not np.any(d) else float(stats.wilcoxon(d).pvalue)
    return out


def align(
    ids_a: Sequence[str], vals_a: Sequence, ids_b: Sequence[str], vals_b: Sequence
) -> tuple[list[float], list[float]]:
    """The scores of the samples both runs scored, in ``ids_a`` order."""
    vb = {i: v for i, v in zip(ids_b, vals_b) if v is not None}
    pa, pb = [], []
    for i, v in zip(ids_a, vals_a):
        if v is not None and i in vb:
            pa.append(float(v))
            pb.append(float(vb[i]))
    return pa, pb


def describe(res: dict, units: str = "", digits: int = 1) -> str:
    """``+4.7 pp [+1.3, +8.0], McNemar p = 0.012 (n = 150)``."""
    if res.get("diff") is None:
        return "n/a (no common samples)"
    u = f" {units}" if units else ""
    lo, hi = res["ci95"]
    name = {"mcnemar-exact": "McNemar", "wilcoxon": "Wilcoxon"}.get(res.get("test"), "p")
    p = res.get("p")
    ptxt = "" if p is None else f", {name} p = {p:.2g}"
    return (
        f"{res['diff']:+.{digits}f}{u} [{lo:+.{digits}f}, {hi:+.{digits}f}]{ptxt} (n = {res['n']})"
    )
