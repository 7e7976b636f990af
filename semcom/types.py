"""The data that flows from edge to cloud.

- :class:`RateLedger` records bits per stage and per category (payload, side info,
  header, FEC redundancy). Every byte the edge produces is in exactly one entry.
- :class:`Payload` is what one edge stage hands to the next: bytes plus side info.
- :class:`Description` is one multiple-description share, the unit the link carries:
  its ``data`` are the exact wire bytes; ``ledger`` splits them into categories.
- :class:`Erasure` stands where a description was lost on the link.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("payload", "side_info", "header", "fec")


@dataclass
class RateLedger:
    """Bits by (stage, category). ``category`` is one of :data:`CATEGORIES`.

    >>> led = RateLedger(); led.add("quant", "payload", 120); led.add("mdc", "header", 32)
    >>> led.total(), led.total("payload"), led.by_category()["header"]
    (152, 120, 32)
    """

    entries: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, stage: str, category: str, bits: int) -> RateLedger:
        if category not in CATEGORIES:
            raise ValueError(f"unknown rate category {category!r}; use one of {CATEGORIES}")
        if bits < 0:
            raise ValueError(f"bits must be >= 0, got {bits}")
        key = (stage, category)
        self.entries[key] = self.entries.get(key, 0) + int(bits)
        return self

    def total(self, category: str | None = None) -> int:
        return sum(b for (_, c), b in self.entries.items() if category is None or c == category)

    def by_category(self) -> dict[str, int]:
        out = {c: 0 for c in CATEGORIES}
        for (_, c), b in self.entries.items():
            out[c] += b
        return out

    def by_stage(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for (s, _), b in self.entries.items():
            out[s] += b
        return dict(out)

    def merged(self, *others: RateLedger) -> RateLedger:
        out = RateLedger(dict(self.entries))
        for other in others:
            for (s, c), b in other.entries.items():
                out.add(s, c, b)
        return out

    def to_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for (s, c), b in sorted(self.entries.items()):
            out[s][c] = b
        return dict(out)

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]]) -> RateLedger:
        led = cls()
        for stage, cats in data.items():
            for cat, bits in cats.items():
                led.add(stage, cat, bits)
        return led


@dataclass
class Payload:
    """Bytes handed from one edge stage to the next.

    ``data`` are the stage's main bytes (entropy-coded or index bits), ``side_info`` what
    the inverse needs besides (positions, scales, shapes). ``meta`` is not on the wire.
    """

    data: bytes
    side_info: bytes = b""
    meta: dict[str, Any] = field(default_factory=dict)
    ledger: RateLedger = field(default_factory=RateLedger)


@dataclass
class Description:
    """One description of one image (or one image-question pair): what the link carries.

    ``data`` is the complete wire form, self-describing enough for the cloud to place its
    content without the other descriptions. ``ledger.total() == 8 * len(data)``.
    """

    image_id: str
    index: int
    count: int
    data: bytes
    original_hw: tuple[int, int]
    ledger: RateLedger = field(default_factory=RateLedger)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"description index {self.index} out of range for count {self.count}")

    @property
    def bits(self) -> int:
        return 8 * len(self.data)


@dataclass
class Erasure:
    """A description the link lost (CRC failure after all retransmissions, or dropped)."""

    image_id: str
    index: int
    count: int
    original_hw: tuple[int, int]
    reason: str = "crc"
    meta: dict[str, Any] = field(default_factory=dict)


Received = Description | Erasure


def erase(desc: Description, reason: str = "crc") -> Erasure:
    """The erasure marker that replaces ``desc`` (carries no payload bytes)."""
    return Erasure(desc.image_id, desc.index, desc.count, desc.original_hw, reason, dict(desc.meta))


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


@dataclass
class Sample:
    """One transmission's worth of evaluation data.

    ``image`` is ``uint8 [H, W, 3]`` (RGB). For VQA each (image, question) pair is its
    own sample (the edge's selection depends on the question); for captioning and
    retrieval one sample per image. ``sample_id`` is unique within a dataset.
    """

    sample_id: str
    image_id: str
    image: Any
    captions: list[str] = field(default_factory=list)
    question: str | None = None
    answers: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class EdgeResult:
    """What the edge produced for one sample: its descriptions, ready for the link.

    ``info`` holds measured facts about the encoding, e.g. ``tokens_sent`` (patch
    tokens whose content is in the descriptions), ``est_bits`` (codec estimate).
    """

    sample_id: str
    descriptions: list[Description]
    info: dict[str, Any] = field(default_factory=dict)
