"""The token path on the edge: vision tokens -> score -> reduce -> quantise -> MDC -> bytes.

``edge.method: tokens``. Per batch the vision encoder runs once; attentions and keys of
``edge.select.layer`` are requested only when the scorer or reducer needs them, and the
text similarity only for ``text-sim`` / ``recoverable``. The guidance text is the
sample's question for VQA and ``edge.prompt`` otherwise (passed explicitly, never parsed
out of a chat template).

Token accounting (``EdgeResult.info``):

- ``tokens_sent``  distinct patch-derived tokens whose content is in the descriptions
  (kept + merged + global extras); CLS is not counted here;
- ``cls_sent``     1 when the CLS token is sent (``cls_copies``: how many descriptions
  carry it);
- ``token_copies`` patch-derived tokens summed over descriptions (MDC redundancy
  counts each copy).
"""

from __future__ import annotations

import numpy as np

from edge.selection.budgets import budget_from_config
from edge.selection.context import TokenContext
from edge.selection.reducers import reduce_tokens
from edge.sources import make_source
from semcom.errors import ConfigError
from semcom.seeding import rng
from semcom.stages.assets import codebook_path, load_codebook, load_token_assets
from semcom.stages.mdc import MDC
from semcom.stages.setup import usual_size
from semcom.stages.tokens import MAX_EXTRAS, TokenDescription, TokenStream, TokenWire, short_hash
from semcom.types import Description, EdgeResult, Sample

ATTN_SCORERS = ("cls-attn", "attn-received")
# reducers whose kept set has exactly ``budget`` positioned tokens and no extras
FIXED_REDUCERS = ("topk", "visionzip", "tome")

__all__ = ["TokenEdge", "codebook_path", "load_codebook", "token_stream"]


def token_stream(cfg, backend, assets, hw=None) -> TokenStream:
    """The agreed settings of this edge's token stream (what its setup carries)."""
    sel, q, mdc = cfg.edge.select, cfg.edge.quant, cfg.edge.mdc
    g = backend.grid
    grid = (g, g) if isinstance(g, int) else tuple(g)
    send_cls = bool(sel.keep_cls and backend.has_cls and uses_cls(backend))
    fixed = sel.reducer in FIXED_REDUCERS
    everything = sel.budget is None and sel.ratio is None and not sel.adaptive
    if everything:
        budget = grid[0] * grid[1]
    elif sel.adaptive or not fixed:
        budget = None
    else:
        budget = budget_from_config(sel, grid[0] * grid[1]).cap
    return TokenStream(
        model=backend.model_id,
        grid=grid,
        dim=int(backend.token_dim),
        cls=("every" if mdc.cls == "every" else "first") if send_cls else "none",
        descriptions=mdc.descriptions,
        assignment=mdc.assignment,
        redundancy=mdc.redundancy,
        positions=mdc.positions,
        budget=budget,
        extras=0 if (fixed or everything) else None,
        quant=q.type,
        bits=q.bits_for(cfg.edge.model.name) if q.type != "none" else 0,
        entropy=q.entropy_coded,
        metric=q.metric,
        scalar_range=q.scalar_range,
        codebook=short_hash(assets.codebook.hash) if assets.codebook is not None else None,
        prior=short_hash(assets.prior.hash) if assets.prior is not None else None,
        hw=hw,
    )


def resolve_layer(layer: int, backend) -> int:
    n = getattr(backend, "num_layers", None)
    if layer < 0 and n is not None:
        layer += n
        if layer < 0:
            raise ConfigError("edge.select.layer", f"the model has {n} layers")
    return layer


