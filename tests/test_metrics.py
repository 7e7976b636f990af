"""Metrics: caption scores equal pycocoevalcap's (recorded values; live comparison when it
is importable), VQA normalisation, tie-aware retrieval recall, bootstrap CIs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semcom.metrics import (
    bleu,
    bootstrap_ci,
    caption_metrics,
    cider_d,
    exact_match,
    normalize_answer,
    recall_at_k,
    retrieval_metrics,
    rouge_l,
    tokenize,
    vqa_accuracy,
    vqa_metrics,
)

GTS = [
    [
        "a man is riding a horse on the beach",
        "a person rides a brown horse near the sea",
        "man on horse at the beach",
    ],
    [
        "two dogs play with a red ball in the grass",
        "a pair of dogs chase a ball",
        "dogs playing in a field",
    ],
    [
        "a plate of food with broccoli and rice",
        "a dish of rice and vegetables",
        "broccoli and rice on a white plate",
    ],
]
RES = [
    "a man riding a horse on a beach",
    "two dogs playing with a ball",
    "a plate with rice and broccoli",
]
# pycocoevalcap 1.2 (Bleu(4), Cider(), Rouge()) on GTS / RES, recorded:
REF_BLEU = [0.949999999905, 0.7475450015183496, 0.4305849848551764, 0.291874389577739]
REF_CIDER = 2.0507425331118263
REF_CIDER_PER = [2.3221222801721506, 1.7158136391957335, 2.1142916799675944]
REF_ROUGE = 0.6832469665105867
REF_ROUGE_PER = [0.8148854961832059, 0.6777777777777778, 0.5570776255707762]


def test_caption_scores_equal_pycocoevalcap_reference_values():
    assert np.allclose(bleu(RES, GTS), REF_BLEU, rtol=1e-12)
    c, per = cider_d(RES, GTS)
    assert c == pytest.approx(REF_CIDER, rel=1e-12)
    assert np.allclose(per, REF_CIDER_PER, rtol=1e-12)
    r, rper = rouge_l(RES, GTS)
    assert r == pytest.approx(REF_ROUGE, rel=1e-12)
    assert np.allclose(rper, REF_ROUGE_PER, rtol=1e-12)


def test_caption_scores_equal_live_pycocoevalcap():
    """Our scorers against pycocoevalcap's own (pure Python, no Java needed), on the
    example above and on tiny-world captions with partly wrong predictions."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from semcom.world import scenes

    sc = scenes(3, "eval", 40)
    refs = [[s.caption()] for s in sc]
    hyps = [
        sc[(i + (i % 3 == 0)) % len(sc)].caption() if i % 4 else " ".join(refs[i][0].split()[:5])
        for i in range(len(sc))
    ]
    tw = ([tokenize(x) for x in hyps], [[tokenize(x) for x in rr] for rr in refs])
    for h, r in ((RES, GTS), tw):
        gts, res = dict(enumerate(r)), {i: [x] for i, x in enumerate(h)}
        assert np.allclose(bleu(h, r), Bleu(4).compute_score(gts, res, verbose=0)[0], rtol=1e-12)
        c_ref, c_per = Cider().compute_score(gts, res)
        c, per = cider_d(h, r)
        assert c == pytest.approx(c_ref, rel=1e-12) and np.allclose(per, c_per, rtol=1e-12)
        r_ref, r_per = Rouge().compute_score(gts, res)
        rl, rper = rouge_l(h, r)
        assert rl == pytest.approx(r_ref, rel=1e-12) and np.allclose(rper, r_per, rtol=1e-12)


TRICKY = [
    "A Dog's toy, on the MAT.",
    'Two dogs -- playing; "happily" (outside)!',
    "It's a man's world: isn't it?",
    "a well-known cat sits on a 3.5 m wall",
    "the U.S. flag ... waves",
    "I can't and won't go",
    "a [red] {box}",
    "it cost $5 & more",
    "e.g. a dog/cat",
    "the dogs' bowls",
    "large red circle at the top left, small blue square in the center",
]


