"""Captioning metrics: CIDEr-D, BLEU-1..4, ROUGE-L (as pycocoevalcap computes them) and
exact match. Pure Python/numpy re-implementations of coco-caption's scorers
(``bleu_scorer.py`` with ``option="closest"``, ``rouge.py`` with beta 1.2,
``cider_scorer.py``: CIDEr-D with sigma 6, clipping and the x10 scale), so that no Java
and no extra package is needed at run time. The tests compare them with pycocoevalcap 1.2
live when it is installed (``pip install pycocoevalcap``; equal to 1e-12) and with its
recorded outputs otherwise.

Tokenisation follows coco-caption's PTBTokenizer (lower case, contractions split,
punctuation removed, brackets kept as ``-lrb-`` etc. as coco-caption leaves them), which
needs Java; the tests check that both give the same tokens on tricky captions.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from semcom.metrics.bootstrap import bootstrap_ci, metric

_PUNCT_ONLY = re.compile(r"^[\.\,\?\!\:\;\'\"\`\-\(\)\[\]\{\}]+$")
_CONTRACTION = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(
    r"n't|'(?:s|re|ve|ll|d|m)\b|-(?:lrb|rrb|lsb|rsb|lcb|rcb)-|(?:[a-z]\.){2,}"
    r"|\d+(?:[.,]\d+)+|\w+(?:[-'/]\w+)*|[^\w\s]+"
)


# PTBTokenizer escapes brackets; coco-caption then fails to drop them (it removes the
# upper-case "-LRB-" etc. from lower-cased output), so they stay as words. Same here.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}


def tokenize(text: str) -> str:
    """PTB-like tokens joined by single spaces: ``"A Dog's toy."`` -> ``"a dog 's toy"``."""
    text = _CONTRACTION.sub(r"\1 \2", text.lower().replace("\n", " "))
    for b, word in _BRACKETS.items():
        text = text.replace(b, f" {word} ")
    return " ".join(t for t in _TOKEN.findall(text) if not _PUNCT_ONLY.match(t))


def normalize_caption(text: str) -> str:
    return tokenize(text)


def exact_match(prediction: str, references: list[str]) -> float:
    """1.0 if the tokenised prediction equals a tokenised reference."""
    p = tokenize(prediction)
    return float(any(p == tokenize(r) for r in references))


def _ngrams(words: list[str], n: int = 4) -> dict:
    counts: dict = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


# ---------------------------------------------------------------------------------- BLEU


def bleu_stats(hyp: str, refs: list[str], n: int = 4) -> np.ndarray:
    """Additive per-sentence statistics: [testlen, reflen(closest), guess_1..n, correct_1..n]."""
    hw = hyp.split()
    counts = _ngrams(hw, n)
    reflens, maxcounts = [], {}
    for r in refs:
        rw = r.split()
        reflens.append(len(rw))
        for g, c in _ngrams(rw, n).items():
            maxcounts[g] = max(maxcounts.get(g, 0), c)
    testlen = len(hw)
    reflen = min((abs(rl - testlen), rl) for rl in reflens)[1]
    guess = [max(0, testlen - k + 1) for k in range(1, n + 1)]
    correct = [0] * n
    for g, c in counts.items():
        correct[len(g) - 1] += min(maxcounts.get(g, 0), c)
    return np.array([testlen, reflen, *guess, *correct], np.float64)


def bleu_from_stats(total: np.ndarray, n: int = 4) -> list[float]:
    """Corpus BLEU-1..n from summed :func:`bleu_stats` (coco-caption's smoothing)."""
    small, tiny = 1e-9, 1e-15
    testlen, reflen = total[0], total[1]
    guess, correct = total[2 : 2 + n], total[2 + n : 2 + 2 * n]
    out, b = [], 1.0
    for k in range(n):
        b *= (correct[k] + tiny) / (guess[k] + small)
        out.append(b ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        out = [x * math.exp(1 - 1 / ratio) for x in out]
    return out


def bleu(hyps: list[str], refs: list[list[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n of tokenised hypotheses against tokenised references."""
    stats = np.stack([bleu_stats(h, r, n) for h, r in zip(hyps, refs)])
    return bleu_from_stats(stats.sum(0), n)


# ------------------------------------------------------------------------------- ROUGE-L


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_one(hyp: str, refs: list[str], beta: float = 1.2) -> float:
    c = hyp.split(" ")
    prec, rec = [], []
    for r in refs:
        rt = r.split(" ")
        lcs = _lcs(rt, c)
        prec.append(lcs / len(c))
        rec.append(lcs / len(rt))
    p, r = max(prec), max(rec)
    if p == 0 or r == 0:
        return 0.0
    return ((1 + beta**2) * p * r) / (r + beta**2 * p)


def rouge_l(hyps: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
    scores = [rouge_l_one(h, r) for h, r in zip(hyps, refs)]
    return float(np.mean(scores)), scores


# ------------------------------------------------------------------------------- CIDEr-D


def cider_d(
    hyps: list[str], refs: list[list[str]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and per-image scores (document frequencies from the references)."""
    crefs = [[_ngrams(r.split(), n) for r in rs] for rs in refs]
    ctest = [_ngrams(h.split(), n) for h in hyps]
    df: dict = defaultdict(float)
    for rs in crefs:
        for g in {g for r in rs for g in r}:
            df[g] += 1
    ref_len = np.log(float(len(crefs)))

    def vec(cnts):
        v = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for g, tf in cnts.items():
            k = len(g) - 1
            v[k][g] = float(tf) * (ref_len - np.log(max(1.0, df[g])))
            norm[k] += v[k][g] ** 2
            if k == 1:  # coco-caption counts bigrams as the "length" (kept for parity)
                length += tf
        return v, [np.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr):
        delta = float(lh - lr)
        val = np.zeros(n)
        for k in range(n):
            for g in vh[k]:
                val[k] += min(vh[k][g], vr[k][g]) * vr[k][g]
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= np.e ** (-(delta**2) / (2 * sigma**2))
        return val

    scores = []
    for test, rs in zip(ctest, crefs):
        vh, nh, lh = vec(test)
        acc = np.zeros(n)
        for r in rs:
            vr, nr, lr = vec(r)
            acc += sim(vh, vr, nh, nr, lh, lr)
        scores.append(float(np.mean(acc) / len(rs) * 10.0))
    return float(np.mean(scores)) if scores else float("nan"), scores


# --------------------------------------------------------------------------------- all


def caption_metrics(
    predictions: list[str], references: list[list[str]], *, seed: int = 0
) -> tuple[dict, dict]:
    """``(metrics, per_sample)``: CIDEr-D, BLEU-4, ROUGE-L (coco-caption scales) and
    exact_match (%), each ``{"value", "ci95"}``; per-sample cider_d, rouge_l, exact_match.

    CIs: percentile bootstrap over images (CIDEr-D with the corpus document frequencies
    held fixed; BLEU-4 recomputed from resampled n-gram statistics).
    """
    hyps = [tokenize(p) for p in predictions]
    refs = [[tokenize(r) for r in rs] for rs in references]
    if any(not rs for rs in refs):
        raise ValueError("every sample needs at least one reference caption")
    cider, cider_per = cider_d(hyps, refs)
    rouge, rouge_per = rouge_l(hyps, refs)
    stats = np.stack([bleu_stats(h, r) for h, r in zip(hyps, refs)])
    b4 = bleu_from_stats(stats.sum(0))[3]
    em = np.array([float(any(h == r for r in rs)) for h, rs in zip(hyps, refs)]) * 100
    out = {
        "cider_d": metric(cider, bootstrap_ci(np.array(cider_per), seed=seed, key="cider")),
        "bleu_4": metric(
            b4, bootstrap_ci(stats, lambda s: bleu_from_stats(s.sum(0))[3], seed=seed, key="bleu")
        ),
        "rouge_l": metric(rouge, bootstrap_ci(np.array(rouge_per), seed=seed, key="rouge")),
        "exact_match": metric(em.mean(), bootstrap_ci(em, seed=seed, key="em")),
    }
    per = {"cider_d": cider_per, "rouge_l": rouge_per, "exact_match": em.tolist()}
    return out, per
