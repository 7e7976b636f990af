"""VQAv2 and GQA question files (with their answers when given) on COCO / GQA images.

- ``vqav2``: ``data.questions`` = ``v2_OpenEnded_mscoco_<subtype>_questions.json``
  (``questions: [{image_id, question, question_id}]``, ``data_subtype``) and, for
  scoring, ``data.annotations`` = ``v2_mscoco_<subtype>_annotations.json``
  (``annotations: [{question_id, answers: [{answer}] x 10, answer_type,
  question_type}]``), scored with the official VQA accuracy
  (:func:`semcom.metrics.vqa.vqa_accuracy`); per-type metrics by ``answer_type``
  (yes/no, number, other). ``data.images`` is the COCO folder (default
  ``<subtype>/`` beside the questions' folder); files are ``COCO_<subtype>_<id:012>.jpg``
  or ``<id:012>.jpg``. Without annotations (test-dev) the answers are written and the
  accuracy is absent.
- ``gqa``: ``data.questions`` = a GQA questions file (``testdev_balanced_questions.json``:
  ``{qid: {imageId, question, answer, types: {structural, ...}}}``), ``data.images``
  its ``images/`` folder (``<imageId>.jpg``); one answer each, per-type metrics by the
  structural type (query, verify, logical, choose, compare).

Samples are one per question (``vqav2-<question_id>``, ``gqa-<qid>``) for a
per-question task, one per image for the others (captions absent); ``data.num_images``
takes the questions of the first N images in the file's order.
"""

from __future__ import annotations

from pathlib import Path

from semcom.data.files import first, image_file, need, read_json, resolve
from semcom.data.images import LazySample
from semcom.errors import DataError


def _reduce_vqav2_questions(raw) -> tuple[str, list[tuple[int, str, int]]]:
    return str(raw.get("data_subtype", "")), [
        (int(q["image_id"]), str(q["question"]), int(q["question_id"])) for q in raw["questions"]
    ]


def _reduce_vqav2_answers(raw) -> dict[int, tuple[list[str], str, str]]:
    return {
        int(a["question_id"]): (
            [str(x["answer"]) for x in a["answers"]],
            str(a.get("answer_type", "")),
            str(a.get("question_type", "")),
        )
        for a in raw["annotations"]
    }


def _group(questions: list, image_key: int, cfg) -> tuple[list, dict]:
    """(first N image ids in order, {image id: [question records]})."""
    by_image: dict = {}
    for q in questions:
        by_image.setdefault(q[image_key], []).append(q)
    return first(list(by_image), cfg), by_image


def _samples(cfg, spec, images, by_image, src_of, make) -> list[LazySample]:
    out = []
    for iid in images:
        src = src_of(iid)
        if not spec.per_question:
            out.append(LazySample(src.rel, str(iid), src))
            continue
        out.extend(make(src, iid, q) for q in by_image[iid])
    return out


def vqav2_samples(cfg, spec):
    qfile = need(cfg, "questions", cfg.questions, "", "a VQAv2 questions file")
    subtype, questions = read_json(qfile, "VQAv2 questions file", _reduce_vqav2_questions)
    answers = {}
    ann = resolve(cfg, cfg.annotations)
    if ann is not None:
        if not ann.is_file():
            raise DataError(f"data.annotations: {ann} not found (a VQAv2 annotations file)")
        answers = read_json(ann, "VQAv2 annotations file", _reduce_vqav2_answers)
    root = resolve(cfg, cfg.images)
    if root is None:
        root = next(
            (c for c in (qfile.parent.parent / subtype, qfile.parent / subtype) if c.is_dir()),
            qfile.parent.parent / subtype,
        )
    if not root.is_dir():
        raise DataError(f"data.images: the COCO image folder {root} is not there")
    images, by_image = _group(questions, 0, cfg)
    names = [f"COCO_{subtype}_{{:012d}}.jpg", "{:012d}.jpg"]
    if images and not (root / names[0].format(images[0])).exists():
        if (root / names[1].format(images[0])).exists():
            names.reverse()

    def src_of(iid):
        return image_file(root, names[0].format(iid), cfg)

    def make(src, iid, q):
        _, question, qid = q
        ans, atype, qtype = answers.get(qid, ([], None, None))
        meta = {"question_id": qid}
        if atype is not None:
            meta |= {"qtype": atype, "question_type": qtype}
        return LazySample(
            f"vqav2-{qid}", str(iid), src, question=question, answers=list(ans), meta=meta
        )

    return _samples(cfg, spec, images, by_image, src_of, make)


def _reduce_gqa(raw) -> list[tuple[str, str, str, list[str], str | None]]:
    out = []
    for qid, q in raw.items():
        ans = [str(q["answer"])] if q.get("answer") is not None else []
        qtype = (q.get("types") or {}).get("structural")
        out.append((str(qid), str(q["imageId"]), str(q["question"]), ans, qtype))
    return out


def gqa_samples(cfg, spec):
    qfile = need(cfg, "questions", cfg.questions, "", "a GQA questions file")
    questions = read_json(qfile, "GQA questions file", _reduce_gqa)
    root = resolve(cfg, cfg.images) or next(
        (c for c in (qfile.parent / "images", qfile.parent.parent / "images") if c.is_dir()),
        qfile.parent / "images",
    )
    if not Path(root).is_dir():
        raise DataError(f"data.images: the GQA image folder {root} is not there")
    images, by_image = _group(questions, 1, cfg)

    def src_of(iid):
        return image_file(root, f"{iid}.jpg", cfg)

    def make(src, iid, q):
        qid, _, question, ans, qtype = q
        meta = {"question_id": qid} | ({"qtype": qtype} if qtype else {})
        return LazySample(f"gqa-{qid}", str(iid), src, question=question, answers=ans, meta=meta)

    return _samples(cfg, spec, images, by_image, src_of, make)
