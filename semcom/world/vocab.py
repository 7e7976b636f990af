"""The tiny world's vocabulary and grammar, in one place.

Everything the generator can say is defined here: object attributes, the 3 x 3 grid of
positions, the caption grammar, the question templates and the prompts the tiny models
are trained with. Tokenizers of the tiny models are built from :func:`words`.
"""

from __future__ import annotations

import re

# name -> RGB. Saturated colours that stay distinct on the grey background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# name -> half extent in pixels (a circle's radius; half the side of a square).
SIZES: dict[str, int] = {"small": 6, "large": 10}

GRID = 3  # positions: a GRID x GRID layout of cells, at most one object per cell
# cell (row, col) -> answer to "where is ...?" and the caption's position words.
POSITION_NAMES: tuple[tuple[str, ...], ...] = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
COUNT_WORDS = ("0", "1", "2", "3")  # answers to "how many ...?" (VQA normalisation: digits)
MAX_OBJECTS = 3
NUM_OBJECTS_P = (0.2, 0.4, 0.4)  # P(1), P(2), P(3) objects

# question type -> template; the generator fills {shape}, {colour}.
QUESTION_TEMPLATES: dict[str, str] = {
    "colour": "what colour is the {shape}?",
    "shape": "what shape is the {colour} object?",
    "size": "what size is the {colour} {shape}?",
    "count": "how many objects are there?",
    "position": "where is the {colour} {shape}?",
    "exists": "is there a {colour} {shape}?",
}
QUESTION_P: dict[str, float] = {
    "colour": 0.2,
    "shape": 0.15,
    "size": 0.1,
    "count": 0.15,
    "position": 0.2,
    "exists": 0.2,
}

# LLaVA-1.5 style conversation template; <image> expands to one placeholder per token.
LLAVA_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:"
CAPTION_PROMPT = "describe the image."
IMAGE_TOKEN = "<image>"


def object_phrase(size: str, colour: str, shape: str, position: str) -> str:
    """``"top left: large red circle"``.

    The position comes first: the caption then names where the next object is before
    describing it, which a tiny decoder learns far more easily than finding the next
    object in raster order implicitly. A caption of three objects is at most 20 tokens
    (fits 24 generated tokens with its end token)."""
    return f"{position}: {size} {colour} {shape}"


def join_phrases(phrases: list[str]) -> str:
    """``["A"] -> "A"``, ``["A", "B"] -> "A and B"``, ``["A", "B", "C"] -> "A, B and C"``."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


_WORD = re.compile(r"\w+|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """The pre-tokenisation of the tiny tokenizers (words and punctuation, lower case)."""
    return _WORD.findall(text.lower())


def words() -> list[str]:
    """Every word the tiny world can produce (captions, questions, answers, prompts)."""
    texts = [
        object_phrase(s, c, sh, p)
        for s in SIZES
        for c in COLOURS
        for sh in SHAPES
        for row in POSITION_NAMES
        for p in row
    ]
    texts += [", and a"]
    texts += [
        t.format(shape=sh, colour=c)
        for t in QUESTION_TEMPLATES.values()
        for sh in SHAPES
        for c in COLOURS
    ]
    texts += list(COUNT_WORDS) + ["yes", "no"] + [n for row in POSITION_NAMES for n in row]
    texts += [LLAVA_TEMPLATE.replace(IMAGE_TOKEN, "").format(prompt=CAPTION_PROMPT)]
    texts += ["a picture of", "an image of"]
    seen: dict[str, None] = {}
    for t in texts:
        for w in split_words(t):
            seen.setdefault(w, None)
    return list(seen)
