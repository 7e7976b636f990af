"""``data:`` section: which images, captions and questions a run evaluates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["tinyworld", "folder", "coco-mini"] = option(
        "tinyworld", help="tinyworld (procedural, built in), folder (images + optional "
        "questions/captions files) or coco-mini (../shared/data/coco-mini)")
    split: Literal["train", "eval"] = option("eval", help="tiny-world split (disjoint seeds); "
                                             "coco-mini: eval = val2017, train = train2017")
    num_images: int = option(200, help="number of images (tiny world: generated; others: "
                             "the first N in file order)")
    path: str = option("", help="folder or dataset root for folder / coco-mini")
    world_seed: int = option(0, help="tiny-world generator seed (fixed data; independent of "
                             "run.seed, so runs with different seeds see the same scenes)")
    questions_per_image: int = option(1, help="tiny world, task vqa: questions (samples) per "
                                      "image")

    def __post_init__(self):
        check(self.num_images > 0, "num_images", self.num_images, "must be > 0")
        check(self.dataset == "tinyworld" or bool(self.path) or self.dataset == "coco-mini",
              "path", self.path, f"is required for dataset '{self.dataset}'")
        check(self.world_seed >= 0, "world_seed", self.world_seed, "must be >= 0")
        check(self.questions_per_image >= 1, "questions_per_image", self.questions_per_image,
              "must be >= 1")
