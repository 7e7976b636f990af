"""Pure scoring of what the cloud answered: ``score_task(task, samples, outputs, seed)``.

The in-process runner and the edge daemon both score through here, so a run scored on
the edge from the gRPC cloud's answers equals the in-process run. Each task scores its
own outputs (:meth:`semcom.tasks.Task.score`); a whole-set task (retrieval ranks the
gallery) is scored by the cloud session instead.
"""

from __future__ import annotations


def score_task(task: str, samples, outputs: list, *, seed: int = 0) -> tuple[list[dict], dict]:
    """``(per_sample_scores, metrics)`` for ``outputs[i]`` answering ``samples[i]``.

    ``metrics``: ``{name: {"value", "ci95": [lo, hi]}}`` (see :mod:`semcom.metrics`).
    """
    from semcom.tasks import task_class

    if len(samples) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(samples)} samples")
    return task_class(task).score(samples, outputs, seed=seed)


def labelled(task: str, samples) -> list[int]:
    """Indices of the samples that carry every reference ``task`` scores against
    (``TaskSpec.references``, e.g. captions for caption, answers for vqa)."""
    from semcom.tasks import task_spec
    from semcom.tasks.base import REFERENCES

    attrs = [REFERENCES[r] for r in task_spec(task).references]
    return [i for i, s in enumerate(samples) if all(getattr(s, a, None) for a in attrs)]


def score_labelled(
    task: str, samples, outputs: list, *, seed: int = 0, scorer=None
) -> tuple[list[dict | None], dict, int]:
    """:func:`score_task` over the samples that have references; the others get
    ``None``. ``(per_sample, metrics, n_scored)``: with no labelled sample at all (a
    folder of photos without captions) every metric of the task is reported absent,
    ``{"value": None, "ci95": None, "absent": reason}``, instead of failing. ``scorer``
    replaces :func:`score_task` (same signature)."""
    from semcom.tasks import task_spec

    if len(samples) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(samples)} samples")
    idx = labelled(task, samples)
    per: list[dict | None] = [None] * len(samples)
    if not idx:
        spec = task_spec(task)
        refs = " and ".join(r for r in spec.references if r != "questions") or "references"
        reason = f"no sample has {refs}" if samples else "no sample was processed"
        absent = {m: {"value": None, "ci95": None, "absent": reason} for m in spec.metrics}
        return per, absent, 0
    scored, metrics = (scorer or score_task)(
        task, [samples[i] for i in idx], [outputs[i] for i in idx], seed=seed
    )
    for i, sc in zip(idx, scored):
        per[i] = sc
    return per, metrics, len(idx)
