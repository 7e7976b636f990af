"""Reducers: a sample's patch tokens + importance -> the tokens to send (:class:`Reduction`).

Every reducer keeps the original raster order of what it keeps (merged tokens take the
position of the token they were merged into); position-less global tokens (extras) come
last. With no budget (``budget``/``ratio`` null and ``adaptive`` false) every reducer
returns all patch tokens unchanged.

=============== ==========================================================================
``topk``        order-preserving top-k by the score (adaptive: IQR outlier count)
``recoverable`` Recoverable-Compression: a visual filter (CLS attention, LOF budget),
                text-guided recovery of what it missed (the score, by default the
                language-guided ``text-sim``, LOF budget), a KNN merge of the rest into a
                few centres (key cosine + text weight) and one global extra token
``visionzip``   dominant tokens (top by the score) + contextual tokens: uniform-stride
                targets among the rest, every other token merged into its most similar
                target by key cosine
``tome``        ToMe bipartite soft matching on keys, rounds of at most 50 % until k
                tokens remain; size-weighted averages
``prumerge``    PruMerge: IQR outlier budget on the score (adaptive) or k; each kept token
                absorbs its ``knn`` nearest pruned tokens (key cosine, attention-weighted);
                one global extra token
=============== ==========================================================================

Differences from the released codes (documented in docs/tokens.md): merges are weighted
means by default (``select.merge: sum`` restores the released weighted sums); the
recoverable reducer's centre count uses the number of remaining tokens where the
released code uses the channel width (1024); with a fixed budget it caps the visual
filter at half the budget and the centres at a quarter, and text recovery fills the rest.
"""

from __future__ import annotations

import math

import numpy as np

from edge.selection.budgets import Budget, iqr_count, lof_count, resolve
from edge.selection.context import Reduction, TokenContext
from edge.selection.scorers import score as get_score

RC_TEXT_SCALE = 1 / math.sqrt(768)  # the released code's cosine / sqrt(768) text score


