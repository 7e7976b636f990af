"""Datasets: evaluation and training samples from the tiny world or from files on disk.

``load_samples(cfg, task, seed=...)`` returns :class:`~semcom.types.Sample` objects for
``task`` (a name of the task registry, :mod:`semcom.tasks`): one sample per image, or
one per question when the task declares ``per_question`` (VQA). Images on disk are not
decoded here: the samples are :class:`~semcom.data.images.LazySample` objects whose
image is read when a batch needs it (:func:`read_batch`) and dropped after it
(:func:`release`), so memory stays bounded whatever the dataset's size. A file that
cannot be read becomes that sample's error, not the run's.

Datasets (``data.dataset``; docs/models.md has the layouts):

- ``tinyworld``: the procedural tiny world (:mod:`semcom.world`), 96 x 96 images, one
  caption each, ``questions_per_image`` questions each. ``meta`` holds the scene.
- ``folder``: every image Pillow reads under ``data.path`` (sub-folders too, sorted),
  sample id = the relative path with its extension; optional ``captions.json``
  (``{"file": [captions]}`` or ``[{"file", "captions"}]``) and ``questions.json``
  (``[{"file", "question", "answers"}]``, ``"answer"`` for one; ``"id"``, ``"type"``
  optional). Without captions the outputs are written and the metrics that need
  references are reported absent.
- ``coco``: a COCO captions annotation file (``captions_val2017.json`` layout:
  ``images`` + ``annotations``) and its image folder.
- ``coco-mini``: ``../shared/data/coco-mini`` (or ``data.path``); eval = val2017.
- ``karpathy``: the Karpathy-split json BLIP evaluates Flickr30k and COCO on: either the
  original ``dataset_flickr30k.json`` / ``dataset_coco.json`` (``images`` with
  ``split`` and ``sentences``; ``data.split``: eval = test) or BLIP's
  ``flickr30k_test.json`` / ``coco_karpathy_test.json`` (a list of ``image`` +
  ``caption``).
- ``vqav2``: VQAv2 questions (``v2_OpenEnded_mscoco_*_questions.json``) and, when given,
  annotations (``v2_mscoco_*_annotations.json``: 10 answers each, scored with the
  official VQA accuracy); without annotations (test-dev) accuracy is absent.
- ``gqa``: GQA balanced questions (``testdev_balanced_questions.json``) and
  ``images/``; one answer each (exact match after the VQA normalisation).

``seed`` is the run seed. The data do not depend on it (the tiny world is fixed by
``data.world_seed``), so runs with different seeds are evaluated on the same samples.
:func:`fingerprint` is the content id of the data a run reads (file names and bytes,
annotations), part of the run id: a changed image or caption never reuses a record.
Training code takes its images from any dataset with :func:`training_images` and
:func:`training_samples` (CLI helper: :func:`add_data_args` / :func:`data_config`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from semcom.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageFile,
    ImageReadError,
    LazySample,
    image_suffixes,
    read_batch,
    read_image,
    release,
    with_header,
)
from semcom.data.tinyworld import tinyworld_samples
from semcom.data.training import add_data_args, data_config, training_images, training_samples
from semcom.errors import DataError
from semcom.types import Sample

__all__ = [
    "DATASETS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageFile",
    "ImageReadError",
    "LazySample",
    "add_data_args",
    "check_tasks",
    "data_config",
    "fingerprint",
    "image_suffixes",
    "load_samples",
    "read_batch",
    "read_image",
    "release",
    "training_images",
    "tinyworld_samples",
    "training_samples",
    "with_header",
]

REPO = Path(__file__).resolve().parents[2]
# dataset name -> "module:function(cfg, task_spec) -> list[Sample]"
DATASETS = {
    "tinyworld": "semcom.data.tinyworld:samples",
    "folder": "semcom.data.folder:samples",
    "coco": "semcom.data.coco:coco_samples",
    "coco-mini": "semcom.data.coco:coco_mini_samples",
    "karpathy": "semcom.data.coco:karpathy_samples",
    "vqav2": "semcom.data.vqa:vqav2_samples",
    "gqa": "semcom.data.vqa:gqa_samples",
}


def __getattr__(name: str):
    if name == "IMAGE_SUFFIXES":  # every suffix Pillow decodes (computed on first use)
        return image_suffixes()
    if name == "COCO_MINI":
        from semcom.data.coco import coco_mini_root

        return coco_mini_root()
    raise AttributeError(f"module 'semcom.data' has no attribute {name!r}")


def _spec(task: str):
    from semcom.errors import ConfigError
    from semcom.tasks import names, task_spec

    try:
        return task_spec(task)
    except ConfigError:
        raise DataError(f"unknown task {task!r}; use one of {', '.join(names())}") from None


def load_samples(cfg, task: str, *, seed: int = 0) -> list[Sample]:
    """Samples of ``cfg`` (a :class:`~semcom.config.data.DataConfig`) for ``task``.

    A task that needs what the dataset lacks (``task_spec(task).required``: questions
    for VQA, reference captions for retrieval) is a :class:`DataError` naming both.
    """
    from semcom import registry

    spec = _spec(task)
    if cfg.dataset not in DATASETS:
        raise DataError(f"unknown dataset {cfg.dataset!r}; use one of {', '.join(DATASETS)}")
    samples = registry.import_path(DATASETS[cfg.dataset])(cfg, spec)
    check_tasks(samples, [task], cfg)
    return samples


def check_tasks(samples, tasks, cfg=None) -> None:
    """A :class:`DataError` if a task's required references (``TaskSpec.required``) are
    missing from the samples (retrieval without captions, VQA without questions)."""
    from semcom.tasks.base import REFERENCES

    where = f" in {cfg.dataset} {cfg.path or ''}".rstrip() if cfg is not None else ""
    for task in tasks:
        for ref in _spec(task).required:
            attr = REFERENCES[ref]
            lacking = [s.sample_id for s in samples if not getattr(s, attr, None)]
            if lacking:
                raise DataError(
                    f"task {task} needs {ref} for every sample; {len(lacking)} of "
                    f"{len(samples)} samples{where} have none (first: {lacking[0]})"
                )


def fingerprint(cfg, tasks) -> str | None:
    """Content id (16 hex) of the data ``cfg`` gives ``tasks``: each sample's id,
    references and image bytes (SHA-256, cached by path, size and modification time).
    ``None`` for the tiny world (its config is its content); ``missing:...`` when the
    data cannot be listed (the run then fails with the loader's error)."""
    if cfg.dataset == "tinyworld":
        return None
    h = hashlib.sha256(cfg.dataset.encode())
    from semcom.tasks import task_spec

    seen_groups = set()
    for task in tasks:
        try:
            per_question = task_spec(task).per_question
        except Exception:
            per_question = False
        if per_question in seen_groups:
            continue
        seen_groups.add(per_question)
        try:
            samples = load_samples(cfg, task)
        except (DataError, OSError, ValueError) as exc:
            return (
                f"missing:{type(exc).__name__}:{hashlib.sha256(str(exc).encode()).hexdigest()[:8]}"
            )
        for s in samples:
            src = getattr(s, "source", None)
            try:
                digest = src.digest() if src is not None else ""
            except OSError:
                digest = "unreadable"
            h.update(
                json.dumps(
                    [
                        s.sample_id,
                        s.image_id,
                        s.captions,
                        s.question,
                        s.answers,
                        s.meta.get("qtype"),
                        digest,
                    ],
                    sort_keys=True,
                ).encode()
            )
    return h.hexdigest()[:16]
