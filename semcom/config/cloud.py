"""``cloud:`` section: what the server runs on what it receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option
from semcom.config.model import ModelRef
from semcom.config.tokens import ConcealConfig

TASKS = ("caption", "retrieval", "vqa")


@dataclass(frozen=True)
class CloudConfig:
    model: ModelRef = option(default_factory=ModelRef, help="the VLM on the server")
    tasks: tuple[Literal["caption", "retrieval", "vqa"], ...] = option(
        ("caption",), help="tasks evaluated on what arrives (BLIP: caption, retrieval; "
        "LLaVA: vqa, caption)")
    conceal: ConcealConfig = option(default_factory=ConcealConfig)
    beams: int = option(1, help="beam width for caption/answer generation")
    max_new_tokens: int = option(24, help="generation length limit")
    k_test: int = option(16, help="retrieval: ITM re-ranks the ITC top-k_test candidates "
                         "(as BLIP's evaluation)")

    def __post_init__(self):
        check(len(self.tasks) > 0, "tasks", self.tasks, "must name at least one task")
        check(len(set(self.tasks)) == len(self.tasks), "tasks", self.tasks, "has duplicates")
        check(self.beams >= 1, "beams", self.beams, "must be >= 1")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.k_test >= 1, "k_test", self.k_test, "must be >= 1")
