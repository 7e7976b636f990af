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
    split: Literal["train", "eval"] = option("eval", help="tiny-world split (disjoint seeds)")
    num_images: int = option(200, help="number of images (tiny world: generated)")
    path: str = option("", help="folder or dataset root for folder / coco-mini")

    def __post_init__(self):
        check(self.num_images > 0, "num_images", self.num_images, "must be > 0")
        check(self.dataset == "tinyworld" or bool(self.path) or self.dataset == "coco-mini",
              "path", self.path, f"is required for dataset '{self.dataset}'")
