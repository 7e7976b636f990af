"""Pure scoring of what the cloud answered: ``score_task(task, samples, outputs, seed)``.

The in-process runner and the edge daemon both score through here, so a run scored on
the edge from the gRPC cloud's answers equals the in-process run. Per-sample tasks only
(caption: output = caption string; vqa: output = answer string); retrieval ranks the
whole gallery on the cloud (``cloud.tasks.RetrievalTask``), which scores it there.
"""

from __future__ import annotations

PER_SAMPLE_TASKS = ("caption", "vqa")


def score_task(task: str, samples, outputs: list, *, seed: int = 0) -> tuple[list[dict], dict]:
    """``(per_sample_scores, metrics)`` for ``outputs[i]`` answering ``samples[i]``.

    ``metrics``: ``{name: {"value", "ci95": [lo, hi]}}`` (see :mod:`semcom.metrics`).
    """
    if len(samples) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(samples)} samples")
    if task == "caption":
        from semcom.metrics.caption import caption_metrics

        if not samples:
            return [], {}
        metrics, per = caption_metrics([o or "" for o in outputs],
                                       [list(s.captions) for s in samples], seed=seed)
        rows = [{k: per[k][i] for k in per} for i in range(len(samples))]
        return rows, metrics
    if task == "vqa":
        from semcom.metrics.vqa import vqa_metrics

        if not samples:
            return [], {}
        types = [s.meta.get("qtype") for s in samples]
        metrics, acc = vqa_metrics([o or "" for o in outputs],
                                   [list(s.answers or []) for s in samples],
                                   types=types if all(t is not None for t in types) else None,
                                   seed=seed)
        return [{"accuracy": a} for a in acc], metrics
    raise ValueError(f"task {task!r} cannot be scored per sample (use one of "
                     f"{PER_SAMPLE_TASKS}; retrieval is scored by the cloud session)")
