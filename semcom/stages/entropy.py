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

One code can carry symbols of several models (:class:`ArithmeticEncoder`), e.g. the
bits of a kept-position map under a context model, then codebook indices:

>>> enc = ArithmeticEncoder()
>>> for b in (0, 1, 1): enc.symbol(BinaryModel(1024), b, "positions")
>>> enc.symbol(m, 3)
>>> code = enc.finish(offset=3, multiple=8); (3 + len(code)) % 8
0
>>> dec = ArithmeticDecoder(code)
>>> [dec.symbol(BinaryModel(1024)) for _ in range(3)], dec.symbol(m)
([0, 1, 1], 3)
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
        scale = (2**precision) / max(1.0, c.sum())
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
        self.cum[s + 1 :] += self.increment


class BinaryModel:
    """One bit with ``P(1) = f1 / total`` (``0 < f1 < total``): the interval of a bit."""

    __slots__ = ("f1", "total")

    def __init__(self, f1: int, total: int = 4096):
        if not 0 < f1 < total:
            raise ValueError(f"P(1) must be in (0, 1): {f1}/{total}")
        self.f1, self.total = int(f1), int(total)

    def interval(self, b: int) -> tuple[int, int, int]:
        f0 = self.total - self.f1
        return (0, f0, self.total) if not b else (f0, self.f1, self.total)

    def find(self, q: int) -> int:
        return int(q >= self.total - self.f1)

    def reset(self) -> None:
        pass

    def update(self, s: int) -> None:
        pass


class ArithmeticEncoder:
    """Exact arithmetic coder over any sequence of models (positions, then indices...).

    Each :meth:`symbol` narrows the interval ``[low, low + rng) / den`` exactly (Python
    integers); :meth:`finish` emits the shortest dyadic value inside it whose length makes
    the description end on a byte boundary, so the code absorbs the zero padding.
    :attr:`ideal_bits` sums ``-log2 P`` per symbol and per ``tag`` (the ledger splits the
    code's bits between what it carries, e.g. positions and payload).
    """

    def __init__(self):
        self.low, self.rng, self.den = 0, 1, 1
        self.ideal_bits: dict[str, float] = {}

    def symbol(self, model, s: int, tag: str = "payload") -> None:
        import math

        s = int(s)
        c, f, t = model.interval(s)
        self.low = self.low * t + c * self.rng
        self.rng *= f
        self.den *= t
        self.ideal_bits[tag] = self.ideal_bits.get(tag, 0.0) + math.log2(t / f)
        model.update(s)

    def finish(self, offset: int = 0, multiple: int = 1) -> np.ndarray:
        """The code's bits (``uint8``, MSB first): the shortest whose count ``b`` has
        ``(offset + b) % multiple == 0``."""
        low, rng, den = self.low, self.rng, self.den
        b = max(0, (den // rng).bit_length() - 1)
        while True:
            if (offset + b) % multiple == 0:
                v = -((-low << b) // den)  # ceil(low * 2^b / den)
                if (v + 1) * den <= (low + rng) << b:
                    return int_to_bits(v, b)
            b += 1


class ArithmeticDecoder:
    """Reads what :class:`ArithmeticEncoder` wrote: ``bits`` are the rest of the
    description (trailing zero bits are harmless)."""

    def __init__(self, bits: np.ndarray):
        self.nb = len(bits)
        # residual r = v * den - low * 2^nb, kept exactly; rng * 2^nb is the interval width
        self.r = bits_to_int(np.asarray(bits, np.uint8))
        self.rng = 1

    def symbol(self, model) -> int:
        _, _, t = model.interval(0)
        width = self.rng << self.nb
        q = (self.r * t) // width
        if not 0 <= q < t:
            raise WireFormatError("entropy-coded payload does not decode (value out of range)")
        s = model.find(q)
        c, f, _ = model.interval(s)
        self.r = self.r * t - c * width
        self.rng *= f
        model.update(s)
        return s


def encode(symbols, model) -> np.ndarray:
    """Arithmetic code of ``symbols`` under ``model`` (``uint8 [bits]``, MSB first)."""
    model.reset()
    enc = ArithmeticEncoder()
    for s in symbols:
        enc.symbol(model, s)
    return enc.finish()


def decode(bits: np.ndarray, count: int, model) -> list[int]:
    """Inverse of :func:`encode`: ``count`` symbols from the bits (trailing zeros allowed)."""
    model.reset()
    dec = ArithmeticDecoder(bits)
    return [dec.symbol(model) for _ in range(count)]
