"""The tiny world: seeded procedural scenes with captions and questions (numpy only).

See :mod:`semcom.world.vocab` for the vocabulary and grammar and
:mod:`semcom.world.scene` for the generator.
"""

from semcom.world.scene import (
    IMAGE_SIZE,
    SPLITS,
    Obj,
    Scene,
    make_question,
    make_scene,
    patch_labels,
    question_for,
    render,
    scenes,
)
from semcom.world.vocab import words

__all__ = [
    "IMAGE_SIZE",
    "SPLITS",
    "Obj",
    "Scene",
    "make_question",
    "make_scene",
    "patch_labels",
    "question_for",
    "render",
    "scenes",
    "words",
]
