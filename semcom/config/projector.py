"""``edge.projector`` section: learned token compressors (TokenPacker, VisualPrism).

Used by ``edge.method: projector``: the edge runs the compressor up to the compressed
tokens (then quantize / MDC like any tokens); the cloud runs the rest of the projector
into the language model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option

PROJECTOR_TYPES = ("tokenpacker", "visualprism")


@dataclass(frozen=True)
class ProjectorConfig:
    type: Literal["tokenpacker", "visualprism"] = option(
        "tokenpacker",
        help="tokenpacker (point-to-region cross-attention) or visualprism "
        "(wavelet prior + triple-path queries)",
    )
    scale: int = option(
        2,
        help="downsampling factor s of the token grid (2, 3 or 4): "
        "a 12 x 12 grid sends (12 / s)^2 tokens",
    )
    weights: str = option(
        "", help="directory of trained projectors (empty: the committed semcom/assets/projectors/)"
    )

    def __post_init__(self):
        check(self.scale in (2, 3, 4), "scale", self.scale, "must be 2, 3 or 4")
