"""The envelope: the first bytes of every description, whatever the method.

It makes each description self-describing: the cloud learns the format version, the
method, which description of how many this is, and the original image size, without
the other descriptions and without side channels.

Layout (big-endian bit order within a byte)::

    byte 0   version (3 bits) | method code (5 bits)
    byte 1   index (4 bits)   | count - 1 (4 bits)
    varint   original height (LEB128, 1-3 bytes)
    varint   original width  (LEB128, 1-3 bytes)

A 96 x 96 image costs 4 bytes (32 header bits) per description, counted in
``bpp_wire`` under the stage ``envelope``.
"""

from __future__ import annotations

from dataclasses import dataclass

from semcom.errors import WireFormatError
from semcom.types import RateLedger

VERSION = 1
METHOD_CODES = {"tokens": 1, "jpeg": 2, "webp": 3, "codec": 4, "neck": 5, "projector": 6}
METHOD_NAMES = {v: k for k, v in METHOD_CODES.items()}
MAX_DESCRIPTIONS = 16


def put_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def get_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, new position). Raises WireFormatError on truncation or overlong input."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + 5)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise WireFormatError(f"truncated or overlong varint at byte {pos}")


@dataclass(frozen=True)
class Envelope:
    method: str
    index: int
    count: int
    height: int
    width: int
    version: int = VERSION

    def pack(self) -> bytes:
        if self.method not in METHOD_CODES:
            raise ValueError(f"unknown method {self.method!r}")
        if not (1 <= self.count <= MAX_DESCRIPTIONS and 0 <= self.index < self.count):
            raise ValueError(f"bad description index/count {self.index}/{self.count}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"bad image size {self.height}x{self.width}")
        head = bytes([(self.version << 5) | METHOD_CODES[self.method],
                      (self.index << 4) | (self.count - 1)])
        return head + put_varint(self.height) + put_varint(self.width)

    @classmethod
    def unpack(cls, data: bytes) -> tuple[Envelope, int]:
        """(envelope, offset of the method's bytes). Raises WireFormatError on bad input."""
        if len(data) < 4:
            raise WireFormatError(f"description too short for an envelope ({len(data)} bytes)")
        version, code = data[0] >> 5, data[0] & 0x1F
        if version != VERSION:
            raise WireFormatError(f"unsupported envelope version {version} (this is {VERSION})")
        if code not in METHOD_NAMES:
            raise WireFormatError(f"unknown method code {code}")
        index, count = data[1] >> 4, (data[1] & 0x0F) + 1
        if index >= count:
            raise WireFormatError(f"description index {index} out of range for count {count}")
        h, pos = get_varint(data, 2)
        w, pos = get_varint(data, pos)
        if h <= 0 or w <= 0:
            raise WireFormatError(f"bad image size {h}x{w}")
        return cls(METHOD_NAMES[code], index, count, h, w, version), pos

    def wrap(self, body: bytes, ledger: RateLedger) -> tuple[bytes, RateLedger]:
        """Envelope + body, with the envelope's bits added to ``ledger`` (a copy)."""
        head = self.pack()
        return head + body, ledger.merged().add("envelope", "header", 8 * len(head))
