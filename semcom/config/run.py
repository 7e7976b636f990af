"""``run:`` section: seed, output folder, limits; mostly not part of the run id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option


@dataclass(frozen=True)
class RunConfig:
    seed: int = option(0, help="the one seed that feeds every RNG (python, numpy, torch, link)")
    label: str = option(
        "",
        hashed=False,
        help="method label in tables and plots (default: derived from the edge method)",
    )
    out_dir: str = option(
        "experiments/runs", hashed=False, help="results root; a run writes <out_dir>/<run_id>/"
    )
    limit: int | None = option(None, help="evaluate only the first N samples (smoke runs)")
    device: Literal["cpu", "cuda", "auto"] = option(
        "auto",
        help="torch device of every model (edge and cloud): auto (CUDA when torch sees a "
        "GPU, else the CPU), cpu, or cuda (an error naming the reason when there is none)",
    )
    batch_size: int = option(16, hashed=False, help="samples per model batch")
    progress: bool = option(True, hashed=False, help="progress bars on stderr")

    def __post_init__(self):
        check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        check(self.limit is None or self.limit > 0, "limit", self.limit, "must be > 0 or null")
        check(self.batch_size > 0, "batch_size", self.batch_size, "must be > 0")

    def torch_device(self) -> str:
        """The torch device string (``auto``: cuda when available; ``cuda`` without it:
        a ConfigError on ``run.device`` saying why)."""
        from semcom.models.device import resolve_device

        return resolve_device(self.device)
