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
from semcom.stages.envelope import ENVELOPE, Envelope
from semcom.stages.positions import (
    POSITIONS,
    rank_bits,
    subset_bits,
    subset_rank,
    subset_unrank,
)
from semcom.stages.prior import PositionModel, TokenPrior
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer, VQQuantizer
from semcom.stages.setup import StreamSetup
from semcom.stages.tokens import TokenDescription, TokenStream, TokenWire, short_hash


# -- bits -------------------------------------------------------------------------------
def test_bitwriter_roundtrip_and_ledger_counts_every_bit():
    w = BitWriter()
    w.write(5, 3, "a", "header")
    w.write_array([0, 7, 3, 1], 3, "b", "payload")
    w.write(2**100 + 3, 101, "c", "side_info")
    data = w.to_bytes()
    assert w.ledger.total() == 8 * len(data)
    assert w.ledger.by_category()["header"] == 3 + (8 - (3 + 12 + 101) % 8) % 8
    r = BitReader(data)
    assert r.read(3) == 5
    assert r.read_array(4, 3).tolist() == [0, 7, 3, 1]
    assert r.read(101) == 2**100 + 3
    with pytest.raises(WireFormatError, match="truncated"):
        r.read(16, "more")


def test_bitwriter_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        BitWriter().write(8, 3, "a", "header")
    with pytest.raises(ValueError):
        BitWriter().write_array([1, 16], 4, "a", "payload")


# -- the stage contract ---------------------------------------------------------------------
def test_stages_compose_in_one_writer_and_book_their_own_bits():
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    env = Envelope("tokens", 1, 2, 96, 96)
    q = ScalarQuantizer(5)
    w = BitWriter()
    bits = [ENVELOPE.write(w, env), POSITIONS.write(w, [4, 9, 70], n=144), q.write(w, x)]
    assert sum(bits) == w.nbits
    data = w.to_bytes()
    assert w.ledger.total() == 8 * len(data)
    by_stage = w.ledger.by_stage()
    assert [by_stage["envelope"], by_stage["positions"], by_stage["quant"]] == bits
    r = BitReader(data)
    assert ENVELOPE.read(r) == env
    assert POSITIONS.read(r, n=144).tolist() == [4, 9, 70]
    assert np.abs(q.read(r, n=3, dim=4) - x).max() <= q.max_error(x).max() + 1e-6
    r.end()


def test_stage_decode_rejects_what_is_left_over():
    p = ScalarQuantizer(3).encode(np.ones((1, 3), np.float32))  # 96 range + 9 value bits
    assert len(p.data) == 14 and p.ledger.total("header") == 7  # padding
    assert ScalarQuantizer(3).decode(p.data, n=1, dim=3).shape == (1, 3)
    with pytest.raises(WireFormatError, match="1 trailing bytes"):
        ScalarQuantizer(3).decode(p.data + b"\x00", n=1, dim=3)
    with pytest.raises(WireFormatError, match="non-zero padding"):
        ScalarQuantizer(3).decode(p.data[:-1] + bytes([p.data[-1] | 1]), n=1, dim=3)
    with pytest.raises(WireFormatError, match="truncated"):
        ScalarQuantizer(3).decode(p.data[:5], n=1, dim=3)


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
    nbits = POSITIONS.write(w, idx, n=n)
    assert nbits == min(1 + n, 1 + 8 + rank_bits(n, k))
    assert w.nbits == nbits
    data = w.to_bytes()
    assert POSITIONS.read(BitReader(data), n=n).tolist() == idx.tolist()
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
        POSITIONS.read(BitReader(w.to_bytes()), n=4)


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
    q.write(w, x)
    y = q.read(BitReader(w.to_bytes()), n=17, dim=24)
    bound = q.max_error(x)
    assert np.all(np.abs(x - y) <= bound[None, :] * (1 + 1e-5) + 1e-7)
    assert w.ledger.total("side_info") == 2 * 16 * 24
    assert w.ledger.total("payload") == 17 * 24 * bits


