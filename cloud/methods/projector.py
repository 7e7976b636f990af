"""The learned-projector path on the cloud: descriptions -> compressed tokens -> MLP.

For each sample: parse every received description (:mod:`semcom.projectors.wire`; its
type, scale and model + projector hash must match this cloud's), take the union of
their compressed tokens, conceal what was lost on the ``G x G`` grid
(``cloud.conceal.mode``: drop / zero / mean (the projector file's token mean) /
interp), and run the projector's MLP into the language model. The result is
*already projected*: ``ModelInput.tokens [B, N, H]`` in the language model's width
(``H``, not the vision width), ``mask [B, N]``, no CLS slot, and
``ModelInput.projected = True``; the task runner must hand them to the backend with
``projected=True`` (``backend.answer(..., projected=True)``), or use
:mod:`semcom.projectors.lm`.

All descriptions lost: one token, the projector's mean compressed token
(``conceal.empty: mean``) or a zero vector, through the MLP; ``tokens_to_model`` 0.
"""

from __future__ import annotations

import numpy as np

from cloud.conceal import conceal_tokens
from cloud.pipeline import CloudItem, ModelInput, check_envelope
from semcom.errors import ConfigError, WireFormatError
from semcom.projectors.io import load_projector
from semcom.projectors.wire import ProjectorDescription, ProjectorWire, wire_model_id
from semcom.stages.mdc import MDC
from semcom.types import Description


class ProjectorCloud:
    def __init__(self, cfg, backend):
        if getattr(backend, "family", None) != "llava":
            raise ConfigError(
                "cloud.model.name",
                "edge.method 'projector' needs a llava "
                f"model, got {getattr(backend, 'family', None)!r}",
            )
        self.cfg, self.backend = cfg, backend
        self.pcfg = cfg.edge.projector
        self.conceal = cfg.cloud.conceal
        self.proj = load_projector(self.pcfg, backend)
        self.module = self.proj.module.to(getattr(backend, "device", "cpu"))
        self.model32 = wire_model_id(backend.model_id, self.proj.id)
        self.grid = backend.grid
        self.G = self.module.out_grid
        self.dim = backend.token_dim
        self.wire = ProjectorWire(
            self.dim,
            grid=self.grid,
            model=self.model32,
            expect=(self.pcfg.type, self.pcfg.scale),
            stats=self.proj.stats,
        )

    def parse(self, desc: Description) -> ProjectorDescription:
        return self.wire.decode(desc.data)

    def decode_item(self, item: CloudItem) -> tuple[np.ndarray, dict]:
        """One sample -> ``(compressed tokens float32 [n, C], info)`` (before the MLP)."""
        got = [r for r in item.received if isinstance(r, Description)]
        parsed = [self.parse(d) for d in got]
        Q = self.G * self.G
        info = {
            "descriptions_received": len(parsed),
            "tokens_received": 0,
            "tokens_concealed": 0,
            "tokens_lost": 0,
            "cls_received": False,
        }
        if not parsed:
            fill = self.proj.stats["mean"] if self.conceal.empty == "mean" else None
            token = np.zeros(self.dim, np.float32) if fill is None else fill.astype(np.float32)
            info.update(tokens_to_model=0, tokens_concealed=1, tokens_lost=Q, all_lost=True)
            return token[None, :], info
        for p, d in zip(parsed, got):
            check_envelope(item, d, p.envelope)
            if vars(p.header) != vars(parsed[0].header):
                raise WireFormatError(
                    f"sample {item.sample_id}: descriptions disagree on their projector headers"
                )
        slots, tokens = MDC.combine([(p.slots, p.tokens) for p in parsed])
        received = len(slots)
        kept = np.arange(Q, dtype=np.int64)
        slots, tokens, concealed = conceal_tokens(
            kept,
            slots,
            tokens,
            grid=(self.G, self.G),
            mode=self.conceal.mode,
            mean=self.proj.stats["mean"],
            neighbours=self.conceal.neighbours,
        )
        info.update(
            tokens_to_model=int(len(slots)),
            tokens_received=int(received),
            tokens_concealed=int(concealed),
            tokens_lost=int(Q - received),
            all_lost=False,
        )
        return np.asarray(tokens, np.float32), info

    def compressed(self, items: list[CloudItem]):
        """``(tokens float32 [B, N, C], mask bool [B, N], infos)`` before the MLP."""
        seqs, infos = [], []
        for item in items:
            seq, info = self.decode_item(item)
            seqs.append(seq)
            infos.append(info)
        n = max(len(s) for s in seqs)
        tokens = np.zeros((len(seqs), n, self.dim), np.float32)
        mask = np.zeros((len(seqs), n), bool)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = s
            mask[i, : len(s)] = True
        return tokens, mask, infos

    def decode(self, items: list[CloudItem]) -> ModelInput:
        """``ModelInput(tokens float32 [B, N, H] (projected), mask bool [B, N], info)``."""
        import torch

        tokens, mask, infos = self.compressed(items)
        device = getattr(self.backend, "device", "cpu")
        with torch.no_grad():
            emb = self.module.project(torch.from_numpy(tokens).to(device))
        for info in infos:
            info["projected"] = True
        m = torch.from_numpy(mask).to(device)
        return ModelInput(emb, m, infos, projected=True)
