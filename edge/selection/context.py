"""What the scorers and reducers see of one sample, and what a reducer returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TokenContext:
    """One sample's vision outputs as NumPy arrays (float32).

    ``tokens [c + P, D]`` with ``c = 1`` when a CLS token comes first; ``attn [h, c + P,
    c + P]`` (post-softmax, the configured layer) or None; ``keys [c + P, Dk]`` or None;
    ``text_sim [P]`` cosine of each patch with the guidance text, or None; ``rng`` the
    sample's own random stream (``rng(seed, "select", sample_id)``).
    """

    tokens: np.ndarray
    grid: tuple[int, int]
    has_cls: bool
    attn: np.ndarray | None = None
    keys: np.ndarray | None = None
    text_sim: np.ndarray | None = None
    rng: np.random.Generator | None = None
    sample_id: str = ""
    source: dict = field(default_factory=dict)  # what edge.sources reported (neck: source_bits)
    cache: dict = field(default_factory=dict)

    @property
    def prefix(self) -> int:
        return int(self.has_cls)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patches(self) -> np.ndarray:
        """``float32 [P, D]``."""
        return self.tokens[self.prefix :]

    @property
    def cls(self) -> np.ndarray | None:
        return self.tokens[0] if self.has_cls else None

    def patch_keys(self) -> np.ndarray:
        """L2-normalised keys of the patches ``[P, Dk]`` (falls back to the tokens)."""
        if "nkeys" not in self.cache:
            k = self.keys[self.prefix :] if self.keys is not None else self.patches
            self.cache["nkeys"] = k / np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-12)
        return self.cache["nkeys"]


@dataclass
class Reduction:
    """A reducer's output for one sample.

    ``positions int64 [k]`` sorted patch indices of positioned tokens, ``tokens float32
    [k, D]`` their (possibly merged) vectors; ``extras float32 [E, D]`` position-less
    tokens (global merges), appended after the positioned ones; ``importance [k + E]``
    for MDC assignment and redundancy.
    """

    positions: np.ndarray
    tokens: np.ndarray
    extras: np.ndarray
    importance: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.positions) + len(self.extras)

    def __post_init__(self):
        order = np.argsort(self.positions, kind="stable")
        if not np.all(order == np.arange(len(order))):
            self.positions = self.positions[order]
            self.tokens = self.tokens[order]
            self.importance = np.concatenate(
                [self.importance[: len(order)][order], self.importance[len(order) :]]
            )
        if len(np.unique(self.positions)) != len(self.positions):
            raise ValueError("reducer returned duplicate positions")
