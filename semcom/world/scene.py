"""Procedural scenes: objects, rendering, captions and questions (numpy only).

A scene is a few (1-3) objects on a grey, slightly noisy background, each with a
shape, a colour, a size and a position (a cell of a 3 x 3 grid, at most one object per
cell). Images are 96 x 96 RGB; objects are 12 or 20 pixels wide, so with the tiny
models' 8-pixel patches an object covers 4-16 of the 144 patches and most patches are
background.

Everything is a deterministic function of ``(seed, split, index)``:

>>> s = make_scene(0, "eval", 3)
>>> s.caption() == make_scene(0, "eval", 3).caption()
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from semcom.seeding import rng as derive_rng
from semcom.world import vocab as V

IMAGE_SIZE = 96
CELL = IMAGE_SIZE // V.GRID
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    row: int  # grid cell
    col: int
    cx: float  # centre in pixels
    cy: float

    @property
    def position(self) -> str:
        return V.POSITION_NAMES[self.row][self.col]

    @property
    def cell(self) -> int:
        return self.row * V.GRID + self.col

    def phrase(self) -> str:
        return V.object_phrase(self.size, self.colour, self.shape, self.position)


@dataclass(frozen=True)
class Scene:
    split: str
    index: int
    objects: tuple[Obj, ...]  # canonical order: grid cells in raster order
    background: int  # grey level of the background
    noise_seed: int
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def image_id(self) -> str:
        return f"tw-{self.split}-{self.index:05d}"

    def caption(self) -> str:
        """The caption: a deterministic function of the scene (objects in raster order)."""
        return V.join_phrases([o.phrase() for o in self.objects])

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 [96,96,3], labels int8 [96,96])``; labels: object index or -1."""
        return render(self)

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "index": self.index,
            "background": self.background,
            "objects": [asdict(o) | {"position": o.position} for o in self.objects],
        }


