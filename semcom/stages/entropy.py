"""Exact arithmetic coding of integer symbols (big-integer, no renormalisation).

Two models:

- :class:`StaticModel` - fixed frequencies (the codebook's usage counts, smoothed), known
  to both ends because they live in the hash-checked codebook file;
- :class:`AdaptiveModel` - counts start at 1 per symbol and grow as symbols are coded
  (Krichevsky-Trofimov-like; nothing to send or store).

The coder keeps the interval exactly as Python integers, so the code length is
``ceil(-log2 P(sequence)) + 2`` bits at most, and decoding is exact. The code is written
last in a description: the decoder reads every remaining bit (zero padding is harmless),
and the symbol count comes from the header. Descriptions carry a few hundred symbols,
where this is fast enough (see ``benchmarks/bench_tokens.py``).

>>> m = StaticModel([5, 1, 1, 1])
>>> bits = encode([0, 0, 1, 0, 3], m)
>>> decode(bits, 5, StaticModel([5, 1, 1, 1]))
[0, 0, 1, 0, 3]
"""

from __future__ import annotations

import numpy as np

from semcom.errors import WireFormatError
from semcom.stages.bits import bits_to_int, int_to_bits


class StaticModel:
    """Fixed symbol frequencies (positive integers)."""

    def __init__(self, freqs):
        f = np.asarray(freqs, np.int64)
        if f.ndim != 1 or len(f) == 0 or np.any(f <= 0):
            raise ValueError("frequencies must be a non-empty list of positive integers")
        self.freqs = f
        self.cum = np.concatenate([[0], np.cumsum(f)])
        self.total = int(self.cum[-1])

    @classmethod
    def from_counts(cls, counts, precision: int = 20) -> StaticModel:
        """Counts scaled to about ``2**precision`` in total, every symbol at least 1."""
        c = np.asarray(counts, np.float64)
        scale = (2 ** precision) / max(1.0, c.sum())
        return cls(np.maximum(1, np.round(c * scale)).astype(np.int64))

    def reset(self) -> None:
        pass

    def interval(self, s: int) -> tuple[int, int, int]:
        return int(self.cum[s]), int(self.freqs[s]), self.total

    def find(self, q: int) -> int:
        return int(np.searchsorted(self.cum, q, side="right") - 1)

    def update(self, s: int) -> None:
        pass


class AdaptiveModel:
    """Counts start at 1 per symbol; each coded symbol adds ``increment`` to its count."""

    def __init__(self, size: int, increment: int = 8):
        if size < 1:
            raise ValueError("alphabet size must be >= 1")
        self.size, self.increment = size, increment
        self.reset()

    def reset(self) -> None:
        self.counts = np.ones(self.size, np.int64)
        self.cum = np.arange(self.size + 1, dtype=np.int64)

    def interval(self, s: int) -> tuple[int, int, int]:
        return int(self.cum[s]), int(self.counts[s]), int(self.cum[-1])

    def find(self, q: int) -> int:
        return int(np.searchsorted(self.cum, q, side="right") - 1)

    def update(self, s: int) -> None:
        self.counts[s] += self.increment
        self.cum[s + 1:] += self.increment


def encode(symbols, model) -> np.ndarray:
    """Arithmetic code of ``symbols`` under ``model`` (``uint8 [bits]``, MSB first)."""
    model.reset()
    low, rng, den = 0, 1, 1
    for s in symbols:
        s = int(s)
        c, f, t = model.interval(s)
        low = low * t + c * rng
        rng *= f
        den *= t
        model.update(s)
    # shortest b such that a whole dyadic interval [v, v+1) / 2^b lies in [low, low+rng) / den
    b = max(0, (den // rng).bit_length() - 1)
    while True:
        v = -((-low << b) // den)  # ceil(low * 2^b / den)
        if (v + 1) * den <= (low + rng) << b:
            return int_to_bits(v, b)
        b += 1


def decode(bits: np.ndarray, count: int, model) -> list[int]:
    """Inverse of :func:`encode`: ``count`` symbols from the bits (trailing zeros allowed)."""
    model.reset()
    nb = len(bits)
    v = bits_to_int(np.asarray(bits, np.uint8))
    # residual r = v * den - low * 2^nb, kept exactly; rng * 2^nb is the interval width.
    r, rng = v, 1
    out = []
    for _ in range(count):
        _, _, t = model.interval(0)
        width = rng << nb
        q = (r * t) // width
        if not 0 <= q < t:
            raise WireFormatError("entropy-coded payload does not decode (value out of range)")
        s = model.find(q)
        c, f, _ = model.interval(s)
        r = r * t - c * width
        rng *= f
        out.append(s)
        model.update(s)
    return out


def code_length(symbols, model) -> int:
    """Bits :func:`encode` produces (by encoding)."""
    return len(encode(symbols, model))
