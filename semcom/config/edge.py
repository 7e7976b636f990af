"""``edge:`` section: what the device computes and sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom import registry
from semcom.config.codec import ImageCodecConfig
from semcom.config.core import check, is_import_path, option
from semcom.config.model import ModelRef
from semcom.config.projector import ProjectorConfig
from semcom.config.tokens import MDCConfig, QuantConfig, SelectConfig
from semcom.errors import ConfigError

# The built-in methods (declared, with their classes, in edge/methods/__init__.py; the core
# lists the names only, so that validating a config imports nothing of the edge).
EDGE_METHODS = ("tokens", "jpeg", "webp", "codec", "neck", "projector")


def known_methods() -> list[str]:
    """The built-in method names plus any registered under ``edge-method``."""
    return sorted(set(EDGE_METHODS) | set(registry.names("edge-method")))


@dataclass(frozen=True)
class EdgeConfig:
    method: str = option(
        "tokens",
        help="tokens (vision tokens -> select -> quantize -> MDC); jpeg / webp / "
        "codec (image bitstream, the cloud decodes pixels and runs the full VLM); neck "
        "(codec bitstream, the cloud maps the decoded latent into the vision encoder); "
        "projector (learned token compressor, LLaVA); or a method registered under "
        "edge-method, or your own as package.module:Class (one class with encode for the "
        "edge and decode for the cloud)",
        plugin="edge-method",
    )
    model: ModelRef = option(default_factory=ModelRef, help="vision encoder on the edge")
    source: Literal["pixels", "neck"] = option(
        "pixels",
        help="method tokens: where the vision tokens come from. pixels: the "
        "vision encoder on the image; neck: the edge codes the image with edge.image.codec "
        "at edge.image.rate_point, entropy-decodes the latent and runs the transform-neck "
        "of edge.image.neck_setting into the encoder at edge.image.neck_layer (no pixels); "
        "those tokens are then selected, quantized and MDC-coded. The codec bits are not "
        "sent (its bpp is recorded as source_bpp)",
    )
    prompt: str = option("a picture of", help="guidance text when the task has no question")
    select: SelectConfig = option(default_factory=SelectConfig)
    quant: QuantConfig = option(default_factory=QuantConfig)
    mdc: MDCConfig = option(default_factory=MDCConfig)
    image: ImageCodecConfig = option(default_factory=ImageCodecConfig)
    projector: ProjectorConfig = option(default_factory=ProjectorConfig)

    def __post_init__(self):
        if not is_import_path(self.method) and self.method not in known_methods():
            raise ConfigError(
                "method",
                registry.unknown_message("edge-method", self.method, known_methods(), own="Class"),
            )
        check(
            self.source == "pixels" or self.method == "tokens",
            "source",
            self.source,
            f"only method tokens takes its tokens from the neck (method is {self.method}; "
            "method neck sends the codec bitstream itself)",
        )
