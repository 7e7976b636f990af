"""Image-text retrieval recall (R@K both directions, r_mean), tie-aware."""

from __future__ import annotations

import numpy as np

from semcom.metrics.bootstrap import bootstrap_ci, metric

KS = (1, 5, 10)


def recall_at_k(scores: np.ndarray, positives: list, k: int) -> np.ndarray:
    """Per query, the probability that a positive is in the top ``k`` under random
    tie-breaking (so a model that scores everything alike gets chance, not 100 %).

    ``scores [Q, G]``: query-by-gallery scores; ``positives[q]``: gallery indices that are
    correct for query q (the best-scored one counts).
    """
    scores = np.asarray(scores, np.float64)
    out = np.zeros(len(scores))
    for q, pos in enumerate(positives):
        pos = list(pos)
        s = scores[q]
        best = max(s[p] for p in pos)
        greater = int((s > best).sum())
        ties = int((s == best).sum())  # includes the positive(s) at the best score
        # expected recall when the tied items are ordered at random: a positive is
        # among the first (k - greater) of the ties
        n_pos_tied = sum(1 for p in pos if s[p] == best)
        slots = k - greater
        if slots <= 0:
            out[q] = 0.0
        elif slots >= ties:
            out[q] = 1.0
        else:  # P(at least one of n_pos_tied in the first `slots` of `ties`)
            miss = 1.0
            for j in range(slots):
                miss *= (ties - n_pos_tied - j) / (ties - j)
            out[q] = 1.0 - max(miss, 0.0)
    return out


def retrieval_metrics(
    i2t_scores: np.ndarray, t2i_scores: np.ndarray, txt2img: list[int], *, seed: int = 0
) -> tuple[dict, dict]:
    """R@1/5/10 in % for image->text (``txt_r*``) and text->image (``img_r*``), and r_mean.

    ``i2t_scores [I, T]``, ``t2i_scores [T, I]``; ``txt2img[t]`` is the image of text t.
    Names follow BLIP's ``itm_eval``: ``txt_r1`` = image-to-text R@1 (texts retrieved).
    Returns ``(metrics, per_query)`` with per-query recalls for the samples file.
    """
    n_img = i2t_scores.shape[0]
    img2txt = [[] for _ in range(n_img)]
    for t, i in enumerate(txt2img):
        img2txt[i].append(t)
    per = {}
    for k in KS:
        per[f"txt_r{k}"] = recall_at_k(i2t_scores, img2txt, k) * 100
        per[f"img_r{k}"] = recall_at_k(t2i_scores, [[i] for i in txt2img], k) * 100
    out = {
        name: metric(v.mean(), bootstrap_ci(v, seed=seed, key=f"ret/{name}"))
        for name, v in per.items()
    }
    txt = np.stack([per[f"txt_r{k}"] for k in KS], 1)  # [I, 3]
    img = np.stack([per[f"img_r{k}"] for k in KS], 1)  # [T, 3]
    out["txt_r_mean"] = metric(
        txt.mean(), bootstrap_ci(txt, lambda v: v.mean(), seed=seed, key="ret/txt_mean")
    )
    out["img_r_mean"] = metric(
        img.mean(), bootstrap_ci(img, lambda v: v.mean(), seed=seed, key="ret/img_mean")
    )
    if len(txt) == len(img):  # one caption per image: resample images jointly
        both = np.concatenate([txt, img], 1)
        ci = bootstrap_ci(both, lambda v: v.mean(), seed=seed, key="ret/r_mean")
    else:
        lo_t, hi_t = out["txt_r_mean"]["ci95"]
        lo_i, hi_i = out["img_r_mean"]["ci95"]
        ci = [(lo_t + lo_i) / 2, (hi_t + hi_i) / 2]
    out["r_mean"] = metric((txt.mean() + img.mean()) / 2, ci)
    return out, {k: v.tolist() for k, v in per.items()}
