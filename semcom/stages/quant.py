"""Token quantisers: float16, per-channel scalar, codebook VQ. Encode and decode side by side.

Each quantiser writes one description's token values into a :class:`BitWriter` and reads
them back from a :class:`BitReader`:

- :class:`Fp16Quantizer` - 16 bits per value (``quant.type: none``);
- :class:`ScalarQuantizer` - per-channel uniform quantiser with ``2^b`` levels over
  ``[lo_c, hi_c]``; the range is this description's own (float16 ``lo``/``hi`` per channel,
  side info, rounded outwards so every value is inside) or the calibrated range of the
  codebook file (nothing sent). Reconstruction ``lo + q * step`` is within ``step / 2`` of
  every in-range value, ``step = (hi - lo) / (2^b - 1)``;
- :class:`VQQuantizer` - nearest codebook entry, ``log2 K`` bits per token or an
  arithmetic code under the codebook's usage counts.

Shapes: ``x float32 [n, D]`` in, the same shape out.

>>> import numpy as np
>>> from semcom.stages.bits import BitWriter, BitReader
>>> q = ScalarQuantizer(bits=4)
>>> x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
>>> w = BitWriter(); q.encode(w, x); y = q.decode(BitReader(w.to_bytes()), 3, 8)
>>> bool(np.all(np.abs(x - y) <= q.max_error(x) + 1e-6))
True
"""

from __future__ import annotations

import numpy as np

from semcom.errors import WireFormatError
from semcom.stages import entropy as ec
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.codebook import Codebook

STAGE = "quant"


def _fp16_bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float16).view(np.uint16).astype(np.int64)


def _from_fp16_bits(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, np.uint16).view(np.float16).astype(np.float32)


def _round_out(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float16 bounds with ``lo16 <= lo`` and ``hi16 >= hi`` (finite)."""
    lo16 = np.asarray(lo, np.float32).astype(np.float16)
    hi16 = np.asarray(hi, np.float32).astype(np.float16)
    down = lo16.astype(np.float32) > lo
    lo16[down] = np.nextafter(lo16[down], np.float16(-np.inf))
    up = hi16.astype(np.float32) < hi
    hi16[up] = np.nextafter(hi16[up], np.float16(np.inf))
    return lo16, hi16


class Fp16Quantizer:
    """``quant.type: none``: values as float16 (16 bits each, payload)."""

    kind = 0
    entropy = False

    def bits_per_token(self, dim: int) -> float:
        return 16.0 * dim

    def encode(self, w: BitWriter, x: np.ndarray) -> None:
        w.write_array(_fp16_bits(x).ravel(), 16, STAGE, "payload")

    def decode(self, r: BitReader, n: int, dim: int) -> np.ndarray:
        v = r.read_array(n * dim, 16, "float16 token values")
        out = _from_fp16_bits(v).reshape(n, dim)
        if not np.all(np.isfinite(out)):
            raise WireFormatError("token values are not finite")
        return out


class ScalarQuantizer:
    """Per-channel uniform scalar quantiser at ``bits`` bits per value.

    ``lo``/``hi`` given (float32 ``[D]``): calibrated range, nothing sent; else the range
    of the tokens being coded is sent as float16 side info (``2 x 16 x D`` bits).
    """

    kind = 1

    def __init__(self, bits: int, lo=None, hi=None, entropy: bool = False):
        if not 1 <= bits <= 16:
            raise ValueError(f"scalar bits must be in [1, 16], got {bits}")
        self.bits = bits
        self.levels = (1 << bits) - 1
        self.calibrated = lo is not None
        if self.calibrated:
            self.lo = np.asarray(lo, np.float32)
            self.hi = np.maximum(np.asarray(hi, np.float32), self.lo)
        self.entropy = entropy

    def bits_per_token(self, dim: int) -> float:
        return float(self.bits * dim)

    def _range(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.calibrated:
            return self.lo, self.hi
        lo16, hi16 = _round_out(x.min(0), x.max(0))
        return lo16.astype(np.float32), hi16.astype(np.float32)

    def max_error(self, x: np.ndarray) -> np.ndarray:
        """Per-channel bound ``step / 2`` for values inside the range (``float32 [D]``)."""
        lo, hi = self._range(x)
        return (hi - lo) / self.levels / 2

    def quantize(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        step = (hi - lo) / self.levels
        safe = np.where(step > 0, step, 1.0)
        q = np.rint((x - lo) / safe)
        return np.clip(np.where(step > 0, q, 0), 0, self.levels).astype(np.int64)

    @staticmethod
    def dequantize(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, levels: int) -> np.ndarray:
        return (lo + q * ((hi - lo) / levels)).astype(np.float32)

    def encode(self, w: BitWriter, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        if self.calibrated:
            lo, hi = self.lo, self.hi
        elif len(x):
            lo16, hi16 = _round_out(x.min(0), x.max(0))
            w.write_array(lo16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
            w.write_array(hi16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
            lo, hi = lo16.astype(np.float32), hi16.astype(np.float32)
        else:
            return
        q = self.quantize(x, lo, hi).ravel()
        if self.entropy:
            w.write_bits(ec.encode(q, ec.AdaptiveModel(1 << self.bits)), STAGE, "payload")
        else:
            w.write_array(q, self.bits, STAGE, "payload")

    def decode(self, r: BitReader, n: int, dim: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, dim), np.float32)
        if self.calibrated:
            lo, hi = self.lo, self.hi
            if len(lo) != dim:
                raise WireFormatError(f"calibrated range has {len(lo)} channels, tokens {dim}")
        else:
            lo = _from_fp16_bits(r.read_array(dim, 16, "scalar range lo"))
            hi = _from_fp16_bits(r.read_array(dim, 16, "scalar range hi"))
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
                raise WireFormatError("scalar quantiser range is not finite or hi < lo")
        if self.entropy:
            q = np.asarray(ec.decode(r.rest(), n * dim, ec.AdaptiveModel(1 << self.bits)))
        else:
            q = r.read_array(n * dim, self.bits, "scalar token values")
        return self.dequantize(q.reshape(n, dim), lo, hi, self.levels)


class VQQuantizer:
    """Codebook VQ: each token is its nearest entry's index (``log2 K`` bits or entropy-coded)."""

    kind = 2

    def __init__(self, codebook: Codebook, entropy: bool = False):
        self.codebook = codebook
        self.entropy = entropy
        self._model = ec.StaticModel.from_counts(codebook.counts + 0.5) if entropy else None

    def bits_per_token(self, dim: int) -> float:
        return float(self.codebook.bits)

    def indices(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.codebook.dim:
            raise ValueError(f"tokens have {x.shape[1]} channels, the codebook {self.codebook.dim}")
        return self.codebook.search(x)

    def encode(self, w: BitWriter, x: np.ndarray) -> None:
        idx = self.indices(np.asarray(x, np.float32))
        if self.entropy:
            w.write_bits(ec.encode(idx, self._model), STAGE, "payload")
        else:
            w.write_array(idx, self.codebook.bits, STAGE, "payload")

    def decode(self, r: BitReader, n: int, dim: int) -> np.ndarray:
        if dim != self.codebook.dim:
            raise WireFormatError(f"codebook has {self.codebook.dim} channels, tokens {dim}")
        if self.entropy:
            idx = np.asarray(ec.decode(r.rest(), n, self._model), np.int64)
        else:
            idx = r.read_array(n, self.codebook.bits, "codebook indices")
        if len(idx) and idx.max() >= self.codebook.size:
            raise WireFormatError(f"codebook index {int(idx.max())} out of range for "
                                  f"{self.codebook.size} entries")
        return self.codebook.lookup(idx)
