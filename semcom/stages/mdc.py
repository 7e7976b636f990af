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

On the wire a description's share is a subset of the ``n`` tokens, written by
:meth:`MDC.write` as positions side info (nothing when ``D = 1``: the one description
carries every token). :meth:`MDC.combine` is the cloud's union of what arrived.

>>> MDC(2).split(4)
[[0, 2], [1, 3]]
>>> MDC(2, "balanced", redundancy=1).split(4, importance=[0.1, 0.9, 0.5, 0.7])
[[0, 1], [2, 3, 1]]
"""

from __future__ import annotations

import numpy as np

from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.positions import POSITIONS

ASSIGNMENTS = ("interleave", "balanced")


class MDC(Stage):
    """``descriptions`` shares of a token set; the share of one description on the wire.

    :param descriptions: ``D >= 1`` (on the cloud: the envelope's count)
    :param assignment: ``interleave`` or ``balanced`` (edge only)
    :param redundancy: most important tokens repeated in every description (edge only)
    :input x: (``write``) this description's share, distinct indices into ``[0, n)``
    :context n: the number of tokens shared out
    :output: (``read``) ``int64 [k]`` sorted; all of ``range(n)`` when ``D = 1``

    The share's bits are positions side info, booked by the positions stage.

    >>> from semcom.stages.bits import BitReader, BitWriter
    >>> mdc = MDC(3)
    >>> shares = mdc.split(7); shares
    [[0, 3, 6], [1, 4], [2, 5]]
    >>> w = BitWriter(); mdc.write(w, shares[1], n=7)  # a 7-bit bitmap and its flag
    8
    >>> mdc.read(BitReader(w.to_bytes()), n=7).tolist()
    [1, 4]
    >>> MDC(1).read(BitReader(b""), n=3).tolist()
    [0, 1, 2]
    """

    name = "positions"
    what = "description share"

    def __init__(self, descriptions: int, assignment: str = "interleave", *, redundancy: int = 0):
        if descriptions < 1:
            raise ValueError("descriptions must be >= 1")
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"unknown MDC assignment {assignment!r}; use interleave or balanced")
        self.descriptions, self.assignment, self.redundancy = descriptions, assignment, redundancy

    def split(self, n: int, importance=None) -> list[list[int]]:
        """Indices ``0..n-1`` (tokens in slot order) -> one index list per description.

        Each list is in slot order except that redundant copies are appended at the end
        (the caller sorts by slot); every index is in at least one list.
        """
        D = self.descriptions
        imp = np.zeros(n) if importance is None else np.asarray(importance, np.float64)
        if len(imp) != n:
            raise ValueError("one importance per token")
        order = np.argsort(-imp, kind="stable")  # most important first, ties by slot
        if self.assignment == "interleave":
            shares = [list(range(d, n, D)) for d in range(D)]
        else:
            shares = [[] for _ in range(D)]
            for rank, i in enumerate(order):
                lap, j = divmod(rank, D)
                shares[j if lap % 2 == 0 else D - 1 - j].append(int(i))
            shares = [sorted(s) for s in shares]
        if self.redundancy and D > 1:
            top = [int(i) for i in order[: self.redundancy]]
            shares = [s + [i for i in top if i not in s] for s in shares]
        return shares

    def write(self, w: BitWriter, x, /, *, n: int) -> int:
        return POSITIONS.write(w, x, n=n) if self.descriptions > 1 else 0

    def read(self, r: BitReader, /, *, n: int) -> np.ndarray:
        if self.descriptions > 1:
            return POSITIONS.read(r, n=n)
        return np.arange(n, dtype=np.int64)

    @staticmethod
    def combine(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Union of received ``(slots int64 [n_i], tokens float32 [n_i, D])`` by slot.

        A slot received more than once (a redundant copy) gets the mean of its copies:
        copies are identical for float16, codebook and calibrated scalar values, and
        differ by the quantisation error when each description uses its own scalar
        range. Returns ``(slots sorted, tokens)``; ``(empty, None)`` for no parts.

        >>> import numpy as np
        >>> t = np.arange(4, dtype=np.float32)[:, None]
        >>> slots, toks = MDC.combine([(np.array([3, 1]), t[[3, 1]]), (np.array([1]), t[[1]])])
        >>> slots.tolist(), toks.ravel().tolist()
        ([1, 3], [1.0, 3.0])
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