def test_scalar_quantizer_calibrated_range_sends_no_side_info_and_clips():
    lo, hi = -np.ones(4, np.float32), np.ones(4, np.float32)
    q = ScalarQuantizer(6, lo, hi)
    x = np.array([[0.3, -0.9, 0.0, 5.0]], np.float32)
    w = BitWriter()
    q.write(w, x)
    assert w.ledger.total("side_info") == 0
    y = q.read(BitReader(w.to_bytes()), n=1, dim=4)
    assert np.all(np.abs(x[0, :3] - y[0, :3]) <= (2 / 63) / 2 + 1e-6)
    assert y[0, 3] == pytest.approx(1.0)  # clipped to the range


def test_scalar_entropy_coding_is_lossless_over_fixed_width():
    x = np.random.default_rng(3).normal(0, 1, (10, 16)).astype(np.float32)
    plain, coded = ScalarQuantizer(8), ScalarQuantizer(8, entropy=True)
    w1, w2 = BitWriter(), BitWriter()
    plain.write(w1, x)
    coded.write(w2, x)
    y1 = plain.read(BitReader(w1.to_bytes()), n=10, dim=16)
    y2 = coded.read(BitReader(w2.to_bytes()), n=10, dim=16)
    assert np.array_equal(y1, y2)
    assert w2.ledger.total("payload") < w1.ledger.total("payload")


def test_fp16_roundtrip_exact_to_half_precision():
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    w = BitWriter()
    Fp16Quantizer().write(w, x)
    y = Fp16Quantizer().read(BitReader(w.to_bytes()), n=5, dim=8)
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
        q.write(w, x)
        y = q.read(BitReader(w.to_bytes()), n=40, dim=8)
        assert np.allclose(y, x - 1e-3, atol=1e-6)
        if entropy:
            assert w.ledger.total("payload") < 40 * 8 * 0.7
        else:
            assert w.ledger.total("payload") == 40 * 8


# -- residual codebooks, priors and the position model -------------------------------------
def test_residual_codebook_quantizes_around_the_base_and_saves(tmp_path):
    r = np.random.default_rng(0)
    books = np.stack([r.normal(0, 1, (16, 4)), r.normal(0, 0.1, (16, 4))])
    cb = Codebook(books, meta={"metric": "l2", "residual": "position"})
    base = r.normal(0, 5, (30, 4)).astype(np.float32)
    x = base + books[0][r.integers(0, 16, 30)] + books[1][r.integers(0, 16, 30)]
    idx = cb.quantize(x, base)
    assert idx.shape == (30, 2) and cb.stages == 2 and cb.bits == 4
    err = np.abs(cb.reconstruct(idx, base) - x).max()
    one = np.abs(
        Codebook(books[:1], meta={"residual": "position"}).reconstruct(idx[:, :1], base) - x
    )
    assert err < 0.05 < one.max()  # the second stage removes what the first left
    with pytest.raises(CodebookError, match="base"):
        cb.quantize(x)
    cb2 = Codebook.load(cb.save(tmp_path / "rv.npz"))
    assert cb2.hash == cb.hash and cb2.stages == 2 and cb2.residual == "position"


def _prior(grid=(4, 4), dim=3, has_cls=False, seed=0):
    r = np.random.default_rng(seed)
    P = grid[0] * grid[1]
    tokens = r.normal(size=(40, P + has_cls, dim)).astype(np.float32)
    sel = np.zeros((40, P), bool)
    sel[:, [5, 6, 9, 10]] = True
    return TokenPrior.fit(
        tokens, {4: sel, 8: sel}, grid=grid, has_cls=has_cls, meta={"model_id": "m"}
    )


