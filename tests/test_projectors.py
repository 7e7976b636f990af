"""Learned projectors: TokenPacker / VisualPrism shapes for each s, the
point-to-region locality, the Haar prior, the edge/cloud split equal to the unsplit
module (also through the wire), wire round trips and errors, concealment of a lost
description, a training step that lowers the loss, weight-file checks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_models import save_tiny_llava  # noqa: E402

from semcom.errors import ConfigError, WireFormatError  # noqa: E402

TYPES = ("tokenpacker", "visualprism")
LAYERS = (1, 2)


def small(type_, scale, *, dim=16, multi=48, lm=24, residual=True):
    from semcom.projectors.modules import LearnedProjector

    torch.manual_seed(0)
    return LearnedProjector(
        type_, dim=dim, multi_dim=multi, lm_dim=lm, grid=12, scale=scale, heads=2, residual=residual
    ).eval()


@pytest.mark.parametrize("type_", TYPES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_each_scale(type_, scale):
    m = small(type_, scale)
    x, xm = torch.randn(2, 144, 16), torch.randn(2, 144, 48)
    z = m.compress(x, xm)
    G = 12 // scale
    assert z.shape == (2, G * G, 16) and m.num_tokens == G * G
    e = m.project(z)
    assert e.shape == (2, G * G, 24)
    assert torch.isfinite(e).all()
    # the split is the whole: project(compress(.)) == forward(.)
    assert torch.equal(m(x, xm), e)


@pytest.mark.parametrize("type_", TYPES)
def test_bad_scale_and_type(type_):
    from semcom.projectors.modules import LearnedProjector

    with pytest.raises(ValueError, match="divide"):
        LearnedProjector(type_, dim=8, multi_dim=8, lm_dim=8, grid=12, scale=5)
    with pytest.raises(ValueError, match="unknown projector type"):
        LearnedProjector("resampler", dim=8, multi_dim=8, lm_dim=8, grid=12, scale=2)


@pytest.mark.parametrize("type_", TYPES)
def test_point_to_region_is_local(type_):
    """Compressed token 0 (top-left cell) depends on x_multi only in its s x s block."""
    s = 3
    m = small(type_, s, residual=False)
    x, xm = torch.randn(1, 144, 16), torch.randn(1, 144, 48)
    with torch.no_grad():
        z = m.compress(x, xm)
        far = xm.clone().reshape(1, 12, 12, 48)
        far[:, s:, :, :] += 5.0
        far[:, :s, s:, :] += 5.0
        z_far = m.compress(x, far.reshape(1, 144, 48))
        near = xm.clone().reshape(1, 12, 12, 48)
        near[:, 0, 0, :] += 5.0
        z_near = m.compress(x, near.reshape(1, 144, 48))
    if type_ == "tokenpacker":  # keys / values are per position: strictly local
        assert torch.allclose(z[0, 0], z_far[0, 0], atol=1e-5)
        assert not torch.allclose(z[0, 1:], z_far[0, 1:], atol=1e-3)
    else:  # VisualPrism's convs and global context see beyond the block
        assert not torch.allclose(z[0, 0], z_far[0, 0], atol=1e-5)
    assert not torch.allclose(z[0, 0], z_near[0, 0], atol=1e-4)


def test_regions_layout():
    from semcom.projectors.modules import regions

    kv = torch.arange(144.0).reshape(1, 144, 1)
    r = regions(kv, 12, 2)  # [36, 4, 1]
    assert r.shape == (36, 4, 1)
    assert r[0, :, 0].tolist() == [0, 1, 12, 13]
    assert r[7, :, 0].tolist() == [26, 27, 38, 39]  # cell (1, 1)


def test_haar_perfect_reconstruction():
    from semcom.projectors.modules import HaarWavelet

    h = HaarWavelet()
    m = torch.randn(2, 5, 12, 12)
    y = h(m)
    assert y.shape == (2, 5, 4, 6, 6)
    assert torch.allclose(h.inverse(y), m, atol=1e-5)
    # LL of a constant map is 2x the constant, the detail bands are zero
    c = h(torch.ones(1, 1, 4, 4))
    assert torch.allclose(c[:, :, 0], torch.full((1, 1, 2, 2), 2.0))
    assert torch.allclose(c[:, :, 1:], torch.zeros(1, 1, 3, 2, 2), atol=1e-6)


def test_sinkhorn_regulariser():
    from semcom.projectors.modules import sinkhorn_lsd

    labels = torch.tensor([0, 1, 2, 3, 1])
    good = torch.full((5, 6), -5.0)
    good[torch.arange(5), labels] = 5.0
    bad = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    lg, lb = sinkhorn_lsd(good, labels), sinkhorn_lsd(bad, labels)
    assert torch.isfinite(lb) and lg < lb
    lb.backward()
    assert bad.grad is not None and bad.grad.abs().sum() > 0


# ------------------------------------------------------------------- with a tiny LLaVA


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    from semcom.config.model import ModelRef
    from semcom.models import load_backend

    d = tmp_path_factory.mktemp("llava9")
    save_tiny_llava(d, seed=3)
    return load_backend(ModelRef("llava", str(d)))


@pytest.fixture(scope="module")
def weights(llava, tmp_path_factory):
    """Random (untrained) projector files of both types at s = 3, saved like training."""
    from semcom.projectors.io import save_projector, weights_path
    from semcom.projectors.lm import lm_hidden_size
    from semcom.projectors.modules import LearnedProjector

    d = tmp_path_factory.mktemp("proj")
    dim = llava.token_dim
    for t in TYPES:
        torch.manual_seed(1)
        m = LearnedProjector(
            t,
            dim=dim,
            multi_dim=dim * len(LAYERS),
            lm_dim=lm_hidden_size(llava),
            grid=llava.grid,
            scale=3,
            heads=2,
        ).eval()
        meta = {
            "type": t,
            "scale": 3,
            "grid": llava.grid,
            "dim": dim,
            "multi_dim": dim * len(LAYERS),
            "lm_dim": lm_hidden_size(llava),
            "heads": 2,
            "residual": True,
            "layers": list(LAYERS),
            "feature_index": llava.feature_index,
            "model_id": llava.model_id,
        }
        stats = {"lo": -np.full(dim, 3.0), "hi": np.full(dim, 3.0), "mean": np.zeros(dim)}
        save_projector(weights_path(type=t, scale=3, directory=d), m, meta, stats)
    return d


@pytest.fixture(scope="module")
def samples():
    from semcom.config.data import DataConfig
    from semcom.data import load_samples

    return load_samples(DataConfig(num_images=3), "vqa", seed=0)[:3]


def cfg_for(weights, type_="tokenpacker", *extra):
    from semcom.config import load_config

    return load_config(
        None,
        [
            "edge.method=projector",
            "edge.model.name=llava",
            "cloud.model.name=llava",
            f"edge.projector.type={type_}",
            "edge.projector.scale=3",
            f"edge.projector.weights={weights}",
            *extra,
        ],
    )


def items_of(results, samples, lose=()):
    from cloud.pipeline import CloudItem
    from semcom.types import erase

    out = []
    for er, s in zip(results, samples):
        got = [erase(d) if d.index in lose else d for d in er.descriptions]
        out.append(CloudItem(s.sample_id, got, s.hw, s.question))
    return out


@pytest.mark.parametrize("type_", TYPES)
def test_edge_cloud_split_equals_unsplit(llava, weights, samples, type_):
    """Edge (tower + compressor) -> float16 wire -> cloud (MLP) equals the unsplit module
    on the same features, to float16 precision."""
    from cloud.methods.projector import ProjectorCloud
    from edge.methods.projector import ProjectorEdge
    from semcom.projectors.io import features

    cfg = cfg_for(weights, type_)
    edge, cloud = ProjectorEdge(cfg, llava), ProjectorCloud(cfg, llava)
    res = edge.encode(samples, "vqa")
    for er in res:
        assert er.info["tokens_sent"] == 16 and len(er.descriptions) == 1
        for d in er.descriptions:
            assert d.ledger.total() == 8 * len(d.data)
    mi = cloud.decode(items_of(res, samples))
    assert mi.projected and mi.tokens.shape == (3, 16, llava.model.config.text_config.hidden_size)
    assert mi.mask.all() and all(i["tokens_to_model"] == 16 for i in mi.info)
    x, xm = features(llava, llava.preprocess([s.image for s in samples]), LAYERS)
    with torch.no_grad():
        ref = edge.module(x, xm)
    err = (mi.tokens - ref).abs().max().item()
    assert err < 2e-2 * max(1.0, ref.abs().max().item())
    # payload: 16 tokens x D x 16 bits of float16
    d0 = res[0].descriptions[0]
    assert d0.ledger.total() >= 16 * llava.token_dim * 16


def test_answers_from_projected_embeddings(llava, weights, samples):
    """The cloud's embeddings give answers through the language model (with the backend's
    own projected path or semcom.projectors.lm), equal to generating from the embeddings."""
    from cloud.methods.projector import ProjectorCloud
    from edge.methods.projector import ProjectorEdge
    from semcom.projectors import lm

    cfg = cfg_for(weights)
    res = ProjectorEdge(cfg, llava).encode(samples, "vqa")
    mi = ProjectorCloud(cfg, llava).decode(items_of(res, samples))
    qs = [s.question for s in samples]
    a = lm.answer(llava, mi.tokens, mi.mask, qs, max_new_tokens=3)
    assert len(a) == 3 and all(isinstance(t, str) for t in a)
    emb, att = lm.build_inputs(llava, mi.tokens, mi.mask, qs)
    assert emb.shape[0] == 3 and ((att.sum(1)) > 16).all()
    # a masked-out token is the same as an absent one
    mask = mi.mask.clone()
    mask[0, 5] = False
    e1, a1 = lm.build_inputs(llava, mi.tokens[:1], mask[:1], qs[:1])
    keep = torch.ones(16, dtype=torch.bool)
    keep[5] = False
    e2, a2 = lm.build_inputs(llava, mi.tokens[:1, keep], None, qs[:1])
    assert torch.allclose(e1, e2)


def test_wire_scalar_mdc_round_trip_and_errors(llava, weights, samples):
    from cloud.methods.projector import ProjectorCloud
    from edge.methods.projector import ProjectorEdge
    from semcom.projectors.wire import ProjectorWire

    cfg = cfg_for(
        weights,
        "visualprism",
        "edge.quant.type=scalar",
        "edge.quant.bits=6",
        "edge.mdc.descriptions=2",
    )
    edge, cloud = ProjectorEdge(cfg, llava), ProjectorCloud(cfg, llava)
    z = edge.compress(samples[:1])[0]
    er = edge.encode_tokens(samples[0], z)
    assert len(er.descriptions) == 2
    got = [cloud.parse(d) for d in er.descriptions]
    slots = np.concatenate([g.slots for g in got])
    assert sorted(slots.tolist()) == list(range(16))
    for g in got:
        step = (z[g.slots].max(0) - z[g.slots].min(0)) / 63
        assert np.all(np.abs(g.tokens - z[g.slots]) <= step / 2 + 2e-3 * (1 + np.abs(z[g.slots])))
    for d in er.descriptions:
        assert d.ledger.total() == 8 * len(d.data)
        assert d.ledger.by_category().get("side_info", 0) > 0
    data = er.descriptions[0].data
    with pytest.raises(WireFormatError, match="model mismatch"):
        ProjectorWire(llava.token_dim, grid=12, model=cloud.model32 ^ 1).decode(data)
    with pytest.raises(WireFormatError, match="tokenpacker s=3"):
        ProjectorWire(llava.token_dim, grid=12, expect=("tokenpacker", 3)).decode(data)
    with pytest.raises(WireFormatError):
        ProjectorWire(llava.token_dim, grid=12).decode(data[: len(data) // 2])
    with pytest.raises(WireFormatError, match="trailing"):
        ProjectorWire(llava.token_dim, grid=12).decode(data + b"\0" * 4)
    # a lost description: interp conceals its tokens on the 4x4 grid
    cfg2 = cfg_for(
        weights,
        "visualprism",
        "edge.quant.type=scalar",
        "edge.quant.bits=6",
        "edge.mdc.descriptions=2",
        "cloud.conceal.mode=interp",
    )
    mi = ProjectorCloud(cfg2, llava).decode(items_of([er], samples[:1], lose={1}))
    info = mi.info[0]
    assert info["tokens_to_model"] == 16 and info["tokens_concealed"] == len(got[1].slots)
    mi = cloud.decode(items_of([er], samples[:1], lose={0, 1}))  # all lost: one mean token
    assert mi.tokens.shape[1] == 1 and mi.info[0]["all_lost"]


def test_load_errors(llava, weights, tmp_path):
    from edge.methods.projector import ProjectorEdge

    with pytest.raises(ConfigError, match="edge.projector.weights.*no projector weights"):
        ProjectorEdge(cfg_for(tmp_path), llava)
    with pytest.raises(ConfigError, match="edge.quant.type"):
        ProjectorEdge(cfg_for(weights, "tokenpacker", "edge.quant.type=codebook"), llava)
    # a file trained with another model
    import shutil

    from semcom.projectors.io import read_projector, save_projector

    lp = read_projector(weights / "tokenpacker-s3.safetensors")
    other = tmp_path / "o"
    save_projector(
        other / "tokenpacker-s3.safetensors",
        lp.module,
        {**lp.meta, "model_id": "llava-000000000000"},
        lp.stats,
    )
    with pytest.raises(ConfigError, match="trained with model"):
        ProjectorEdge(cfg_for(other), llava)
    shutil.rmtree(other)


def test_training_step_lowers_the_loss(llava, samples):
    """A few optimizer steps on one batch lower the LM loss; the LLaVA gets no gradient."""
    from torch.nn import functional as F

    from semcom.projectors.io import features
    from semcom.projectors.lm import lm_batch, lm_hidden_size, lm_logits, shifted
    from semcom.projectors.modules import LearnedProjector

    for p in llava.model.parameters():
        p.requires_grad_(False)
    dim = llava.token_dim
    torch.manual_seed(0)
    m = LearnedProjector(
        "visualprism",
        dim=dim,
        multi_dim=dim * 2,
        lm_dim=lm_hidden_size(llava),
        grid=12,
        scale=4,
        heads=2,
    ).train()
    x, xm = features(llava, llava.preprocess([s.image for s in samples]), LAYERS)
    ids, labels, att = lm_batch(
        llava, m.num_tokens, [s.question for s in samples], [s.answers[0] for s in samples]
    )
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)

    def loss():
        lg, lb = shifted(lm_logits(llava, m(x, xm), ids, att), labels)
        return F.cross_entropy(lg, lb)

    first = loss()
    for _ in range(8):
        opt.zero_grad()
        val = loss()
        val.backward()
        opt.step()
    assert all(p.grad is None for p in llava.model.parameters())
    assert loss().item() < first.item() - 0.05


@pytest.mark.slow
def test_train_cli_writes_a_loadable_file(llava, tmp_path):
    """``semcom train projector`` on a tiny random LLaVA: a few steps, the file loads for
    that model, the record says what ran."""
    import json

    from semcom.commands.train.projector import main
    from semcom.config.projector import ProjectorConfig
    from semcom.projectors.io import load_projector

    rc = main(
        [
            "--type",
            "tokenpacker",
            "--scale",
            "4",
            "--model-path",
            str(llava.path),
            "--out",
            str(tmp_path),
            "--steps",
            "3",
            "--train-images",
            "64",
            "--calib-images",
            "32",
            "--layers",
            "1,2",
            "--heads",
            "2",
            "-q",
        ]
    )
    assert rc == 0
    rec = json.loads((tmp_path / "tokenpacker-s4.json").read_text())
    assert rec["steps"] == 3 and rec["meta"]["model_id"] == llava.model_id
    lp = load_projector(ProjectorConfig("tokenpacker", 4, str(tmp_path)), llava)
    assert lp.module.num_tokens == 9 and lp.id == rec["file_id"]
    assert np.all(lp.stats["hi"] >= lp.stats["lo"])
