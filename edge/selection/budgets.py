"""Token budgets: fixed k, a ratio of the patches, or adaptive (outlier counts).

- :func:`iqr_count` - PruMerge's rule: the number of scores above ``Q3 + 1.5 IQR``;
- :func:`lof_count` - Recoverable-Compression's dynamic scale filter: the number of
  points whose local outlier factor (1-D, ``k`` neighbours) exceeds 1.5 (scikit-learn's
  ``contamination='auto'`` threshold). LOF flags both tails; the caller keeps the top.

>>> import numpy as np
>>> s = np.r_[np.zeros(20), 10.0, 12.0]
>>> iqr_count(s), lof_count(s, 5)
(2, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    """``cap``: the most patch tokens to send (None: no cap); ``adaptive``: let the
    reducer's outlier rule choose the count (at most ``cap``)."""

    cap: int | None
    adaptive: bool = False

    @property
    def everything(self) -> bool:
        return self.cap is None and not self.adaptive


def budget_from_config(select_cfg, num_patches: int) -> Budget:
    cap = select_cfg.budget
    if cap is None and select_cfg.ratio is not None:
        cap = max(1, int(round(select_cfg.ratio * num_patches)))
    if cap is not None:
        cap = min(cap, num_patches)
    return Budget(cap, bool(select_cfg.adaptive))


def iqr_count(scores) -> int:
    """Scores above ``Q3 + 1.5 (Q3 - Q1)``; at least 1."""
    s = np.asarray(scores, np.float64)
    q1, q3 = np.percentile(s, [25, 75])
    return max(1, int((s > q3 + 1.5 * (q3 - q1)).sum()))


def lof(values, k: int = 20) -> np.ndarray:
    """Local outlier factor of each point of a 1-D sample (``float64 [n]``)."""
    x = np.asarray(values, np.float64).ravel()
    n = len(x)
    k = max(1, min(k, n - 1))
    d = np.abs(x[:, None] - x[None, :])
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    kdist = d[np.arange(n), nn[:, -1]]
    reach = np.maximum(d[np.arange(n)[:, None], nn], kdist[nn])
    lrd = 1.0 / np.maximum(reach.mean(1), 1e-10)
    return lrd[nn].mean(1) / lrd


def lof_count(scores, k: int = 20, threshold: float = 1.5) -> int:
    """Points with LOF above ``threshold``; at least 1."""
    s = np.asarray(scores, np.float64)
    if len(s) < 3:
        return len(s)
    return max(1, int((lof(s, k) > threshold).sum()))


def resolve(budget: Budget, adaptive_count: int, total: int) -> int:
    """The count to keep: the adaptive count (capped) or the cap, within ``[1, total]``."""
    n = adaptive_count if budget.adaptive else budget.cap
    if budget.adaptive and budget.cap is not None:
        n = min(n, budget.cap)
    return int(min(total, max(1, n if n is not None else total)))
