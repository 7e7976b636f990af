"""cloud.tasks: the task runners' bookkeeping, ranking and metrics, on a fake backend."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cloud.tasks import make_task  # noqa: E402
from semcom.types import Sample  # noqa: E402


class FakeBackend:
    """Token i of an image 'means' caption number int(tokens[0, 0]); answers echo it."""

    family = "fake"
    path = "fake"
    tasks = {"caption", "vqa", "retrieval"}

    def __init__(self, captions):
        self.captions = captions
        self.calls = []

    def caption(self, tokens, mask, *, beams=1, max_new_tokens=24):
        self.calls.append(("caption", tokens.shape, int(mask.sum())))
        return [self.captions[int(t[0, 0])] for t in tokens]

    def answer(self, tokens, mask, questions, *, max_new_tokens=8):
        return [f"{q[-3:-1]}" for q in questions]

    def image_embed(self, tokens, mask):
        # ITC: the caption of token 0 first, the caption of token 1 second
        n = len(self.captions)
        one_hot = torch.nn.functional.one_hot
        return one_hot(tokens[:, 0, 0].long(), n).float() + 0.5 * one_hot(tokens[:, 1, 0].long(), n)

    def text_embed(self, texts):
        n = len(self.captions)
        return torch.nn.functional.one_hot(torch.tensor([self.captions.index(t) for t in texts]),
                                           n).float() * 0.5

    def itm_scores(self, tokens, mask, texts):
        # ITM knows better than ITC: it prefers the caption of the image's SECOND token
        return torch.tensor([10.0 if self.captions[int(t[1, 0])] == x else 0.0
                             for t, x in zip(tokens, texts)])


def _samples(n, **kw):
    return [Sample(f"s{i}", f"i{i}", np.zeros((4, 4, 3), np.uint8), [f"cap {i}"], **kw)
            for i in range(n)]


def test_caption_task_rows_and_metrics():
    caps = [f"cap {i}" for i in range(6)]
    be = FakeBackend(caps)
    task = make_task("caption", be, beams=2, max_new_tokens=5)
    tokens = torch.zeros(6, 3, 2)
    tokens[:, 0, 0] = torch.tensor([0, 1, 2, 3, 0, 0])      # images 4, 5 say "cap 0"
    mask = torch.ones(6, 3, dtype=torch.bool)
    rows = task.run_batch(tokens[:3], mask[:3], _samples(6)[:3])
    rows += task.run_batch(tokens[3:], mask[3:], _samples(6)[3:])
    m = task.finalize(rows)
    assert [r["exact_match"] for r in rows] == [100.0] * 4 + [0.0] * 2
    assert m["exact_match"]["value"] == pytest.approx(400 / 6)
    assert "cider_d" in rows[0] and rows[0]["cider_d"] > rows[5]["cider_d"]
    assert set(m) == {"cider_d", "bleu_4", "rouge_l", "exact_match"}


def test_vqa_task():
    be = FakeBackend([])
    task = make_task("vqa", be)
    ss = _samples(3, question="is it ab?", answers=["ab"])
    ss[2].answers = ["no"]
    for s, t in zip(ss, ["exists", "exists", "count"]):
        s.meta["qtype"] = t
    rows = task.run_batch(torch.zeros(3, 2, 2), torch.ones(3, 2, dtype=torch.bool), ss)
    m = task.finalize(rows)
    assert [r["accuracy"] for r in rows] == [100.0, 100.0, 0.0]
    assert m["accuracy"]["value"] == pytest.approx(200 / 3)
    assert m["accuracy/count"]["value"] == 0.0


def test_retrieval_task_itc_then_itm_rerank():
    n = 30
    caps = [f"cap {i}" for i in range(n)]
    be = FakeBackend(caps)
    tokens = torch.zeros(n, 2, 2)
    tokens[:, 0, 0] = torch.arange(n).float()                 # ITC: right caption
    tokens[:, 1, 0] = torch.tensor([(i + 1) % n for i in range(n)]).float()  # ITM: wrong one
    mask = torch.ones(n, 2, dtype=torch.bool)
    ss = _samples(n)
    # k_test = 1: ITM only re-scores ITC's top-1 -> ranking stays right
    task = make_task("retrieval", be, k_test=1)
    rows = task.run_batch(tokens, mask, ss)
    m = task.finalize(rows)
    assert m["txt_r1"]["value"] == 100.0 and m["img_r1"]["value"] == 100.0
    assert rows[3]["txt_r1"] == 100.0 and rows[3]["img_r1"] == 100.0
    # k_test = 16: the ITM favourite is ITC's second choice, inside the top-k, and wins
    task = make_task("retrieval", be, k_test=16)
    m = task.finalize(task.run_batch(tokens, mask, ss))
    assert m["txt_r1"]["value"] == 0.0 and m["txt_r5"]["value"] == 100.0
    assert m["img_r1"]["value"] == 0.0 and m["img_r5"]["value"] == 100.0
    # identical image embeddings (zero tokens): chance level, not 100 %
    task = make_task("retrieval", be, k_test=16)
    m = task.finalize(task.run_batch(torch.zeros(n, 2, 2), mask, ss))
    assert m["img_r1"]["value"] < 10.0


def test_make_task_checks_support():
    from semcom.errors import ConfigError

    be = FakeBackend([])
    be.tasks = {"caption"}
    with pytest.raises(ConfigError, match="retrieval"):
        make_task("retrieval", be)
    with pytest.raises(ValueError):
        make_task("detection", be)
