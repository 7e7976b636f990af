"""Multiple-description coding of a kept token set: split on the edge, combine on the cloud.

Each of ``D`` descriptions gets a share of the kept tokens and is decodable on its own
(it carries its own positions; see :mod:`semcom.stages.tokens`). Assignments:

- ``interleave`` - kept tokens in slot order (raster order, extras last) dealt
  round-robin: description ``d`` gets tokens ``d, d + D, d + 2D, ...``, so each
  description covers the whole image at ``1/D`` density;
- ``balanced`` - tokens sorted by importance and dealt in snake order
  (``0, 1, ..., D-1, D-1, ..., 0, 0, 1, ...``), so each description gets an equal share
  of the importance mass and of the top tokens.

``redundancy = r`` adds the ``r`` most important tokens to every description.

>>> split(4, 2, "interleave")
[[0, 2], [1, 3]]
>>> split(4, 2, "balanced", importance=[0.1, 0.9, 0.5, 0.7], redundancy=1)
[[0, 1], [2, 3, 1]]
"""

from __future__ import annotations

import numpy as np


def split(n: int, descriptions: int, assignment: str = "interleave", *,
          importance=None, redundancy: int = 0) -> list[list[int]]:
    """Indices ``0..n-1`` (tokens in slot order) -> one index list per description.

    Each list is in slot order except that redundant copies are appended at the end
    (the caller sorts by slot); every index is in at least one list.
    """
    D = descriptions
    if D < 1:
        raise ValueError("descriptions must be >= 1")
    imp = np.zeros(n) if importance is None else np.asarray(importance, np.float64)
    if len(imp) != n:
        raise ValueError("one importance per token")
    order = np.argsort(-imp, kind="stable")  # most important first, ties by slot
    if assignment == "interleave":
        shares = [list(range(d, n, D)) for d in range(D)]
    elif assignment == "balanced":
        shares = [[] for _ in range(D)]
        for rank, i in enumerate(order):
            lap, j = divmod(rank, D)
            shares[j if lap % 2 == 0 else D - 1 - j].append(int(i))
        shares = [sorted(s) for s in shares]
    else:
        raise ValueError(f"unknown MDC assignment {assignment!r}; use interleave or balanced")
    if redundancy and D > 1:
        top = [int(i) for i in order[:redundancy]]
        shares = [s + [i for i in top if i not in s] for s in shares]
    return shares


def combine(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of received ``(slots int64 [n_i], tokens float32 [n_i, D])`` by slot.

    A slot received more than once (a redundant copy) gets the mean of its copies: copies
    are identical for float16, codebook and calibrated scalar values, and differ by the
    quantisation error when each description uses its own scalar range. Returns
    ``(slots sorted, tokens)``; ``(empty, None)`` for no parts.
    """
    if not parts:
        return np.zeros(0, np.int64), None
    slots = np.concatenate([p[0] for p in parts]).astype(np.int64)
    tokens = np.concatenate([p[1] for p in parts], 0).astype(np.float32)
    uniq, inverse, counts = np.unique(slots, return_inverse=True, return_counts=True)
    if len(uniq) == len(slots):
        order = np.argsort(slots, kind="stable")
        return slots[order], tokens[order]
    sums = np.zeros((len(uniq), tokens.shape[1]), np.float64)
    np.add.at(sums, inverse, tokens)
    return uniq, (sums / counts[:, None]).astype(np.float32)
