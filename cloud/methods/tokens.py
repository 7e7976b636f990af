"""The token path on the cloud: descriptions -> dequantised, placed, concealed tokens.

The stream starts with the edge's setup (:meth:`TokenCloud.open`: the agreed settings,
checked against this cloud's model, codebook and token prior; a mismatch is a
:class:`~semcom.errors.WireFormatError` naming it). Then for each sample: parse every
received description (:class:`~semcom.stages.tokens.TokenWire`), check that they
describe the same transmission, take the union of their tokens by slot (redundant
copies collapse), conceal what was lost where the side info says where
(``cloud.conceal.mode``, union positions), fill every patch position still empty with the
prior's mean token of that position (``cloud.conceal.fill: prior``), and hand the model
``[CLS] + patches in raster order + extras``.

- CLS: from any description that carries it. A model with a CLS always gets a CLS slot
  first; when no CLS arrived (or the edge does not send it, e.g. LLaVA, whose projector
  drops it) the slot holds the prior's CLS mean (else the mean of the received tokens)
  with ``mask`` False, so the model treats it as absent.
- With ``fill: prior`` the model always sees every patch position, so a lost description
  (or everything lost) leaves the prior's picture of an image rather than nothing.
- All descriptions lost and no prior to fill from: the model gets two real tokens, the
  CLS slot and one patch slot, both the token mean (``conceal.empty: mean``; a zero
  vector when no file is configured) or zero vectors (``empty: zero``);
  ``tokens_to_model`` is 0 and ``all_lost`` True.
- ``info[i]``: ``tokens_to_model`` (patch-derived tokens given to the model, concealed
  and filled ones included, CLS excluded), ``tokens_received``, ``tokens_concealed``,
  ``tokens_filled``, ``tokens_lost`` (known lost; 0 when the descriptions carry only their
  own positions), ``cls_received``, ``all_lost``.
"""

from __future__ import annotations

import numpy as np

from cloud.conceal import conceal_tokens
from cloud.pipeline import CloudItem, ModelInput, check_envelope
from semcom.errors import ConfigError, WireFormatError
from semcom.stages.assets import load_token_assets
from semcom.stages.codebook import CodebookError, load_cached
from semcom.stages.mdc import MDC
from semcom.stages.setup import StreamSetup
from semcom.stages.tokens import TokenDescription, TokenStream, TokenWire
from semcom.types import Description


