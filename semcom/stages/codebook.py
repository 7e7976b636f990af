"""VQ codebooks: versioned files, content hashes, chunked nearest-neighbour search, training.

A codebook file (``.npz``, no pickles, format ``semcom.codebook/2``) holds:

============= ===================== ====================================================
``codewords`` ``float16 [S, K, D]`` the entries of each of ``S`` stages (``S = 1``: plain
                                    VQ; ``S > 1``: residual VQ, stage ``s`` quantises
                                    what the stages before it left)
``counts``    ``int64 [S, K]``      how often each entry was chosen on the (importance-
                                    weighted) training tokens: the static entropy model
                                    of each stage's indices
``mean``      ``float32 [D]``       mean training token (``mean`` concealment)
``lo, hi``    ``float32 [D]``       per-channel 0.1 / 99.9 percentiles (calibrated scalar
                                    range)
``meta``      JSON string           format, model id, metric, ``residual`` (``none`` or
                                    ``position``), the token prior's hash for a
                                    position-residual codebook, training set
============= ===================== ====================================================

A *position-residual* codebook (``residual: position``) quantises ``x - m[slot]``, where
``m`` is the token prior's mean token of the slot (:mod:`semcom.stages.prior`), and the
cloud adds ``m[slot]`` back from the positions it receives anyway. The codewords then
spend themselves on what a token says rather than on where it is: a plain codebook
trained on every token (mostly background) merges object tokens of different positions
into one entry, and the compacted sequence the model gets loses their place.
Files of format ``semcom.codebook/1`` (one stage, no residual) load too.

:attr:`Codebook.hash` is a SHA-256 over the arrays' bytes and the canonical meta (not
over the zip container, whose timestamps vary); the stream setup carries it and the cloud
refuses a stream whose codebook hash differs from its own.

>>> import numpy as np
>>> cb = Codebook(np.eye(4, dtype=np.float32), meta={"metric": "l2"})
>>> cb.search(np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 1]], np.float32)).tolist()
[0, 3]
>>> rv = Codebook(np.stack([np.eye(2), 0.1 * np.eye(2)]), meta={"metric": "l2"})
>>> idx = rv.quantize(np.array([[1.1, 0.0]], np.float32)); idx.tolist()
[[0, 0]]
>>> [round(float(v), 2) for v in rv.reconstruct(idx)[0]]
[1.1, 0.0]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semcom.errors import SemcomError
from semcom.stages.npzfile import FileCache, read_npz, write_npz

FORMAT = "semcom.codebook/2"
FORMATS = ("semcom.codebook/1", FORMAT)
RESIDUALS = ("none", "position")
METRICS = ("l2", "cosine", "ip")
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "codebooks"


class CodebookError(SemcomError):
    """A codebook file is missing, malformed or does not fit the model."""


CALIBRATION_BITS = 8  # scalar_range: calibrated reads its range from the 2^8 file by default


def default_path(model_name: str, bits: int, metric: str) -> Path:
    """``semcom/assets/codebooks/<model>-k<bits>-<metric>.npz``."""
    return ASSETS / f"{model_name}-k{bits}-{metric}.npz"


def quant_codebook_path(quant, model_name: str) -> Path | None:
    """The codebook file an ``edge.quant`` section uses, or None when it uses none.

    ``quant.codebook`` when set; else the shipped default: for ``type: codebook`` the
    file of ``2^bits`` entries, for ``type: scalar`` with ``scalar_range: calibrated`` the
    2^8 file (every file of a model stores the same per-channel range of the training
    tokens; ``bits`` is then the scalar bits, not a codebook size).
    """
    calibrated = quant.type == "scalar" and getattr(quant, "scalar_range", "image") == "calibrated"
    if quant.type != "codebook" and not calibrated:
        return Path(quant.codebook).expanduser() if getattr(quant, "codebook", "") else None
    if getattr(quant, "codebook", ""):
        return Path(quant.codebook).expanduser()
    bits = quant.bits_for(model_name) if quant.type == "codebook" else CALIBRATION_BITS
    return default_path(model_name, bits, getattr(quant, "metric", "l2"))


@dataclass
class Codebook:
    """``codewords float32 [K, D]`` (one stage) or ``[S, K, D]`` (residual stages);
    ``meta['metric']`` selects the search rule, ``meta['residual']`` what is quantised."""

    codewords: np.ndarray
    counts: np.ndarray | None = None
    mean: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # stored as float16: round here so that a trained and a loaded codebook are identical
        cw = np.asarray(self.codewords, np.float16).astype(np.float32)
        if cw.ndim == 2:
            cw = cw[None]
        if cw.ndim != 3:
            raise CodebookError(f"codewords must be [K, D] or [S, K, D], got {cw.shape}")
        self.books = cw
        S, k, d = cw.shape
        counts = (
            np.ones((S, k), np.int64) if self.counts is None else np.asarray(self.counts, np.int64)
        )
        if counts.ndim == 1:
            counts = counts[None]
        if counts.shape != (S, k):
            raise CodebookError(f"counts have shape {counts.shape}, the codewords {(S, k)}")
        self.stage_counts = counts
        self.codewords = cw[0]
        self.counts = counts[0]
        if self.mean is None:
            w = self.counts.astype(np.float64) + 1e-9
            self.mean = (w[:, None] * self.codewords).sum(0) / w.sum()
        self.mean = np.asarray(self.mean, np.float32)
        self.lo = self.codewords.min(0) if self.lo is None else np.asarray(self.lo, np.float32)
        self.hi = self.codewords.max(0) if self.hi is None else np.asarray(self.hi, np.float32)
        self.meta = {"metric": "l2", "residual": "none", **self.meta, "format": FORMAT}
        if self.meta["metric"] not in METRICS:
            raise CodebookError(f"unknown codebook metric {self.meta['metric']!r}")
        if self.meta["residual"] not in RESIDUALS:
            raise CodebookError(f"unknown codebook residual {self.meta['residual']!r}")
        if S > 1 and self.metric != "l2":
            raise CodebookError("residual stages need the l2 metric")
        if self.mean.shape != (d,):
            raise CodebookError("codebook arrays have inconsistent shapes")
        self._index = None
        self._hash = None

    @property
    def size(self) -> int:
        """Entries per stage, ``K``."""
        return int(self.books.shape[1])

    @property
    def stages(self) -> int:
        return int(self.books.shape[0])

    @property
    def dim(self) -> int:
        return int(self.books.shape[2])

    @property
    def bits(self) -> int:
        """Index bits per stage, ``ceil(log2 K)``."""
        return max(1, (self.size - 1).bit_length())

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def residual(self) -> str:
        """``none`` (tokens are quantised) or ``position`` (``x - prior.pos_mean[slot]``)."""
        return self.meta["residual"]

    @property
    def hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256()
            for a in (
                self.books.astype(np.float16),
                self.stage_counts,
                self.mean,
                self.lo,
                self.hi,
            ):
                h.update(np.ascontiguousarray(a).tobytes())
            h.update(json.dumps(self.meta, sort_keys=True).encode())
            self._hash = h.hexdigest()
        return self._hash

    @property
    def id32(self) -> int:
        """First 32 bits of :attr:`hash`."""
        return int(self.hash[:8], 16)

    # -- residual quantisation -----------------------------------------------------------
    def quantize(self, x: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """``int64 [N, S]``: greedy residual search of ``x float32 [N, D]`` (minus
        ``base [N, D]`` for a position-residual codebook)."""
        r = np.asarray(x, np.float32)
        if self.residual == "position":
            if base is None:
                raise CodebookError("a position-residual codebook needs the prior's base tokens")
            r = r - base
        out = np.zeros((len(r), self.stages), np.int64)
        for s in range(self.stages):
            j = self._search_stage(r, s)
            out[:, s] = j
            if s + 1 < self.stages:
                r = r - self.books[s][j]
        return out

    def reconstruct(self, idx: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """Inverse of :meth:`quantize`: ``idx int64 [N]`` or ``[N, S]`` -> ``float32 [N, D]``."""
        idx = np.asarray(idx, np.int64)
        if idx.ndim == 1:
            idx = idx[:, None]
        out = np.zeros((len(idx), self.dim), np.float32)
        for s in range(idx.shape[1]):
            out += self.books[s][idx[:, s]]
        if self.residual == "position":
            if base is None:
                raise CodebookError("a position-residual codebook needs the prior's base tokens")
            out += base
        return out

    # -- search ------------------------------------------------------------------------
    def search(self, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Nearest first-stage entry of each row of ``x float32 [N, D]`` -> ``int64 [N]``.

        The codebook is scanned in blocks (:mod:`semcom.stages.nearest`; ``chunk``
        entries at a time when given), so memory stays bounded whatever K is. Rules: l2 ``argmin |x - c|^2``, cosine
        ``argmax x.c / |c|``, ip ``argmax x.c`` (the first seed paper's rule).
        """
        return self._search_stage(np.asarray(x, np.float32), 0, chunk)

    def _search_stage(self, x: np.ndarray, s: int, chunk: int | None = None) -> np.ndarray:
        from semcom.stages.nearest import NearestIndex

        if chunk is not None:
            return NearestIndex(self.books[s], self.metric, code_block=chunk).search(x)
        if self._index is None:
            self._index = [NearestIndex(b, self.metric) for b in self.books]
        return self._index[s].search(x)

    def lookup(self, idx) -> np.ndarray:
        """First-stage entries of ``idx int64 [N]`` (a plain codebook's reconstruction)."""
        return self.codewords[np.asarray(idx, np.int64)]

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return write_npz(
            path,
            self.meta,
            codewords=self.books.astype(np.float16),
            counts=self.stage_counts,
            mean=self.mean,
            lo=self.lo,
            hi=self.hi,
        )

    @classmethod
    def load(cls, path: str | Path) -> Codebook:
        path = Path(path)
        meta, arrays = read_npz(
            path,
            ("codewords", "counts", "mean", "lo", "hi"),
            CodebookError,
            "codebook",
            "train one with `semcom train codebook`",
        )
        if meta.get("format") not in FORMATS:
            raise CodebookError(
                f"{path}: unsupported codebook format {meta.get('format')!r} (this reads "
                f"{', '.join(FORMATS)})"
            )
        cb = cls(
            arrays["codewords"], arrays["counts"], arrays["mean"], arrays["lo"], arrays["hi"], meta
        )
        return cb


