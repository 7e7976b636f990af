"""Where the token path's vision tokens come from (``edge.source``).

- :class:`PixelSource` (``pixels``, the default): the vision encoder on the image.
- :class:`NeckSource` (``neck``): the image is coded by the neural codec
  (``edge.image.codec`` at ``edge.image.rate_point``), the latent is entropy-decoded from
  that real bitstream and the transform-neck of ``edge.image.neck_setting`` maps it into
  the encoder at ``edge.image.neck_layer`` (no pixel synthesis); the remaining layers run
  unchanged. The tokens then go through selection, quantization and MDC like any others.
  The codec's bits are not sent; they are recorded per sample as ``source_bits`` /
  ``source_bpp`` so a study can put them beside the token rate.

Both return a :class:`semcom.models.base.VisionOutput` (``tokens [B, 1+P, D]`` float32,
attentions / keys of the requested layers) and one info dict per sample.
"""

from __future__ import annotations

from semcom.errors import ConfigError
from semcom.types import Sample


class PixelSource:
    name = "pixels"

    def __init__(self, cfg, backend):
        self.backend = backend

    def vision(self, samples: list[Sample], **layers):
        b = self.backend
        return b.vision_tokens(b.preprocess([s.image for s in samples]), **layers), [
            {} for _ in samples
        ]


class NeckSource:
    """Codec latent -> transform-neck -> encoder layers L.. (``edge.source: neck``)."""

    name = "neck"

    def __init__(self, cfg, backend):
        from semcom.neck import check_backend, load_neck
        from semcom.stages.codec.weights import load_codec

        im = cfg.edge.image
        family = getattr(backend, "family", None)
        if not hasattr(backend, "vision_from_layer"):
            raise ConfigError(
                "edge.source",
                f"the {family or type(backend).__name__} backend "
                "cannot run its encoder from an intermediate layer "
                "(no vision_from_layer); use source pixels",
            )
        s = im.neck_setting
        variant, fam = ("base", None) if s == "d1" else (s, family)
        self.codec = load_codec(im.codec, im.rate_point, variant, fam, im.weights)
        self.neck, self.spec = load_neck(family, s, im.neck_layer, im.codec, im.weights)
        try:
            check_backend(self.spec, backend)
        except ConfigError as exc:
            raise ConfigError("edge.model", exc.message) from None
        self.backend = backend
        self.layer = im.neck_layer

    def vision(self, samples: list[Sample], **layers):
        import torch

        latents, info = [], []
        for s in samples:
            p = self.codec.encode(s.image)
            latents.append(p.meta["latent"])  # = decode_latent(p.data): no second decode
            h, w = s.hw
            info.append({"source_bits": 8 * len(p.data), "source_bpp": 8 * len(p.data) / (h * w)})
        groups: dict[tuple, list[int]] = {}
        for i, lat in enumerate(latents):
            groups.setdefault(tuple(lat.shape), []).append(i)
        from semcom.models.base import VisionOutput

        tokens: dict[int, object] = {}
        attn: dict[int, dict] = {}
        keys: dict[int, dict] = {}
        for idx in groups.values():
            with torch.no_grad():
                hidden = self.neck(torch.cat([latents[i] for i in idx]), self.codec.k)
                try:
                    out = self.backend.vision_from_layer(hidden, self.layer, **layers)
                except ValueError as exc:
                    raise ConfigError(
                        "edge.select.layer",
                        f"{exc} (edge.source neck enters at edge.image.neck_layer {self.layer})",
                    ) from None
            for j, i in enumerate(idx):
                tokens[i] = out.tokens[j]
                attn[i] = {k: v[j] for k, v in out.attentions.items()}
                keys[i] = {k: v[j] for k, v in out.keys.items()}
        n = range(len(samples))

        def stack(per: dict[int, dict]) -> dict:
            return {k: torch.stack([per[i][k] for i in n]) for k in per[0]}

        return VisionOutput(torch.stack([tokens[i] for i in n]), stack(attn), stack(keys)), info


SOURCES = {"pixels": PixelSource, "neck": NeckSource}


def make_source(cfg, backend):
    return SOURCES[cfg.edge.source](cfg, backend)
