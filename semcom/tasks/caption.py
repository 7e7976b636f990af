"""Captioning: one caption per image, scored against its reference captions."""

from __future__ import annotations

from semcom.tasks.base import Generation, Task, TaskSpec

# The instruction an instruction-following model (LLaVA) is given; the tiny LLaVA is
# trained with it (its semcom.json records it too).
CAPTION_PROMPT = "describe the image."


class CaptionTask(Task):
    spec = TaskSpec(
        name="caption",
        title="Captioning",
        help="one caption per image; CIDEr-D, BLEU-4, ROUGE-L, exact match",
        output="caption",
        prompt=CAPTION_PROMPT,
        # BLIP's decoder starts from [DEC]; a prompt there is a text prefix ("a picture of")
        family_prompts={"blip": ""},
        generation=Generation(max_new_tokens=24, beams=1),
        metrics=("cider_d", "bleu_4", "rouge_l", "exact_match"),
        main_metric="cider_d",
        references=("captions",),
        scope="sample",
        capability="caption",
    )

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        from semcom.metrics import exact_match

        self.check_samples(samples)
        kw = {"projected": True} if projected else {}
        caps = self.backend.caption(
            tokens,
            mask,
            prompt=self.template,
            beams=self.beams,
            max_new_tokens=self.max_new_tokens,
            **kw,
        )
        return [
            {
                "sample_id": s.sample_id,
                "image_id": s.image_id,
                "caption": c,
                "references": list(s.captions),
                "exact_match": 100.0 * exact_match(c, s.captions),
            }
            for s, c in zip(samples, caps)
        ]

    @classmethod
    def score(cls, samples, outputs: list, *, seed: int = 0) -> tuple[list[dict], dict]:
        from semcom.metrics.caption import caption_metrics

        if not samples:
            return [], {}
        metrics, per = caption_metrics(
            [o or "" for o in outputs], [list(s.captions) for s in samples], seed=seed
        )
        return [{k: per[k][i] for k in per} for i in range(len(samples))], metrics

    def finalize(self, rows: list[dict]) -> dict:
        from semcom.metrics import caption_metrics

        if not rows:
            return {}
        metrics, per = caption_metrics(
            [r["caption"] for r in rows], [r["references"] for r in rows], seed=self.seed
        )
        for i, r in enumerate(rows):
            r["cider_d"], r["rouge_l"] = per["cider_d"][i], per["rouge_l"][i]
        return metrics
