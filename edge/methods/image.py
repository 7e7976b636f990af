"""Classic baselines on the edge: JPEG / WebP bytes in one description.

``edge.image.headers: shared`` (the default) agrees what is constant for the stream once,
in the stream setup: the format and quality, the usual image size and, for JPEG, the
header with its tables; each description is then a lean envelope (one size bit) and the
image's own bytes (:class:`~semcom.stages.image.PillowCodec`). ``file`` sends a
standalone file after the classic envelope, with no setup.
"""

from __future__ import annotations

import base64

from semcom.stages.bits import BitWriter
from semcom.stages.envelope import ENVELOPE, Envelope
from semcom.stages.image import PillowCodec, jpeg_template
from semcom.stages.setup import StreamEnvelope, StreamSetup, usual_size
from semcom.types import Description, EdgeResult, Sample


def image_setup(fmt: str, quality: int, hw) -> StreamSetup:
    """The setup of a shared-header JPEG / WebP stream."""
    fields = {"quality": int(quality), "headers": "shared", "hw": None if hw is None else list(hw)}
    if fmt == "jpeg":
        fields["template"] = base64.b64encode(jpeg_template(quality)).decode()
    return StreamSetup(fmt, fields)


class PillowEdge:
    """``edge.method: jpeg | webp`` at ``edge.image.quality``; one description per image."""

    needs_backend = False

    def __init__(self, cfg, backend=None):
        im = cfg.edge.image
        self.fmt, self.quality, self.headers = cfg.edge.method, im.quality, im.headers
        self.codec = PillowCodec(self.fmt, self.quality)
        self.envelope = None
        if self.headers == "shared":
            self._shared(None)

    def _shared(self, hw) -> StreamSetup:
        setup = image_setup(self.fmt, self.quality, hw)
        template = base64.b64decode(setup.get("template", "")) if self.fmt == "jpeg" else b""
        self.codec = PillowCodec(self.fmt, self.quality, headers="shared", template=template)
        self.envelope = StreamEnvelope(self.fmt, 1, hw)
        return setup

    def setup(self, samples=()) -> bytes:
        if self.headers != "shared":
            return b""
        return self._shared(usual_size(samples)).to_bytes()

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        out = []
        for s in samples:
            h, w = s.hw
            bw = BitWriter()
            if self.envelope is None:
                ENVELOPE.write(bw, Envelope(self.fmt, 0, 1, h, w))
                self.codec.write(bw, s.image)
            else:
                self.envelope.write(bw, Envelope(self.fmt, 0, 1, h, w))
                self.codec.write(bw, s.image, hw=(h, w))
            desc = Description(s.image_id, 0, 1, bw.to_bytes(), (h, w), bw.ledger)
            out.append(EdgeResult(s.sample_id, [desc], {"tokens_sent": None}))
        return out
