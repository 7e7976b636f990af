"""Bit-level writer and reader of every description, with the rate ledger built in.

Every field written goes into the ledger under a (stage, category); :meth:`BitWriter.to_bytes`
pads to a whole byte and books the padding as ``("pad", "header")``, so
``ledger.total() == 8 * len(bytes)`` holds by construction. The stages of
:mod:`semcom.stage` write into one :class:`BitWriter` and read from one :class:`BitReader`.

>>> w = BitWriter(); w.write(5, 3, "tokens", "header")
>>> w.write_array([1, 2, 3], 2, "quant", "payload")
>>> data = w.to_bytes(); len(data), w.ledger.total()
(2, 16)
>>> r = BitReader(data); r.read(3), r.read_array(3, 2).tolist()
(5, [1, 2, 3])
>>> w = BitWriter(); w.write_varint(300, "envelope", "header"); w.to_bytes()
b'\\xac\\x02'
>>> BitReader(b'\\xac\\x02').read_varint()
300
"""

from __future__ import annotations

import numpy as np

from semcom.errors import WireFormatError
from semcom.types import RateLedger


def int_to_bits(value: int, nbits: int) -> np.ndarray:
    """``value`` as ``nbits`` bits, most significant first (``uint8 [nbits]``)."""
    if nbits == 0:
        if value != 0:
            raise ValueError(f"value {value} does not fit in 0 bits")
        return np.zeros(0, np.uint8)
    if value < 0 or value >> nbits:
        raise ValueError(f"value {value} does not fit in {nbits} bits")
    if nbits <= 63:
        shifts = np.arange(nbits - 1, -1, -1, dtype=np.uint64)
        return ((np.uint64(value) >> shifts) & np.uint64(1)).astype(np.uint8)
    raw = value.to_bytes((nbits + 7) // 8, "big")
    return np.unpackbits(np.frombuffer(raw, np.uint8))[-nbits:]


def bits_to_int(bits: np.ndarray) -> int:
    if len(bits) == 0:
        return 0
    pad = (-len(bits)) % 8
    raw = np.packbits(np.concatenate([np.zeros(pad, np.uint8), bits.astype(np.uint8)]))
    return int.from_bytes(raw.tobytes(), "big")


class BitWriter:
    """Collects fields as bits; ``ledger`` books each field's bits.

    ``meta`` collects what stages produce besides their bits and that is not sent (a
    codec's estimated bits, its latent at the encoder), keyed by what it is.
    """

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.ledger = RateLedger()
        self.nbits = 0
        self.meta: dict = {}

    def write(self, value: int, nbits: int, stage: str, category: str) -> None:
        self.write_bits(int_to_bits(int(value), nbits), stage, category)

    def write_bits(self, bits: np.ndarray, stage: str, category: str) -> None:
        bits = np.asarray(bits, np.uint8)
        self.parts.append(bits)
        self.nbits += len(bits)
        if len(bits):
            self.ledger.add(stage, category, len(bits))

    def write_array(self, values, nbits: int, stage: str, category: str) -> None:
        """Unsigned integers, ``nbits`` each (``nbits <= 32``), most significant bit first."""
        values = np.asarray(values, np.int64).ravel()
        if nbits == 0 or len(values) == 0:
            if nbits == 0 and np.any(values != 0):
                raise ValueError("non-zero values do not fit in 0 bits")
            return
        if values.min() < 0 or values.max() >> nbits:
            raise ValueError(f"values out of range for {nbits} bits")
        shifts = np.arange(nbits - 1, -1, -1, dtype=np.int64)
        bits = ((values[:, None] >> shifts[None, :]) & 1).astype(np.uint8).ravel()
        self.write_bits(bits, stage, category)

    def write_bytes(self, data: bytes, stage: str, category: str) -> None:
        self.write_bits(np.unpackbits(np.frombuffer(data, np.uint8)), stage, category)

    def write_varint(self, value: int, stage: str, category: str) -> None:
        """``value >= 0`` as LEB128 (7 bits per byte, low group first; 1 byte up to 127)."""
        self.write_bytes(varint(value), stage, category)

    def to_bytes(self) -> bytes:
        """The bits so far, zero-padded to a whole byte (padding booked as pad/header)."""
        pad = (-self.nbits) % 8
        if pad:
            self.write_bits(np.zeros(pad, np.uint8), "pad", "header")
        if not self.parts:
            return b""
        return np.packbits(np.concatenate(self.parts)).tobytes()


class BitReader:
    """Reads what :class:`BitWriter` wrote; running past the end raises WireFormatError
    naming ``what`` (e.g. "token description truncated: ...").

    The bytes are kept as they are and only the bytes a read spans are unpacked, so
    reading a small header of a large description costs the header, not 8 x its size.
    """

    def __init__(self, data: bytes, what: str = "description"):
        self._data = np.frombuffer(data, np.uint8)
        self._nbits = 8 * len(self._data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return self._nbits - self.pos

    def _take(self, n: int, field: str) -> np.ndarray:
        if n < 0 or self.pos + n > self._nbits:
            raise WireFormatError(
                f"{self.what} truncated: {field} needs {n} bits at bit "
                f"{self.pos}, {self.remaining} left"
            )
        lo, hi = self.pos // 8, (self.pos + n + 7) // 8
        skip = self.pos - 8 * lo
        out = np.unpackbits(self._data[lo:hi])[skip : skip + n]
        self.pos += n
        return out

    def read(self, nbits: int, field: str = "field") -> int:
        return bits_to_int(self._take(nbits, field))

    def read_array(self, count: int, nbits: int, field: str = "values") -> np.ndarray:
        """``count`` unsigned integers of ``nbits`` each (``int64 [count]``)."""
        if nbits == 0 or count == 0:
            return np.zeros(count, np.int64)
        bits = self._take(count * nbits, field).reshape(count, nbits).astype(np.int64)
        shifts = np.arange(nbits - 1, -1, -1, dtype=np.int64)
        return (bits << shifts[None, :]).sum(axis=1)

    def read_bits(self, n: int, field: str = "bits") -> np.ndarray:
        return self._take(n, field).copy()

    def read_bytes(self, n: int, field: str = "bytes") -> bytes:
        return bytes(self.read_view(n, field))

    def read_view(self, n: int, field: str = "bytes"):
        """``n`` bytes as a buffer: a read-only view of the data when byte-aligned (no
        copy), else the bytes shifted into place (one array of ``n`` bytes, never the
        8 x expansion of unpacking the bits)."""
        if n < 0 or self.pos + 8 * n > self._nbits:
            raise WireFormatError(
                f"{self.what} truncated: {field} needs {8 * n} bits at bit "
                f"{self.pos}, {self.remaining} left"
            )
        lo, shift = divmod(self.pos, 8)
        self.pos += 8 * n
        if shift == 0:
            return memoryview(self._data[lo : lo + n])
        out = np.left_shift(self._data[lo : lo + n], shift)  # uint8: high bits drop
        out |= np.right_shift(self._data[lo + 1 : lo + n + 1], 8 - shift)
        return memoryview(out)

    def read_varint(self, field: str = "varint") -> int:
        """A LEB128 value written by :meth:`BitWriter.write_varint` (at most 5 bytes)."""
        start = self.pos // 8
        value = shift = 0
        for _ in range(5):
            if self.remaining < 8:
                break
            byte = self.read(8, field)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise WireFormatError(f"truncated or overlong varint at byte {start}")

    def rest(self) -> np.ndarray:
        return self._take(self.remaining, "rest")

    def end(self) -> None:
        """Check that only zero padding (under a byte) is left."""
        if self.remaining >= 8:
            raise WireFormatError(f"{self.remaining // 8} trailing bytes after the {self.what}")
        if self.remaining and np.any(self.rest()):
            raise WireFormatError(f"non-zero padding after the {self.what}")


def varint(value: int) -> bytes:
    """LEB128 bytes of ``value >= 0``."""
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
