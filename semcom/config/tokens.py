"""Token-path settings: ``edge.select``, ``edge.quant``, ``edge.mdc``, ``cloud.conceal``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option


@dataclass(frozen=True)
class SelectConfig:
    scorer: Literal["cls-attn", "attn-received", "l2-norm", "text-sim", "random", "grid"] = option(
        "text-sim", help="importance score per vision token")
    reducer: Literal["topk", "recoverable", "visionzip", "tome", "prumerge"] = option(
        "topk", help="how tokens are reduced to the budget")
    budget: int | None = option(None, help="patch tokens kept (fixed k); null: all tokens")
    ratio: float | None = option(None, help="fraction of patch tokens kept (instead of budget)")

    def __post_init__(self):
        check(self.budget is None or self.budget >= 1, "budget", self.budget, "must be >= 1")
        check(self.ratio is None or 0.0 < self.ratio <= 1.0, "ratio", self.ratio,
              "must be in (0, 1]")
        check(self.budget is None or self.ratio is None, "ratio", self.ratio,
              "cannot be set together with budget")


@dataclass(frozen=True)
class QuantConfig:
    type: Literal["none", "scalar", "codebook"] = option(
        "none", help="none (float16 values), scalar (per-channel, bits each) or codebook (VQ)")
    bits: int = option(8, help="scalar: bits per value; codebook: log2 of the codebook size")

    def __post_init__(self):
        check(1 <= self.bits <= 16, "bits", self.bits, "must be in [1, 16]")


@dataclass(frozen=True)
class MDCConfig:
    descriptions: int = option(1, help="number of descriptions D (1..8)")
    assignment: Literal["interleave", "balanced"] = option("interleave")
    redundancy: int = option(0, help="most important tokens repeated in every description")

    def __post_init__(self):
        check(1 <= self.descriptions <= 8, "descriptions", self.descriptions, "must be in [1, 8]")
        check(self.redundancy >= 0, "redundancy", self.redundancy, "must be >= 0")


@dataclass(frozen=True)
class ConcealConfig:
    mode: Literal["drop", "zero", "mean", "interp"] = option(
        "drop", help="what the cloud does with tokens of lost descriptions")
