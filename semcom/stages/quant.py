"""Token quantisers: float16, per-channel scalar, codebook VQ, each a :class:`Quantizer` stage.

Each quantiser writes one description's token values into a :class:`BitWriter` and reads
them back from a :class:`BitReader` (fields under the stage ``quant``):

- :class:`Fp16Quantizer` - 16 bits per value (``quant.type: none``);
- :class:`ScalarQuantizer` - per-channel uniform quantiser with ``2^b`` levels over
  ``[lo_c, hi_c]``; the range is this description's own (float16 ``lo``/``hi`` per channel,
  side info, rounded outwards so every value is inside) or the calibrated range of the
  codebook file (nothing sent). Reconstruction ``lo + q * step`` is within ``step / 2`` of
  every in-range value, ``step = (hi - lo) / (2^b - 1)``;
- :class:`VQQuantizer` - nearest codebook entry, ``log2 K`` bits per token or an
  arithmetic code under the codebook's usage counts.

Shapes: ``x float32 [n, D]`` in, the same shape out; ``read`` is told ``n`` and ``dim``
(the description's header and the model fix them). An entropy-coded payload runs to the
end of the stream, so it is written last.

>>> import numpy as np
>>> from semcom.stages.bits import BitWriter, BitReader
>>> q = ScalarQuantizer(bits=4)
>>> x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
>>> w = BitWriter(); q.write(w, x)  # 2 x 16 x 8 range bits + 3 x 8 x 4 value bits
352
>>> y = q.read(BitReader(w.to_bytes()), n=3, dim=8)
>>> bool(np.all(np.abs(x - y) <= q.max_error(x) + 1e-6))
True
"""

from __future__ import annotations

import abc

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
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


class Quantizer(Stage):
    """Token values of one description.

    :input x: ``float32 [n, D]``
    :context n, dim: (``read`` only) the token count and dimension
    :output: ``float32 [n, D]``

    ``kind`` is the header's quantiser code, ``entropy`` whether the payload is
    arithmetic-coded (then it runs to the end of the stream).
    """

    name = STAGE
    what = "token values"
    kind: int = -1
    entropy: bool = False

    @abc.abstractmethod
    def bits_per_token(self, dim: int) -> float:
        """Fixed-width bits of one ``dim``-channel token (side info not included)."""

    # -- the entropy-coded form (a token description's one arithmetic code) -------------
    # Side information goes into the bit stream first (``side`` / ``write_side`` /
    # ``read_side``); the values then go into an arithmetic code shared with the kept
    # positions (``code`` / ``uncode``), which runs to the end of the description.
    # ``base float32 [n, D]``: what a residual quantiser codes relative to (the prior's
    # mean token of each slot); other quantisers ignore it.
    def side(self, x: np.ndarray):
        """The side information the values of ``x`` need (None: none)."""
        return None

    def write_side(self, w: BitWriter, state) -> int:
        return 0

    def read_side(self, r: BitReader, *, dim: int):
        return None

    def code(self, enc, x: np.ndarray, state=None, *, base=None) -> None:
        """Push the values of ``x float32 [n, D]`` into the arithmetic encoder ``enc``."""
        raise WireFormatError(f"{type(self).__name__} values cannot be entropy-coded")

    def uncode(self, dec, *, n: int, dim: int, state=None, base=None) -> np.ndarray:
        """The values :meth:`code` pushed, from the arithmetic decoder ``dec``."""
        raise WireFormatError(f"{type(self).__name__} values cannot be entropy-coded")


class Fp16Quantizer(Quantizer):
    """``quant.type: none``: values as float16 (16 bits each, payload).

    >>> import numpy as np
    >>> x = np.array([[0.5, -2.0], [1e-3, 3.0]], np.float32)
    >>> p = Fp16Quantizer().encode(x); len(p.data)
    8
    >>> Fp16Quantizer().decode(p.data, n=2, dim=2).tolist()
    [[0.5, -2.0], [0.0010004043579101562, 3.0]]
    """

    kind = 0
    entropy = False

    def bits_per_token(self, dim: int) -> float:
        return 16.0 * dim

    def write(self, w: BitWriter, x: np.ndarray, /) -> int:
        start = w.nbits
        w.write_array(_fp16_bits(x).ravel(), 16, STAGE, "payload")
        return w.nbits - start

    def read(self, r: BitReader, /, *, n: int, dim: int) -> np.ndarray:
        v = r.read_array(n * dim, 16, "float16 token values")
        out = _from_fp16_bits(v).reshape(n, dim)
        if not np.all(np.isfinite(out)):
            raise WireFormatError("token values are not finite")
        return out


