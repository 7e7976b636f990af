"""Neural codecs on the cloud.

- :class:`CodecCloud` (``codec``): entropy-decode, synthesise pixels (g_s), run the full
  vision encoder on them (decode-then-VLM).
- :class:`NeckCloud` (``neck``): entropy-decode the latent, run the transform-neck and
  the vision encoder from layer ``edge.image.neck_layer`` on (no pixel synthesis).

A lost description is concealed as in the JPEG/WebP baselines: a mid-grey image through
the full encoder (the model answers from nothing).
"""

from __future__ import annotations

import numpy as np

from cloud.pipeline import CloudItem, ModelInput
from semcom.errors import WireFormatError
from semcom.stages.bits import BitReader
from semcom.stages.envelope import ENVELOPE
from semcom.types import Description

CONCEAL_VALUE = 128


class CodecCloud:
    method = "codec"

    def __init__(self, cfg, backend):
        from semcom.stages.codec.weights import load_codec

        im = cfg.edge.image
        variant, family = self.variant(cfg, backend)
        self.codec = load_codec(im.codec, im.rate_point, variant, family, im.weights)
        self.backend = backend

    @staticmethod
    def variant(cfg, backend) -> tuple[str, str | None]:
        return "base", None

    def _body(self, item: CloudItem) -> tuple[BitReader, tuple[int, int]] | None:
        """A reader past the envelope (its method checked) and the image size; None when
        the description was lost."""
        got = [r for r in item.received if isinstance(r, Description)]
        if not got:
            return None
        r = BitReader(got[0].data, what=self.codec.what)
        env = ENVELOPE.read(r)
        if env.method != self.method:
            raise WireFormatError(
                f"description carries method '{env.method}', this cloud decodes '{self.method}'"
            )
        return r, (env.height, env.width)

    def _pixel_tokens(self, images: list[np.ndarray]):
        import torch

        with torch.no_grad():
            return self.backend.vision_tokens(self.backend.preprocess(images)).tokens

    def decode(self, items: list[CloudItem]) -> ModelInput:
        import torch

        images, info = [], []
        for item in items:
            body = self._body(item)
            if body is not None:
                r, hw = body
                images.append(self.codec.read(r, hw=hw))
                r.end()
            else:
                h, w = item.original_hw
                images.append(np.full((h, w, 3), CONCEAL_VALUE, np.uint8))
            info.append({"tokens_to_model": self.backend.num_patches, "concealed": body is None})
        tokens = self._pixel_tokens(images)
        return ModelInput(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), info)


class NeckCloud(CodecCloud):
    method = "neck"

    def __init__(self, cfg, backend):
        super().__init__(cfg, backend)
        from semcom.neck import check_backend, load_neck

        im = cfg.edge.image
        self.layer = im.neck_layer
        self.neck, self.spec = load_neck(
            backend.family, im.neck_setting, im.neck_layer, im.codec, im.weights
        )
        check_backend(self.spec, backend)

    @staticmethod
    def variant(cfg, backend) -> tuple[str, str | None]:
        s = cfg.edge.image.neck_setting
        return ("base", None) if s == "d1" else (s, backend.family)

    def decode(self, items: list[CloudItem]) -> ModelInput:
        import torch

        from semcom.neck import neck_tokens

        latents: dict[int, object] = {}
        lost: list[int] = []
        info = []
        for i, item in enumerate(items):
            body = self._body(item)
            if body is None:
                lost.append(i)
            else:
                r, hw = body
                latents[i] = self.codec.read_latent(r, hw=hw)
                r.end()
            info.append({"tokens_to_model": self.backend.num_patches, "concealed": body is None})
        parts: dict[int, object] = {}
        by_shape: dict[tuple, list[int]] = {}
        for i, lat in latents.items():
            by_shape.setdefault(tuple(lat.shape), []).append(i)
        for idx in by_shape.values():
            batch = torch.cat([latents[i] for i in idx])
            toks = neck_tokens(self.neck, self.backend, batch, self.codec.k, self.layer)
            parts.update(zip(idx, toks))
        if lost:
            grey = [np.full((*items[i].original_hw, 3), CONCEAL_VALUE, np.uint8) for i in lost]
            parts.update(zip(lost, self._pixel_tokens(grey)))
        tokens = torch.stack([parts[i] for i in range(len(items))])
        return ModelInput(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), info)
