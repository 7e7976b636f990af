"""The blocked nearest-neighbour search against a float64 brute force."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from semcom.stages.nearest import NearestIndex, faiss_available, nearest, resolve_engine

ENGINES = ["numpy"] + (["faiss"] if faiss_available() else [])


def brute(x, c, metric):
    x, c = x.astype(np.float64), c.astype(np.float64)
    if metric == "l2":
        return ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    s = x @ c.T
    if metric == "cosine":
        s = s / np.maximum(np.linalg.norm(c, axis=1), 1e-12)[None]
    return s.argmax(1)


def _score(x, c, metric, idx):
    x, c = x.astype(np.float64), c[idx].astype(np.float64)
    if metric == "l2":
        return -((x - c) ** 2).sum(1)
    s = (x * c).sum(1)
    return s / np.maximum(np.linalg.norm(c, axis=1), 1e-12) if metric == "cosine" else s


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_blocked_search_equals_brute_force(engine, metric, dtype):
    r = np.random.default_rng(7)
    c = r.normal(size=(3000, 24)).astype(dtype)
    c[5] *= 4  # a long entry: cosine and ip differ from l2
    x = r.normal(size=(257, 24)).astype(np.float32)
    want = brute(x, c, metric)
    # blocks smaller than the codebook and the queries: every merge path runs
    got = NearestIndex(c, metric, engine=engine, code_block=700, query_block=64).search(x)
    assert got.dtype == np.int64 and got.shape == (257,)
    same = got == want
    # float32 sums may flip a near-tie; then the scores must agree to rounding
    assert same.mean() > 0.99
    np.testing.assert_allclose(
        _score(x[~same], c, metric, got[~same]),
        _score(x[~same], c, metric, want[~same]),
        rtol=1e-5,
    )
    assert (nearest(x, c, metric, engine=engine) == got).mean() > 0.99


def test_ties_take_the_lowest_index_across_blocks():
    c = np.zeros((10, 3), np.float32)
    c[:, 0] = 1.0  # ten identical entries
    x = np.array([[1.0, 0.0, 0.0]], np.float32)
    for block in (1, 3, 10):
        assert NearestIndex(c, "l2", engine="numpy", code_block=block).search(x).tolist() == [0]


def test_memory_is_one_block_not_n_by_k():
    r = np.random.default_rng(0)
    c = r.normal(size=(1 << 14, 16)).astype(np.float16)
    x = r.normal(size=(2000, 16)).astype(np.float32)
    idx = NearestIndex(c, "l2", engine="numpy", block_bytes=1 << 20)
    tracemalloc.start()
    idx.search(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full = x.shape[0] * c.shape[0] * 4  # the N x K score matrix: 131 MB
    assert peak < 4 << 20 and peak < full / 30


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown metric"):
        NearestIndex(np.eye(2), "manhattan")
    with pytest.raises(ValueError, match=r"queries must be \[N, 2\]"):
        NearestIndex(np.eye(2)).search(np.ones((3, 5)))
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("gpu")
    assert resolve_engine("auto") == "numpy"
    assert NearestIndex(np.eye(2)).search(np.zeros((0, 2))).shape == (0,)
