"""Exact nearest-neighbour search over codebooks up to 2^20 entries, memory-bounded.

:class:`NearestIndex` (and the one-shot :func:`nearest`) finds, for each row of
``x [N, D]``, the codebook entry with the best score under ``metric``:

- ``l2``: ``argmin |x - c|^2``;
- ``cosine``: ``argmax x.c / |c|`` (the query's norm does not change the argmax);
- ``ip``: ``argmax x.c`` (the first seed's rule).

The search is exact and blocked twice: over the codebook (``code_block`` entries at a
time, converted to float32 block by block, so a float16 codebook is never copied whole)
and over the queries (``query_block`` rows), so the working memory is one score block
(``query_block x code_block`` float32, 64 MiB by default) plus one converted codebook
block, whatever K is; the best entry so far is kept per query (ties: the lowest index).
Two engines compute a block:

- ``numpy``: one matrix product per block and an argmax (``x.c - |c|^2 / 2`` for l2);
- ``faiss``: ``faiss.knn`` (faiss-cpu's exact brute-force kernel, top-1 selection fused
  with its blocked BLAS product) on the same blocks.

``engine="auto"`` is numpy (``python -m benchmarks.run nearest``,
bench-results/nearest.json: 577 queries, one image's tokens, l2, one thread). numpy is
about 2.5x faster at D = 96 (2^16: 0.15 s vs 0.44 s; 2^20: 2.7 s vs 6.8 s on a quiet
machine, 5.8 s vs 15.7 s with the cores shared). At D = 768 the two are within 25 %
either way (quiet: 2^19 5.8 s vs 6.1 s, 2^20 12.4 s vs 12.1 s; shared: 2^19 22.9 s vs
17.7 s, 2^20 33.1 s vs 29.3 s), so numpy, which needs no extra package, stays the
default and faiss the other engine (``engine="faiss"``, with faiss-cpu installed). Both
use 40-150 MB above the codebook at every K, and both give the same entries, which the
tests check against a float64 brute force. Written here rather than as a faiss index
because an index keeps a float32 copy of the codebook (3.2 GB at 2^20 x 768) and one
engine must remain without faiss.

>>> import numpy as np
>>> cw = np.eye(4, dtype=np.float32)
>>> NearestIndex(cw, "l2", engine="numpy").search(np.array([[0.9, 0.1, 0, 0]], np.float32))
array([0])
"""

from __future__ import annotations

import numpy as np

METRICS = ("l2", "cosine", "ip")
ENGINES = ("auto", "numpy", "faiss")
DEFAULT_BLOCK_BYTES = 64 << 20


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str = "auto") -> str:
    """``numpy`` or ``faiss``; ``auto``: numpy (see the module docstring). Asking for
    faiss without faiss-cpu is a clear error."""
    if engine not in ENGINES:
        raise ValueError(f"unknown nearest-neighbour engine {engine!r}; use one of {ENGINES}")
    if engine == "auto":
        return "numpy"
    if engine == "faiss" and not faiss_available():
        raise ImportError("engine 'faiss' needs faiss-cpu (pip install faiss-cpu)")
    return engine


class NearestIndex:
    """Exact top-1 search of ``codewords [K, D]`` (float32 or float16) under ``metric``.

    ``block_bytes`` bounds the score block (``query_block x code_block`` float32);
    ``code_block`` (default: as many entries as fit 64 MiB of the converted block, at
    most 65536) and ``query_block`` (default: the rest of ``block_bytes``) can be set.
    ``threads``: faiss's OpenMP threads (default: faiss's own setting).
    """

    def __init__(
        self,
        codewords: np.ndarray,
        metric: str = "l2",
        *,
        engine: str = "auto",
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        code_block: int | None = None,
        query_block: int | None = None,
        threads: int | None = None,
    ):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
        cw = np.asarray(codewords)
        if cw.ndim != 2 or cw.shape[0] == 0:
            raise ValueError(f"codewords must be [K, D] with K >= 1, got shape {cw.shape}")
        if cw.dtype not in (np.float32, np.float16):
            cw = cw.astype(np.float32)
        self.codewords = cw
        self.metric = metric
        self.engine = resolve_engine(engine)
        k, d = cw.shape
        self.code_block = int(code_block or max(1, min(65536, block_bytes // (4 * d), k)))
        self.query_block = int(query_block or max(1, block_bytes // (4 * self.code_block)))
        self.threads = threads
        # per-entry constants, float32 [K] (4 MiB at 2^20): |c|^2 / 2 (l2), 1 / |c| (cosine)
        self._aux = None
        if metric in ("l2", "cosine"):
            aux = np.empty(k, np.float32)
            for s in range(0, k, 4096):  # float64 sums, 4096 entries at a time
                c = cw[s : s + 4096].astype(np.float64)
                sq = (c * c).sum(1)
                aux[s : s + len(c)] = (
                    0.5 * sq if metric == "l2" else 1.0 / np.maximum(np.sqrt(sq), 1e-12)
                )
            self._aux = aux

    @property
    def size(self) -> int:
        return int(self.codewords.shape[0])

    @property
    def dim(self) -> int:
        return int(self.codewords.shape[1])

    def _block(self, start: int) -> np.ndarray:
        c = self.codewords[start : start + self.code_block]
        return np.ascontiguousarray(c, dtype=np.float32)

    def search(self, x: np.ndarray) -> np.ndarray:
        """The best entry of each row of ``x [N, D]`` -> ``int64 [N]``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"queries must be [N, {self.dim}], got shape {x.shape}")
        n = x.shape[0]
        best = np.full(n, -np.inf, np.float32)
        arg = np.zeros(n, np.int64)
        if n == 0:
            return arg
        if self.engine == "faiss":
            import faiss

            if self.threads:
                faiss.omp_set_num_threads(int(self.threads))
        for start in range(0, self.size, self.code_block):
            c = self._block(start)
            aux = None if self._aux is None else self._aux[start : start + len(c)]
            if self.metric == "cosine" and self.engine == "faiss":
                c = c * aux[:, None]
            for q0 in range(0, n, self.query_block):
                q = x[q0 : q0 + self.query_block]
                v, j = self._kernel(q, c, aux)
                sl = slice(q0, q0 + len(q))
                better = v > best[sl]
                best[sl] = np.where(better, v, best[sl])
                arg[sl] = np.where(better, j + start, arg[sl])
        return arg

    def _kernel(self, q: np.ndarray, c: np.ndarray, aux) -> tuple[np.ndarray, np.ndarray]:
        """(best score, index within the block) per query; larger score = better."""
        if self.engine == "faiss":
            import faiss

            if self.metric == "l2":
                d, i = faiss.knn(q, c, 1, metric=faiss.METRIC_L2)
                return -d[:, 0], i[:, 0]
            d, i = faiss.knn(q, c, 1, metric=faiss.METRIC_INNER_PRODUCT)
            return d[:, 0], i[:, 0]
        s = q @ c.T
        if self.metric == "l2":
            s -= aux[None, :]
        elif self.metric == "cosine":
            s *= aux[None, :]
        j = s.argmax(1)
        return s[np.arange(len(q)), j], j


def nearest(
    x: np.ndarray,
    codewords: np.ndarray,
    metric: str = "l2",
    *,
    engine: str = "auto",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> np.ndarray:
    """One-shot :meth:`NearestIndex.search` (build the index once to search many times)."""
    return NearestIndex(codewords, metric, engine=engine, block_bytes=block_bytes).search(x)
