"""The tiny world as a dataset: procedural scenes, rendered in memory (96 x 96 pixels)."""

from __future__ import annotations

from semcom.types import Sample


def samples(cfg, spec) -> list[Sample]:
    if cfg.split not in ("train", "eval"):
        from semcom.errors import DataError

        raise DataError(f"the tiny world has splits train and eval, not {cfg.split!r}")
    return tinyworld_samples(
        cfg.split,
        200 if cfg.num_images is None else cfg.num_images,
        per_question=spec.per_question,
        world_seed=cfg.world_seed,
        questions_per_image=cfg.questions_per_image,
    )


def tinyworld_samples(
    split: str,
    num_images: int,
    task: str = "caption",
    *,
    per_question: bool | None = None,
    world_seed: int = 0,
    questions_per_image: int = 1,
) -> list[Sample]:
    """Scenes of ``split``: one sample per image, or (``per_question``, default: task
    ``vqa``) one per question. ``meta``: the scene's ``objects`` and per-pixel
    ``labels`` (object index or -1); per question its ``qtype`` and ``relevant``
    objects, so oracle selections can be computed (:func:`semcom.world.patch_labels`)."""
    from semcom.world import question_for, scenes

    if per_question is None:
        per_question = task == "vqa"
    out = []
    for scene in scenes(world_seed, split, num_images):
        image, labels = scene.render()
        meta = {"objects": scene.to_dict()["objects"], "labels": labels, "world": "tinyworld"}
        caption = scene.caption()
        if not per_question:
            out.append(Sample(scene.image_id, scene.image_id, image, [caption], meta=meta))
            continue
        for k in range(questions_per_image):
            q = question_for(world_seed, scene, k)
            out.append(
                Sample(
                    f"{scene.image_id}-q{k}",
                    scene.image_id,
                    image,
                    [caption],
                    q["question"],
                    [q["answer"]],
                    meta=meta | {"qtype": q["type"], "relevant": q["relevant"]},
                )
            )
    return out
