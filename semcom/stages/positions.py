"""Which positions were kept: a subset of ``{0..n-1}``, coded as a bitmap or a combinatorial index.

Per subset the shorter of the two is used (one flag bit says which):

- bitmap: ``n`` bits;
- combinatorial: the count ``k`` in ``ceil(log2(n + 1))`` bits, then the subset's rank in
  the combinatorial number system in ``ceil(log2(C(n, k)))`` bits.

For 16 of 144 patches that is 1 + 8 + 72 = 81 bits instead of 145. :data:`POSITIONS`
is the stage; the functions are the combinatorics behind it.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter


def count_bits(n: int) -> int:
    """Bits of a count in ``[0, n]``."""
    return max(1, int(n).bit_length())


@lru_cache(maxsize=4096)
def rank_bits(n: int, k: int) -> int:
    """``ceil(log2(C(n, k)))`` (0 when there is a single subset)."""
    c = comb(n, k)
    return (c - 1).bit_length() if c > 1 else 0


def subset_rank(indices, n: int) -> int:
    """Rank of a sorted subset in the combinatorial number system (colex order)."""
    return sum(comb(int(c), i + 1) for i, c in enumerate(sorted(int(x) for x in indices)))


def subset_unrank(rank: int, n: int, k: int) -> list[int]:
    """Inverse of :func:`subset_rank`; raises WireFormatError if ``rank >= C(n, k)``."""
    if not 0 <= rank < comb(n, k) or k > n:
        raise WireFormatError(f"position index {rank} out of range for {k} of {n} positions")
    out = []
    c = n - 1
    for i in range(k, 0, -1):
        while comb(c, i) > rank:
            c -= 1
        out.append(c)
        rank -= comb(c, i)
        c -= 1
    return out[::-1]


def subset_bits(k: int, n: int) -> tuple[int, str]:
    """(bits incl. the flag, mode) of the shorter coding of a ``k``-subset of ``n``."""
    combo = 1 + count_bits(n) + rank_bits(n, k)
    bitmap = 1 + n
    return (bitmap, "bitmap") if bitmap <= combo else (combo, "combinatorial")


class Positions(Stage):
    """A subset of ``{0..n-1}`` (kept patches, a description's share), side info under
    ``positions``: a mode flag, then the bitmap or the count and the combinatorial rank.

    :input x: distinct positions in ``[0, n)`` (any order; ``int`` array-like)
    :context n: the size of the universe, known to both ends
    :output: ``int64 [k]``, sorted

    >>> from semcom.stages.bits import BitReader, BitWriter
    >>> w = BitWriter(); POSITIONS.write(w, [8, 3, 7], n=144)  # bits
    28
    >>> POSITIONS.read(BitReader(w.to_bytes()), n=144).tolist()
    [3, 7, 8]
    >>> len(POSITIONS.encode(range(72), n=144).data)  # 1 + 144 bits: the bitmap is shorter
    19
    """

    name = "positions"
    what = "positions"

    def write(self, w: BitWriter, x, /, *, n: int) -> int:
        idx = np.unique(np.asarray(x, np.int64))
        if len(idx) != len(np.asarray(x).ravel()):
            raise ValueError("positions must be distinct")
        if len(idx) and (idx[0] < 0 or idx[-1] >= n):
            raise ValueError(f"positions out of range [0, {n})")
        k = len(idx)
        start, s, c = w.nbits, self.name, "side_info"
        if subset_bits(k, n)[1] == "bitmap":
            w.write(0, 1, s, c)
            bitmap = np.zeros(n, np.uint8)
            bitmap[idx] = 1
            w.write_bits(bitmap, s, c)
        else:
            w.write(1, 1, s, c)
            w.write(k, count_bits(n), s, c)
            w.write(subset_rank(idx, n), rank_bits(n, k), s, c)
        return w.nbits - start

    def read(self, r: BitReader, /, *, n: int) -> np.ndarray:
        if r.read(1, "positions mode"):
            k = r.read(count_bits(n), "positions count")
            if k > n:
                raise WireFormatError(f"position count {k} exceeds the {n} positions")
            rank = r.read(rank_bits(n, k), "positions index")
            return np.asarray(subset_unrank(rank, n, k), np.int64)
        return np.flatnonzero(r.read_bits(n, "positions bitmap")).astype(np.int64)


#: the positions stage (stateless)
POSITIONS = Positions()
