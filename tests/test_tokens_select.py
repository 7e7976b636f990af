"""Scorers, reducers and budgets on a fake backend's tokens and attentions."""

from __future__ import annotations

import numpy as np
import pytest
from tokens_fakes import FakeBackend, make_image

from edge.selection.budgets import Budget, budget_from_config, iqr_count, lof, lof_count
from edge.selection.context import TokenContext
from edge.selection.reducers import REDUCERS, reduce_tokens, tome
from edge.selection.scorers import SCORERS, full_width_cls, score
from semcom.config import load_config
from semcom.seeding import rng

BACKEND = FakeBackend()


def ctx_for(image, question="what is red?", sample_id="s0", backend=BACKEND):
    import torch

    b = backend
    out = b.vision_tokens(b.preprocess([image]), attn_layers=(-1,), key_layers=(-1,))
    tok = out.tokens
    pe = b.patch_embeddings(tok)[:, 1:]
    tf = b.text_features([question])
    sims = torch.einsum("bpe,be->bp", pe, tf).numpy()[0]
    return TokenContext(
        tok.numpy()[0],
        (b.grid, b.grid),
        True,
        out.attentions[-1].numpy()[0],
        out.keys[-1].numpy()[0],
        sims,
        rng(0, "select", sample_id),
        sample_id,
    )


def select(**kw):
    return load_config(None, [f"edge.select.{k}={v}" for k, v in kw.items()]).edge.select


IMG_A = make_image((("red", 1, 1), ("blue", 8, 9)), seed=0)
IMG_B = make_image((("green", 5, 2), ("yellow", 2, 8), ("red", 9, 9)), seed=1)


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_ranks_tokens_non_trivially(name):
    cfg = select(scorer=name)
    a, b = ctx_for(IMG_A, sample_id="a"), ctx_for(IMG_B, sample_id="b")
    sa, sb = score(name, a, cfg), score(name, b, cfg)
    assert sa.shape == (144,) and np.all(np.isfinite(sa))
    assert sa.std() > 1e-6 * max(1.0, np.abs(sa).mean())  # not constant
    assert len(np.unique(np.round(sa, 9))) >= 20  # a real ranking, not a few ties
    top_a, top_b = set(np.argsort(-sa)[:16]), set(np.argsort(-sb)[:16])
    assert top_a != set(range(16)) and top_a != set(range(128, 144))  # not raster order
    if name != "grid":  # content (or sample) dependent; grid is content-blind by design
        assert top_a != top_b


def test_the_first_seeds_key_axis_sum_is_degenerate_and_ours_is_not():
    c = ctx_for(IMG_A)
    seed_score = c.attn.sum(axis=-1).sum(0)[1:]  # sum over the key axis of a softmax
    assert np.allclose(seed_score, seed_score[0], rtol=1e-5)  # constant: no ranking at all
    ours = score("attn-received", c)
    assert ours.std() > 1e-3 * ours.mean()


def test_text_sim_follows_the_question():
    red = ctx_for(IMG_A, "what is red?")
    blue = ctx_for(IMG_A, "where is the blue one?")
    red_patches = {12 + 1, 12 + 2, 24 + 1, 24 + 2}
    blue_patches = {96 + 9, 96 + 10, 108 + 9, 108 + 10}
    assert set(np.argsort(-score("text-sim", red))[:4]) == red_patches
    assert set(np.argsort(-score("text-sim", blue))[:4]) == blue_patches


def test_full_width_cls_head_equals_direct_computation():
    r = np.random.default_rng(0)
    H, N, d = 4, 10, 8
    q, k = r.normal(size=(N, H * d)), r.normal(size=(N, H * d))
    per_head = []
    for h in range(H):
        lg = q[:, h * d : (h + 1) * d] @ k[:, h * d : (h + 1) * d].T / np.sqrt(d)
        e = np.exp(lg - lg.max(1, keepdims=True))
        per_head.append(e / e.sum(1, keepdims=True))
    direct = q[0] @ k.T / np.sqrt(H * d)
    direct = np.exp(direct - direct.max())
    direct /= direct.sum()
    assert np.allclose(full_width_cls(np.stack(per_head)), direct, atol=1e-10)


def test_random_scorer_depends_on_sample_id_only():
    a1 = score("random", ctx_for(IMG_A, sample_id="x"))
    a2 = score("random", ctx_for(IMG_B, sample_id="x"))
    b = score("random", ctx_for(IMG_A, sample_id="y"))
    assert np.array_equal(a1, a2) and not np.array_equal(a1, b)


@pytest.mark.parametrize("reducer", sorted(REDUCERS))
@pytest.mark.parametrize("k", [1, 2, 8, 16, 64, 144])
def test_reducers_meet_fixed_budgets_and_keep_order(reducer, k):
    c = ctx_for(IMG_B)
    red = reduce_tokens(c, select(reducer=reducer, scorer="cls-attn", budget=k), Budget(k))
    assert red.count == k
    assert np.all(np.diff(red.positions) > 0)  # raster order, distinct
    assert red.tokens.shape == (len(red.positions), 32) and len(red.importance) == red.count
    assert red.tokens.dtype == np.float32 and np.all(np.isfinite(red.tokens))


