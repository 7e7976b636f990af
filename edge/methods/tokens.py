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

from dataclasses import replace

import numpy as np

from edge.selection.budgets import budget_from_config
from edge.selection.context import TokenContext
from edge.selection.reducers import reduce_tokens
from edge.sources import make_source
from semcom.errors import ConfigError
from semcom.seeding import rng
from semcom.stages.codebook import Codebook, CodebookError, load_cached, quant_codebook_path
from semcom.stages.envelope import Envelope
from semcom.stages.mdc import split
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer, VQQuantizer
from semcom.stages.tokens import MAX_EXTRAS, TokenHeader, encode_description, id32
from semcom.types import Description, EdgeResult, Sample

QUANT_CODES = {"none": 0, "scalar": 1, "codebook": 2}
ATTN_SCORERS = ("cls-attn", "attn-received")


def codebook_path(cfg):
    """The codebook file of ``edge.quant`` (explicit path or the shipped default)."""
    return quant_codebook_path(cfg.edge.quant, cfg.edge.model.name)


def load_codebook(cfg, backend=None) -> Codebook:
    """The configured codebook, checked against the model (dimension, model id)."""
    path = codebook_path(cfg)
    try:
        cb = load_cached(path)
    except CodebookError as exc:
        raise ConfigError("edge.quant.codebook", str(exc)) from None
    q = cfg.edge.quant
    if q.type == "codebook" and (cb.bits != q.bits or cb.size != 2 ** q.bits):
        raise ConfigError("edge.quant.bits", f"{path} has {cb.size} entries, not 2^{q.bits}")
    if q.type == "codebook" and cb.metric != q.metric:
        raise ConfigError("edge.quant.metric", f"{path} was trained for metric "
                          f"'{cb.metric}', not '{q.metric}'")
    if backend is not None:
        if cb.dim != backend.token_dim:
            raise ConfigError("edge.quant.codebook", f"{path} has {cb.dim}-d entries, the "
                              f"model's tokens are {backend.token_dim}-d")
        want = cb.meta.get("model_id")
        if want and want != backend.model_id:
            raise ConfigError("edge.quant.codebook", f"{path} was trained on model {want}, "
                              f"the edge runs {backend.model_id}")
    return cb


