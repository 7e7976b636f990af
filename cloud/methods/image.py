"""Classic baselines on the cloud: decode JPEG / WebP, then the full vision encoder."""

from __future__ import annotations

import base64

import numpy as np

from cloud.pipeline import CloudItem, ModelInput, check_envelope
from semcom.errors import WireFormatError
from semcom.stages.bits import BitReader
from semcom.stages.envelope import ENVELOPE
from semcom.stages.image import PillowCodec
from semcom.stages.setup import StreamEnvelope, StreamSetup
from semcom.types import Description

# A lost image is replaced by mid-grey pixels: the model still answers, from nothing.
CONCEAL_VALUE = 128


class PillowCloud:
    def __init__(self, cfg, backend):
        self.fmt, self.quality = cfg.edge.method, cfg.edge.image.quality
        self.codec = PillowCodec(self.fmt, self.quality)
        self.envelope = None
        self.backend = backend

    def open(self, setup: bytes) -> None:
        """The stream's setup: empty for standalone files, else the shared headers (the
        format and quality must be this cloud's)."""
        self.envelope = None
        self.codec = PillowCodec(self.fmt, self.quality)
        if not setup:
            return
        st = StreamSetup.from_bytes(setup, method=self.fmt)
        if st.get("headers") != "shared" or st.get("quality") != self.quality:
            raise WireFormatError(
                f"{self.fmt} stream setup has headers {st.get('headers')!r} at quality "
                f"{st.get('quality')!r}; this cloud decodes quality {self.quality}"
            )
        try:
            template = base64.b64decode(st.get("template", "")) if self.fmt == "jpeg" else b""
            self.codec = PillowCodec(self.fmt, self.quality, headers="shared", template=template)
        except (ValueError, WireFormatError) as exc:
            raise WireFormatError(f"{self.fmt} stream setup has a bad template: {exc}") from None
        hw = st.get("hw")
        self.envelope = StreamEnvelope(self.fmt, 1, None if hw is None else tuple(hw))

    def image(self, item: CloudItem, desc: Description) -> np.ndarray:
        """The envelope (its method and size checked), then the image: ``uint8 [H, W, 3]``."""
        r = BitReader(desc.data, what=self.codec.what)
        if self.envelope is None:
            env = ENVELOPE.read(r)
            if env.method != self.codec.fmt:
                raise WireFormatError(
                    f"description carries method '{env.method}', this cloud decodes "
                    f"'{self.codec.fmt}'"
                )
            check_envelope(item, desc, env)
            image = self.codec.read(r)
        else:
            env = self.envelope.read(r)
            check_envelope(item, desc, env)
            image = self.codec.read(r, hw=(env.height, env.width))
        r.end()
        return image

    def decode(self, items: list[CloudItem]) -> ModelInput:
        import torch

        images, info = [], []
        for item in items:
            got = [r for r in item.received if isinstance(r, Description)]
            if got:
                images.append(self.image(item, got[0]))
                info.append({"tokens_to_model": self.backend.num_patches, "concealed": False})
            else:
                h, w = item.original_hw
                images.append(np.full((h, w, 3), CONCEAL_VALUE, np.uint8))
                info.append({"tokens_to_model": self.backend.num_patches, "concealed": True})
        with torch.no_grad():
            tokens = self.backend.vision_tokens(self.backend.preprocess(images)).tokens
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        return ModelInput(tokens, mask, info)
