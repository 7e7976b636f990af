"""The rate frontier: per method family, the lowest rate that reaches a share of the
reference accuracy, with paired-bootstrap confidence intervals.

Every run of a frontier sweep answers the same samples, so the comparison is paired:
each bootstrap replicate draws one resample of the sample ids and recomputes, on it,
every run's accuracy and pooled rate (``(sum of wire bits + the stream setup) / sum of
pixels``), the threshold ``fraction * reference accuracy``, each family's frontier (its
lowest rate among the runs at or above the threshold) and the ratios between families.
The intervals are the replicates' 2.5 / 97.5 % percentiles; ``reach`` is the share of
replicates in which a family reaches the threshold at all (a family that reaches it in
only part of them has an open interval, reported as such).

>>> import numpy as np
>>> ref = FrontierRun("ref", "full", np.ones(4), np.full(4, 800), np.full(4, 100))
>>> a = FrontierRun("a1", "A", np.array([1, 1, 1, 0.]), np.full(4, 10), np.full(4, 100))
>>> b = FrontierRun("a2", "A", np.ones(4), np.full(4, 40), np.full(4, 100))
>>> c = FrontierRun("c1", "C", np.ones(4), np.full(4, 200), np.full(4, 100))
>>> f = frontier([ref, a, b, c], ref, fraction=0.95, n_boot=200)
>>> f["families"]["A"]["bpp"], f["families"]["C"]["bpp"], f["ratios"]["C"]["A"]["value"]
(0.4, 2.0, 5.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FrontierRun:
    """One run: ``scores float [n]`` (per sample, in the metric's unit), ``wire_bits``
    and ``pixels`` per sample, ``setup_bits`` sent once for the run; samples aligned
    across runs (the same ids in the same order)."""

    run_id: str
    family: str
    scores: np.ndarray
    wire_bits: np.ndarray
    pixels: np.ndarray
    setup_bits: int = 0
    label: str = ""

    def accuracy(self, idx=None) -> float:
        s = self.scores if idx is None else self.scores[idx]
        return float(np.mean(s)) if len(s) else float("nan")

    def bpp(self, idx=None) -> float:
        w = self.wire_bits if idx is None else self.wire_bits[idx]
        p = self.pixels if idx is None else self.pixels[idx]
        return float((w.sum() + self.setup_bits) / p.sum())


def _frontier(runs, ref, fraction, idx=None):
    thr = fraction * ref.accuracy(idx)
    best: dict[str, tuple[float, str]] = {}
    for r in runs:
        if r is ref:
            continue
        if r.accuracy(idx) >= thr - 1e-12:
            b = r.bpp(idx)
            if r.family not in best or b < best[r.family][0]:
                best[r.family] = (b, r.run_id)
    return thr, best


def frontier(runs, reference, *, fraction: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """``{threshold, reference, families: {family: {bpp, run_id, ci95, reach}}, ratios:
    {family: {other: {value, ci95, reach}}}}`` (ratio = family's bpp / other's bpp)."""
    runs = list(runs)
    n = len(reference.scores)
    if any(len(r.scores) != n for r in runs):
        raise ValueError("every run must have the reference's samples")
    families = sorted({r.family for r in runs if r is not reference})
    thr, best = _frontier(runs, reference, fraction)
    rs = np.random.default_rng(seed)
    boot = {f: np.full(n_boot, np.inf) for f in families}
    for b in range(n_boot):
        idx = rs.integers(0, n, n)
        _, bb = _frontier(runs, reference, fraction, idx)
        for f, (v, _) in bb.items():
            boot[f][b] = v

    def ci(v: np.ndarray):
        finite = np.isfinite(v)
        reach = float(finite.mean())
        lo, hi = np.percentile(np.where(finite, v, np.inf), [2.5, 97.5], method="nearest")
        return [float(lo), None if not np.isfinite(hi) else float(hi)], reach

    fams = {}
    for f in families:
        c, reach = ci(boot[f])
        v, rid = best.get(f, (None, None))
        fams[f] = {"bpp": v, "run_id": rid, "ci95": c, "reach": reach}
    ratios: dict[str, dict] = {}
    for f in families:
        for g in families:
            if f == g or f not in best or g not in best:
                continue
            both = np.isfinite(boot[f]) & np.isfinite(boot[g])
            q = np.full(n_boot, np.inf)
            q[both] = boot[f][both] / boot[g][both]
            c, reach = ci(q)
            ratios.setdefault(f, {})[g] = {
                "value": best[f][0] / best[g][0],
                "ci95": c,
                "reach": reach,
            }
    return {
        "fraction": fraction,
        "threshold": thr,
        "reference": {"run_id": reference.run_id, "accuracy": reference.accuracy()},
        "families": fams,
        "ratios": ratios,
        "samples": n,
        "n_boot": n_boot,
    }