def test_tokenize_equals_ptbtokenizer():
    """coco-caption's PTBTokenizer (Java) and ours agree, quirks included."""
    import shutil

    pytest.importorskip("pycocoevalcap")
    if shutil.which("java") is None:
        pytest.skip("java not installed (PTBTokenizer runs Stanford CoreNLP)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ref = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(TRICKY)})
    assert [tokenize(c) for c in TRICKY] == [ref[i][0] for i in range(len(TRICKY))]


def _coco_pairs(coco_mini):
    recs = json.loads((coco_mini / "captions.json").read_text())
    hyps = [tokenize(r["captions"][0]) for r in recs]
    refs = [[tokenize(c) for c in r["captions"][1:]] for r in recs]
    return hyps, refs


@pytest.mark.coco
def test_caption_scores_equal_live_pycocoevalcap_on_coco_mini(coco_mini):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = _coco_pairs(coco_mini)
    gts = dict(enumerate(refs))
    res = {i: [h] for i, h in enumerate(hyps)}
    assert np.allclose(bleu(hyps, refs), Bleu(4).compute_score(gts, res, verbose=0)[0])
    assert cider_d(hyps, refs)[0] == pytest.approx(Cider().compute_score(gts, res)[0])
    assert rouge_l(hyps, refs)[0] == pytest.approx(Rouge().compute_score(gts, res)[0])


@pytest.mark.coco
def test_coco_mini_human_captions_score_like_humans(coco_mini):
    """One human caption against the other four: the known human-level range on COCO
    (CIDEr-D about 0.85-1.0, BLEU-4 about 0.2, ROUGE-L about 0.48); a shuffled pairing
    scores near zero."""
    hyps, refs = _coco_pairs(coco_mini)
    m, _ = caption_metrics(hyps, refs)
    assert 0.7 < m["cider_d"]["value"] < 1.2
    assert 0.12 < m["bleu_4"]["value"] < 0.3
    assert 0.4 < m["rouge_l"]["value"] < 0.55
    shuffled, _ = caption_metrics(hyps[1:] + hyps[:1], refs)
    assert shuffled["cider_d"]["value"] < 0.1


def test_tokenize_and_exact_match():
    assert tokenize("A Dog's toy, on the MAT.") == "a dog 's toy on the mat"
    assert (
        tokenize("large red circle at the top left, small blue square in the center")
        == "large red circle at the top left small blue square in the center"
    )
    assert exact_match("Large red circle.", ["large red circle"]) == 1.0
    assert exact_match("large red square", ["large red circle"]) == 0.0


def test_caption_metrics_perfect_and_bootstrap():
    refs = [
        [f"small red circle at the top left and {w} blue square"]
        for w in ("large", "small", "tiny", "huge", "big", "little")
    ]
    preds = [r[0] for r in refs]
    m, per = caption_metrics(preds, refs)
    assert m["exact_match"]["value"] == 100.0 and m["exact_match"]["ci95"] == [100.0, 100.0]
    assert m["bleu_4"]["value"] == pytest.approx(1.0)
    assert m["rouge_l"]["value"] == pytest.approx(1.0)
    half = preds[:3] + ["nothing here"] * 3
    m2, per2 = caption_metrics(half, refs)
    assert m2["exact_match"]["value"] == 50.0
    lo, hi = m2["exact_match"]["ci95"]
    assert lo < 50.0 < hi
    assert m2["cider_d"]["value"] < m["cider_d"]["value"]
    assert per2["exact_match"] == [100.0] * 3 + [0.0] * 3


def test_vqa_normalisation_and_accuracy():
    assert normalize_answer("Two.") == "2"
    assert normalize_answer("the Top Left!") == "top left"
    assert normalize_answer("Yes") == "yes"
    assert normalize_answer("dont") == "don't"
    assert vqa_accuracy("2", ["two"]) == 1.0
    assert vqa_accuracy("red", ["blue"]) == 0.0
    # 10 human answers: official leave-one-out average of min(1, matches/3)
    assert vqa_accuracy("red", ["red"] * 2 + ["blue"] * 8) == pytest.approx(
        (2 * min(1, 1 / 3) + 8 * min(1, 2 / 3)) / 10
    )
    m, per = vqa_metrics(
        ["red", "2", "no", "left"],
        [["red"], ["two"], ["yes"], ["left"]],
        types=["colour", "count", "exists", "position"],
    )
    assert m["accuracy"]["value"] == 75.0 and per == [100.0, 100.0, 0.0, 100.0]
    assert m["accuracy/exists"]["value"] == 0.0


def test_recall_is_tie_aware():
    s = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.8], [0.3, 0.3, 0.3]])
    r1 = recall_at_k(s, [[0], [2], [1]], 1)
    assert r1.tolist() == [1.0, 0.5, pytest.approx(1 / 3)]
    assert recall_at_k(s, [[0], [2], [1]], 2).tolist() == [1.0, 1.0, pytest.approx(2 / 3)]
    # identical scores everywhere: chance, not 100 %
    flat = np.zeros((100, 100))
    assert recall_at_k(flat, [[i] for i in range(100)], 1).mean() == pytest.approx(0.01)
    assert recall_at_k(flat, [[i] for i in range(100)], 10).mean() == pytest.approx(0.10)


def test_retrieval_metrics_perfect_and_reversed():
    n = 20
    eye = np.eye(n)
    m, per = retrieval_metrics(eye, eye, list(range(n)))
    for k in ("txt_r1", "img_r1", "txt_r10", "r_mean"):
        assert m[k]["value"] == 100.0
    rev = -eye
    m2, _ = retrieval_metrics(rev, rev, list(range(n)))
    assert m2["txt_r1"]["value"] == 0.0 and m2["img_r10"]["value"] == 0.0
    # two captions per image: a text maps to its image
    s_i2t = np.array([[1.0, 0.9, 0.1, 0.5], [0.0, 0.2, 1.0, 0.3]])
    m3, _ = retrieval_metrics(s_i2t, s_i2t.T, [0, 0, 1, 1])
    assert m3["txt_r1"]["value"] == 100.0
    assert m3["img_r1"]["value"] == 75.0  # text 3 scores image 0 (0.5) above image 1 (0.3)


def test_bootstrap_is_reproducible_and_covers_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 400)
    a = bootstrap_ci(x, seed=5)
    assert a == bootstrap_ci(x, seed=5)
    assert a[0] < x.mean() < a[1]
    assert 0.1 < a[1] - a[0] < 0.4  # ~ 2 * 1.96 / sqrt(400)
    assert bootstrap_ci([3.0]) == [3.0, 3.0]
