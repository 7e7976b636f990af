"""The token prior: what both ends know about a model's tokens before anything is sent.

A prior file (``.npz``, no pickles, format ``semcom.tokenprior/1``) is learned once per
model and data (``semcom train codebook`` writes it beside the codebooks) and agreed
like a codebook (its hash is in the stream setup). It holds:

================== ======================= ================================================
``pos_mean``       ``float32 [T, D]``      mean token of each slot: CLS first when the
                                           model has one, then the ``P`` patch positions
                                           in raster order (``T = P + has_cls``)
``mean``           ``float32 [D]``         mean patch token (extras, ``mean`` concealment)
``lo, hi``         ``float32 [D]``         per-channel 0.1 / 99.9 percentiles of the patch
                                           tokens (the calibrated scalar range)
``budgets``        ``int64 [B]``           selection budgets the position models were
                                           learned at
``position_freqs`` ``int64 [B, P, 16]``    ``P(kept | position, causal context) * 4096``
                                           of the kept-position map at each budget
``meta``           JSON string             format, model id, grid, CLS, training set
================== ======================= ================================================

Three things use it. The cloud fills every patch position that did not arrive with its
position's mean token, so the model sees the whole grid (``cloud.conceal.fill: prior``).
Position-residual codebooks quantise ``x - pos_mean[slot]``: the residual no longer has
to carry *where* a token is, which the compacted token sequence otherwise loses. And
:class:`PositionModel` codes kept positions with an arithmetic code under
``P(kept | position, left, up, up-left, up-right neighbours)``: selected patches cluster
on objects, so 16 of 144 positions cost about 37 bits instead of 81 (combinatorial).

>>> import numpy as np
>>> from semcom.stages.entropy import ArithmeticDecoder, ArithmeticEncoder
>>> sel = np.zeros((50, 16), bool); sel[:, [5, 6, 9, 10]] = True     # a 2x2 block on 4x4
>>> pm = PositionModel.fit(sel, (4, 4))
>>> enc = ArithmeticEncoder(); pm.write(enc, [5, 6, 9, 10], n=4)
>>> code = enc.finish(); len(code) < 8
True
>>> pm.read(ArithmeticDecoder(code), n=4).tolist()
[5, 6, 9, 10]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semcom.errors import SemcomError, WireFormatError
from semcom.stages.entropy import BinaryModel
from semcom.stages.npzfile import FileCache, read_npz, write_npz

FORMAT = "semcom.tokenprior/1"
PRECISION = 4096  # P(kept) is stored as an integer count out of this
CONTEXTS = 16  # left, up, up-left, up-right neighbours: 4 bits


class PriorError(SemcomError):
    """A token prior file is missing, malformed or does not fit the model."""


def _contexts(maps: np.ndarray) -> np.ndarray:
    """Causal context of every cell of ``maps bool [N, H, W]`` -> ``int64 [N, H, W]``:
    left + 2 up + 4 up-left + 8 up-right (outside the grid counts as not kept)."""
    m = np.pad(np.asarray(maps, np.int64), ((0, 0), (1, 0), (1, 1)))
    left = m[:, 1:, :-2]
    up = m[:, :-1, 1:-1]
    ul = m[:, :-1, :-2]
    ur = m[:, :-1, 2:]
    return left + 2 * up + 4 * ul + 8 * ur


@dataclass
class PositionModel:
    """Context model of a kept-position map on a ``grid``: ``freqs int64 [P, 16]`` is
    ``P(kept | position, context) * 4096`` (each in ``[1, 4095]``).

    :input positions: ``int64 [n]`` sorted patch positions, ``n`` known to both ends
    :output: the same positions

    Cells are coded in raster order; once ``n`` positions are coded the rest are known to
    be empty, and once the remaining cells must all be kept they are not coded either.
    """

    freqs: np.ndarray
    grid: tuple[int, int]

    @classmethod
    def fit(cls, selections: np.ndarray, grid: tuple[int, int], pseudo: float = 0.5):
        """From training maps ``bool [N, P]`` (counts plus ``pseudo`` per outcome)."""
        gh, gw = grid
        maps = np.asarray(selections, bool).reshape(-1, gh, gw)
        ctx = _contexts(maps).reshape(len(maps), -1)
        kept = maps.reshape(len(maps), -1)
        P = gh * gw
        ones = np.zeros((P, CONTEXTS))
        total = np.zeros((P, CONTEXTS))
        for p in range(P):
            np.add.at(total[p], ctx[:, p], 1.0)
            np.add.at(ones[p], ctx[kept[:, p], p], 1.0)
        prob = (ones + pseudo) / (total + 2 * pseudo)
        return cls(np.clip(np.rint(prob * PRECISION), 1, PRECISION - 1).astype(np.int64), grid)

    def _models(self):
        if not hasattr(self, "_cache"):
            self._cache = [[BinaryModel(int(f), PRECISION) for f in row] for row in self.freqs]
        return self._cache

    def write(self, enc, positions, *, n: int, tag: str = "positions") -> None:
        """Push the map of ``positions`` (``n`` of them) into the arithmetic encoder."""
        gh, gw = self.grid
        P = gh * gw
        pos = np.asarray(positions, np.int64)
        if len(pos) != n:
            raise ValueError(f"{len(pos)} positions, the header says {n}")
        if n and (pos.min() < 0 or pos.max() >= P or np.any(np.diff(pos) <= 0)):
            raise ValueError(f"positions must be sorted, distinct and in [0, {P})")
        kept = np.zeros((gh + 1, gw + 2), np.int64)  # padded: row 0 and columns 0, -1 empty
        flags = np.zeros(P, bool)
        flags[pos] = True
        models = self._models()
        left = n
        for p in range(P):
            if left == 0 or left == P - p:
                break
            i, j = divmod(p, gw)
            c = kept[i + 1, j] + 2 * kept[i, j + 1] + 4 * kept[i, j] + 8 * kept[i, j + 2]
            b = int(flags[p])
            enc.symbol(models[p][c], b, tag)
            kept[i + 1, j + 1] = b
            left -= b

    def read(self, dec, *, n: int) -> np.ndarray:
        """The ``n`` positions from the arithmetic decoder (``int64 [n]``, sorted)."""
        gh, gw = self.grid
        P = gh * gw
        if not 0 <= n <= P:
            raise WireFormatError(f"{n} kept positions do not fit a {gh}x{gw} grid")
        kept = np.zeros((gh + 1, gw + 2), np.int64)
        models = self._models()
        out = []
        left = n
        for p in range(P):
            if left == 0:
                break
            if left == P - p:
                out.extend(range(p, P))
                break
            i, j = divmod(p, gw)
            c = kept[i + 1, j] + 2 * kept[i, j + 1] + 4 * kept[i, j] + 8 * kept[i, j + 2]
            b = dec.symbol(models[p][c])
            kept[i + 1, j + 1] = b
            if b:
                out.append(p)
                left -= 1
        return np.asarray(out, np.int64)


@dataclass
class TokenPrior:
    """A model's token prior (see the module docstring)."""

    pos_mean: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    budgets: np.ndarray
    position_freqs: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pos_mean = np.asarray(self.pos_mean, np.float32)
        self.mean = np.asarray(self.mean, np.float32)
        self.lo = np.asarray(self.lo, np.float32)
        self.hi = np.asarray(self.hi, np.float32)
        self.budgets = np.asarray(self.budgets, np.int64)
        self.position_freqs = np.asarray(self.position_freqs, np.int64)
        self.meta = {"format": FORMAT, **self.meta}
        gh, gw = self.grid
        T, D = self.pos_mean.shape
        if T != gh * gw + int(self.has_cls) or self.mean.shape != (D,):
            raise PriorError(f"prior arrays do not fit a {gh}x{gw} grid (pos_mean {T}x{D})")
        if self.position_freqs.shape != (len(self.budgets), gh * gw, CONTEXTS):
            raise PriorError("prior position models have inconsistent shapes")
        self._hash = None
        self._models: dict[int, PositionModel] = {}

    # -- what the prior is of ------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        g = self.meta.get("grid")
        if not g or len(g) != 2:
            raise PriorError("prior meta has no patch grid")
        return int(g[0]), int(g[1])

    @property
    def has_cls(self) -> bool:
        return bool(self.meta.get("has_cls", False))

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def dim(self) -> int:
        return int(self.pos_mean.shape[1])

    @property
    def hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256()
            for a in (
                self.pos_mean,
                self.mean,
                self.lo,
                self.hi,
                self.budgets,
                self.position_freqs,
            ):
                h.update(np.ascontiguousarray(a).tobytes())
            h.update(json.dumps(self.meta, sort_keys=True).encode())
            self._hash = h.hexdigest()
        return self._hash

    # -- uses ------------------------------------------------------------------------------
    def patch_means(self) -> np.ndarray:
        """``float32 [P, D]``: the mean token of each patch position."""
        return self.pos_mean[int(self.has_cls) :]

    def cls_mean(self) -> np.ndarray:
        """``float32 [D]``: the mean CLS token (the patch mean for a model without CLS)."""
        return self.pos_mean[0] if self.has_cls else self.mean

    def base(self, slots, *, cls: bool = False) -> np.ndarray:
        """Mean token of each slot (``int64 [n]``; patch ``p`` is slot ``p``, extras are
        ``>= P``), with the CLS mean first when ``cls`` -> ``float32 [cls + n, D]``."""
        slots = np.asarray(slots, np.int64)
        P = self.num_patches
        out = np.empty((len(slots), self.dim), np.float32)
        patch = slots < P
        out[patch] = self.patch_means()[slots[patch]]
        out[~patch] = self.mean
        return np.concatenate([self.cls_mean()[None, :], out], 0) if cls else out

    def position_model(self, n: int) -> PositionModel:
        """The position model for a map of ``n`` kept positions: the one learned at the
        budget nearest to ``n`` (in ratio)."""
        if not len(self.budgets):
            raise PriorError("the prior has no position models")
        k = max(1, int(n))
        i = int(np.argmin(np.abs(np.log(self.budgets / k))))
        if i not in self._models:
            self._models[i] = PositionModel(self.position_freqs[i], self.grid)
        return self._models[i]

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return write_npz(
            path,
            self.meta,
            pos_mean=self.pos_mean,
            mean=self.mean,
            lo=self.lo,
            hi=self.hi,
            budgets=self.budgets,
            position_freqs=self.position_freqs,
        )

    @classmethod
    def load(cls, path: str | Path) -> TokenPrior:
        path = Path(path)
        keys = ("pos_mean", "mean", "lo", "hi", "budgets", "position_freqs")
        meta, arrays = read_npz(
            path, keys, PriorError, "token prior", "`semcom train codebook` writes one"
        )
        if meta.get("format") != FORMAT:
            raise PriorError(
                f"{path}: unsupported token prior format {meta.get('format')!r} (this is {FORMAT})"
            )
        return cls(**arrays, meta=meta)

    @classmethod
    def fit(
        cls,
        tokens: np.ndarray,
        selections: dict[int, np.ndarray],
        *,
        grid: tuple[int, int],
        has_cls: bool,
        meta: dict | None = None,
    ) -> TokenPrior:
        """From training tokens ``float32 [N, T, D]`` (CLS first if ``has_cls``) and kept
        maps per budget ``{k: bool [N', P]}``."""
        tokens = np.asarray(tokens, np.float32)
        patches = tokens[:, int(has_cls) :].reshape(-1, tokens.shape[2])
        budgets = sorted(int(k) for k in selections)
        freqs = np.stack([PositionModel.fit(selections[k], grid).freqs for k in budgets])
        return cls(
            pos_mean=tokens.mean(0),
            mean=patches.mean(0),
            lo=np.percentile(patches, 0.1, axis=0),
            hi=np.percentile(patches, 99.9, axis=0),
            budgets=np.asarray(budgets, np.int64),
            position_freqs=freqs,
            meta={"grid": list(grid), "has_cls": bool(has_cls), **(meta or {})},
        )


