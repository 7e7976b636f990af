"""``cloud:`` section: what the server runs on what it receives."""

from __future__ import annotations

from dataclasses import dataclass

from semcom.config.core import check, option
from semcom.config.model import ModelRef
from semcom.config.tokens import ConcealConfig


def check_tasks(key: str, tasks: tuple[str, ...]) -> None:
    """Each task is registered (``semcom.registry`` kind ``task``) or an import path
    ``package.module:Class`` (imported when the run is built); a ConfigError listing the
    known tasks otherwise."""
    import semcom.tasks  # noqa: F401 - declares the built-in tasks
    from semcom import registry

    for t in tasks:
        registry.check_name("task", key, t)


@dataclass(frozen=True)
class CloudConfig:
    model: ModelRef = option(default_factory=ModelRef, help="the VLM on the server")
    tasks: tuple[str, ...] = option(
        ("caption",),
        help="tasks evaluated on what arrives: caption, retrieval, vqa (BLIP: "
        "caption, retrieval; LLaVA: vqa, caption), a task registered with "
        "semcom.registry.register('task', name), or your own as package.module:Class",
    )
    conceal: ConcealConfig = option(default_factory=ConcealConfig)
    beams: int = option(1, help="beam width for caption generation (VQA answers are greedy)")
    max_new_tokens: int = option(24, help="generation length limit")
    k_test: int = option(
        16, help="retrieval: ITM re-ranks the ITC top-k_test candidates (as BLIP's evaluation)"
    )

    def __post_init__(self):
        check(len(self.tasks) > 0, "tasks", self.tasks, "must name at least one task")
        check(len(set(self.tasks)) == len(self.tasks), "tasks", self.tasks, "has duplicates")
        check_tasks("tasks", self.tasks)
        check(self.beams >= 1, "beams", self.beams, "must be >= 1")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        check(self.k_test >= 1, "k_test", self.k_test, "must be >= 1")