class TokenCloud:
    def __init__(self, cfg, backend):
        self.cfg = cfg
        self.backend = backend
        self.conceal = cfg.cloud.conceal
        g = backend.grid
        self.grid = (g, g) if isinstance(g, int) else tuple(g)
        self.dim = backend.token_dim
        self._assets = None
        self._assets_error = ""
        self._stats: np.ndarray | None | bool = False
        self.stream: TokenStream | None = None
        self.wire: TokenWire | None = None

    # -- assets and the stream ------------------------------------------------------------
    def assets(self):
        """The configured codebook and token prior (loaded once; None where absent)."""
        if self._assets is None:
            try:
                self._assets = load_token_assets(self.cfg, self.backend)
            except ConfigError as exc:
                self._assets_error = str(exc)
                from semcom.stages.assets import TokenAssets

                self._assets = TokenAssets(None, None)
        return self._assets

    @property
    def prior(self):
        return self.assets().prior

    def open(self, setup: bytes) -> None:
        """Take the edge's stream setup; WireFormatError names any disagreement. ``b""``
        (no stream yet, e.g. a warm-up of erasures only) leaves it unset."""
        if not setup:
            self.stream = self.wire = None
            return
        stream = TokenStream.from_setup(StreamSetup.from_bytes(setup, method="tokens"))
        if stream.model != self.backend.model_id:
            raise WireFormatError(
                f"model mismatch: the stream's tokens come from {stream.model}, this cloud "
                f"runs {self.backend.model_id}"
            )
        if tuple(stream.grid) != self.grid or stream.dim != self.dim:
            raise WireFormatError(
                f"the stream has a {stream.grid} grid of {stream.dim}-d tokens, this cloud's "
                f"model {self.grid} and {self.dim}-d"
            )
        a = self.assets()
        try:
            self.wire = TokenWire(stream, codebook=a.codebook, prior=a.prior)
        except WireFormatError as exc:
            if self._assets_error:
                raise WireFormatError(
                    f"{exc}; this cloud's token files did not load: {self._assets_error}"
                ) from None
            raise
        self.stream = stream

    def parse(self, desc: Description) -> TokenDescription:
        if self.wire is None:
            raise WireFormatError("no stream setup: the edge must send it before descriptions")
        return self.wire.decode(desc.data)

    def token_mean(self) -> np.ndarray | None:
        """Mean token for concealment: ``conceal.stats``, else the prior's, else the
        codebook's, else None."""
        if self._stats is False:
            self._stats = None
            if self.conceal.stats:
                try:
                    self._stats = load_cached(self.conceal.stats).mean
                except CodebookError as exc:
                    raise WireFormatError(f"conceal.stats: {exc}") from None
            elif self.prior is not None:
                self._stats = self.prior.mean
            elif self.assets().codebook is not None:
                self._stats = self.assets().codebook.mean
            if self._stats is not None and len(self._stats) != self.dim:
                raise WireFormatError(
                    f"token mean has {len(self._stats)} channels, the model {self.dim}"
                )
        return self._stats

    # -- decoding -------------------------------------------------------------------------
    def decode_item(self, item: CloudItem) -> tuple[np.ndarray, np.ndarray, dict]:
        """One sample -> ``(tokens float32 [N, D], mask bool [N], info)``."""
        got = [r for r in item.received if isinstance(r, Description)]
        parsed = [self.parse(d) for d in got]
        st = self.stream
        has_cls = bool(getattr(self.backend, "has_cls", True))
        P = self.grid[0] * self.grid[1]
        info = {
            "descriptions_received": len(parsed),
            "tokens_received": 0,
            "tokens_concealed": 0,
            "tokens_filled": 0,
            "tokens_lost": 0,
            "cls_received": False,
            "all_lost": not parsed,
        }
        prior = self.prior if self.conceal.fill == "prior" else None
        if not parsed and prior is None:
            fill = self.token_mean() if self.conceal.empty == "mean" else None
            token = np.zeros(self.dim, np.float32) if fill is None else fill.astype(np.float32)
            n = 2 if has_cls else 1
            info.update(tokens_to_model=0, tokens_concealed=1)
            return np.repeat(token[None, :], n, 0), np.ones(n, bool), info
        for p, d in zip(parsed, got):
            check_envelope(item, d, p.envelope(st))
        self._check_same(item, parsed)
        slots, tokens = MDC.combine([(p.slots, p.tokens) for p in parsed])
        if tokens is None:
            tokens = np.zeros((0, self.dim), np.float32)
        received = len(slots)
        concealed = lost = 0
        if st is not None and st.union and parsed:
            E = parsed[0].extras
            kept = np.concatenate([parsed[0].kept, P + np.arange(E)])
            lost = len(np.setdiff1d(kept, slots))
            slots, tokens, concealed = conceal_tokens(
                kept,
                slots,
                tokens,
                grid=self.grid,
                mode=self.conceal.mode,
                mean=self.token_mean(),
                neighbours=self.conceal.neighbours,
            )
        filled = 0
        if prior is not None:
            empty = np.setdiff1d(np.arange(P), slots[slots < P])
            filled = len(empty)
            if filled:
                slots = np.concatenate([slots, empty])
                tokens = np.concatenate([tokens, prior.patch_means()[empty]], 0)
                order = np.argsort(slots, kind="stable")
                slots, tokens = slots[order], tokens[order]
        cls = next((p.cls for p in parsed if p.cls is not None), None)
        seq, mask = [tokens], [np.ones(len(tokens), bool)]
        real = cls is not None
        if has_cls:
            if not real:
                if self.prior is not None:
                    cls = self.prior.cls_mean()
                else:
                    cls = tokens.mean(0) if len(tokens) else np.zeros(self.dim, np.float32)
            seq.insert(0, np.asarray(cls, np.float32)[None, :])
            mask.insert(0, np.array([real]))
        out = np.concatenate(seq, 0).astype(np.float32)
        m = np.concatenate(mask)
        if not m.any():  # only a concealed CLS slot: let the model see it
            m[:] = True
        info.update(
            tokens_to_model=int(len(slots)) if parsed else 0,
            tokens_received=int(received),
            tokens_concealed=int(concealed),
            tokens_filled=int(filled),
            tokens_lost=int(lost),
            cls_received=bool(has_cls and real),
        )
        return out, m, info

    @staticmethod
    def _check_same(item: CloudItem, parsed: list[TokenDescription]) -> None:
        """Descriptions of one transmission agree on the image size, the extras and (union
        mode) the kept positions."""
        if not parsed:  # everything lost: nothing to compare (the prior fills the image)
            return
        first = parsed[0]
        for p in parsed[1:]:
            if p.hw != first.hw or p.extras != first.extras:
                raise WireFormatError(
                    f"sample {item.sample_id}: descriptions disagree on the image size or "
                    "the extra tokens"
                )
            if first.kept is not None and not np.array_equal(first.kept, p.kept):
                raise WireFormatError(
                    f"sample {item.sample_id}: descriptions disagree on the kept positions"
                )

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
            tokens[i, : len(s)] = s
            mask[i, : len(s)] = m
        device = getattr(self.backend, "device", "cpu")
        return ModelInput(
            torch.from_numpy(tokens).to(device), torch.from_numpy(mask).to(device), infos
        )