ASSETS = Path(__file__).resolve().parent.parent / "assets" / "codebooks"


def default_prior_path(model_name: str) -> Path:
    """``semcom/assets/codebooks/<model>-prior.npz``: the shipped prior of a tiny model."""
    return ASSETS / f"{model_name}-prior.npz"


def prior_path(quant, model_name: str) -> Path | None:
    """The token prior an ``edge.quant`` section uses: ``prior: none`` -> None; ``auto``
    -> the shipped prior of ``model_name`` when there is one (a real model has none until
    ``semcom train codebook`` makes it); else the given file."""
    value = str(getattr(quant, "prior", "auto") or "auto")
    if value == "none":
        return None
    if value == "auto":
        path = default_prior_path(model_name)
        return path if path.is_file() else None
    return Path(value).expanduser()


def check_prior(prior: TokenPrior, backend, where: str = "edge.quant.prior") -> None:
    """A :class:`~semcom.errors.ConfigError` on ``where`` if ``prior`` does not fit the
    model of ``backend`` (model id, patch grid, token dimension, CLS)."""
    from semcom.errors import ConfigError

    want = prior.meta.get("model_id")
    if want and want != backend.model_id:
        raise ConfigError(
            where, f"the token prior was trained on model {want}, this end runs {backend.model_id}"
        )
    g = backend.grid
    grid = (g, g) if isinstance(g, int) else tuple(g)
    if tuple(prior.grid) != grid or prior.dim != backend.token_dim:
        raise ConfigError(
            where,
            f"the token prior is for a {prior.grid} grid of {prior.dim}-d "
            f"tokens, the model has {grid} and {backend.token_dim}-d",
        )
    if prior.has_cls != bool(getattr(backend, "has_cls", False)):
        raise ConfigError(where, "the token prior and the model disagree on the CLS token")


load_cached = FileCache(TokenPrior.load)
"""A :meth:`TokenPrior.load`, cached by path and modification time."""
