"""Shared fixtures. Tests run offline and on the CPU; ``slow`` ones run via `make test-slow`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _coco_mini() -> Path:
    from semcom.data.coco import coco_mini_root  # ../shared, or one level up (worktrees)

    return coco_mini_root()


COCO_MINI = _coco_mini()


@pytest.fixture(autouse=True)
def _seed():
    from semcom.seeding import seed_everything

    seed_everything(1234)


@pytest.fixture
def coco_mini() -> Path:
    if not (COCO_MINI / "captions.json").is_file():
        pytest.skip("../shared/data/coco-mini is not present")
    return COCO_MINI
