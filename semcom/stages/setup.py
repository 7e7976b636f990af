"""The stream setup: what the edge agrees with the cloud once per stream, not per description.

A stream is what one edge sends one cloud under one configuration (a run in process, a
connection of the daemons). Everything constant for it - the method and wire version,
the vision model's id, the patch grid, the quantiser and the hashes of the codebook and
token prior, the number of descriptions, the usual image size, a JPEG's tables - is
sent once, as the setup, and each description carries only what is its own. The setup
is bytes (compact canonical JSON: what it holds is readable in a log), counted in full
as ``bits_setup`` (``bpp_setup`` once amortised over the run, part of ``bpp_wire``).

>>> s = StreamSetup("tokens", {"descriptions": 2, "hw": [96, 96]})
>>> data = s.to_bytes(); StreamSetup.from_bytes(data) == s, len(data) < 80
(True, True)
>>> StreamSetup.from_bytes(data, method="jpeg")
Traceback (most recent call last):
...
semcom.errors.WireFormatError: stream setup is for method 'tokens', this cloud decodes 'jpeg'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.envelope import Envelope

FORMAT = "semcom.setup/1"
MAX_SETUP_BYTES = 1 << 20


@dataclass(frozen=True)
class StreamSetup:
    """``method`` and its agreed ``fields`` (JSON-able values)."""

    method: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "method": self.method, **self.fields}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @property
    def id(self) -> str:
        """First 16 hex digits of the SHA-256 of the bytes (how logs and caches name it)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    def require(self, key: str):
        """A field every setup of this method must have (WireFormatError if absent)."""
        if key not in self.fields:
            raise WireFormatError(f"{self.method} stream setup has no '{key}'")
        return self.fields[key]

    @classmethod
    def from_bytes(cls, data: bytes, method: str | None = None) -> StreamSetup:
        """Parse (and check the method when given); WireFormatError names what is wrong."""
        if not data:
            raise WireFormatError("no stream setup (the edge must send it before descriptions)")
        if len(data) > MAX_SETUP_BYTES:
            raise WireFormatError(f"stream setup of {len(data)} bytes is too large")
        try:
            doc = json.loads(bytes(data).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireFormatError(f"stream setup is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise WireFormatError(
                f"stream setup has format {doc.get('format') if isinstance(doc, dict) else None!r}"
                f", this is {FORMAT}"
            )
        got = doc.pop("method", None)
        doc.pop("format")
        if not isinstance(got, str):
            raise WireFormatError("stream setup names no method")
        if method is not None and got != method:
            raise WireFormatError(
                f"stream setup is for method '{got}', this cloud decodes '{method}'"
            )
        return cls(got, doc)


def index_bits(n: int) -> int:
    """Bits of an index in ``[0, n)`` (0 for ``n <= 1``)."""
    return max(0, int(n - 1).bit_length())


class StreamEnvelope(Stage):
    """The per-description envelope of a stream with a setup (header bits under
    ``envelope``): the description's index in ``ceil(log2 D)`` bits (none for one
    description), then one bit that says whether the image has the setup's usual size
    ``hw``; if not, its height and width as varints. Method, version and description
    count come from the setup.

    :param method: the stream's method
    :param count: descriptions per image ``D`` (the setup's)
    :param hw: the usual image size, or None (then every description says its size)
    :input x: :class:`~semcom.stages.envelope.Envelope`
    :output: :class:`~semcom.stages.envelope.Envelope`

    >>> e = StreamEnvelope("tokens", 4, (96, 96))
    >>> p = e.encode(Envelope("tokens", 2, 4, 96, 96)); p.ledger.to_dict()
    {'envelope': {'header': 3}, 'pad': {'header': 5}}
    >>> e.decode(p.data)
    Envelope(method='tokens', index=2, count=4, height=96, width=96, version=1)
    >>> StreamEnvelope("tokens", 1, (96, 96)).encode(Envelope("tokens", 0, 1, 64, 80)).data.hex()
    'a02800'
    """

    name = "envelope"
    what = "description"

    def __init__(self, method: str, count: int, hw=None):
        if not 1 <= int(count) <= 255:
            raise ValueError(f"descriptions must be in [1, 255], got {count}")
        self.method, self.count = method, int(count)
        self.hw = None if hw is None else (int(hw[0]), int(hw[1]))
        self.index_bits = index_bits(self.count)

    def write(self, w: BitWriter, x: Envelope, /) -> int:
        if x.count != self.count or not 0 <= x.index < x.count:
            raise ValueError(f"description {x.index}/{x.count} in a stream of {self.count}")
        if x.height <= 0 or x.width <= 0:
            raise ValueError(f"bad image size {x.height}x{x.width}")
        start, s, c = w.nbits, self.name, "header"
        w.write(x.index, self.index_bits, s, c)
        same = self.hw is not None and (x.height, x.width) == self.hw
        if self.hw is not None:
            w.write(int(not same), 1, s, c)
        if not same:
            w.write_varint(x.height, s, c)
            w.write_varint(x.width, s, c)
        return w.nbits - start

    def read(self, r: BitReader, /) -> Envelope:
        index = r.read(self.index_bits, "description index")
        if index >= self.count:
            raise WireFormatError(
                f"description index {index} out of range for {self.count} descriptions"
            )
        if self.hw is not None and not r.read(1, "image size flag"):
            h, w = self.hw
        else:
            h, w = r.read_varint("image height"), r.read_varint("image width")
            if h <= 0 or w <= 0:
                raise WireFormatError(f"bad image size {h}x{w}")
        return Envelope(self.method, index, self.count, h, w)


def usual_size(samples) -> list[int] | None:
    """The most common image size ``[H, W]`` of ``samples`` (None for no samples)."""
    sizes = [tuple(int(v) for v in s.hw) for s in samples]
    if not sizes:
        return None
    vals, counts = np.unique(np.asarray(sizes), axis=0, return_counts=True)
    return [int(v) for v in vals[int(np.argmax(counts))]]
