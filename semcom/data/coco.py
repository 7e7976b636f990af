"""COCO captions, the coco-mini sample, and the Karpathy splits (Flickr30k, COCO).

- ``coco``: ``data.annotations`` is a COCO captions file (``captions_val2017.json``:
  ``images: [{id, file_name, ...}]``, ``annotations: [{image_id, caption}]``);
  ``data.images`` its image folder (default: ``val2017/`` beside the ``annotations/``
  folder, named after the file). Images in the file's order; ``coco-<id>`` ids.
- ``coco-mini``: ``../shared/data/coco-mini`` (``captions.json``: a list of ``{split,
  file, image_id, captions}``); ``data.split`` eval = val2017, train = train2017.
- ``karpathy``: ``data.annotations`` is either Karpathy's original split file
  (``dataset_flickr30k.json`` / ``dataset_coco.json``: ``images: [{filepath?, filename,
  split, sentences: [{raw}]}]``; ``data.split`` eval / test = ``test``, ``val``,
  ``train`` (COCO's ``restval`` with it)) or BLIP's per-split file
  (``flickr30k_test.json``, ``coco_karpathy_test.json``: ``[{image, caption: [..]}]``;
  train files with one caption per entry are grouped by image). ``data.images`` is the
  image root the file's paths are relative to. The sample id is that relative path.
"""

from __future__ import annotations

from pathlib import Path

from semcom.data.files import first, need, per_image, read_json, resolve
from semcom.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _no_questions(cfg, spec) -> None:
    if spec.per_question:
        raise DataError(
            f"{cfg.dataset} has captions, no questions: use task caption or retrieval "
            "(VQA: data.dataset vqav2, gqa or a folder with questions.json)"
        )


# --------------------------------------------------------------------------------- coco


def _reduce_coco(raw) -> list[tuple[str, list[str], dict]]:
    caps: dict[int, list[str]] = {}
    for a in raw["annotations"]:
        caps.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
    return [
        (str(im["file_name"]), caps.get(int(im["id"]), []), {"coco_id": int(im["id"])})
        for im in raw["images"]
    ]


def _coco_images_dir(ann: Path) -> Path:
    """``<root>/val2017`` for ``<root>/annotations/captions_val2017.json``."""
    part = ann.stem.split("_", 1)[-1]  # captions_val2017 -> val2017
    for cand in (ann.parent.parent / part, ann.parent / part, ann.parent / "images"):
        if cand.is_dir():
            return cand
    return ann.parent.parent / part


def coco_samples(cfg, spec):
    _no_questions(cfg, spec)
    ann = need(cfg, "annotations", cfg.annotations, "", "a COCO captions file")
    records = read_json(ann, "COCO captions file", _reduce_coco)
    root = resolve(cfg, cfg.images) or _coco_images_dir(ann)
    if not root.is_dir():
        raise DataError(f"data.images: the COCO image folder {root} is not there")
    return per_image(
        first(records, cfg), root, cfg, lambda rel, m: (f"coco-{m['coco_id']}", str(m["coco_id"]))
    )


# ---------------------------------------------------------------------------- coco-mini


def coco_mini_root() -> Path:
    """``shared/data/coco-mini`` beside the checkout (or one folder further up, for a
    worktree kept in a sub-folder)."""
    for base in (REPO.parent, REPO.parent.parent):
        cand = base / "shared" / "data" / "coco-mini"
        if (cand / "captions.json").is_file():
            return cand
    return REPO.parent / "shared" / "data" / "coco-mini"


def _reduce_coco_mini(raw) -> list[tuple[str, str, list[str], dict]]:
    return [
        (
            str(r["split"]),
            str(r["file"]),
            [str(c) for c in r["captions"]],
            {"coco_id": int(r["image_id"]), "license": r.get("license")},
        )
        for r in raw
    ]


def coco_mini_samples(cfg, spec):
    _no_questions(cfg, spec)
    root = Path(cfg.path).expanduser() if cfg.path else coco_mini_root()
    index = root / "captions.json"
    if not index.is_file():
        raise DataError(f"coco-mini not found: {index} is missing (see ../shared/data/coco-mini)")
    want = {"eval": "val2017", "test": "val2017", "val": "val2017", "train": "train2017"}
    recs = [
        (f, c, m)
        for s, f, c, m in read_json(index, "coco-mini index", _reduce_coco_mini)
        if s == want[cfg.split]
    ]
    return per_image(
        first(recs, cfg), root, cfg, lambda rel, m: (f"coco-{m['coco_id']}", str(m["coco_id"]))
    )


# ----------------------------------------------------------------------------- karpathy


def _reduce_karpathy(raw) -> dict[str, list[tuple[str, list[str], dict]]]:
    """``{split: [(relative path, captions, meta)]}``; BLIP's files under split ``*``."""
    out: dict[str, list] = {}
    if isinstance(raw, dict) and "images" in raw:  # Karpathy's original layout
        for im in raw["images"]:
            rel = "/".join(p for p in (im.get("filepath", ""), im["filename"]) if p)
            caps = [
                str(s.get("raw", " ".join(s.get("tokens", [])))).strip() for s in im["sentences"]
            ]
            meta = {k: im[k] for k in ("cocoid", "imgid") if k in im}
            out.setdefault(str(im["split"]), []).append((rel, caps, meta))
        return out
    if isinstance(raw, list):  # BLIP's: [{image, caption: [..] | str, image_id?}]
        by_image: dict[str, list[str]] = {}
        for r in raw:
            c = r["caption"]
            by_image.setdefault(str(r["image"]), []).extend(c if isinstance(c, list) else [c])
        out["*"] = [(rel, [str(c).strip() for c in caps], {}) for rel, caps in by_image.items()]
        return out
    raise TypeError("expected {images: [...]} (Karpathy) or a list of {image, caption} (BLIP)")


def karpathy_samples(cfg, spec):
    _no_questions(cfg, spec)
    ann = need(cfg, "annotations", cfg.annotations, "", "a Karpathy-split json")
    splits = read_json(ann, "Karpathy-split file", _reduce_karpathy)
    if "*" in splits:
        records = splits["*"]
    else:
        name = {"eval": "test", "test": "test", "val": "val", "train": "train"}[cfg.split]
        records = list(splits.get(name, []))
        if name == "train":
            records += splits.get("restval", [])
        if not records:
            raise DataError(f"{ann} has no '{name}' split (it has {', '.join(sorted(splits))})")
    root = resolve(cfg, cfg.images) or (Path(cfg.path).expanduser() if cfg.path else ann.parent)
    if not root.is_dir():
        raise DataError(f"data.images: the image root {root} is not there")
    return per_image(first(records, cfg), root, cfg, lambda rel, m: (rel, rel))
