"""``data:`` section: which images, captions and questions a run evaluates.

The file and folder keys (``path``, ``images``, ``annotations``, ``questions``) are not
part of the config hash: the run id hashes the *content* of the data instead
(:func:`semcom.data.fingerprint`), so moving a dataset keeps its records and changing an
image or a caption never reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option

DATASETS = ("tinyworld", "folder", "coco", "coco-mini", "karpathy", "vqav2", "gqa")
# what each dataset cannot do without (besides the defaults it finds under data.path)
_NEEDS = {
    "folder": ("path",),
    "coco": ("annotations",),
    "karpathy": ("annotations",),
    "vqav2": ("questions",),
    "gqa": ("questions",),
}


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["tinyworld", "folder", "coco", "coco-mini", "karpathy", "vqav2", "gqa"] = (
        option(
            "tinyworld",
            help="tinyworld (procedural, built in); folder (every image under data.path, "
            "optional captions.json / questions.json); coco (a COCO captions file, "
            "data.annotations); coco-mini (../shared/data/coco-mini); karpathy (the "
            "Karpathy-split json of Flickr30k / COCO, original or BLIP's); vqav2 "
            "(data.questions [+ data.annotations]); gqa (data.questions)",
        )
    )
    split: Literal["train", "eval", "val", "test"] = option(
        "eval",
        help="tiny world: train | eval (disjoint seeds); coco-mini: eval = val2017, train = "
        "train2017; karpathy: eval = test (BLIP's evaluation split), val, train (+ restval)",
    )
    num_images: int | None = option(
        200,
        help="number of images (tiny world: generated; others: the first N in file order; "
        "null: all); VQA datasets: the questions of the first N images",
    )
    path: str = option(
        "",
        hashed=False,
        help="folder (dataset folder) or dataset root; relative images / annotations / "
        "questions paths are under it",
    )
    images: str = option(
        "",
        hashed=False,
        help="image folder of coco / karpathy / vqav2 / gqa (default: found beside the "
        "annotation file, e.g. val2017/)",
    )
    annotations: str = option(
        "",
        hashed=False,
        help="coco: captions_*.json; karpathy: dataset_*.json or BLIP's *_test.json; vqav2: "
        "v2_mscoco_*_annotations.json (answers; optional)",
    )
    questions: str = option(
        "",
        hashed=False,
        help="vqav2: v2_OpenEnded_mscoco_*_questions.json; gqa: *_questions.json; folder: "
        "default <path>/questions.json",
    )
    max_pixels: int = option(
        100_000_000,
        help="an image with more pixels is refused from its header (that sample's error "
        "row names the file), before anything is decoded",
    )
    world_seed: int = option(
        0,
        help="tiny-world generator seed (fixed data; independent of "
        "run.seed, so runs with different seeds see the same scenes)",
    )
    questions_per_image: int = option(1, help="tiny world, task vqa: questions (samples) per image")

    def __post_init__(self):
        check(
            self.num_images is None or self.num_images > 0,
            "num_images",
            self.num_images,
            "must be > 0 or null (all)",
        )
        for key in _NEEDS.get(self.dataset, ()):
            check(
                bool(getattr(self, key)),
                key,
                getattr(self, key),
                f"is required for dataset '{self.dataset}'",
            )
        check(
            self.dataset != "tinyworld" or self.split in ("train", "eval"),
            "split",
            self.split,
            "the tiny world has splits train and eval",
        )
        check(self.max_pixels > 0, "max_pixels", self.max_pixels, "must be > 0")
        check(self.world_seed >= 0, "world_seed", self.world_seed, "must be >= 0")
        check(
            self.questions_per_image >= 1,
            "questions_per_image",
            self.questions_per_image,
            "must be >= 1",
        )