def _scene_rng(seed: int, split: str, index: int, attempt: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown tiny-world split {split!r}; use one of {SPLITS}")
    return derive_rng(seed, "tinyworld", split, index, attempt)


def make_scene(seed: int, split: str, index: int, attempt: int = 0) -> Scene:
    """Scene ``index`` of ``split`` (``attempt`` > 0: the redraws used for deduplication)."""
    r = _scene_rng(seed, split, index, attempt)
    n = int(r.choice(np.arange(1, V.MAX_OBJECTS + 1), p=V.NUM_OBJECTS_P))
    cells = sorted(r.choice(V.GRID * V.GRID, size=n, replace=False).tolist())
    colours, shapes, sizes = list(V.COLOURS), list(V.SHAPES), list(V.SIZES)
    objs = []
    for cell in cells:
        row, col = divmod(cell, V.GRID)
        size = sizes[r.integers(len(sizes))]
        half = V.SIZES[size]
        lo, hi = half + 2, CELL - half - 2  # the object stays inside its cell
        cx = col * CELL + float(r.integers(lo, hi + 1))
        cy = row * CELL + float(r.integers(lo, hi + 1))
        objs.append(
            Obj(
                shapes[r.integers(len(shapes))],
                colours[r.integers(len(colours))],
                size,
                row,
                col,
                cx,
                cy,
            )
        )
    background = int(r.integers(185, 236))
    return Scene(split, index, tuple(objs), background, int(r.integers(2**31)))


def shape_mask(obj: Obj, h: int = IMAGE_SIZE, w: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean [h, w] mask of one object (pixel centres inside the shape)."""
    m = np.zeros((h, w), bool)
    y0, y1, x0, x1, win = _shape_window(obj, h, w)
    m[y0:y1, x0:x1] = win
    return m


def _shape_window(obj: Obj, h: int, w: int):
    r = float(V.SIZES[obj.size])
    ext = int(np.ceil(1.2 * r)) + 1
    y0, y1 = max(0, int(obj.cy) - ext), min(h, int(obj.cy) + ext + 1)
    x0, x1 = max(0, int(obj.cx) - ext), min(w, int(obj.cx) + ext + 1)
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dx, dy = x - obj.cx, y - obj.cy
    if obj.shape == "circle":
        win = dx * dx + dy * dy <= r * r
    elif obj.shape == "square":
        s = 0.9 * r
        win = (np.abs(dx) <= s) & (np.abs(dy) <= s)
    elif obj.shape == "triangle":  # pointing up
        top, base, half = -1.1 * r, 0.9 * r, 1.15 * r
        t = (dy - top) / (base - top)
        win = (dy >= top) & (dy <= base) & (np.abs(dx) <= t * half)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
    return y0, y1, x0, x1, win


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    h = w = IMAGE_SIZE
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, 5.0, size=(h, w, 3))
    img = np.full((h, w, 3), float(scene.background), np.float32)
    labels = np.full((h, w), -1, np.int8)
    for k, obj in enumerate(scene.objects):
        y0, y1, x0, x1, win = _shape_window(obj, h, w)
        img[y0:y1, x0:x1][win] = V.COLOURS[obj.colour]
        labels[y0:y1, x0:x1][win] = k
    img = np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)
    return img, labels


def patch_labels(labels: np.ndarray, patch: int, min_pixels: int = 1) -> np.ndarray:
    """Per patch (raster order) the object it shows, or -1 for background.

    A patch belongs to the object with the most pixels in it, if that object has at
    least ``min_pixels`` there. ``labels`` is the ``render`` label map.
    """
    h, w = labels.shape
    gh, gw = h // patch, w // patch
    blocks = labels[: gh * patch, : gw * patch].reshape(gh, patch, gw, patch).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(gh * gw, patch * patch)
    out = np.full(gh * gw, -1, np.int64)
    best = np.zeros(gh * gw, np.int64)
    for k in range(int(labels.max()) + 1):
        cnt = (blocks == k).sum(1)
        take = (cnt >= min_pixels) & (cnt > best)
        out[take], best[take] = k, cnt[take]
    return out


# ---------------------------------------------------------------------------- questions


def _unique(objs, key):
    counts: dict = {}
    for o in objs:
        counts[key(o)] = counts.get(key(o), 0) + 1
    return [i for i, o in enumerate(objs) if counts[key(o)] == 1]


def make_question(scene: Scene, r: np.random.Generator) -> dict:
    """One question about ``scene``: ``{question, answer, type, relevant}``.

    ``relevant`` lists the indices of the objects the answer depends on (for oracle
    token selection); a "no" to "is there ...?" has none. Types are drawn with
    :data:`~semcom.world.vocab.QUESTION_P`; a type the scene cannot support (e.g. no
    shape occurs once) is redrawn.
    """
    objs = scene.objects
    types, probs = list(V.QUESTION_P), np.array(list(V.QUESTION_P.values()))
    T = V.QUESTION_TEMPLATES
    for _ in range(20):
        qt = types[r.choice(len(types), p=probs / probs.sum())]
        if qt == "count":
            return {
                "question": T[qt],
                "answer": V.COUNT_WORDS[len(objs)],
                "type": qt,
                "relevant": list(range(len(objs))),
            }
        if qt == "exists":
            if r.random() < 0.5:
                i = int(r.integers(len(objs)))
                o = objs[i]
                return {
                    "question": T[qt].format(colour=o.colour, shape=o.shape),
                    "answer": "yes",
                    "type": qt,
                    "relevant": [
                        j for j, p in enumerate(objs) if (p.colour, p.shape) == (o.colour, o.shape)
                    ],
                }
            present = {(o.colour, o.shape) for o in objs}
            absent = [(c, s) for c in V.COLOURS for s in V.SHAPES if (c, s) not in present]
            c, s = absent[r.integers(len(absent))]
            return {
                "question": T[qt].format(colour=c, shape=s),
                "answer": "no",
                "type": qt,
                "relevant": [],
            }
        if qt == "colour":
            cand = _unique(objs, lambda o: o.shape)
        elif qt == "shape":
            cand = _unique(objs, lambda o: o.colour)
        else:  # size, position: identified by colour and shape
            cand = _unique(objs, lambda o: (o.colour, o.shape))
        if not cand:
            continue
        i = cand[int(r.integers(len(cand)))]
        o = objs[i]
        answer = {"colour": o.colour, "shape": o.shape, "size": o.size, "position": o.position}[qt]
        return {
            "question": T[qt].format(colour=o.colour, shape=o.shape),
            "answer": answer,
            "type": qt,
            "relevant": [i],
        }
    return {
        "question": T["count"],
        "answer": V.COUNT_WORDS[len(objs)],
        "type": "count",
        "relevant": list(range(len(objs))),
    }


def question_for(seed: int, scene: Scene, k: int = 0) -> dict:
    """Question ``k`` of a scene, from its own seeded stream."""
    return make_question(scene, derive_rng(seed, "tinyworld-q", scene.split, scene.index, k))


# ------------------------------------------------------------------------------- splits


def scenes(
    seed: int, split: str, n: int, *, unique_captions: bool | None = None, start: int = 0
) -> list[Scene]:
    """The first ``n`` scenes of a split (``start``: skip the first ones).

    ``unique_captions`` (default: True for ``eval``): a scene whose caption already
    occurred earlier in the split is redrawn (``attempt`` 1, 2, ...), so that every
    caption of the eval split is unique and retrieval is well defined. The redraw only
    depends on earlier scenes, so the first k scenes of any larger set are the same.
    """
    if unique_captions is None:
        unique_captions = split == "eval"
    out: list[Scene] = []
    seen: set[str] = set()
    for i in range(start + n):
        attempt = 0
        s = make_scene(seed, split, i, attempt)
        while unique_captions and s.caption() in seen:
            attempt += 1
            s = make_scene(seed, split, i, attempt)
        seen.add(s.caption())
        if i >= start:
            out.append(s)
    return out
