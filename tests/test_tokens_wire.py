"""Token wire format: bits, side info, entropy coding, quantisers, codebooks, descriptions."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from semcom.errors import WireFormatError
from semcom.stages import entropy as ec
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.codebook import Codebook, CodebookError, kmeans, nearest, running_mean
from semcom.stages.envelope import Envelope
from semcom.stages.positions import (
    decode_subset, encode_subset, rank_bits, subset_bits, subset_rank, subset_unrank,
)
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer, VQQuantizer
from semcom.stages.tokens import TokenHeader, decode_description, encode_description, id32


# -- bits -------------------------------------------------------------------------------
def test_bitwriter_roundtrip_and_ledger_counts_every_bit():
    w = BitWriter()
    w.write(5, 3, "a", "header")
    w.write_array([0, 7, 3, 1], 3, "b", "payload")
    w.write(2 ** 100 + 3, 101, "c", "side_info")
    data = w.to_bytes()
    assert w.ledger.total() == 8 * len(data)
    assert w.ledger.by_category()["header"] == 3 + (8 - (3 + 12 + 101) % 8) % 8
    r = BitReader(data)
    assert r.read(3) == 5
    assert r.read_array(4, 3).tolist() == [0, 7, 3, 1]
    assert r.read(101) == 2 ** 100 + 3
    with pytest.raises(WireFormatError, match="truncated"):
        r.read(16, "more")


def test_bitwriter_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        BitWriter().write(8, 3, "a", "header")
    with pytest.raises(ValueError):
        BitWriter().write_array([1, 16], 4, "a", "payload")


# -- positions side info ------------------------------------------------------------------
def test_combinatorial_rank_unrank_exhaustive_small():
    n = 9
    for k in range(n + 1):
        ranks = []
        for combo in itertools.combinations(range(n), k):
            r = subset_rank(combo, n)
            ranks.append(r)
            assert subset_unrank(r, n, k) == list(combo)
        assert sorted(ranks) == list(range(comb(n, k)))  # a bijection onto [0, C(n,k))


@pytest.mark.parametrize("k", [0, 1, 8, 16, 32, 72, 100, 143, 144])
def test_subset_coding_exact_and_picks_the_shorter(k):
    n = 144
    r = np.random.default_rng(k)
    idx = np.sort(r.choice(n, k, replace=False))
    w = BitWriter()
    nbits = encode_subset(w, idx, n, "positions", "side_info")
    assert nbits == min(1 + n, 1 + 8 + rank_bits(n, k))
    assert w.nbits == nbits
    data = w.to_bytes()
    assert decode_subset(BitReader(data), n).tolist() == idx.tolist()
    assert subset_bits(k, n)[1] == ("bitmap" if 1 + n <= 9 + rank_bits(n, k) else "combinatorial")


def test_subset_16_of_144_is_combinatorial_and_short():
    bits, mode = subset_bits(16, 144)
    assert mode == "combinatorial" and bits < 100


def test_subset_bad_rank_raises():
    w = BitWriter()
    w.write(1, 1, "p", "side_info")
    w.write(2, 3, "p", "side_info")  # k = 2 of n = 4: C = 6, rank in 3 bits
    w.write(7, rank_bits(4, 2), "p", "side_info")
    with pytest.raises(WireFormatError, match="out of range"):
        decode_subset(BitReader(w.to_bytes()), 4)


# -- entropy coding ------------------------------------------------------------------------
def test_static_arithmetic_code_roundtrip_and_near_entropy():
    r = np.random.default_rng(0)
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    syms = r.choice(5, 400, p=p)
    model = ec.StaticModel((p * 16).astype(int))
    bits = ec.encode(syms, model)
    ideal = -np.log2(p[syms]).sum()
    assert ideal <= len(bits) <= ideal + 2
    padded = np.concatenate([bits, np.zeros(5, np.uint8)])
    assert ec.decode(padded, len(syms), ec.StaticModel((p * 16).astype(int))) == syms.tolist()


def test_adaptive_arithmetic_code_roundtrip_and_compresses_skew():
    r = np.random.default_rng(1)
    syms = np.minimum(r.geometric(0.5, 600) - 1, 63)
    bits = ec.encode(syms, ec.AdaptiveModel(64))
    assert ec.decode(bits, len(syms), ec.AdaptiveModel(64)) == syms.tolist()
    assert len(bits) < 0.5 * 6 * len(syms)  # far below the 6-bit fixed width


def test_empty_sequence_codes_to_nothing():
    assert len(ec.encode([], ec.StaticModel([1, 1]))) == 0
    assert ec.decode(np.zeros(0, np.uint8), 0, ec.StaticModel([1, 1])) == []


# -- quantisers -----------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12])
def test_scalar_quantizer_error_bound(bits):
    x = np.random.default_rng(bits).normal(0, 2, (17, 24)).astype(np.float32)
    q = ScalarQuantizer(bits)
    w = BitWriter()
    q.encode(w, x)
    y = q.decode(BitReader(w.to_bytes()), 17, 24)
    bound = q.max_error(x)
    assert np.all(np.abs(x - y) <= bound[None, :] * (1 + 1e-5) + 1e-7)
    assert w.ledger.total("side_info") == 2 * 16 * 24
    assert w.ledger.total("payload") == 17 * 24 * bits


def test_scalar_quantizer_calibrated_range_sends_no_side_info_and_clips():
    lo, hi = -np.ones(4, np.float32), np.ones(4, np.float32)
    q = ScalarQuantizer(6, lo, hi)
    x = np.array([[0.3, -0.9, 0.0, 5.0]], np.float32)
    w = BitWriter()
    q.encode(w, x)
    assert w.ledger.total("side_info") == 0
    y = q.decode(BitReader(w.to_bytes()), 1, 4)
    assert np.all(np.abs(x[0, :3] - y[0, :3]) <= (2 / 63) / 2 + 1e-6)
    assert y[0, 3] == pytest.approx(1.0)  # clipped to the range


def test_scalar_entropy_coding_is_lossless_over_fixed_width():
    x = np.random.default_rng(3).normal(0, 1, (10, 16)).astype(np.float32)
    plain, coded = ScalarQuantizer(8), ScalarQuantizer(8, entropy=True)
    w1, w2 = BitWriter(), BitWriter()
    plain.encode(w1, x)
    coded.encode(w2, x)
    y1 = plain.decode(BitReader(w1.to_bytes()), 10, 16)
    y2 = coded.decode(BitReader(w2.to_bytes()), 10, 16)
    assert np.array_equal(y1, y2)
    assert w2.ledger.total("payload") < w1.ledger.total("payload")


def test_fp16_roundtrip_exact_to_half_precision():
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    w = BitWriter()
    Fp16Quantizer().encode(w, x)
    y = Fp16Quantizer().decode(BitReader(w.to_bytes()), 5, 8)
    assert np.array_equal(y, x.astype(np.float16).astype(np.float32))


# -- codebooks ------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_chunked_search_equals_brute_force(metric):
    r = np.random.default_rng(0)
    cw = (r.normal(size=(1000, 16)) * r.uniform(0.5, 2, (1000, 1))).astype(np.float32)
    x = r.normal(size=(50, 16)).astype(np.float32)
    if metric == "l2":
        ref = ((x[:, None] - cw[None]) ** 2).sum(-1).argmin(1)
    elif metric == "cosine":
        ref = ((x @ cw.T) / np.linalg.norm(cw, axis=1)).argmax(1)
    else:
        ref = (x @ cw.T).argmax(1)
    assert np.array_equal(nearest(x, cw, metric, chunk=64), ref)
    assert np.array_equal(nearest(x, cw, metric, chunk=100000), ref)


def test_codebook_save_load_hash_and_format(tmp_path):
    r = np.random.default_rng(0)
    cb = Codebook(r.normal(size=(64, 8)), counts=r.integers(0, 9, 64), meta={"metric": "l2"})
    p = cb.save(tmp_path / "cb.npz")
    cb2 = Codebook.load(p)
    assert cb2.hash == cb.hash and cb2.id32 == cb.id32 and cb2.bits == 6
    assert np.array_equal(cb2.codewords, cb.codewords)
    other = Codebook(cb.codewords + 1e-2, counts=cb.counts, meta={"metric": "l2"})
    assert other.hash != cb.hash
    with pytest.raises(CodebookError, match="not found"):
        Codebook.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CodebookError, match="not a semcom codebook"):
        Codebook.load(tmp_path / "bad.npz")


def test_kmeans_reduces_error_and_running_mean_runs():
    r = np.random.default_rng(0)
    centres = r.normal(0, 5, (8, 4))
    x = (centres[r.integers(0, 8, 2000)] + r.normal(0, 0.3, (2000, 4))).astype(np.float32)
    cw, counts = kmeans(x, 8, iters=15, seed=0)
    err = ((x - cw[nearest(x, cw)]) ** 2).sum(1).mean()
    assert err < 1.0 and counts.sum() == 2000
    cw2, counts2 = running_mean(x, np.ones(len(x)), 8, metric="l2")
    assert cw2.shape == (8, 4) and counts2.sum() == 2000
    err2 = ((x - cw2[nearest(x, cw2)]) ** 2).sum(1).mean()
    assert err2 < x.var(0).sum()  # better than the mean alone


def test_vq_quantizer_fixed_and_entropy_coded():
    r = np.random.default_rng(0)
    cw = r.normal(size=(256, 8)).astype(np.float32)
    counts = np.r_[np.full(16, 1000), np.ones(240)].astype(np.int64)
    cb = Codebook(cw, counts=counts, meta={"metric": "l2"})
    x = cb.codewords[r.integers(0, 16, 40)] + 1e-3
    for entropy in (False, True):
        q = VQQuantizer(cb, entropy=entropy)
        w = BitWriter()
        q.encode(w, x)
        y = q.decode(BitReader(w.to_bytes()), 40, 8)
        assert np.allclose(y, x - 1e-3, atol=1e-6)
        if entropy:
            assert w.ledger.total("payload") < 40 * 8 * 0.7
        else:
            assert w.ledger.total("payload") == 40 * 8


# -- whole descriptions ----------------------------------------------------------------------
def _desc(quant=None, *, union=True, count=1, index=0, cls=True, extras=1, model="m", cb=None):
    r = np.random.default_rng(0)
    quant = quant or ScalarQuantizer(6)
    kept = np.array([3, 17, 40, 41, 100])
    universe = np.r_[kept, 144 + np.arange(extras)]
    slots = universe[index::count]
    toks = r.normal(size=(len(slots), 16)).astype(np.float32)
    clsv = r.normal(size=16).astype(np.float32) if cls else None
    kind = {"Fp16Quantizer": 0, "ScalarQuantizer": 1, "VQQuantizer": 2}[type(quant).__name__]
    h = TokenHeader(quant=kind, entropy=getattr(quant, "entropy", False), cls=cls, union=union,
                    grid=(12, 12), model=id32(model), extras=extras,
                    qbits=getattr(quant, "bits", 0) if kind == 1 else (cb.bits if cb else 0),
                    metric=cb.metric if cb else "l2", codebook=cb.id32 if cb else 0)
    env = Envelope("tokens", index, count, 96, 96)
    data, led = encode_description(env, h, quant, kept=kept, slots=slots, tokens=toks, cls=clsv)
    return data, led, slots, toks, clsv


@pytest.mark.parametrize("union,count,index", [(True, 1, 0), (True, 3, 1), (False, 2, 1)])
def test_description_roundtrip_and_ledger_equals_bytes(union, count, index):
    data, led, slots, toks, clsv = _desc(union=union, count=count, index=index)
    assert led.total() == 8 * len(data)
    assert set(led.by_category()) >= {"payload", "side_info", "header"}
    d = decode_description(data, dim=16, model=id32("m"), grid=(12, 12))
    assert d.slots.tolist() == slots.tolist()
    assert np.abs(d.tokens - toks).max() < 0.2 and np.abs(d.cls - clsv).max() < 0.2
    if union:
        assert d.kept.tolist() == [3, 17, 40, 41, 100]


def test_description_codebook_roundtrip_and_mismatch(tmp_path):
    r = np.random.default_rng(0)
    cb = Codebook(r.normal(size=(64, 16)), meta={"metric": "l2"})
    data, led, slots, toks, _ = _desc(VQQuantizer(cb, entropy=True), cb=cb)
    assert led.total() == 8 * len(data)
    d = decode_description(data, dim=16, model=id32("m"), codebook=cb)
    assert np.array_equal(d.tokens, cb.lookup(cb.search(toks)))
    other = Codebook(r.normal(size=(64, 16)), meta={"metric": "l2"})
    with pytest.raises(WireFormatError, match="codebook"):
        decode_description(data, dim=16, codebook=other)
    with pytest.raises(WireFormatError, match="codebook"):
        decode_description(data, dim=16, codebook=None)


def test_description_model_mismatch_and_malformed_bytes():
    data, *_ = _desc()
    with pytest.raises(WireFormatError, match="model"):
        decode_description(data, dim=16, model=id32("other"))
    with pytest.raises(WireFormatError, match="grid"):
        decode_description(data, dim=16, grid=(14, 14))
    for cut in (2, 6, 12, len(data) - 3):
        with pytest.raises(WireFormatError):
            decode_description(data[:cut], dim=16)
    with pytest.raises(WireFormatError, match="trailing"):
        decode_description(data + b"\x00\x00", dim=16)
    bad = bytearray(data)
    bad[4] = (bad[4] & 0x0F) | 0x70  # token header version 7
    with pytest.raises(WireFormatError, match="version"):
        decode_description(bytes(bad), dim=16)
    jpeg = Envelope("jpeg", 0, 1, 96, 96).pack() + data[4:]
    with pytest.raises(WireFormatError, match="method"):
        decode_description(jpeg, dim=16)


def test_header_fields_shared_by_descriptions():
    a = TokenHeader(1, False, True, True, (12, 12), 5, 1, 6)
    b = TokenHeader(1, False, False, True, (12, 12), 5, 1, 6)
    c = TokenHeader(1, False, True, True, (12, 12), 5, 2, 6)
    e = TokenHeader(1, True, True, True, (12, 12), 5, 1, 6)  # coded vs fixed-width payload
    assert a.same_image(b) and a.same_image(e) and not a.same_image(c)


@pytest.mark.parametrize("module", [
    "semcom.stages.bits", "semcom.stages.positions", "semcom.stages.entropy",
    "semcom.stages.codebook", "semcom.stages.quant", "semcom.stages.mdc",
    "cloud.conceal", "edge.selection.scorers", "edge.selection.budgets"])
def test_docstring_examples(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module))
    assert res.attempted > 0 and res.failed == 0
