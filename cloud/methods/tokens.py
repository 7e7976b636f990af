"""The token path on the cloud: descriptions -> dequantised, placed, concealed tokens.

For each sample: parse every received description (:func:`semcom.stages.tokens.
decode_description`; the model and codebook hashes in its header must match this
cloud's), check that they describe the same transmission, take the union of their tokens
by slot (redundant copies collapse), conceal what was lost (``cloud.conceal``), and
hand the model ``[CLS] + patches in raster order + extras``.

- CLS: from any description that carries it. A model with a CLS always gets a CLS slot
  first; when no CLS arrived (or the edge does not send it, e.g. LLaVA, whose projector
  drops it) the slot holds the mean of the received tokens with ``mask`` False, so the
  model treats it as absent (BLIP's ITC then pools the received tokens).
- All descriptions lost: the model gets two real tokens, the CLS slot and one patch
  slot, both the token mean of the codebook file (``conceal.empty: mean``; a zero vector
  when no file is configured) or zero vectors (``empty: zero``); ``tokens_to_model`` is
  0 and ``all_lost`` True. (Two, so that a model that drops the CLS slot still sees one.)
- ``info[i]``: ``tokens_to_model`` (patch-derived tokens given to the model, concealed ones
  included, CLS excluded), ``tokens_received``, ``tokens_concealed``, ``tokens_lost``
  (known lost; 0 when the descriptions carry only their own positions), ``cls_to_model``,
  ``cls_concealed``.
"""

from __future__ import annotations

import numpy as np

from cloud.conceal import conceal_tokens
from cloud.pipeline import CloudItem, ModelInput, check_envelope
from semcom.errors import WireFormatError
from semcom.stages.codebook import Codebook, CodebookError, load_cached, quant_codebook_path
from semcom.stages.mdc import combine
from semcom.stages.tokens import TokenDescription, decode_description, id32
from semcom.types import Description