def test_prior_roundtrip_base_and_position_model_choice(tmp_path):
    pr = _prior(has_cls=True)
    p2 = TokenPrior.load(pr.save(tmp_path / "p.npz"))
    assert p2.hash == pr.hash and p2.grid == (4, 4) and p2.has_cls
    base = pr.base(np.array([0, 15, 16]), cls=True)  # CLS, two patches, one extra
    assert np.allclose(base[0], pr.cls_mean()) and np.allclose(base[1], pr.patch_means()[0])
    assert np.allclose(base[3], pr.mean)
    assert pr.position_model(3) is pr.position_model(4) and pr.position_model(9) is not None


def test_position_model_codes_learned_maps_short_and_any_map_exactly():
    pm = _prior().position_model(4)
    for positions in ([5, 6, 9, 10], [0, 15], [], list(range(16)), [3]):
        enc = ec.ArithmeticEncoder()
        pm.write(enc, positions, n=len(positions))
        code = enc.finish()
        got = pm.read(ec.ArithmeticDecoder(code), n=len(positions))
        assert got.tolist() == list(positions)
        if positions == [5, 6, 9, 10]:
            assert len(code) <= 4  # the learned map is nearly free
    with pytest.raises(ValueError):
        pm.write(ec.ArithmeticEncoder(), [3, 2], n=2)


def test_position_model_fit_counts_contexts():
    sel = np.zeros((100, 4), bool)
    sel[:, 0] = True
    pm = PositionModel.fit(sel, (2, 2))
    assert pm.freqs[0, 0] > 4000 and pm.freqs[1, 1] < 100  # cell 1 follows a kept left cell


# -- whole descriptions ----------------------------------------------------------------------
D16 = 16


def _stream(
    quant="scalar",
    *,
    count=1,
    positions="own",
    cls="every",
    extras=1,
    prior=None,
    cb=None,
    bits=6,
    entropy=False,
    budget=5,
    assignment="interleave",
    redundancy=0,
):
    return TokenStream(
        model="m",
        grid=(12, 12),
        dim=D16,
        cls=cls,
        descriptions=count,
        positions=positions,
        budget=budget,
        extras=extras,
        quant=quant,
        bits=bits,
        entropy=entropy,
        codebook=short_hash(cb.hash) if cb is not None else None,
        prior=short_hash(prior.hash) if prior is not None else None,
        hw=(96, 96),
        assignment=assignment,
        redundancy=redundancy,
    )


def _desc(stream, *, index=0, cb=None, prior=None, hw=(96, 96), kept=(3, 17, 40, 41, 100)):
    r = np.random.default_rng(0)
    kept = np.asarray(kept)
    E = stream.extras if stream.extras is not None else 2
    universe = np.r_[kept, 144 + np.arange(E)]
    slots = universe[index :: stream.descriptions]
    toks = r.normal(size=(len(slots), D16)).astype(np.float32)
    clsv = r.normal(size=D16).astype(np.float32) if stream.carries_cls(index) else None
    x = TokenDescription(index, slots, toks, clsv, kept if stream.union else None, E, hw)
    p = TokenWire(stream, codebook=cb, prior=prior).encode(x)
    return p.data, p.ledger, slots, toks, clsv


@pytest.mark.parametrize(
    "positions,count,index", [("own", 1, 0), ("union", 3, 1), ("own", 2, 1), ("union", 2, 0)]
)
def test_description_roundtrip_and_ledger_equals_bytes(positions, count, index):
    st = _stream(count=count, positions=positions)
    data, led, slots, toks, clsv = _desc(st, index=index)
    assert led.total() == 8 * len(data)
    assert set(led.by_category()) >= {"payload", "side_info", "header"}
    wire = TokenWire(TokenStream.from_setup(StreamSetup.from_bytes(st.setup().to_bytes())))
    d = wire.decode(data)
    assert d.slots.tolist() == slots.tolist() and d.index == index and d.hw == (96, 96)
    assert np.abs(d.tokens - toks).max() < 0.2 and np.abs(d.cls - clsv).max() < 0.2
    if st.union:
        assert d.kept.tolist() == [3, 17, 40, 41, 100]


