"""Classic baselines on the edge: JPEG / WebP bytes in one description."""

from __future__ import annotations

from semcom.stages.envelope import Envelope
from semcom.stages.image import PillowCodec
from semcom.types import Description, EdgeResult, Sample


class PillowEdge:
    """``edge.method: jpeg | webp`` at ``edge.image.quality``; one description per image."""

    needs_backend = False

    def __init__(self, cfg, backend=None):
        self.codec = PillowCodec(cfg.edge.method, cfg.edge.image.quality)

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        out = []
        for s in samples:
            p = self.codec.encode(s.image)
            h, w = s.hw
            data, ledger = Envelope(self.codec.fmt, 0, 1, h, w).wrap(p.data, p.ledger)
            desc = Description(s.image_id, 0, 1, data, (h, w), ledger)
            out.append(EdgeResult(s.sample_id, [desc], {"tokens_sent": None}))
        return out