@pytest.mark.parametrize("reducer", sorted(REDUCERS))
def test_no_budget_sends_everything_unchanged(reducer):
    c = ctx_for(IMG_A)
    red = reduce_tokens(c, select(reducer=reducer), Budget(None))
    assert red.positions.tolist() == list(range(144))
    assert np.array_equal(red.tokens, c.patches) and len(red.extras) == 0


def test_topk_keeps_the_top_scores_untouched():
    c = ctx_for(IMG_A)
    red = reduce_tokens(c, select(scorer="text-sim", budget=8), Budget(8))
    s = score("text-sim", c)
    assert set(red.positions) == set(np.argsort(-s)[:8])
    assert np.array_equal(red.tokens, c.patches[red.positions])


def test_tome_preserves_size_weighted_mass():
    c = ctx_for(IMG_B)
    red = tome(c, score("l2-norm", c), Budget(10))
    assert red.count == 10
    sizes = np.asarray(red.info["sizes"], np.float64)
    assert sizes.sum() == 144  # every token in exactly one group
    mass = (sizes[:, None] * red.tokens.astype(np.float64)).sum(0)
    assert np.allclose(mass, c.patches.astype(np.float64).sum(0), atol=1e-3)


def test_visionzip_dominant_tokens_are_unchanged():
    c = ctx_for(IMG_B)
    cfg = select(reducer="visionzip", scorer="cls-attn", budget=16)
    red = reduce_tokens(c, cfg, Budget(16))
    dom = np.argsort(-score("cls-attn", c, cfg))[: red.info["dominant"]]
    for p in dom:
        row = int(np.flatnonzero(red.positions == p)[0])
        assert np.array_equal(red.tokens[row], c.patches[p])
    assert red.info["contextual"] == 2


def test_recoverable_parts_and_extra_token():
    c = ctx_for(IMG_B, "is there a green thing?")
    red = reduce_tokens(c, select(reducer="recoverable", budget=16), Budget(16))
    i = red.info
    assert i["visual"] + i["text"] + i["centres"] + i["extras"] == 16
    assert i["visual"] >= 1 and i["text"] >= 1 and i["extras"] == 1 and len(red.extras) == 1
    green = {5 * 12 + 2, 5 * 12 + 3, 6 * 12 + 2, 6 * 12 + 3}
    assert green <= set(red.positions.tolist())  # text recovery finds the named object


def test_adaptive_budgets():
    s = np.r_[np.zeros(40), np.linspace(0, 0.1, 100), [5, 6, 7, 8]]
    assert iqr_count(s) == 4
    assert lof_count(s, 20) >= 4
    c = ctx_for(IMG_A)
    red = reduce_tokens(c, select(scorer="cls-attn", adaptive="true"), Budget(None, True))
    assert red.count == iqr_count(score("cls-attn", c))
    capped = reduce_tokens(c, select(scorer="cls-attn", adaptive="true", budget=2), Budget(2, True))
    assert capped.count <= 2
    rc = reduce_tokens(c, select(reducer="recoverable", adaptive="true"), Budget(None, True))
    assert 1 <= rc.count < 144


def test_lof_flags_an_isolated_point():
    x = np.r_[np.linspace(0, 1, 50), 10.0]
    f = lof(x, 10)
    assert f[-1] > 1.5 and np.all(f[:-1] < 1.5)


def test_budget_from_ratio_and_cap():
    cfg = load_config(None, ["edge.select.ratio=0.25"]).edge.select
    assert budget_from_config(cfg, 144) == Budget(36, False)
    assert budget_from_config(select(), 144).everything


@pytest.mark.parametrize("reducer", ["prumerge", "recoverable"])
def test_knn_merge_keeps_the_kept_token_dominant(reducer):
    """x_i <- (x_i + sum_j a_j x_j) / (1 + sum_j a_j), a summing to 1 over the patches:
    the released weighting, normalised, so the merged token is at most half-way from x_i
    to its farthest neighbour. (Weighting x_i by its own attention let 32 background
    neighbours outweigh it.)"""
    c = ctx_for(IMG_B, "is there a green thing?")
    red = reduce_tokens(c, select(scorer="cls-attn", reducer=reducer, budget=16), Budget(16))
    moved = 0
    for p, t in zip(red.positions, red.tokens):
        x = c.patches[p].astype(np.float64)
        reach = np.linalg.norm(c.patches - x, axis=1).max()
        d = np.linalg.norm(t - x)
        moved += d > 1e-4
        assert d <= 0.5 * reach + 1e-5, (p, d, reach)
    assert moved >= 1


def test_quant_codebook_path_defaults():
    from semcom.stages.codebook import CALIBRATION_BITS, default_path, quant_codebook_path

    q = lambda *kv: load_config(None, [f"edge.quant.{x}" for x in kv]).edge.quant  # noqa: E731
    assert quant_codebook_path(q("type=none"), "blip") is None
    assert quant_codebook_path(q("type=scalar", "bits=4"), "blip") is None
    assert quant_codebook_path(q("type=codebook", "bits=12"), "llava") == default_path(
        "llava", 12, "l2"
    )
    assert quant_codebook_path(
        q("type=scalar", "bits=4", "scalar_range=calibrated"), "llava"
    ) == default_path("llava", CALIBRATION_BITS, "l2")
    assert str(quant_codebook_path(q("type=none", "codebook=/x/c.npz"), "blip")) == "/x/c.npz"
