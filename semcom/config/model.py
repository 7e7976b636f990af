"""Model references shared by ``edge.model`` and ``cloud.model``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import option


@dataclass(frozen=True)
class ModelRef:
    name: Literal["blip", "llava"] = option("blip", help="model family")
    path: str = option(
        "",
        help="local directory saved by save_pretrained; empty: the "
        "embedded tiny-world model of that family",
    )


def model_dir(ref: ModelRef):
    """The local directory a :class:`ModelRef` points to (the embedded tiny model if empty)."""
    from pathlib import Path

    if ref.path:
        return Path(ref.path).expanduser()
    return Path(__file__).resolve().parent.parent / "models" / "tiny" / ref.name


def num_patches(ref: ModelRef) -> int | None:
    """Patch tokens of the vision encoder, read from ``config.json`` (no torch); None if unknown.

    A BLIP directory with ``caption/`` and ``retrieval/`` parts is read from the part that
    gives the vision tokens (``semcom.json`` ``vision``; default retrieval, else caption).
    """
    import json

    root = model_dir(ref)
    cfg_file = root / "config.json"
    if not cfg_file.is_file():
        try:
            manifest = json.loads((root / "semcom.json").read_text())
        except (OSError, ValueError):
            manifest = {}
        parts = [manifest.get("vision")] if manifest.get("vision") else ["retrieval", "caption"]
        for part in parts:
            sub = root / manifest.get(part, part) / "config.json"
            if sub.is_file():
                cfg_file = sub
                break
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None
    vision = cfg.get("vision_config") or {}
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not size or not patch:
        return None
    return (int(size) // int(patch)) ** 2
