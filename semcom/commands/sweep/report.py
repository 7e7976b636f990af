"""What a sweep invocation did: one :class:`Outcome` per point, the :class:`SweepReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semcom.commands.sweep.spec import Sweep, SweepPoint


@dataclass
class Outcome:
    """What happened to one point in this invocation."""

    point: SweepPoint
    record: dict | None = None
    skipped: bool = False  # a complete record existed before this invocation

    @property
    def status(self) -> str:
        if self.record is None:
            return "missing"
        return str(self.record.get("status"))


@dataclass
class SweepReport:
    """What :func:`~semcom.commands.sweep.run.run_sweep` did: an outcome per point, the
    executor used, the wall time, whether it was interrupted, the aggregate's files."""

    sweep: Sweep
    outcomes: list[Outcome]
    executor: str
    workers: int
    wall_s: float
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)
    paired: dict[str, dict] = field(default_factory=dict)  # run id -> paired.* columns

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ran(self) -> int:
        return sum(o.record is not None and not o.skipped for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.skipped for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status == "ok" for o in self.outcomes)