def top(score: np.ndarray, n: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` highest-scoring indices (among ``candidates``), ties by index; rank order."""
    idx = np.arange(len(score)) if candidates is None else np.asarray(candidates, np.int64)
    if n <= 0 or len(idx) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((idx, -score[idx]))
    return idx[order[:n]]


def identity(ctx: TokenContext, score: np.ndarray) -> Reduction:
    P = ctx.num_patches
    return Reduction(np.arange(P), ctx.patches.copy(), _no_extras(ctx), score.copy(), {"kept": P})


def _no_extras(ctx: TokenContext) -> np.ndarray:
    return np.zeros((0, ctx.tokens.shape[1]), np.float32)


def merge_weights(ctx: TokenContext) -> np.ndarray:
    """Attention weights for merging (``[P]``, sum 1): CLS attention, else received
    attention, else uniform."""
    if ctx.attn is not None:
        c = ctx.prefix
        a = ctx.attn[:, 0, c:].sum(0) if ctx.has_cls else ctx.attn[:, :, c:].sum(1).mean(0)
        a = np.maximum(a.astype(np.float64), 1e-12)
    else:
        a = np.ones(ctx.num_patches)
    return a / a.sum()


def merge(
    base: np.ndarray, base_w: float, vecs: np.ndarray, ws: np.ndarray, mode: str
) -> np.ndarray:
    """``mean``: ``(w0 x0 + sum w_j x_j) / (w0 + sum w_j)``; ``sum``: ``x0 + sum w_j x_j``.

    PruMerge and the recoverable KNN merge call it with ``w0 = 1`` and ``w_j`` the
    attention weights (:func:`merge_weights`, summing to 1 over the patches): the released
    codes' ``x_i + sum_j a_j x_j``, divided by ``1 + sum_j a_j`` in ``mean`` mode, so the
    kept token dominates as in the released codes and the result stays in the token
    distribution. (Weighting the kept token by its own attention instead let 32
    background neighbours outweigh it: VQA accuracy at k=16 fell to the random level.)
    """
    if len(vecs) == 0:
        return base.astype(np.float32)
    acc = (ws[:, None] * vecs).sum(0)
    if mode == "sum":
        return (base + acc).astype(np.float32)
    return ((base_w * base + acc) / (base_w + ws.sum())).astype(np.float32)


def _global(x: np.ndarray, w: np.ndarray, mode: str) -> np.ndarray:
    if mode == "sum":
        return (w[:, None] * x).sum(0).astype(np.float32)
    return ((w[:, None] * x).sum(0) / max(w.sum(), 1e-12)).astype(np.float32)


def _minmax(v: np.ndarray) -> np.ndarray:
    span = v.max() - v.min() if len(v) else 0.0
    return (v - v.min()) / span if span > 0 else np.zeros_like(v, np.float64)


# -- reducers -------------------------------------------------------------------------
def topk(ctx: TokenContext, score: np.ndarray, budget: Budget, cfg=None) -> Reduction:
    if budget.everything:
        return identity(ctx, score)
    n = resolve(budget, iqr_count(score), ctx.num_patches)
    keep = np.sort(top(score, n))
    return Reduction(keep, ctx.patches[keep].copy(), _no_extras(ctx), score[keep], {"kept": n})


def recoverable(ctx: TokenContext, score: np.ndarray, budget: Budget, cfg) -> Reduction:
    if budget.everything:
        return identity(ctx, score)
    P = ctx.num_patches
    x = ctx.patches.astype(np.float64)
    a = get_score("cls-attn", ctx, cfg) if ctx.has_cls else get_score("attn-received", ctx)
    w = merge_weights(ctx)
    t = score
    k_lof = cfg.lof_neighbors
    lof_v = lof_count(a, k_lof)
    extra = 1 if cfg.extra_token else 0

    def plan_fixed(k: int) -> tuple[int, int, int, int]:
        n_e = extra if k >= 3 else 0
        kr = k - n_e
        n_v = min(max(1, lof_v), math.ceil(kr / 2))
        rest = np.setdiff1d(np.arange(P), top(a, n_v))
        m = min(lof_count(a[rest], 10), kr // 4) if len(rest) > 2 else 0
        return n_v, kr - n_v - m, m, n_e

    if budget.adaptive:
        n_v = lof_v
        V = top(a, n_v)
        s2 = t.copy()
        s2[V] = t.min()
        r_t = lof_count(s2, k_lof) / P
        n_t = int(math.floor((P - n_v) * r_t))
        rest = np.setdiff1d(
            np.arange(P), np.concatenate([V, top(s2, n_t, np.setdiff1d(np.arange(P), V))])
        )
        m = lof_count(a[rest], 10) if len(rest) > 2 else 0
        n_e = extra if len(rest) > m else 0
        if budget.cap is not None and n_v + n_t + m + n_e > budget.cap:
            n_v, n_t, m, n_e = plan_fixed(budget.cap)
    else:
        n_v, n_t, m, n_e = plan_fixed(min(budget.cap, P))
    V = top(a, n_v)
    T = top(t, n_t, np.setdiff1d(np.arange(P), V))
    S = np.union1d(V, T)
    R = np.setdiff1d(np.arange(P), S)
    C = top(a, min(m, len(R)), R)
    others = np.setdiff1d(R, C)
    keys = ctx.patch_keys()
    merged = {}
    for i in C:
        if len(others):
            rank = keys[others] @ keys[i] + cfg.text_weight * RC_TEXT_SCALE * t[others]
            nb = others[top(rank, cfg.knn)]
            merged[int(i)] = merge(x[i], 1.0, x[nb], w[nb], cfg.merge)
        else:
            merged[int(i)] = x[i].astype(np.float32)
    positions = np.union1d(S, C)
    tokens = (
        np.stack([merged.get(int(p), ctx.patches[p]) for p in positions]).astype(np.float32)
        if len(positions)
        else _no_extras(ctx)
    )
    extras = (
        _global(x[others], w[others], cfg.merge)[None, :]
        if n_e and len(others)
        else _no_extras(ctx)
    )
    imp = _minmax(a) + _minmax(t)
    importance = np.concatenate([imp[positions], [imp.max() + 1] * len(extras)])
    return Reduction(
        positions,
        tokens,
        extras,
        importance,
        {"visual": len(V), "text": len(T), "centres": len(C), "extras": len(extras)},
    )


def visionzip(ctx: TokenContext, score: np.ndarray, budget: Budget, cfg) -> Reduction:
    if budget.everything:
        return identity(ctx, score)
    P = ctx.num_patches
    k = resolve(budget, iqr_count(score), P)
    k_c = int(round(k * cfg.contextual)) if k >= 2 else 0
    k_c = min(max(k_c, 1 if cfg.contextual > 0 and k >= 2 else 0), P - (k - k_c))
    dominant = top(score, k - k_c)
    rest = np.setdiff1d(np.arange(P), dominant)
    out = {int(i): ctx.patches[i] for i in dominant}
    targets = np.zeros(0, np.int64)
    if k_c > 0 and len(rest):
        step = max(1, len(rest) // k_c)
        targets = rest[::step][:k_c]
        others = np.setdiff1d(rest, targets)
        keys = ctx.patch_keys()
        owner = np.argmax(keys[others] @ keys[targets].T, axis=1) if len(others) else []
        x = ctx.patches.astype(np.float64)
        for j, tgt in enumerate(targets):
            members = others[np.asarray(owner) == j] if len(others) else others
            if cfg.merge == "sum":
                v = x[tgt] + (x[members].mean(0) if len(members) else 0.0)
            else:
                v = (x[tgt] + x[members].sum(0)) / (1 + len(members))
            out[int(tgt)] = np.asarray(v, np.float32)
    positions = np.asarray(sorted(out), np.int64)
    tokens = np.stack([out[int(p)] for p in positions]).astype(np.float32)
    return Reduction(
        positions,
        tokens,
        _no_extras(ctx),
        score[positions],
        {"dominant": len(dominant), "contextual": len(targets)},
    )


def tome(ctx: TokenContext, score: np.ndarray, budget: Budget, cfg=None) -> Reduction:
    if budget.everything:
        return identity(ctx, score)
    P = ctx.num_patches
    k = resolve(budget, iqr_count(score), P)
    x = ctx.patches.astype(np.float64)
    keys = ctx.patch_keys().astype(np.float64)
    size = np.ones(P)
    pos = np.arange(P)
    imp = score.astype(np.float64).copy()
    rounds = 0
    while len(pos) > k:
        n = len(pos)
        r = min(n - k, n // 2)
        a_i, b_i = np.arange(0, n, 2), np.arange(1, n, 2)
        sim = keys[a_i] @ keys[b_i].T
        best = sim.argmax(1)
        val = sim[np.arange(len(a_i)), best]
        merged_a = np.lexsort((a_i, -val))[:r]
        dst = b_i[best[merged_a]]
        src = a_i[merged_a]
        xs, ks, ss = x * size[:, None], keys * size[:, None], size.copy()
        np.add.at(xs, dst, xs[src])
        np.add.at(ks, dst, ks[src])
        np.add.at(ss, dst, size[src])
        np.maximum.at(imp, dst, imp[src])
        keep = np.setdiff1d(np.arange(n), src)
        size = ss[keep]
        x = xs[keep] / size[:, None]
        keys = ks[keep] / size[:, None]
        keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        pos, imp = pos[keep], imp[keep]
        rounds += 1
    return Reduction(
        pos.copy(),
        x.astype(np.float32),
        _no_extras(ctx),
        imp,
        {"rounds": rounds, "max_size": int(size.max()), "sizes": size.astype(np.int64).tolist()},
    )


def prumerge(ctx: TokenContext, score: np.ndarray, budget: Budget, cfg) -> Reduction:
    if budget.everything:
        return identity(ctx, score)
    P = ctx.num_patches
    extra = 1 if cfg.extra_token else 0
    cap = None if budget.cap is None else max(1, budget.cap - (extra if budget.cap >= 2 else 0))
    n_keep = resolve(Budget(cap, budget.adaptive), iqr_count(score), P)
    keep = np.sort(top(score, n_keep))
    pruned = np.setdiff1d(np.arange(P), keep)
    x = ctx.patches.astype(np.float64)
    w = merge_weights(ctx)
    keys = ctx.patch_keys()
    tokens = ctx.patches[keep].copy()
    if len(pruned):
        sims = keys[keep] @ keys[pruned].T
        for row, i in enumerate(keep):
            nb = pruned[top(sims[row], cfg.knn)]
            tokens[row] = merge(x[i], 1.0, x[nb], w[nb], cfg.merge)
    n_e = extra if (len(pruned) and (budget.cap is None or budget.cap >= 2)) else 0
    extras = _global(x[pruned], w[pruned], cfg.merge)[None, :] if n_e else _no_extras(ctx)
    importance = np.concatenate([score[keep], [score.max()] * len(extras)])
    return Reduction(
        keep,
        tokens.astype(np.float32),
        extras,
        importance,
        {"kept": len(keep), "extras": len(extras)},
    )


REDUCERS = {
    "topk": topk,
    "recoverable": recoverable,
    "visionzip": visionzip,
    "tome": tome,
    "prumerge": prumerge,
}


def reduce_tokens(
    ctx: TokenContext, select_cfg, budget: Budget, *, importance: bool = True
) -> Reduction:
    """Score with ``select.scorer`` and reduce with ``select.reducer``.

    ``importance=False`` with no budget skips scoring (all tokens go, importance 0).
    """
    if budget.everything and not importance:
        return identity(ctx, np.zeros(ctx.num_patches))
    s = get_score(select_cfg.scorer, ctx, select_cfg)
    name = select_cfg.reducer
    if name in REDUCERS:
        fn = REDUCERS[name]
    else:
        from semcom import registry

        fn = registry.get("reducer", name)
    red = fn(ctx, s, budget, select_cfg)
    if budget.cap is not None and red.count > budget.cap:
        raise RuntimeError(
            f"reducer {name} returned {red.count} tokens for a budget of {budget.cap}"
        )
    return red