class ScalarQuantizer(Quantizer):
    """Per-channel uniform scalar quantiser at ``bits`` bits per value.

    ``lo``/``hi`` given (float32 ``[D]``): calibrated range, nothing sent; else the range
    of the tokens being coded is sent as float16 side info (``2 x 16 x D`` bits).
    ``entropy``: the levels are arithmetic-coded under an adaptive model.

    >>> import numpy as np
    >>> q = ScalarQuantizer(2, lo=np.zeros(2, np.float32), hi=np.full(2, 3, np.float32))
    >>> p = q.encode(np.array([[0.9, 2.2], [3.5, -1.0]], np.float32))
    >>> p.ledger.to_dict()  # 4 values x 2 bits, no range sent; 0 pad bits
    {'quant': {'payload': 8}}
    >>> q.decode(p.data, n=2, dim=2).tolist()  # clipped to the range
    [[1.0, 2.0], [3.0, 0.0]]
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

    def write(self, w: BitWriter, x: np.ndarray, /) -> int:
        x = np.asarray(x, np.float32)
        start = w.nbits
        if self.calibrated:
            lo, hi = self.lo, self.hi
        elif len(x):
            lo16, hi16 = _round_out(x.min(0), x.max(0))
            w.write_array(lo16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
            w.write_array(hi16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
            lo, hi = lo16.astype(np.float32), hi16.astype(np.float32)
        else:
            return 0
        q = self.quantize(x, lo, hi).ravel()
        if self.entropy:
            w.write_bits(ec.encode(q, ec.AdaptiveModel(1 << self.bits)), STAGE, "payload")
        else:
            w.write_array(q, self.bits, STAGE, "payload")
        return w.nbits - start

    def side(self, x: np.ndarray):
        if self.calibrated or not len(x):
            return None
        return _round_out(np.asarray(x, np.float32).min(0), np.asarray(x, np.float32).max(0))

    def write_side(self, w: BitWriter, state) -> int:
        if state is None:
            return 0
        lo16, hi16 = state
        w.write_array(lo16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
        w.write_array(hi16.view(np.uint16).astype(np.int64), 16, STAGE, "side_info")
        return 32 * len(lo16)

    def read_side(self, r: BitReader, *, dim: int):
        if self.calibrated:
            if len(self.lo) != dim:
                raise WireFormatError(f"calibrated range has {len(self.lo)} channels, tokens {dim}")
            return None
        lo = _from_fp16_bits(r.read_array(dim, 16, "scalar range lo"))
        hi = _from_fp16_bits(r.read_array(dim, 16, "scalar range hi"))
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
            raise WireFormatError("scalar quantiser range is not finite or hi < lo")
        return lo.astype(np.float16), hi.astype(np.float16)

    def _bounds(self, state):
        if state is None:
            return self.lo, self.hi
        return state[0].astype(np.float32), state[1].astype(np.float32)

    def code(self, enc, x: np.ndarray, state=None, *, base=None) -> None:
        x = np.asarray(x, np.float32)
        if not len(x):
            return
        lo, hi = self._bounds(state)
        model = ec.AdaptiveModel(1 << self.bits)
        for v in self.quantize(x, lo, hi).ravel():
            enc.symbol(model, int(v), "payload")

    def uncode(self, dec, *, n: int, dim: int, state=None, base=None) -> np.ndarray:
        if n == 0:
            return np.zeros((0, dim), np.float32)
        lo, hi = self._bounds(state)
        model = ec.AdaptiveModel(1 << self.bits)
        q = np.asarray([dec.symbol(model) for _ in range(n * dim)], np.int64)
        return self.dequantize(q.reshape(n, dim), lo, hi, self.levels)

    def read(self, r: BitReader, /, *, n: int, dim: int) -> np.ndarray:
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


class VQQuantizer(Quantizer):
    """Codebook VQ: each token is its codebook indices (one per stage of a residual
    codebook), ``bits`` each, or arithmetic-coded under the codebook's per-stage usage
    counts with ``entropy``. A position-residual codebook codes ``x - base`` (``base``:
    the prior's mean token of each slot, given by the caller) and adds ``base`` back.

    >>> import numpy as np
    >>> from semcom.stages.codebook import Codebook
    >>> q = VQQuantizer(Codebook(np.eye(4, dtype=np.float32), meta={"metric": "l2"}))
    >>> p = q.encode(np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 1]], np.float32))
    >>> p.ledger.to_dict()  # 2 indices x 2 bits, 4 pad bits
    {'pad': {'header': 4}, 'quant': {'payload': 4}}
    >>> q.decode(p.data, n=2, dim=4).argmax(1).tolist()
    [0, 3]
    """

    kind = 2

    def __init__(self, codebook: Codebook, entropy: bool = False):
        self.codebook = codebook
        self.entropy = entropy
        self._models = None

    def bits_per_token(self, dim: int) -> float:
        return float(self.codebook.bits * self.codebook.stages)

    def models(self) -> list:
        """One static model per stage, from the codebook's usage counts (smoothed, so no
        index costs more than about ``bits + 10`` bits)."""
        if self._models is None:
            out = []
            for counts in self.codebook.stage_counts:
                c = np.asarray(counts, np.float64)
                c = c + 0.5 + 1e-3 * max(1.0, c.sum()) / len(c)
                out.append(ec.StaticModel.from_counts(c))
            self._models = out
        return self._models

    def indices(self, x: np.ndarray, base=None) -> np.ndarray:
        """``int64 [n, S]``: the stage indices of each token."""
        if x.shape[1] != self.codebook.dim:
            raise ValueError(f"tokens have {x.shape[1]} channels, the codebook {self.codebook.dim}")
        return self.codebook.quantize(x, base)

    def _check(self, idx: np.ndarray, dim: int) -> None:
        if dim != self.codebook.dim:
            raise WireFormatError(f"codebook has {self.codebook.dim} channels, tokens {dim}")
        if idx.size and idx.max() >= self.codebook.size:
            raise WireFormatError(
                f"codebook index {int(idx.max())} out of range for {self.codebook.size} entries"
            )

    def write(self, w: BitWriter, x: np.ndarray, /, *, base=None) -> int:
        idx = self.indices(np.asarray(x, np.float32), base)
        start = w.nbits
        if self.entropy:
            enc = ec.ArithmeticEncoder()
            self._push(enc, idx)
            w.write_bits(enc.finish(), STAGE, "payload")
        else:
            w.write_array(idx.ravel(), self.codebook.bits, STAGE, "payload")
        return w.nbits - start

    def read(self, r: BitReader, /, *, n: int, dim: int, base=None) -> np.ndarray:
        S = self.codebook.stages
        if self.entropy:
            idx = self._pull(ec.ArithmeticDecoder(r.rest()), n)
        else:
            idx = r.read_array(n * S, self.codebook.bits, "codebook indices").reshape(n, S)
        self._check(idx, dim)
        return self.codebook.reconstruct(idx, base)

    def _push(self, enc, idx: np.ndarray) -> None:
        models = self.models()
        for row in idx:
            for s, j in enumerate(row):
                enc.symbol(models[s], int(j), "payload")

    def _pull(self, dec, n: int) -> np.ndarray:
        models = self.models()
        S = self.codebook.stages
        return np.asarray(
            [[dec.symbol(models[s]) for s in range(S)] for _ in range(n)], np.int64
        ).reshape(n, S)

    def code(self, enc, x: np.ndarray, state=None, *, base=None) -> None:
        self._push(enc, self.indices(np.asarray(x, np.float32), base))

    def uncode(self, dec, *, n: int, dim: int, state=None, base=None) -> np.ndarray:
        idx = self._pull(dec, n)
        self._check(idx, dim)
        return self.codebook.reconstruct(idx, base)
