"""A folder of images, with optional captions and questions files.

Every file Pillow decodes under ``data.path`` is an image (sub-folders included, hidden
files and folders skipped, sorted by relative path); its id is the relative path with
the extension (``photo.jpg`` and ``photo.png`` are two samples; ``trip/photo.jpg`` a
third). ``captions.json`` maps a relative path to its captions (``{"file": [..]}`` or
``[{"file", "captions"}]``); ``questions.json`` (or ``data.questions``) lists
``{"file", "question", "answers" | "answer", "id"?, "type"?}``. A file with an image
suffix that is not an image (or is truncated, empty, oversized) stays a sample: its
read fails in the run and becomes its error row.
"""

from __future__ import annotations

import os
from pathlib import Path

from semcom.data.files import first, image_file, read_json, resolve
from semcom.data.images import LazySample, is_image_name
from semcom.errors import DataError


def list_images(root: Path) -> list[str]:
    """Relative posix paths of the image files under ``root``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if not name.startswith(".") and is_image_name(name):
                out.append((rel_dir / name).as_posix())
    return sorted(out)


def _reduce_captions(raw) -> dict[str, list[str]]:
    if isinstance(raw, dict):
        return {
            str(k): [str(c) for c in v] if isinstance(v, list) else [str(v)] for k, v in raw.items()
        }
    if isinstance(raw, list):
        return {str(r["file"]): [str(c) for c in r["captions"]] for r in raw}
    raise TypeError("expected a mapping {file: [captions]} or a list of {file, captions}")


def _reduce_questions(raw) -> dict[str, list[dict]]:
    by_file: dict[str, list[dict]] = {}
    for r in raw:
        answers = r.get("answers", [r["answer"]] if "answer" in r else [])
        by_file.setdefault(str(r["file"]), []).append(
            {
                "question": str(r["question"]),
                "answers": [str(a) for a in answers],
                "id": r.get("id"),
                "type": r.get("type"),
            }
        )
    return by_file


def _captions(root: Path, cfg) -> dict[str, list[str]]:
    path = resolve(cfg, "", "captions.json")
    if path is None or not path.is_file():
        return {}
    return read_json(path, "captions file", _reduce_captions)


def _questions(cfg) -> dict[str, list[dict]]:
    path = resolve(cfg, cfg.questions, "questions.json")
    if not path.is_file():
        raise DataError(
            f"a per-question task (vqa) needs {path} (a list of {{file, question, answers}})"
        )
    return read_json(path, "questions file", _reduce_questions)


def samples(cfg, spec) -> list[LazySample]:
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    files = list_images(root)
    if not files:
        raise DataError(f"no images (any format Pillow reads: .jpg, .png, .webp, ...) in {root}")
    files = first(files, cfg)
    captions = _captions(root, cfg)
    if not spec.per_question:
        return [
            LazySample(rel, rel, image_file(root, rel, cfg), captions=list(captions.get(rel, [])))
            for rel in files
        ]
    by_file = _questions(cfg)
    out = []
    for rel in files:
        src = image_file(root, rel, cfg)
        for k, q in enumerate(by_file.get(rel, [])):
            qid = q["id"] if q["id"] is not None else f"q{k}"
            meta = {"qtype": q["type"]} if q["type"] is not None else {}
            out.append(
                LazySample(
                    f"{rel}#{qid}",
                    rel,
                    src,
                    captions=list(captions.get(rel, [])),
                    question=q["question"],
                    answers=q["answers"],
                    meta=meta,
                )
            )
    return out
