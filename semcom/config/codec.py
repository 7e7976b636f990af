"""Image-path settings: ``edge.image`` (JPEG/WebP baselines and neural codecs)."""

from __future__ import annotations

from dataclasses import dataclass

from semcom.config.core import check, option


@dataclass(frozen=True)
class ImageCodecConfig:
    quality: int = option(50, help="JPEG/WebP quality (1..100) or codec rate point index")

    def __post_init__(self):
        check(1 <= self.quality <= 100, "quality", self.quality, "must be in [1, 100]")
