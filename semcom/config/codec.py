"""Image-path settings: ``edge.image`` (JPEG/WebP baselines, neural codecs, the neck)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option

CODEC_ARCHS = ("factorized", "hyperprior", "mean-scale", "elic")
NECK_SETTINGS = ("d1", "d2", "d3")
MAX_RATE_POINTS = 15


@dataclass(frozen=True)
class ImageCodecConfig:
    quality: int = option(50, help="JPEG/WebP quality (1..100)")
    headers: Literal["shared", "file"] = option(
        "shared",
        help="JPEG/WebP: shared agrees what is constant for the stream once (JPEG tables "
        "and headers as an abbreviated datastream, WebP without its container; counted in "
        "bits_setup) and sends each image's own bytes; file sends standalone files",
    )
    codec: Literal["factorized", "hyperprior", "mean-scale", "elic"] = option(
        "mean-scale",
        help="neural codec (methods codec, neck): factorized (Balle 2017), "
        "hyperprior (Balle 2018), mean-scale (Minnen 2018), elic (He 2022); CompressAI "
        "models at tiny width",
    )
    rate_point: int = option(
        2,
        help="codec rate point, an index into the trained set "
        "(1 = lowest rate; the committed codecs have 4)",
    )
    neck_setting: Literal["d1", "d2", "d3"] = option(
        "d1",
        help="neck: d1 codec frozen; d2 codec fine-tuned for human and machine "
        "(rate + distortion + distillation); d3 for the machine only (rate + distillation)",
    )
    neck_layer: int = option(
        1,
        help="neck: vision-encoder layer the neck's tokens enter "
        "(0 = replace the patch embedding only; layers L.. run unchanged)",
    )
    weights: str = option(
        "",
        help="codec/neck weights root holding codecs/ and necks/ "
        "(empty: the committed semcom/assets/)",
    )

    def __post_init__(self):
        check(1 <= self.quality <= 100, "quality", self.quality, "must be in [1, 100]")
        check(
            1 <= self.rate_point <= MAX_RATE_POINTS,
            "rate_point",
            self.rate_point,
            f"must be in [1, {MAX_RATE_POINTS}]",
        )
        check(0 <= self.neck_layer <= 64, "neck_layer", self.neck_layer, "must be in [0, 64]")
