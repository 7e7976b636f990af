"""The learned-projector path on the edge: image -> vision tower -> compressor -> bytes.

``edge.method: projector`` with ``edge.projector.type`` (tokenpacker | visualprism) and
``edge.projector.scale`` s. The edge runs LLaVA's vision tower and the trained
compressor (:mod:`semcom.projectors`) up to the compressed tokens, ``(g / s)^2``
tokens of the vision width (12 x 12 patches, s = 2/3/4: 36 / 16 / 9 tokens), then
quantises (``edge.quant``: none = float16, or scalar with the image range or the
projector file's calibrated range) and MDC-splits them (``edge.mdc``: descriptions,
interleave / balanced by token norm, redundancy) like any tokens; the wire format is
:mod:`semcom.projectors.wire`. The projector's MLP into the language model runs on the
cloud (``cloud.methods.projector``).

``EdgeResult.info``: ``tokens_sent`` (compressed tokens, each counted once),
``token_copies`` (summed over descriptions), ``bits_per_token``, ``projector`` (type),
``scale``.
"""

from __future__ import annotations

import numpy as np

from semcom.errors import ConfigError
from semcom.projectors.io import features, load_projector
from semcom.projectors.wire import (
    ProjectorDescription,
    ProjectorHeader,
    ProjectorWire,
    wire_model_id,
)
from semcom.stages.envelope import Envelope
from semcom.stages.mdc import MDC
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer
from semcom.types import Description, EdgeResult, Sample


def build_quantizer(cfg, stats: dict):
    """(quantiser, header fields) for ``edge.quant`` on compressed tokens."""
    q = cfg.edge.quant
    if q.type == "none":
        if q.entropy:
            raise ConfigError(
                "edge.quant.entropy", "float16 tokens (type none) are not entropy-coded; use scalar"
            )
        return Fp16Quantizer(), {"quant": 0}
    if q.type == "scalar":
        cal = q.scalar_range == "calibrated"
        quant = (
            ScalarQuantizer(
                q.bits_for(cfg.edge.model.name), stats["lo"], stats["hi"], entropy=q.entropy_coded
            )
            if cal
            else ScalarQuantizer(q.bits_for(cfg.edge.model.name), entropy=q.entropy_coded)
        )
        return quant, {
            "quant": 1,
            "qbits": q.bits_for(cfg.edge.model.name),
            "calibrated": cal,
            "entropy": q.entropy_coded,
        }
    raise ConfigError(
        "edge.quant.type",
        "the projector path quantises compressed tokens with "
        "'none' (float16) or 'scalar'; codebooks are trained on raw vision "
        "tokens, not on a projector's output",
    )


def check_backend(backend, key: str = "edge.model.name"):
    if backend is None:
        raise ConfigError("edge.method", "the projector path needs the LLaVA vision tower")
    if getattr(backend, "family", None) != "llava":
        raise ConfigError(
            key,
            f"edge.method 'projector' needs a llava model, got "
            f"{getattr(backend, 'family', None)!r}",
        )


class ProjectorEdge:
    """``edge.method: projector``; see the module docstring."""

    needs_backend = True

    def __init__(self, cfg, backend):
        check_backend(backend)
        self.cfg, self.backend = cfg, backend
        self.pcfg = cfg.edge.projector
        self.proj = load_projector(self.pcfg, backend)
        self.module = self.proj.module.to(getattr(backend, "device", "cpu"))
        self.quantizer, self.qfields = build_quantizer(cfg, self.proj.stats)
        self.model32 = wire_model_id(backend.model_id, self.proj.id)
        self.num_tokens = self.module.num_tokens
        self.wire = ProjectorWire(backend.token_dim, grid=backend.grid, stats=self.proj.stats)
        self.mdc = MDC(
            cfg.edge.mdc.descriptions, cfg.edge.mdc.assignment, redundancy=cfg.edge.mdc.redundancy
        )

    def compress(self, samples: list[Sample]):
        """Compressed tokens ``float32 [B, Q, C]`` (numpy) of the samples' images."""
        import torch

        pv = self.backend.preprocess([s.image for s in samples])
        x, xm = features(self.backend, pv, self.proj.layers)
        with torch.no_grad():
            z = self.module.compress(x, xm)
        return z.detach().float().cpu().numpy()

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        z = self.compress(samples)
        return [self.encode_tokens(s, z[i]) for i, s in enumerate(samples)]

    def encode_tokens(self, sample: Sample, tokens: np.ndarray) -> EdgeResult:
        """Quantise and split one sample's compressed tokens ``float32 [Q, C]``."""
        D, Q = self.mdc.descriptions, self.num_tokens
        if D > Q:
            raise ConfigError(
                "edge.mdc.descriptions", f"{D} descriptions for {Q} compressed tokens"
            )
        shares = self.mdc.split(Q, importance=np.linalg.norm(tokens, axis=1))
        h, w = sample.hw
        header = ProjectorHeader(
            self.pcfg.type, self.pcfg.scale, model=self.model32, **self.qfields
        )
        descs, copies = [], 0
        for d, share in enumerate(shares):
            share = np.asarray(sorted(set(share)), np.int64)
            p = self.wire.encode(
                ProjectorDescription(
                    Envelope("projector", d, D, h, w), header, share, tokens[share]
                )
            )
            descs.append(
                Description(sample.image_id, d, D, p.data, (h, w), p.ledger, {"tokens": len(share)})
            )
            copies += len(share)
        info = {
            "tokens_sent": Q,
            "token_copies": copies,
            "cls_sent": 0,
            "bits_per_token": self.quantizer.bits_per_token(tokens.shape[1]),
            "projector": self.pcfg.type,
            "scale": self.pcfg.scale,
        }
        return EdgeResult(sample.sample_id, descs, info)
