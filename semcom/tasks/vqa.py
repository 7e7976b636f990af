"""Visual question answering: one short answer per (image, question), VQA accuracy."""

from __future__ import annotations

from semcom.tasks.base import Generation, Task, TaskSpec


class VQATask(Task):
    spec = TaskSpec(
        name="vqa",
        title="VQA",
        help="one short answer per question; VQA accuracy (overall and per question type)",
        output="answer",
        prompt="{question}",
        # short answers, greedy: the length is capped at 8 tokens whatever is asked
        generation=Generation(max_new_tokens=8, beams=1, max_new_tokens_limit=8, fixed_beams=True),
        metrics=("accuracy",),
        main_metric="accuracy",
        references=("questions", "answers"),
        required=("questions",),
        scope="sample",
        capability="vqa",
    )

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        from semcom.metrics import vqa_accuracy

        self.check_samples(samples)
        kw = {"projected": True} if projected else {}
        answers = self.backend.answer(
            tokens,
            mask,
            self.prompts(samples),
            max_new_tokens=self.max_new_tokens,
            beams=self.beams,
            **kw,
        )
        return [
            {
                "sample_id": s.sample_id,
                "image_id": s.image_id,
                "question": s.question,
                "answer": a,
                "answers": list(s.answers or []),
                "qtype": s.meta.get("qtype"),
                "accuracy": 100.0 * vqa_accuracy(a, list(s.answers or [])),
            }
            for s, a in zip(samples, answers)
        ]

    @classmethod
    def score(cls, samples, outputs: list, *, seed: int = 0) -> tuple[list[dict], dict]:
        from semcom.metrics.vqa import vqa_metrics

        if not samples:
            return [], {}
        types = [s.meta.get("qtype") for s in samples]
        metrics, acc = vqa_metrics(
            [o or "" for o in outputs],
            [list(s.answers or []) for s in samples],
            types=types if all(t is not None for t in types) else None,
            seed=seed,
        )
        return [{"accuracy": a} for a in acc], metrics

    def finalize(self, rows: list[dict]) -> dict:
        from semcom.metrics import vqa_metrics

        if not rows:
            return {}
        types = [r.get("qtype") for r in rows]
        metrics, _ = vqa_metrics(
            [r["answer"] for r in rows],
            [r["answers"] for r in rows],
            types=types if all(t is not None for t in types) else None,
            seed=self.seed,
        )
        return metrics
