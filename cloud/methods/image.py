"""Classic baselines on the cloud: decode JPEG / WebP, then the full vision encoder."""

from __future__ import annotations

import numpy as np

from cloud.pipeline import CloudItem, ModelInput
from semcom.stages.envelope import Envelope
from semcom.stages.image import PillowCodec
from semcom.errors import WireFormatError
from semcom.types import Description

# A lost image is replaced by mid-grey pixels: the model still answers, from nothing.
CONCEAL_VALUE = 128


class PillowCloud:
    def __init__(self, cfg, backend):
        self.codec = PillowCodec(cfg.edge.method, cfg.edge.image.quality)
        self.backend = backend

    def decode(self, items: list[CloudItem]) -> ModelInput:
        import torch

        images, info = [], []
        for item in items:
            got = [r for r in item.received if isinstance(r, Description)]
            if got:
                env, pos = Envelope.unpack(got[0].data)
                if env.method != self.codec.fmt:
                    raise WireFormatError(f"description carries method '{env.method}', "
                                          f"this cloud decodes '{self.codec.fmt}'")
                images.append(self.codec.decode(got[0].data[pos:]))
                info.append({"tokens_to_model": self.backend.num_patches, "concealed": False})
            else:
                h, w = item.original_hw
                images.append(np.full((h, w, 3), CONCEAL_VALUE, np.uint8))
                info.append({"tokens_to_model": self.backend.num_patches, "concealed": True})
        with torch.no_grad():
            tokens = self.backend.vision_tokens(self.backend.preprocess(images)).tokens
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        return ModelInput(tokens, mask, info)
