"""Importance scorers: one float per patch token (``float64 [P]``, higher = keep first).

=================  ======================================================================
``cls-attn``       attention of the CLS query to each patch at the configured layer,
                   summed over heads (VisionZip) or one full-width head (PruMerge / RC:
                   ``softmax(q_cls K^T / sqrt(D))`` with all heads as one, recovered
                   exactly from the per-head maps: :func:`full_width_cls`)
``attn-received``  attention each patch receives, summed over all queries and averaged
                   over heads (the *query* axis: the first seed's released code summed
                   over the key axis of a softmax, which is 1 for every token)
``l2-norm``        L2 norm of the patch token
``text-sim``       cosine between the guidance text (the VQA question, or ``edge.prompt``)
                   and the patch, both through the model's own text encoder and
                   projections: ``text_features`` and ``patch_embeddings``
``random``         uniform random, from the sample's own stream (a control)
``grid``           spatially uniform: the rank in a farthest-point order of the grid
                   from the centre, so the top-k are spread evenly (content-blind)
=================  ======================================================================

>>> import numpy as np
>>> from edge.selection.context import TokenContext
>>> ctx = TokenContext(np.ones((10, 4), np.float32), (3, 3), True)
>>> int(np.argmax(grid_score(ctx, None)))   # the centre first
4
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge.selection.context import TokenContext
from semcom.errors import ConfigError


def _need(value, what: str, scorer: str):
    if value is None:
        raise ConfigError(
            "edge.select.scorer",
            f"'{scorer}' needs {what}, which the vision backend did not return",
        )
    return value


def cls_attn(ctx: TokenContext, cfg=None) -> np.ndarray:
    if not ctx.has_cls:
        raise ConfigError(
            "edge.select.scorer",
            "'cls-attn' needs a model with a CLS token; use 'attn-received' for this model",
        )
    a = _need(ctx.attn, "attention maps", "cls-attn")
    if getattr(cfg, "heads", "sum") == "full":
        return full_width_cls(a)[1:]
    return a[:, 0, 1:].sum(0).astype(np.float64)


def full_width_cls(attn: np.ndarray) -> np.ndarray:
    """CLS row of one full-width head, ``softmax_j(q_cls . k_j / sqrt(D))``, from the per-head
    maps ``attn [H, N, N]`` alone (``float64 [N]``).

    Per head, ``log A_h[0, j] = q_h . k_hj / sqrt(d) - log Z_h`` with ``d = D / H``. Summed
    over heads, ``sum_h log A_h[0, j] = q . k_j / sqrt(d) - const``, and ``sqrt(d) =
    sqrt(D) / sqrt(H)``, so ``q . k_j / sqrt(D) = sum_h log A_h[0, j] / sqrt(H) + const``;
    the softmax drops the constant. Exact for attention without positional biases (ViT,
    CLIP), so no query projections are needed.
    """
    h = attn.shape[0]
    logits = np.log(np.maximum(attn[:, 0, :].astype(np.float64), 1e-300)).sum(0) / np.sqrt(h)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def attn_received(ctx: TokenContext, cfg=None) -> np.ndarray:
    a = _need(ctx.attn, "attention maps", "attn-received")
    c = ctx.prefix
    return a[:, :, c:].sum(1).mean(0).astype(np.float64)


def l2_norm(ctx: TokenContext, cfg=None) -> np.ndarray:
    return np.linalg.norm(ctx.patches.astype(np.float64), axis=1)


def text_sim(ctx: TokenContext, cfg=None) -> np.ndarray:
    return np.asarray(_need(ctx.text_sim, "text similarities", "text-sim"), np.float64)


def random_score(ctx: TokenContext, cfg=None) -> np.ndarray:
    if ctx.rng is None:
        raise ValueError("the random scorer needs the sample's rng")
    return ctx.rng.random(ctx.num_patches)


def grid_score(ctx: TokenContext, cfg=None) -> np.ndarray:
    return farthest_point_scores(*ctx.grid).copy()


@lru_cache(maxsize=16)
def farthest_point_scores(gh: int, gw: int) -> np.ndarray:
    """``P - rank`` in a greedy farthest-point order of the grid cells, starting at the centre.

    Ties break by raster index, so the order is deterministic.
    """
    yy, xx = np.divmod(np.arange(gh * gw), gw)
    pts = np.stack([yy, xx], 1).astype(np.float64)
    first = (gh // 2) * gw + gw // 2
    order = [first]
    dist = ((pts - pts[first]) ** 2).sum(1)
    for _ in range(gh * gw - 1):
        dist[order[-1]] = -1
        nxt = int(np.argmax(dist))
        order.append(nxt)
        dist = np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(1))
        dist[order] = -1
    scores = np.empty(gh * gw)
    scores[np.asarray(order)] = gh * gw - np.arange(gh * gw)
    return scores


SCORERS = {
    "cls-attn": cls_attn,
    "attn-received": attn_received,
    "l2-norm": l2_norm,
    "text-sim": text_sim,
    "random": random_score,
    "grid": grid_score,
}


def score(name: str, ctx: TokenContext, cfg=None) -> np.ndarray:
    """The named scorer's ``float64 [P]`` for ``ctx`` (cached per context)."""
    key = ("score", name, getattr(cfg, "heads", "sum"))
    if key not in ctx.cache:
        if name in SCORERS:
            fn = SCORERS[name]
        else:
            from semcom import registry

            fn = registry.get("scorer", name)
        s = np.asarray(fn(ctx, cfg), np.float64)
        if s.shape != (ctx.num_patches,):
            raise ValueError(
                f"scorer {name} returned shape {s.shape}, expected ({ctx.num_patches},)"
            )
        ctx.cache[key] = s
    return ctx.cache[key]