def test_header_is_a_few_bits_under_a_setup():
    st = _stream(extras=0, cls="none")
    data, led, *_ = _desc(st)
    # envelope: 0 index bits + 1 size bit; token header: 1 count bit (5 = the budget)
    assert led.to_dict()["envelope"]["header"] == 1 and led.to_dict()["tokens"]["header"] == 1
    other = _desc(st, hw=(64, 80))[1]  # another size: the size follows as varints
    assert other.to_dict()["envelope"]["header"] == 17
    off_budget = _desc(st, kept=(1, 2, 3))[1]  # another count: the count follows
    assert off_budget.to_dict()["tokens"]["header"] == 1 + 8


@pytest.mark.parametrize("stages,entropy", [(1, False), (1, True), (3, True)])
def test_description_residual_codebook_with_prior_roundtrip(stages, entropy):
    r = np.random.default_rng(0)
    pr = TokenPrior.fit(
        r.normal(size=(30, 145, D16)).astype(np.float32),
        {4: r.random((30, 144)) < 0.05},
        grid=(12, 12),
        has_cls=True,
        meta={"model_id": "m"},
    )
    cb = Codebook(
        r.normal(size=(stages, 64, D16)),
        counts=r.integers(1, 50, (stages, 64)),
        meta={"metric": "l2", "residual": "position", "prior": pr.hash[:16]},
    )
    st = _stream("codebook", cb=cb, prior=pr, entropy=entropy, extras=0, cls="every")
    data, led, slots, toks, clsv = _desc(st, cb=cb, prior=pr)
    assert led.total() == 8 * len(data)
    d = TokenWire(st, codebook=cb, prior=pr).decode(data)
    base = pr.base(slots, cls=True)
    want = cb.reconstruct(cb.quantize(np.concatenate([clsv[None], toks]), base), base)
    assert d.slots.tolist() == slots.tolist()
    assert np.allclose(d.cls, want[0]) and np.allclose(d.tokens, want[1:])
    assert led.to_dict()["positions"]["side_info"] > 0  # the positions are in the code
    other = Codebook(r.normal(size=(stages, 64, D16)), meta={"metric": "l2"})
    with pytest.raises(WireFormatError, match="codebook"):
        TokenWire(st, codebook=other, prior=pr)
    with pytest.raises(WireFormatError, match="prior"):
        TokenWire(st, codebook=cb, prior=_prior())


def test_stream_setup_checks_and_malformed_descriptions():
    st = _stream()
    data, *_ = _desc(st)
    setup = st.setup()
    assert TokenStream.from_setup(setup) == st and len(setup.to_bytes()) < 200
    with pytest.raises(WireFormatError, match="unknown fields"):
        TokenStream.from_setup(StreamSetup("tokens", {**setup.fields, "colour": 1}))
    with pytest.raises(WireFormatError, match="version"):
        TokenStream.from_setup(StreamSetup("tokens", {**setup.fields, "v": 1}))
    with pytest.raises(WireFormatError, match="not valid JSON"):
        StreamSetup.from_bytes(b"\xff{")
    for cut in (1, 3, len(data) - 3):
        with pytest.raises(WireFormatError):
            TokenWire(st).decode(data[:cut])
    with pytest.raises(WireFormatError, match="trailing"):
        TokenWire(st).decode(data + b"\x00\x00")


def test_interleaved_union_shares_are_implied_and_balanced_ones_sent():
    led_i = _desc(_stream(count=2, positions="union"), index=1)[1]
    led_b = _desc(_stream(count=2, positions="union", assignment="balanced"), index=1)[1]
    assert led_b.total("side_info") > led_i.total("side_info")


@pytest.mark.parametrize(
    "module",
    [  # semcom.stages.*: tests/test_doctests.py
        "cloud.conceal",
        "edge.selection.scorers",
        "edge.selection.budgets",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module))
    assert res.attempted > 0 and res.failed == 0
