"""Neural codecs on the edge: one real bitstream per image, one description.

``edge.method: codec``  the cloud decodes pixels and runs the full VLM (decode-then-VLM);
``edge.method: neck``   the cloud entropy-decodes the latent and feeds it through the
                        transform-neck into the vision encoder at layer L (no pixels).

Both send the same kind of bitstream (the envelope, then
:class:`~semcom.stages.codec.stage.NeuralCodec`'s body); ``neck`` with setting d2/d3
uses the codec fine-tuned for the cloud model (``cloud.model.name``), whose encoder the
edge must therefore run. Neither runs a VLM on the edge.
"""

from __future__ import annotations

from semcom.stages.bits import BitWriter
from semcom.stages.envelope import ENVELOPE, Envelope
from semcom.types import Description, EdgeResult, Sample


class CodecEdge:
    """``edge.method: codec`` at ``edge.image.codec`` / ``edge.image.rate_point``."""

    needs_backend = False
    method = "codec"

    def __init__(self, cfg, backend=None):
        from semcom.stages.codec.weights import load_codec

        im = cfg.edge.image
        variant, family = self.variant(cfg)
        self.codec = load_codec(im.codec, im.rate_point, variant, family, im.weights)

    @staticmethod
    def variant(cfg) -> tuple[str, str | None]:
        return "base", None

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        out = []
        for s in samples:
            h, w = s.hw
            bw = BitWriter()
            ENVELOPE.write(bw, Envelope(self.method, 0, 1, h, w))
            self.codec.write(bw, s.image)
            desc = Description(s.image_id, 0, 1, bw.to_bytes(), (h, w), bw.ledger)
            out.append(
                EdgeResult(
                    s.sample_id, [desc], {"tokens_sent": None, "est_bits": bw.meta["est_bits"]}
                )
            )
        return out


class NeckEdge(CodecEdge):
    """``edge.method: neck``: the codec of ``edge.image.neck_setting`` (d1: the base codec;
    d2/d3: the codec fine-tuned with the neck of ``cloud.model``)."""

    method = "neck"

    @staticmethod
    def variant(cfg) -> tuple[str, str | None]:
        s = cfg.edge.image.neck_setting
        return ("base", None) if s == "d1" else (s, cfg.cloud.model.name)
