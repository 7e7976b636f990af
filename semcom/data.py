"""Datasets: evaluation samples for a task (numpy + Pillow only; no torch).

``load_samples(cfg, task, seed=...)`` returns :class:`~semcom.types.Sample` objects:

- ``tinyworld``: the procedural tiny world (:mod:`semcom.world`); 96 x 96 images, one
  caption each (unique within the eval split), ``questions_per_image`` questions each
  for VQA. ``meta`` holds the scene (``objects``), the per-pixel ``labels`` map (object
  index or -1) and, for VQA, the question ``type`` and the ``relevant`` objects, so
  oracle token selections can be computed with :func:`semcom.world.patch_labels`.
- ``folder``: a folder of images (``*.png|jpg|jpeg|webp|bmp``, sorted by name;
  ``image_id`` = file stem) with optional ``captions.json`` (``{"file": [captions]}`` or
  a list of ``{"file", "captions"}``) and ``questions.json`` (a list of ``{"file",
  "question", "answers"}``; ``"answer"`` is accepted for one answer).
- ``coco-mini``: ``../shared/data/coco-mini`` (or ``data.path``); ``eval`` = val2017,
  ``train`` = train2017; five captions per image; no questions.

``seed`` is the run seed. The data do not depend on it (the tiny world is fixed by
``data.world_seed``), so that runs with different seeds are evaluated on the same samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semcom.errors import DataError
from semcom.types import Sample

TASKS = ("caption", "retrieval", "vqa")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
REPO = Path(__file__).resolve().parent.parent
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"


def load_samples(cfg, task: str, *, seed: int = 0) -> list[Sample]:
    """Samples of ``cfg.dataset`` for ``task`` (``caption`` | ``retrieval`` | ``vqa``)."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; use one of {TASKS}")
    if cfg.dataset == "tinyworld":
        return tinyworld_samples(cfg.split, cfg.num_images, task, world_seed=cfg.world_seed,
                                 questions_per_image=cfg.questions_per_image)
    if cfg.dataset == "folder":
        return folder_samples(Path(cfg.path).expanduser(), task, cfg.num_images)
    if cfg.dataset == "coco-mini":
        root = Path(cfg.path).expanduser() if cfg.path else COCO_MINI
        return coco_mini_samples(root, cfg.split, task, cfg.num_images)
    raise DataError(f"unknown dataset {cfg.dataset!r}")


# ----------------------------------------------------------------------------- tinyworld

def tinyworld_samples(split: str, num_images: int, task: str, *, world_seed: int = 0,
                      questions_per_image: int = 1) -> list[Sample]:
    from semcom.world import question_for, scenes

    out = []
    for scene in scenes(world_seed, split, num_images):
        image, labels = scene.render()
        meta = {"objects": scene.to_dict()["objects"], "labels": labels, "world": "tinyworld"}
        caption = scene.caption()
        if task != "vqa":
            out.append(Sample(scene.image_id, scene.image_id, image, [caption], meta=meta))
            continue
        for k in range(questions_per_image):
            q = question_for(world_seed, scene, k)
            out.append(Sample(f"{scene.image_id}-q{k}", scene.image_id, image, [caption],
                              q["question"], [q["answer"]],
                              meta=meta | {"qtype": q["type"], "relevant": q["relevant"]}))
    return out


# -------------------------------------------------------------------------------- folder

def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def folder_samples(root: Path, task: str, num_images: int) -> list[Sample]:
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    files = files[:num_images]
    captions: dict[str, list[str]] = {}
    if (root / "captions.json").is_file():
        raw = _read_json(root / "captions.json")
        if isinstance(raw, dict):
            captions = {str(k): list(v) if isinstance(v, list) else [str(v)] for k, v in raw.items()}
        elif isinstance(raw, list):
            captions = {str(r["file"]): list(r["captions"]) for r in raw}
        else:
            raise DataError(f"{root / 'captions.json'}: expected a mapping or a list")
    if task == "retrieval" and not captions:
        raise DataError(f"task retrieval needs captions: put captions.json in {root}")
    if task != "vqa":
        return [Sample(p.stem, p.stem, _read_image(p), captions.get(p.name, []),
                       meta={"file": p.name}) for p in files]
    qfile = root / "questions.json"
    if not qfile.is_file():
        raise DataError(f"task vqa needs {qfile} (a list of {{file, question, answers}})")
    by_file: dict[str, list[dict]] = {}
    for r in _read_json(qfile):
        by_file.setdefault(str(r["file"]), []).append(r)
    out = []
    for p in files:
        image = None
        for k, r in enumerate(by_file.get(p.name, [])):
            image = _read_image(p) if image is None else image
            answers = r.get("answers", [r["answer"]] if "answer" in r else [])
            out.append(Sample(f"{p.stem}-q{k}", p.stem, image, captions.get(p.name, []),
                              str(r["question"]), [str(a) for a in answers],
                              meta={"file": p.name}))
    return out


# ----------------------------------------------------------------------------- coco-mini

def coco_mini_samples(root: Path, split: str, task: str, num_images: int) -> list[Sample]:
    index = root / "captions.json"
    if not index.is_file():
        raise DataError(f"coco-mini not found: {index} is missing (see ../shared/data/coco-mini)")
    if task == "vqa":
        raise DataError("coco-mini has no questions; use task caption or retrieval")
    want = {"eval": "val2017", "train": "train2017"}[split]
    recs = [r for r in _read_json(index) if r["split"] == want][:num_images]
    return [Sample(f"coco-{r['image_id']}", str(r["image_id"]), _read_image(root / r["file"]),
                   list(r["captions"]), meta={"file": r["file"], "license": r.get("license")})
            for r in recs]