def uses_cls(backend) -> bool:
    """Whether the cloud model reads the CLS token: ``backend.uses_cls`` if the backend says,
    else False for LLaVA's ``default`` feature strategy (the projector drops CLS)."""
    flag = getattr(backend, "uses_cls", None)
    if flag is not None:
        return bool(flag)
    return getattr(backend, "strategy", "full") != "default"


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class TokenEdge:
    """``edge.method: tokens``; see the module docstring."""

    needs_backend = True

    def __init__(self, cfg, backend):
        if backend is None:
            raise ConfigError("edge.method", "the token path needs the vision backend")
        self.cfg = cfg
        self.backend = backend
        self.select = cfg.edge.select
        self.assets = load_token_assets(cfg, backend)
        self.codebook = self.assets.codebook
        self.stream = token_stream(cfg, backend, self.assets)
        self.wire = TokenWire(self.stream, codebook=self.codebook, prior=self.assets.prior)
        self.quantizer = self.wire.quantizer
        self._encoded = False
        mdc = cfg.edge.mdc
        self.mdc = MDC(mdc.descriptions, mdc.assignment, redundancy=mdc.redundancy)
        self.source = make_source(cfg, backend)
        self.layer = resolve_layer(self.select.layer, backend)
        P = backend.num_patches
        self.budget = budget_from_config(self.select, P)
        if self.select.budget is not None and self.select.budget > P:
            raise ConfigError(
                "edge.select.budget",
                f"must be <= the model's {P} patch tokens, got {self.select.budget}",
            )
        s, r = self.select.scorer, self.select.reducer
        mdc = cfg.edge.mdc
        # scores are needed to reduce, and to rank tokens for balanced MDC / redundancy
        self.need_scores = not self.budget.everything or (
            mdc.descriptions > 1 and (mdc.assignment == "balanced" or mdc.redundancy > 0)
        )
        reduces = self.need_scores
        self.need_attn = reduces and (s in ATTN_SCORERS or r in ("recoverable", "prumerge"))
        self.need_keys = reduces and r in ("recoverable", "visionzip", "tome", "prumerge")
        self.need_text = reduces and s == "text-sim"

    def setup(self, samples=()) -> bytes:
        """The stream setup (:class:`~semcom.stages.tokens.TokenStream`); the usual image
        size is the most common one of ``samples``."""
        hw = usual_size(samples)
        if hw is not None and self.stream.hw != tuple(hw):
            from dataclasses import replace

            if self._encoded:
                raise RuntimeError("the stream setup must be made before any description")

            self.stream = replace(self.stream, hw=tuple(hw))
            self.wire = TokenWire(self.stream, codebook=self.codebook, prior=self.assets.prior)
        return self.stream.setup().to_bytes()

    def guidance(self, sample: Sample, task: str) -> str:
        """The text that guides selection: the question for VQA, else ``edge.prompt``."""
        if task == "vqa" and sample.question:
            return sample.question
        return self.cfg.edge.prompt

    def contexts(
        self, samples: list[Sample], task: str, *, full: bool = False
    ) -> list[TokenContext]:
        """Run the encoder on the batch and build one :class:`TokenContext` per sample.

        ``full``: collect attentions, keys and text similarities whatever the config needs
        (so one set of contexts serves every scorer and reducer, e.g. in evaluations).
        """
        import torch

        b = self.backend
        layers = (self.layer,)
        need_attn, need_keys = self.need_attn or full, self.need_keys or full
        need_text = self.need_text or full
        kwargs = {}
        if need_attn:
            kwargs["attn_layers"] = layers
        if need_keys:
            kwargs["key_layers"] = layers
        with torch.no_grad():
            out, source_info = self.source.vision(samples, **kwargs)
            tokens = out.tokens
            prefix = tokens.shape[1] - b.num_patches
            if prefix not in (0, 1):
                raise RuntimeError(
                    f"backend returned {tokens.shape[1]} tokens for {b.num_patches} patches"
                )
            sims = None
            if need_text:
                texts = [self.guidance(s, task) for s in samples]
                tf = b.text_features(texts)  # [B, E]
                # all tokens: LLaVA's patch_embeddings runs the last encoder layer over them
                pe = b.patch_embeddings(tokens)[:, prefix:]  # [B, P, E]
                sims = _np(torch.einsum("bpe,be->bp", pe.float(), tf.float().to(pe.device)))
            tok = _np(tokens)
            attn = _np(out.attentions[self.layer]) if need_attn else None
            keys = _np(out.keys[self.layer]) if need_keys else None
        has_cls = bool(prefix == 1)
        ctxs = []
        for i, s in enumerate(samples):
            ctxs.append(
                TokenContext(
                    tokens=tok[i],
                    grid=tuple(b.grid) if not isinstance(b.grid, int) else (b.grid, b.grid),
                    has_cls=has_cls,
                    attn=None if attn is None else attn[i],
                    keys=None if keys is None else keys[i],
                    text_sim=None if sims is None else sims[i],
                    rng=rng(self.cfg.run.seed, "select", s.sample_id),
                    sample_id=s.sample_id,
                    source=source_info[i],
                )
            )
        return ctxs

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        self._encoded = True
        ctxs = self.contexts(samples, task)
        return [self.encode_context(s, ctx) for s, ctx in zip(samples, ctxs)]

    def encode_context(self, sample: Sample, ctx: TokenContext) -> EdgeResult:
        """Reduce, quantise and split one sample's tokens into descriptions."""
        red = reduce_tokens(ctx, self.select, self.budget, importance=self.need_scores)
        if len(red.extras) > MAX_EXTRAS:
            raise RuntimeError(f"{len(red.extras)} extra tokens exceed the wire limit")
        mdc = self.cfg.edge.mdc
        D = mdc.descriptions
        P = ctx.num_patches
        slots = np.concatenate([red.positions, P + np.arange(len(red.extras))])
        vectors = np.concatenate([red.tokens, red.extras], 0).astype(np.float32)
        shares = self.mdc.split(len(slots), importance=red.importance)
        h, w = sample.hw
        st = self.stream
        if st.cls != "none" and not ctx.has_cls:
            raise RuntimeError("the stream sends CLS but the encoder returned none")
        descs = []
        copies = cls_copies = 0
        for d, share in enumerate(shares):
            share = np.asarray(sorted(share), np.int64)
            with_cls = st.carries_cls(d)
            x = TokenDescription(
                d,
                slots=slots[share],
                tokens=vectors[share],
                cls=ctx.cls if with_cls else None,
                kept=red.positions if st.union else None,
                extras=len(red.extras),
                hw=(h, w),
            )
            p = self.wire.encode(x)
            descs.append(
                Description(
                    sample.image_id,
                    d,
                    D,
                    p.data,
                    (h, w),
                    p.ledger,
                    {"tokens": len(share), "cls": with_cls},
                )
            )
            copies += len(share)
            cls_copies += int(with_cls)
        info = {
            "tokens_sent": int(len(slots)),
            "cls_sent": int(cls_copies > 0),
            "cls_copies": cls_copies,
            "token_copies": copies,
            "tokens_positioned": int(len(red.positions)),
            "tokens_extra": int(len(red.extras)),
            "bits_per_token": self.quantizer.bits_per_token(vectors.shape[1]),
            "reduction": dict(red.info),
            **ctx.source,
        }
        return EdgeResult(sample.sample_id, descs, info)