load_cached = FileCache(Codebook.load)
"""A :meth:`Codebook.load`, cached by path and modification time."""


def nearest(
    x: np.ndarray, codewords: np.ndarray, metric: str = "l2", *, chunk: int | None = None
) -> np.ndarray:
    """Nearest entry of each row of ``x [N, D]`` in ``codewords [K, D]`` -> ``int64 [N]``
    (:class:`semcom.stages.nearest.NearestIndex`, blocked over ``chunk`` entries at a
    time, so memory stays bounded whatever ``K``)."""
    from semcom.stages.nearest import NearestIndex

    return NearestIndex(codewords, metric, code_block=chunk).search(x)


# -- training -------------------------------------------------------------------------
def kmeans(
    x: np.ndarray,
    k: int,
    *,
    metric: str = "l2",
    iters: int = 20,
    seed: int = 0,
    chunk: int = 8192,
    weights: np.ndarray | None = None,
    pp_max: int = 1024,
    log=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means (spherical for ``cosine``) -> (``codewords float32 [k, D]``, counts).

    Initialised by greedy k-means++ (:func:`kmeans_pp`, on a subsample of ``max(10000,
    2k)`` vectors) for ``k <= pp_max``, else from ``k`` distinct random training vectors
    (many clusters make bad seeds matter less); empty clusters are re-seeded with the
    worst-fitted points. ``ip`` assigns by inner product and averages like l2.
    Assignment is the chunked search of :func:`nearest`, so ``k = 2^16`` fits in memory.
    """
    rs = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    n = len(x)
    if n < k:
        raise ValueError(f"k-means needs at least k={k} training vectors, got {n}")
    w = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64)
    c = kmeans_pp(x, k, rs) if k <= pp_max else x[rs.choice(n, k, replace=False)].copy()
    assign = np.zeros(n, np.int64)
    for it in range(iters):
        assign = nearest(x, c, metric, chunk=chunk)
        sums = _cluster_sums(x, w, assign, k)
        mass = np.bincount(assign, weights=w, minlength=k)
        empty = mass == 0
        c = (sums / np.maximum(mass, 1e-12)[:, None]).astype(np.float32)
        if empty.any():
            err = ((x - c[assign]) ** 2).sum(1)
            worst = np.argsort(-err)[: int(empty.sum())]
            c[np.flatnonzero(empty)] = x[worst]
        if metric == "cosine":
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        if log:
            log(f"k-means k={k} iter {it + 1}/{iters}: {int(empty.sum())} empty clusters")
    assign = nearest(x, c, metric, chunk=chunk)
    return c, np.bincount(assign, minlength=k)


def _cluster_sums(x: np.ndarray, w: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """``sums[j] = sum of w_i x_i over i assigned to j`` (``float64 [k, D]``), by sorting."""
    order = np.argsort(assign, kind="stable")
    a = assign[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    sums = np.zeros((k, x.shape[1]), np.float64)
    sums[a[starts]] = np.add.reduceat(x[order].astype(np.float64) * w[order, None], starts, 0)
    return sums


def kmeans_pp(x: np.ndarray, k: int, rs: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds (``float32 [k, D]``) from a random subsample of ``x``.

    Each step draws ``2 + ln k`` candidates by D^2 sampling and keeps the one that lowers
    the potential most (as scikit-learn does).
    """
    m = min(len(x), max(10000, 2 * k))
    sub = (x[rs.choice(len(x), m, replace=False)] if m < len(x) else x).astype(np.float32)
    sq = (sub.astype(np.float64) ** 2).sum(1)
    trials = 2 + int(np.log(k))
    first = int(rs.integers(m))
    c = [first]
    d2 = np.maximum(sq - 2 * (sub @ sub[first]) + sq[first], 0)
    for _ in range(1, k):
        tot = d2.sum()
        cand = rs.choice(m, trials, p=d2 / tot) if tot > 0 else rs.integers(0, m, trials)
        new = np.maximum(sq[None, :] - 2 * (sub[cand] @ sub.T) + sq[cand][:, None], 0)
        new = np.minimum(new, d2[None, :])
        best = int(np.argmin(new.sum(1)))
        c.append(int(cand[best]))
        d2 = new[best]
    return sub[np.asarray(c)].copy()


def running_mean(
    x: np.ndarray, weights: np.ndarray, k: int, *, metric: str = "ip", batch: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The first seed's importance-weighted running-mean codebook (``CodeBook.add``).

    The first ``k`` tokens become the entries (importance ``a``); afterwards each token
    ``t`` with importance ``b`` is merged into its nearest entry ``e`` (by ``metric``; the
    seed used the raw inner product): ``e <- (a e + b t) / (a + b)``, ``a <- a + b``. As in
    the seed, the nearest entries of a batch are found once per batch. Returns
    (codewords, counts of tokens merged into each entry).
    """
    x = np.asarray(x, np.float32)
    w = np.maximum(np.asarray(weights, np.float64), 1e-12)
    if len(x) < k:
        raise ValueError(f"running-mean codebook needs at least k={k} tokens, got {len(x)}")
    c = x[:k].astype(np.float64).copy()
    a = w[:k].copy()
    counts = np.ones(k, np.int64)
    for start in range(k, len(x), batch):
        xb, wb = x[start : start + batch], w[start : start + batch]
        idx = nearest(xb, c.astype(np.float32), metric)
        for i, j in zip(range(len(xb)), idx):
            c[j] = (a[j] * c[j] + wb[i] * xb[i]) / (a[j] + wb[i])
            a[j] += wb[i]
            counts[j] += 1
    return c.astype(np.float32), counts
