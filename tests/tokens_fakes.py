"""The token-path tests' backend and scenes: the shared fake with its ``colour`` encoder.

Tokens are a fixed random function of each 8x8 patch's colour statistics, so coloured
objects on a grey background give distinct tokens; attentions are real softmaxes of
query/key projections; the text encoder maps colour words onto the projected tokens of
that colour, so the language-guided score finds the object a question names
(:mod:`semcom.models.fake`).
"""

from __future__ import annotations

import functools

import numpy as np

from semcom.models.fake import COLORS
from semcom.models.fake import FakeBackend as _Fake

GREY = (120, 120, 120)

# FakeBackend(seed=..., has_cls=..., token_dim=..., heads=...): 96 x 96, 1 + 12 x 12 tokens
FakeBackend = functools.partial(_Fake, encoder="colour", tasks=("caption", "retrieval"))


def make_image(objects=(("red", 1, 1), ("blue", 8, 9)), size=96, patch=8, seed=0) -> np.ndarray:
    """``uint8 [size, size, 3]``: grey noise background, 2x2-patch squares at (row, col)."""
    r = np.random.default_rng(seed)
    img = np.clip(r.normal(GREY[0], 6, (size, size, 3)), 0, 255).astype(np.uint8)
    for name, row, col in objects:
        y, x = row * patch, col * patch
        img[y : y + 2 * patch, x : x + 2 * patch] = COLORS[name]
    return img
