"""semcom.metrics.score_task: the pure scoring shared by the runner and the edge daemon."""

import numpy as np
import pytest

from semcom.metrics.score import score_task
from semcom.types import Sample


def _s(i, **kw):
    return Sample(f"s{i}", f"i{i}", np.zeros((4, 4, 3), np.uint8), **kw)


def test_caption_scores_exact_match_and_cider_per_sample():
    samples = [_s(0, captions=["a red circle"]), _s(1, captions=["a blue square"])]
    per, metrics = score_task("caption", samples, ["a red circle", "a green square"])
    assert [p["exact_match"] for p in per] == [100.0, 0.0]
    assert metrics["exact_match"]["value"] == 50.0
    assert per[0]["cider_d"] > per[1]["cider_d"]
    assert set(metrics) >= {"cider_d", "bleu_4", "rouge_l", "exact_match"}


def test_vqa_scores_by_type_with_answer_normalisation():
    samples = [
        _s(0, question="what colour?", answers=["red"], meta={"qtype": "colour"}),
        _s(1, question="how many?", answers=["2"], meta={"qtype": "count"}),
    ]
    per, metrics = score_task("vqa", samples, ["Red.", "three"])
    assert [p["accuracy"] for p in per] == [100.0, 0.0]
    assert metrics["accuracy"]["value"] == 50.0
    assert metrics["accuracy/colour"]["value"] == 100.0


def test_gallery_task_and_length_mismatch_are_errors():
    samples = [_s(0, captions=["x"])]
    with pytest.raises(ValueError, match="retrieval"):
        score_task("retrieval", samples, [None])
    with pytest.raises(ValueError, match="1 samples"):
        score_task("caption", samples, [])
