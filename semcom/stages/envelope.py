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
``bpp_wire`` under the stage ``envelope``. :data:`ENVELOPE` writes and reads it as the
first stage of a description; :meth:`Envelope.pack`, :meth:`Envelope.unpack` and
:meth:`Envelope.wrap` are the same through bytes.

>>> from semcom.stages.bits import BitReader, BitWriter
>>> w = BitWriter(); ENVELOPE.write(w, Envelope("jpeg", 1, 2, 96, 96))
32
>>> ENVELOPE.read(BitReader(w.to_bytes()))
Envelope(method='jpeg', index=1, count=2, height=96, width=96, version=1)
"""

from __future__ import annotations

from dataclasses import dataclass

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter
from semcom.types import RateLedger

VERSION = 1
METHOD_CODES = {"tokens": 1, "jpeg": 2, "webp": 3, "codec": 4, "neck": 5, "projector": 6}
METHOD_NAMES = {v: k for k, v in METHOD_CODES.items()}
MAX_DESCRIPTIONS = 16


@dataclass(frozen=True)
class Envelope:
    """What every description says about itself (see the module docstring)."""

    method: str
    index: int
    count: int
    height: int
    width: int
    version: int = VERSION

    def pack(self) -> bytes:
        """The envelope's bytes (:data:`ENVELOPE` through bytes)."""
        return ENVELOPE.encode(self).data

    @classmethod
    def unpack(cls, data: bytes) -> tuple[Envelope, int]:
        """(envelope, offset of the method's bytes). Raises WireFormatError on bad input."""
        r = BitReader(data)
        env = ENVELOPE.read(r)
        return env, r.pos // 8

    def wrap(self, body: bytes, ledger: RateLedger) -> tuple[bytes, RateLedger]:
        """Envelope + body, with the envelope's bits added to ``ledger`` (a copy)."""
        head = ENVELOPE.encode(self)
        return head.data + body, ledger.merged(head.ledger)


class EnvelopeStage(Stage):
    """The envelope as a stage (header bits under ``envelope``); byte-aligned.

    :input x: :class:`Envelope`
    :output: :class:`Envelope`; ``read`` checks the version, the method code, the
        index against the count and the image size

    >>> p = ENVELOPE.encode(Envelope("tokens", 0, 1, 96, 96))
    >>> p.data.hex(), p.ledger.to_dict()
    ('21006060', {'envelope': {'header': 32}})
    >>> ENVELOPE.decode(p.data).method
    'tokens'
    """

    name = "envelope"
    what = "envelope"

    def write(self, w: BitWriter, x: Envelope, /) -> int:
        if x.method not in METHOD_CODES:
            raise ValueError(f"unknown method {x.method!r}")
        if not (1 <= x.count <= MAX_DESCRIPTIONS and 0 <= x.index < x.count):
            raise ValueError(f"bad description index/count {x.index}/{x.count}")
        if x.height <= 0 or x.width <= 0:
            raise ValueError(f"bad image size {x.height}x{x.width}")
        start, s, c = w.nbits, self.name, "header"
        w.write(x.version, 3, s, c)
        w.write(METHOD_CODES[x.method], 5, s, c)
        w.write(x.index, 4, s, c)
        w.write(x.count - 1, 4, s, c)
        w.write_varint(x.height, s, c)
        w.write_varint(x.width, s, c)
        return w.nbits - start

    def read(self, r: BitReader, /) -> Envelope:
        if r.remaining < 32:
            raise WireFormatError(
                f"description too short for an envelope ({r.remaining // 8} bytes)"
            )
        version, code = r.read(3, "envelope version"), r.read(5, "method code")
        if version != VERSION:
            raise WireFormatError(f"unsupported envelope version {version} (this is {VERSION})")
        if code not in METHOD_NAMES:
            raise WireFormatError(f"unknown method code {code}")
        index, count = r.read(4, "description index"), r.read(4, "description count") + 1
        if index >= count:
            raise WireFormatError(f"description index {index} out of range for count {count}")
        h = r.read_varint("image height")
        w = r.read_varint("image width")
        if h <= 0 or w <= 0:
            raise WireFormatError(f"bad image size {h}x{w}")
        return Envelope(METHOD_NAMES[code], index, count, h, w, version)


#: the envelope stage (stateless: one instance serves every description)
ENVELOPE = EnvelopeStage()
