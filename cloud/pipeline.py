"""The cloud half: received descriptions (or erasures) -> tokens for the model.

The method is the edge's (``edge.method``), looked up in the ``cloud-method`` registry.
The pipeline checks what arrives (one image per item, consistent description counts,
no duplicates) before the method parses the bytes; malformed input raises
:class:`~semcom.errors.WireFormatError`, which the daemon answers as INVALID_ARGUMENT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cloud.methods  # noqa: F401  (declares the built-in methods)
from semcom import registry
from semcom.errors import WireFormatError
from semcom.types import Description, Erasure, Received


@dataclass
class CloudItem:
    """What reached the cloud for one sample."""

    sample_id: str
    received: list[Received]
    original_hw: tuple[int, int]
    question: str | None = None
    link_stats: list | None = None  # per description (channel.LinkStats); informational


@dataclass
class ModelInput:
    """Tokens for the model: ``tokens [B, N, D]`` float32, ``mask [B, N]`` bool (True = real).

    ``info[i]`` describes sample i, e.g. ``tokens_to_model`` (patch tokens reaching the
    model, CLS excluded), ``descriptions_received``. ``projected``: the tokens are already
    the language model's input embeddings ``[B, N, H_lm]`` (the cloud half of a learned
    projector ran), so the backend skips its own projector.
    """

    tokens: Any
    mask: Any
    info: list[dict] = field(default_factory=list)
    projected: bool = False  # tokens are LM input embeddings (learned projectors)


def check_envelope(item: CloudItem, received, envelope) -> None:
    """The envelope inside a received description agrees with where it arrived
    (index / count) and with the original image size."""
    if envelope.index != received.index or envelope.count != received.count:
        raise WireFormatError(
            f"sample {item.sample_id}: description {received.index}/"
            f"{received.count} carries envelope {envelope.index}/"
            f"{envelope.count}"
        )
    if (envelope.height, envelope.width) != tuple(item.original_hw):
        raise WireFormatError(
            f"sample {item.sample_id}: description is for a "
            f"{envelope.height}x{envelope.width} image, expected "
            f"{item.original_hw[0]}x{item.original_hw[1]}"
        )


def check_item(item: CloudItem) -> None:
    """Structural checks shared by all methods."""
    if not item.received:
        raise WireFormatError(f"sample {item.sample_id}: no descriptions or erasure markers")
    counts = {r.count for r in item.received}
    if len(counts) != 1:
        raise WireFormatError(f"sample {item.sample_id}: inconsistent description counts {counts}")
    count = counts.pop()
    seen = set()
    for r in item.received:
        if not 0 <= r.index < count:
            raise WireFormatError(
                f"sample {item.sample_id}: description index {r.index} "
                f"out of range for count {count}"
            )
        if r.index in seen:
            raise WireFormatError(f"sample {item.sample_id}: description {r.index} twice")
        seen.add(r.index)
        if not isinstance(r, (Description, Erasure)):
            raise WireFormatError(f"sample {item.sample_id}: not a description: {type(r)}")
    h, w = item.original_hw
    if h <= 0 or w <= 0:
        raise WireFormatError(f"sample {item.sample_id}: bad original size {h}x{w}")


class CloudPipeline:
    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        if backend is None:
            from semcom.models import load_backend

            backend = load_backend(cfg.cloud.model, device=cfg.run.torch_device())
        self.backend = backend
        self.method = registry.get("cloud-method", cfg.edge.method)(cfg, backend)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def open(self, setup: bytes = b"") -> None:
        """Take the stream setup the edge method made (:meth:`edge.pipeline.EdgePipeline.
        setup`) before decoding anything of that stream. A method without a setup accepts
        only ``b""``; a malformed setup raises :class:`~semcom.errors.WireFormatError`."""
        take = getattr(self.method, "open", None)
        if callable(take):
            take(bytes(setup))
        elif setup:
            raise WireFormatError(
                f"method {self.cfg.edge.method} takes no stream setup, got {len(setup)} bytes"
            )

    def decode(self, items: list[CloudItem]) -> ModelInput:
        """Check and decode a batch; adds ``cloud_decode_s`` per sample to each info."""
        for item in items:
            check_item(item)
        t0 = time.perf_counter()
        out = self.method.decode(items)
        per = (time.perf_counter() - t0) / max(1, len(items))
        for item, info in zip(items, out.info):
            info.setdefault(
                "descriptions_received", sum(isinstance(r, Description) for r in item.received)
            )
            info.setdefault("cloud_decode_s", per)
        return out
