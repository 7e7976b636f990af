"""MDC split/combine, concealment, and the edge -> cloud token path end to end (fake backend)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tokens_fakes import FakeBackend, make_image

from cloud.conceal import conceal_tokens
from cloud.methods.tokens import TokenCloud
from cloud.pipeline import CloudItem
from edge.methods.tokens import TokenEdge
from semcom import registry
from semcom.config import ConfigError, load_config
from semcom.errors import WireFormatError
from semcom.rate import SampleRate
from semcom.stages.codebook import Codebook
from semcom.stages.mdc import MDC
from semcom.types import Description, RateLedger, Sample, erase

BACKEND = FakeBackend()
SAMPLES = [
    Sample("s0", "i0", make_image(), question="what is red?"),
    Sample(
        "s1",
        "i1",
        make_image((("green", 4, 4), ("red", 9, 1)), seed=3),
        question="is there a green thing?",
    ),
]


def run_edge(overrides, samples=SAMPLES, task="vqa", backend=BACKEND):
    """(config, edge results, the cloud opened on the edge's stream setup)."""
    cfg = load_config(None, list(overrides))
    edge = TokenEdge(cfg, backend)
    setup = edge.setup(samples)
    results = edge.encode(samples, task)
    return cfg, results, cloud_for(cfg, setup)


def cloud_for(cfg, setup, backend=BACKEND):
    cloud = TokenCloud(cfg, backend)
    cloud.open(setup)
    return cloud


def received(res, lost=()):
    return [erase(d) if d.index in lost else d for d in res.descriptions]


def items_for(results, lost=(), samples=SAMPLES):
    return [
        CloudItem(s.sample_id, received(r, lost), s.hw, s.question)
        for s, r in zip(samples, results)
    ]


# -- split / combine ------------------------------------------------------------------------
@pytest.mark.parametrize("D", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("assignment", ["interleave", "balanced"])
def test_split_partitions_and_redundancy_repeats_the_top(D, assignment):
    n = 21
    imp = np.random.default_rng(D).random(n)
    shares = MDC(D, assignment).split(n, importance=imp)
    flat = sorted(i for s in shares for i in s)
    assert flat == list(range(n))  # a partition without redundancy
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    if assignment == "balanced" and D > 1:
        mass = [imp[s].sum() for s in shares]
        assert max(mass) - min(mass) < 0.25 * sum(mass) / D + imp.max()
    red = MDC(D, assignment, redundancy=3).split(n, importance=imp)
    top = set(np.argsort(-imp)[:3].tolist())
    for s in red:
        assert top <= set(s) if D > 1 else True
    assert sorted(set(i for s in red for i in s)) == list(range(n))


def test_combine_union_by_slot():
    t = np.arange(10, dtype=np.float32)[:, None]
    slots, toks = MDC.combine([(np.array([5, 1]), t[[5, 1]]), (np.array([1, 7]), t[[1, 7]])])
    assert slots.tolist() == [1, 5, 7] and toks.ravel().tolist() == [1, 5, 7]
    slots, toks = MDC.combine([(np.array([2]), t[[2]]), (np.array([2, 3]), t[[4, 3]])])
    assert slots.tolist() == [2, 3] and toks.ravel().tolist() == [3, 3]


# -- concealment -------------------------------------------------------------------------------
def test_conceal_modes():
    kept = np.array([0, 1, 2, 4, 145])  # 145: an extra (P = 144)
    got = np.array([0, 2])
    toks = np.array([[1.0, 1.0], [3.0, 3.0]], np.float32)
    s, t, n = conceal_tokens(kept, got, toks, grid=(12, 12), mode="drop")
    assert s.tolist() == [0, 2] and n == 0
    s, t, n = conceal_tokens(kept, got, toks, grid=(12, 12), mode="zero")
    assert s.tolist() == [0, 1, 2, 4, 145] and n == 3 and np.all(t[[1, 3, 4]] == 0)
    mean = np.array([7.0, 7.0], np.float32)
    s, t, n = conceal_tokens(kept, got, toks, grid=(12, 12), mode="mean", mean=mean)
    assert np.all(t[[1, 3, 4]] == 7)
    s, t, n = conceal_tokens(kept, got, toks, grid=(12, 12), mode="interp", mean=mean)
    assert s.tolist() == [0, 1, 2, 4]  # the lost extra is dropped
    assert np.allclose(t[1], [2, 2])  # between 0 and 2
    assert np.allclose(t[3], [3, 3])  # slot 4: nearest received is slot 2
    kept2 = np.array([0, 13, 26])  # (0,0), (1,1), (2,2)
    toks2 = np.array([[1.0], [5.0]], np.float32)
    _, t8, _ = conceal_tokens(kept2, np.array([0, 26]), toks2, grid=(12, 12), mode="interp")
    _, t4, _ = conceal_tokens(
        kept2, np.array([0, 26]), toks2, grid=(12, 12), mode="interp", neighbours=4
    )
    assert t8[1, 0] == 3.0 and t4[1, 0] == 3.0  # equidistant: averaged
    _, t4b, _ = conceal_tokens(
        np.array([0, 1, 13]),
        np.array([0, 13]),
        np.array([[1.0], [9.0]], np.float32),
        grid=(12, 12),
        mode="interp",
        neighbours=4,
    )
    assert t4b[1, 0] == 5.0  # slot 1 touches 0 and 13 in the 4-neighbourhood


# -- end to end --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "quant",
    [
        ["edge.quant.type=none"],
        ["edge.quant.type=scalar", "edge.quant.bits=8"],
        ["edge.quant.type=scalar", "edge.quant.bits=6", "edge.quant.entropy=true"],
    ],
)
@pytest.mark.parametrize("D", [1, 2, 4])
def test_every_subset_of_descriptions_decodes_alone_and_together(quant, D):
    cfg, results, cloud = run_edge(
        [
            "edge.select.budget=16",
            "edge.select.reducer=recoverable",
            f"edge.mdc.descriptions={D}",
            "edge.mdc.redundancy=2",
            "edge.mdc.positions=union",
            *quant,
        ]
    )
    full = cloud.decode(items_for(results))
    for r in results:
        assert len(r.descriptions) == D and r.info["tokens_sent"] == 16
        for d in r.descriptions:
            assert d.ledger.total() == 8 * len(d.data)
        rate = SampleRate.from_ledger(
            RateLedger().merged(*(d.ledger for d in r.descriptions)), 96 * 96
        )
        assert rate.wire_bits == 8 * sum(len(d.data) for d in r.descriptions)
        assert rate.bpp_wire == pytest.approx(8 * sum(len(d.data) for d in r.descriptions) / 9216)
    for info in full.info:
        assert info["tokens_to_model"] == 16 and info["tokens_lost"] == 0
    assert full.tokens.shape[1] == 17 and bool(full.mask.all())
    for k in range(D):
        for lost in itertools.combinations(range(D), k):
            part = cloud.decode(items_for(results, lost))
            for i, info in enumerate(part.info):
                n = info["tokens_to_model"]
                assert info["tokens_received"] == n and n + info["tokens_lost"] == 16
                assert n >= 2 or D == 1  # redundancy: the top-2 are in every description
                # the received tokens equal the lossless decode at their slots, raster order
                descs = results[i].descriptions
                ref_slots, _ = MDC.combine([(p.slots, p.tokens) for p in map(cloud.parse, descs)])
                got_slots, _ = MDC.combine(
                    [
                        (p.slots, p.tokens)
                        for p in map(cloud.parse, [d for d in descs if d.index not in lost])
                    ]
                )
                expect = full.tokens[i, 1:17].numpy()[np.isin(ref_slots, got_slots)]
                assert len(expect) == n
                got = part.tokens[i, 1 : 1 + n].numpy()
                if quant == ["edge.quant.type=none"]:
                    assert np.array_equal(got, expect)
                else:  # redundant copies average over the descriptions' own ranges
                    assert np.allclose(got, expect, atol=0.05)
                assert bool(part.mask[i, 0])  # CLS in every description


def test_quantised_tokens_are_close_to_the_originals():
    cfg, results, cloud = run_edge(
        ["edge.select.budget=16", "edge.quant.type=scalar", "edge.quant.bits=8"]
    )
    out = cloud.decode(items_for(results))
    edge = TokenEdge(cfg, BACKEND)
    ctx = edge.contexts(SAMPLES[:1], "vqa")[0]
    from edge.selection.reducers import reduce_tokens

    red = reduce_tokens(ctx, cfg.edge.select, edge.budget)
    ref = np.concatenate([ctx.cls[None], red.tokens])
    span = ref.max(0) - ref.min(0)
    err = np.abs(out.tokens[0, :17].numpy() - ref)
    assert np.all(err <= span / 255 / 2 + 1e-2)


def test_conceal_restores_positions_and_counts():
    base = ["edge.select.budget=16", "edge.mdc.descriptions=4", "cloud.conceal.mode=interp"]
    cfg, results, cloud = run_edge([*base, "edge.mdc.positions=union"])
    out = cloud.decode(items_for(results, lost=(1,)))
    for info in out.info:
        assert info["tokens_to_model"] == 16 and info["tokens_concealed"] == 4
        assert info["tokens_received"] == 12
    cfg2, results2, cloud2 = run_edge([*base, "edge.mdc.positions=own"])
    out2 = cloud2.decode(items_for(results2, lost=(1,)))
    assert out2.info[0]["tokens_to_model"] == 12  # lost positions unknown: dropped
    own = sum(len(d.data) for d in results2[0].descriptions)
    union = sum(len(d.data) for d in results[0].descriptions)
    assert own < union


def test_all_descriptions_lost_gives_the_model_something_sane():
    cfg, results, cloud = run_edge(["edge.select.budget=8", "edge.mdc.descriptions=2"])
    out = cloud.decode(items_for(results, lost=(0, 1)))
    assert out.tokens.shape == (2, 2, 32) and bool(out.mask.all())
    assert all(i["tokens_to_model"] == 0 and i["all_lost"] for i in out.info)


def test_cls_only_in_first_description():
    cfg, results, cloud = run_edge(
        ["edge.select.budget=8", "edge.mdc.descriptions=2", "edge.mdc.cls=first"]
    )
    assert [d.meta["cls"] for d in results[0].descriptions] == [True, False]
    assert results[0].info["cls_copies"] == 1
    out = cloud.decode(items_for(results, lost=(0,)))
    assert not bool(out.mask[0, 0]) and not out.info[0]["cls_received"]


def test_no_budget_sends_all_144_tokens_and_counts_them():
    cfg, results, cloud = run_edge(["edge.quant.type=none"], task="caption")
    assert results[0].info["tokens_sent"] == 144 and results[0].info["cls_sent"] == 1
    out = cloud.decode(items_for(results))
    assert out.tokens.shape == (2, 145, 32) and out.info[0]["tokens_to_model"] == 144
    ref = BACKEND.vision_tokens(BACKEND.preprocess([SAMPLES[0].image])).tokens[0].numpy()
    assert np.array_equal(out.tokens[0].numpy(), ref.astype(np.float16).astype(np.float32))
    # all 144 positions: the position map costs nothing
    assert results[0].descriptions[0].ledger.total("side_info") <= 8 + 1


def test_selection_does_not_depend_on_batching():
    overrides = ["edge.select.scorer=random", "edge.select.budget=8"]
    _, both, _ = run_edge(overrides)
    _, alone, _ = run_edge(overrides, samples=SAMPLES[1:])
    assert both[1].descriptions[0].data == alone[0].descriptions[0].data


def _codebook(tmp_path, r, counts=None, name="cb.npz"):
    cb = Codebook(
        r.normal(size=(64, 32)),
        counts=r.integers(1, 50, 64) if counts is None else counts,
        meta={"metric": "l2", "model_id": BACKEND.model_id},
    )
    return cb, cb.save(tmp_path / name)


def test_codebook_path_end_to_end_and_mismatch(tmp_path):
    r = np.random.default_rng(0)
    cb, path = _codebook(tmp_path, r)
    over = [
        "edge.select.budget=16",
        "edge.quant.type=codebook",
        "edge.quant.bits=6",
        f"edge.quant.codebook={path}",
        "cloud.conceal.mode=mean",
    ]
    cfg, results, cloud = run_edge(over)
    out = cloud.decode(items_for(results))
    toks = out.tokens[0, 1:17].numpy()
    assert all(np.any(np.all(cb.codewords == t, axis=1)) for t in toks)
    _, p2 = _codebook(tmp_path, r, name="other.npz")
    cfg2 = load_config(
        None, [o if "codebook=" not in o else f"edge.quant.codebook={p2}" for o in over]
    )
    edge = TokenEdge(cfg, BACKEND)
    with pytest.raises(WireFormatError, match="codebook mismatch"):
        cloud_for(cfg2, edge.setup(SAMPLES))


def test_entropy_coded_and_fixed_width_descriptions_decode_alike(tmp_path):
    """Indices coded under the codebook's usage counts decode to what fixed width gives;
    when the counts fit the tokens sent the code is shorter."""
    r = np.random.default_rng(0)
    cb, _ = _codebook(tmp_path, r)
    x = BACKEND.vision_tokens(BACKEND.preprocess([s.image for s in SAMPLES])).tokens
    idx = cb.search(x.reshape(-1, 32).numpy())
    # the same entries with usage counts of these very tokens
    fitted = Codebook(cb.codewords, counts=np.bincount(idx, minlength=64) + 1, meta=cb.meta)
    fitted = fitted.save(tmp_path / "fitted.npz")
    base = [
        "edge.select.budget=16",
        "edge.quant.type=codebook",
        "edge.quant.bits=6",
        f"edge.quant.codebook={fitted}",
        "edge.mdc.descriptions=2",
    ]
    cfg_a, coded, cloud_a = run_edge(base + ["edge.quant.entropy=true"])
    cfg_b, plain, cloud_b = run_edge(base + ["edge.quant.entropy=false"])
    for a, b in zip(coded, plain):
        assert sum(len(d.data) for d in a.descriptions) < sum(len(d.data) for d in b.descriptions)
        assert all(d.ledger.total() == 8 * len(d.data) for d in a.descriptions)
    out_a = cloud_a.decode(items_for(coded))
    out_b = cloud_b.decode(items_for(plain))
    assert np.array_equal(out_a.tokens.numpy(), out_b.tokens.numpy())


def test_model_mismatch_and_mixed_descriptions_raise():
    cfg, results, cloud = run_edge(
        ["edge.select.budget=8", "edge.mdc.descriptions=2", "edge.mdc.positions=union"]
    )
    setup = TokenEdge(cfg, BACKEND).setup(SAMPLES)
    with pytest.raises(WireFormatError, match="model"):
        cloud_for(cfg, setup, FakeBackend(seed=1))
    mixed = CloudItem("s0", [results[0].descriptions[0], results[1].descriptions[1]], (96, 96))
    with pytest.raises(WireFormatError, match="disagree|kept"):
        cloud.decode([mixed])
    junk = Description("i0", 0, 2, b"\x21\x00\x60\x60garbage", (96, 96))
    with pytest.raises(WireFormatError):
        cloud.decode([CloudItem("s0", [junk, erase(results[0].descriptions[1])], (96, 96))])
    with pytest.raises(WireFormatError, match="setup"):
        TokenCloud(cfg, BACKEND).decode(items_for(results))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        TokenEdge(
            load_config(
                None,
                [
                    "edge.quant.type=codebook",
                    "edge.quant.bits=12",
                    f"edge.quant.codebook={tmp_path / 'none.npz'}",
                ],
            ),
            BACKEND,
        )
    assert e.value.key == "edge.quant.codebook"
    for bad, key in [
        ("edge.quant.bits=21", "edge.quant.bits"),
        ("edge.mdc.descriptions=9", "edge.mdc.descriptions"),
        ("edge.select.knn=0", "edge.select.knn"),
        ("edge.select.contextual=1.5", "edge.select.contextual"),
        ("cloud.conceal.neighbours=6", "cloud.conceal.neighbours"),
    ]:
        extra = ["edge.quant.type=codebook"] if "quant" in bad else []
        with pytest.raises(ConfigError) as e:
            load_config(None, extra + [bad])
        assert e.value.key == key


def test_methods_are_registered():
    import cloud.methods  # noqa: F401
    import edge.methods  # noqa: F401

    assert registry.get("edge-method", "tokens") is TokenEdge
    assert registry.get("cloud-method", "tokens") is TokenCloud
    assert TokenEdge.needs_backend is True
