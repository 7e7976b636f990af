"""Task metrics with bootstrap confidence intervals (numpy only).

- captioning: :func:`caption_metrics` -> CIDEr-D, BLEU-4, ROUGE-L (re-implementations of
  pycocoevalcap's scorers, checked against it in the tests) and exact match;
- VQA: :func:`vqa_metrics` (standard VQA answer normalisation and accuracy);
- retrieval: :func:`retrieval_metrics` (R@1/5/10 both directions, r_mean);
- :func:`bootstrap_ci` for any per-sample statistic.

Every metric is returned as ``{"value": v, "ci95": [lo, hi]}`` (values in percent for
accuracies and recalls; CIDEr-D x 100 as usual in papers is NOT applied: CIDEr-D is on
pycocoevalcap's scale, e.g. 1.2, BLEU-4 and ROUGE-L in [0, 1]).
"""

from semcom.metrics.bootstrap import bootstrap_ci, metric
from semcom.metrics.caption import (
    bleu,
    caption_metrics,
    cider_d,
    exact_match,
    normalize_caption,
    rouge_l,
    tokenize,
)
from semcom.metrics.retrieval import recall_at_k, retrieval_metrics
from semcom.metrics.score import score_task
from semcom.metrics.vqa import normalize_answer, vqa_accuracy, vqa_metrics

__all__ = [
    "bootstrap_ci",
    "metric",
    "bleu",
    "caption_metrics",
    "cider_d",
    "exact_match",
    "normalize_caption",
    "rouge_l",
    "tokenize",
    "recall_at_k",
    "retrieval_metrics",
    "normalize_answer",
    "vqa_accuracy",
    "vqa_metrics",
    "score_task",
]