def build_quantizer(cfg, backend=None, *, entropy: bool | None = None):
    """(quantiser, codebook or None) for ``edge.quant`` (``entropy`` overrides
    ``edge.quant.entropy``)."""
    q = cfg.edge.quant
    ent = q.entropy if entropy is None else entropy
    if q.type == "none":
        if ent:
            raise ConfigError("edge.quant.entropy", "float16 tokens (type none) are not "
                              "entropy-coded; use scalar or codebook")
        return Fp16Quantizer(), None
    if q.type == "scalar":
        if q.scalar_range == "calibrated":
            cb = load_codebook(cfg, backend)
            return ScalarQuantizer(q.bits, cb.lo, cb.hi, entropy=ent), cb
        return ScalarQuantizer(q.bits, entropy=ent), None
    cb = load_codebook(cfg, backend)
    return VQQuantizer(cb, entropy=ent), cb


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
        self.quantizer, self.codebook = build_quantizer(cfg, backend)
        self.plain_quantizer = (build_quantizer(cfg, backend, entropy=False)[0]
                                if cfg.edge.quant.entropy else self.quantizer)
        self.model32 = id32(backend.model_id)
        self.source = make_source(cfg, backend)
        self.layer = resolve_layer(self.select.layer, backend)
        P = backend.num_patches
        self.budget = budget_from_config(self.select, P)
        if self.select.budget is not None and self.select.budget > P:
            raise ConfigError("edge.select.budget", f"must be <= the model's {P} patch tokens, "
                              f"got {self.select.budget}")
        s, r = self.select.scorer, self.select.reducer
        mdc = cfg.edge.mdc
        # scores are needed to reduce, and to rank tokens for balanced MDC / redundancy
        self.need_scores = not self.budget.everything or (
            mdc.descriptions > 1 and (mdc.assignment == "balanced" or mdc.redundancy > 0))
        reduces = self.need_scores
        self.need_attn = reduces and (s in ATTN_SCORERS or r in ("recoverable", "prumerge"))
        self.need_keys = reduces and r in ("recoverable", "visionzip", "tome", "prumerge")
        self.need_text = reduces and s == "text-sim"
        self.send_cls = bool(self.select.keep_cls and backend.has_cls and uses_cls(backend))

    def guidance(self, sample: Sample, task: str) -> str:
        """The text that guides selection: the question for VQA, else ``edge.prompt``."""
        if task == "vqa" and sample.question:
            return sample.question
        return self.cfg.edge.prompt

    def contexts(self, samples: list[Sample], task: str, *, full: bool = False
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
                raise RuntimeError(f"backend returned {tokens.shape[1]} tokens for "
                                   f"{b.num_patches} patches")
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
            ctxs.append(TokenContext(
                tokens=tok[i], grid=tuple(b.grid) if not isinstance(b.grid, int)
                else (b.grid, b.grid), has_cls=has_cls,
                attn=None if attn is None else attn[i], keys=None if keys is None else keys[i],
                text_sim=None if sims is None else sims[i],
                rng=rng(self.cfg.run.seed, "select", s.sample_id), sample_id=s.sample_id,
                source=source_info[i]))
        return ctxs

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        ctxs = self.contexts(samples, task)
        return [self.encode_context(s, ctx) for s, ctx in zip(samples, ctxs)]

    def encode_context(self, sample: Sample, ctx: TokenContext) -> EdgeResult:
        """Reduce, quantise and split one sample's tokens into descriptions."""
        red = reduce_tokens(ctx, self.select, self.budget, importance=self.need_scores)
        if len(red.extras) > MAX_EXTRAS:
            raise RuntimeError(f"{len(red.extras)} extra tokens exceed the wire limit")
        send_cls = ctx.has_cls and self.send_cls
        mdc = self.cfg.edge.mdc
        D = mdc.descriptions
        P = ctx.num_patches
        slots = np.concatenate([red.positions, P + np.arange(len(red.extras))])
        vectors = np.concatenate([red.tokens, red.extras], 0).astype(np.float32)
        shares = split(len(slots), D, mdc.assignment, importance=red.importance,
                       redundancy=mdc.redundancy)
        h, w = sample.hw
        q = self.cfg.edge.quant
        descs = []
        copies = cls_copies = coded_plain = 0
        for d, share in enumerate(shares):
            share = np.asarray(sorted(share), np.int64)
            with_cls = send_cls and (mdc.cls == "every" or d == 0)
            header = TokenHeader(
                quant=QUANT_CODES[q.type], entropy=bool(q.entropy and q.type != "none"),
                cls=with_cls, union=mdc.positions == "union", grid=ctx.grid, model=self.model32,
                extras=len(red.extras), qbits=q.bits if q.type != "none" else 0,
                calibrated=q.type == "scalar" and q.scalar_range == "calibrated",
                metric=q.metric, codebook=self.codebook.id32 if self.codebook else 0)
            env = Envelope("tokens", d, D, h, w)
            args = dict(kept=red.positions, slots=slots[share], tokens=vectors[share],
                        cls=ctx.cls if with_cls else None)
            data, ledger = encode_description(env, header, self.quantizer, **args)
            if header.entropy:
                # the arithmetic code can be longer than fixed width (selected tokens are
                # rare under the codebook's usage counts): send the shorter, the header's
                # per-description entropy bit says which
                plain = replace(header, entropy=False)
                data2, ledger2 = encode_description(env, plain, self.plain_quantizer, **args)
                if len(data2) < len(data):
                    data, ledger = data2, ledger2
                    coded_plain += 1
            descs.append(Description(sample.image_id, d, D, data, (h, w), ledger,
                                     {"tokens": len(share), "cls": with_cls}))
            copies += len(share)
            cls_copies += int(with_cls)
        info = {"tokens_sent": int(len(slots)), "cls_sent": int(cls_copies > 0),
                "cls_copies": cls_copies, "token_copies": copies,
                "tokens_positioned": int(len(red.positions)), "tokens_extra": int(len(red.extras)),
                "bits_per_token": self.quantizer.bits_per_token(vectors.shape[1]),
                "entropy_fallbacks": coded_plain,
                "reduction": dict(red.info), **ctx.source}
        return EdgeResult(sample.sample_id, descs, info)