class TokenCloud:
    def __init__(self, cfg, backend):
        self.cfg = cfg
        self.backend = backend
        self.conceal = cfg.cloud.conceal
        self.model32 = id32(backend.model_id)
        g = backend.grid
        self.grid = (g, g) if isinstance(g, int) else tuple(g)
        self.dim = backend.token_dim
        self._codebook: Codebook | None | bool = False  # False: not looked up yet
        self._stats: np.ndarray | None | bool = False
        self._codebook_error = ""

    # -- assets ---------------------------------------------------------------------------
    def codebook(self) -> Codebook | None:
        """The configured codebook (``edge.quant``), or None when not configured/found."""
        if self._codebook is False:
            path = quant_codebook_path(self.cfg.edge.quant, self.cfg.edge.model.name)
            try:
                self._codebook = load_cached(path) if path is not None else None
            except CodebookError as exc:
                self._codebook_error = str(exc)
                self._codebook = None
        return self._codebook

    def parse(self, desc: Description) -> TokenDescription:
        try:
            return decode_description(desc.data, dim=self.dim, model=self.model32,
                                      grid=self.grid, codebook=self.codebook())
        except WireFormatError as exc:
            if self._codebook is None and self._codebook_error and "codebook" in str(exc):
                raise WireFormatError(f"{exc}; the configured codebook did not load: "
                                      f"{self._codebook_error}") from None
            raise

    def token_mean(self) -> np.ndarray | None:
        """Mean token for concealment: ``conceal.stats``, else the codebook's, else None."""
        if self._stats is False:
            self._stats = None
            if self.conceal.stats:
                try:
                    self._stats = load_cached(self.conceal.stats).mean
                except CodebookError as exc:
                    raise WireFormatError(f"conceal.stats: {exc}") from None
            elif self.codebook() is not None:
                self._stats = self.codebook().mean
            if self._stats is not None and len(self._stats) != self.dim:
                raise WireFormatError(f"token mean has {len(self._stats)} channels, the model "
                                      f"{self.dim}")
        return self._stats

    # -- decoding -------------------------------------------------------------------------
    def decode_item(self, item: CloudItem) -> tuple[np.ndarray, np.ndarray, dict]:
        """One sample -> ``(tokens float32 [N, D], mask bool [N], info)``."""
        got = [r for r in item.received if isinstance(r, Description)]
        parsed = [self.parse(d) for d in got]
        has_cls = bool(getattr(self.backend, "has_cls", True))
        info = {"descriptions_received": len(parsed), "tokens_received": 0,
                "tokens_concealed": 0, "tokens_lost": 0, "cls_received": False}
        if not parsed:
            fill = self.token_mean() if self.conceal.empty == "mean" else None
            token = np.zeros(self.dim, np.float32) if fill is None else fill.astype(np.float32)
            n = 2 if has_cls else 1
            info.update(tokens_to_model=0, tokens_concealed=1, all_lost=True)
            return np.repeat(token[None, :], n, 0), np.ones(n, bool), info
        self._check_same(item, parsed)
        head = parsed[0].header
        for p, d in zip(parsed, got):
            check_envelope(item, d, p.envelope)
        slots, tokens = combine([(p.slots, p.tokens) for p in parsed])
        if tokens is None:
            tokens = np.zeros((0, self.dim), np.float32)
        P = head.num_patches
        received = len(slots)
        concealed = lost = 0
        if head.union:
            kept = np.concatenate([parsed[0].kept, P + np.arange(head.extras)])
            lost = len(np.setdiff1d(kept, slots))
            slots, tokens, concealed = conceal_tokens(
                kept, slots, tokens, grid=head.grid, mode=self.conceal.mode,
                mean=self.token_mean(), neighbours=self.conceal.neighbours)
        cls = next((p.cls for p in parsed if p.cls is not None), None)
        seq, mask = [tokens], [np.ones(len(tokens), bool)]
        real = cls is not None
        if has_cls:
            if not real:
                cls = tokens.mean(0) if len(tokens) else np.zeros(self.dim, np.float32)
            seq.insert(0, np.asarray(cls, np.float32)[None, :])
            mask.insert(0, np.array([real]))
        out = np.concatenate(seq, 0).astype(np.float32)
        m = np.concatenate(mask)
        if not m.any():  # only a concealed CLS slot: let the model see it
            m[:] = True
        info.update(tokens_to_model=int(len(slots)), tokens_received=int(received),
                    tokens_concealed=int(concealed), tokens_lost=int(lost),
                    cls_received=bool(has_cls and real),
                    all_lost=False)
        return out, m, info

    @staticmethod
    def _check_same(item: CloudItem, parsed: list[TokenDescription]) -> None:
        first = parsed[0]
        for p in parsed[1:]:
            if not first.header.same_image(p.header):
                raise WireFormatError(f"sample {item.sample_id}: descriptions disagree on their "
                                      f"token headers")
            if first.header.union and not np.array_equal(first.kept, p.kept):
                raise WireFormatError(f"sample {item.sample_id}: descriptions disagree on the "
                                      f"kept positions")

    def decode(self, items: list[CloudItem]) -> ModelInput:
        """``ModelInput(tokens float32 [B, N, D], mask bool [B, N], info)``; N = longest."""
        import torch

        seqs, masks, infos = [], [], []
        for item in items:
            seq, m, info = self.decode_item(item)
            seqs.append(seq)
            masks.append(m)
            infos.append(info)
        n = max(len(s) for s in seqs)
        tokens = np.zeros((len(seqs), n, self.dim), np.float32)
        mask = np.zeros((len(seqs), n), bool)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            tokens[i, :len(s)] = s
            mask[i, :len(s)] = m
        device = getattr(self.backend, "device", "cpu")
        return ModelInput(torch.from_numpy(tokens).to(device), torch.from_numpy(mask).to(device),
                          infos)
