"""Transform-neck: shapes, a training step that lowers the loss, the codec/neck methods."""

from __future__ import annotations

import numpy as np
import pytest

from semcom.errors import WireFormatError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared, busy CPU more threads spin and run much slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


D, GRID, LAYERS = 32, 12, 3


def FakeBackend(seed=0):
    """The shared fake's tiny ViT (patch 8, 96 x 96, CLS first, LAYERS layers of width D)."""
    from semcom.models.fake import FakeBackend as Fake

    return Fake(encoder="vit", token_dim=D, grid=GRID, num_layers=LAYERS, seed=seed)


def _images(n, seed=0):
    from semcom.world import make_scene

    return np.stack([make_scene(seed, "train", i).render()[0] for i in range(n)])


def test_neck_shapes():
    import torch

    from semcom.neck import build_neck, param_count

    neck = build_neck(64, D, GRID, rates=4)
    out = neck(torch.randn(2, 64, 6, 6), torch.tensor([0, 3]))
    assert out.shape == (2, 1 + GRID * GRID, D)
    assert neck(torch.randn(3, 64, 6, 6), 2).shape == (3, 145, D)
    # another image size: the pixel-shuffled grid is resized to the encoder's
    assert neck(torch.randn(1, 64, 5, 7), 0).shape == (1, 145, D)
    assert build_neck(64, D, GRID, has_cls=False)(torch.randn(1, 64, 6, 6), 0).shape == (1, 144, D)
    assert param_count(neck) < 100_000
    # the four patches of a latent cell get different tokens (sub-pixel projection)
    lat = torch.zeros(1, 64, 6, 6)
    lat[0, :, 0, 0] = torch.randn(64)
    t = neck.proj(lat.permute(0, 2, 3, 1))[0, 0, 0].view(4, D)
    assert not torch.allclose(t[0], t[1])


def test_rate_embedding_changes_output():
    import torch

    from semcom.neck import build_neck

    neck = build_neck(16, D, GRID, rates=3)
    with torch.no_grad():
        neck.rate.normal_()
    lat = torch.randn(1, 16, 6, 6)
    assert not torch.allclose(neck(lat, 0), neck(lat, 2))


def test_training_step_lowers_distillation_loss():
    """A few d1-style steps (neck + frozen encoder layers L.., autograd through the
    backend's no_grad-decorated ``vision_tokens_from_layer``) lower the loss."""
    import torch

    from semcom.neck import build_neck, distill_loss
    from semcom.stages.codec.arch import to_tensor
    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import finalize
    from semcom.train.neck import _encoder_modules, _grad_fn, teacher_tokens

    be = FakeBackend()
    for m in _encoder_modules(be):
        m.requires_grad_(False)
    imgs = _images(8)
    torch.manual_seed(0)
    codec = gained_codec("mean-scale", 16, 32, 2)
    finalize(codec)
    with torch.no_grad():
        lat = codec.eval()(to_tensor(imgs), 1)["latent"]
    t_final, t_hint = teacher_tokens(be, imgs, 1)
    assert t_final.shape == (8, 145, D) and t_hint.shape == (8, 145, D)
    var = float(t_final.var())
    student = _grad_fn(be)
    neck = build_neck(32, D, GRID, rates=2)
    opt = torch.optim.Adam(neck.parameters(), lr=3e-3)

    def loss_fn():
        return distill_loss(student(neck(lat, 1), 1), t_final, var)

    with torch.no_grad():
        before = float(loss_fn())
    for _ in range(25):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in be.layers.parameters())  # encoder stays frozen
    with torch.no_grad():
        after = float(loss_fn())
    assert after < 0.7 * before, (before, after)


def test_grad_fn_reaches_real_backend_code():
    from semcom.models.blip import BlipBackend
    from semcom.models.llava import LlavaBackend
    from semcom.train.neck import _grad_fn

    for cls in (BlipBackend, LlavaBackend):
        fn = cls.vision_tokens_from_layer
        assert getattr(fn, "__wrapped__", None) is not None, cls
    assert callable(_grad_fn(FakeBackend()))


# --------------------------------------------------------------------------- methods


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights root with a random codec (3 rate points) and a random d1 neck."""
    import torch

    from semcom.neck import NeckSpec, build_neck, save_neck
    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import CodecSpec
    from semcom.train.codec import save_codec

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_codec(
        gained_codec("mean-scale", 16, 32, 3),
        CodecSpec(
            arch="mean-scale",
            N=16,
            M=32,
            lambdas=[1e-3, 4e-3, 1.6e-2],
            file="mean-scale.safetensors",
        ),
        str(root),
    )
    neck = build_neck(32, D, GRID, rates=3)
    save_neck(
        neck,
        NeckSpec(
            family="blip",
            setting="d1",
            layer=1,
            in_ch=32,
            dim=D,
            grid=GRID,
            rates=3,
            file="blip-d1-L1-mean-scale.safetensors",
        ),
        str(root),
    )
    return str(root)


def _cfg(method, weights, **extra):
    from semcom.config import load_config

    sets = [
        f"edge.method={method}",
        f"edge.image.weights={weights}",
        "edge.image.rate_point=2",
        "edge.image.neck_layer=1",
    ]
    return load_config(None, sets + [f"{k}={v}" for k, v in extra.items()])


def _samples(n=3):
    from semcom.types import Sample

    return [Sample(f"s{i}", f"i{i}", im) for i, im in enumerate(_images(n, 3))]


@pytest.mark.parametrize("method", ["codec", "neck"])
def test_methods_end_to_end(weights, method):
    import torch

    from cloud.methods.codec import CodecCloud, NeckCloud
    from cloud.pipeline import CloudItem
    from edge.methods.codec import CodecEdge, NeckEdge
    from semcom.neck import load_neck, neck_tokens
    from semcom.stages.codec.weights import load_codec
    from semcom.stages.envelope import Envelope
    from semcom.types import erase

    cfg = _cfg(method, weights)
    be = FakeBackend()
    edge = (CodecEdge if method == "codec" else NeckEdge)(cfg)
    cloud = (CodecCloud if method == "codec" else NeckCloud)(cfg, be)
    samples = _samples()
    results = edge.encode(samples, "caption")
    for r in results:
        (d,) = r.descriptions
        assert d.ledger.total() == 8 * len(d.data)
        assert Envelope.unpack(d.data)[0].method == method
        assert r.info["est_bits"] > 0
    items = [CloudItem(s.sample_id, list(r.descriptions), s.hw) for s, r in zip(samples, results)]
    items[1] = CloudItem("s1", [erase(results[1].descriptions[0])], (96, 96))
    mi = cloud.decode(items)
    assert mi.tokens.shape == (3, 145, D) and mi.mask.all()
    assert [i["concealed"] for i in mi.info] == [False, True, False]
    codec = load_codec("mean-scale", 2, weights=weights)
    lat = codec.encode(samples[0].image).meta["latent"]
    if method == "neck":  # cloud tokens == neck + layers L.. on the edge's own latent
        neck, _ = load_neck("blip", "d1", 1, "mean-scale", weights)
        ref = neck_tokens(neck, be, lat, 1, 1)[0]
    else:  # cloud tokens == full encoder on the edge's own reconstruction
        rec = codec.synthesize(lat, (96, 96))
        ref = be.vision_tokens(be.preprocess([rec])).tokens[0]
    assert torch.allclose(mi.tokens[0], ref, atol=1e-5)
    other = _cfg("jpeg", weights, **{"edge.image.headers": "file"})
    from edge.methods.image import PillowEdge

    jpeg = PillowEdge(other).encode(samples[:1], "caption")[0].descriptions
    with pytest.raises(WireFormatError, match="method"):
        cloud.decode([CloudItem("s0", jpeg, (96, 96))])


def test_neck_missing_weights_names_key(weights):
    from cloud.methods.codec import NeckCloud
    from semcom.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        NeckCloud(_cfg("neck", weights, **{"edge.image.neck_layer": 2}), FakeBackend())
    assert e.value.key == "edge.image.neck_layer"
    with pytest.raises(ConfigError) as e:
        NeckCloud(_cfg("neck", weights, **{"edge.image.neck_setting": "d3"}), FakeBackend())
    assert e.value.key == "edge.image.neck_setting"


def test_neck_for_other_model_weights_is_refused():
    """A neck distilled against other encoder weights (recorded model_id differs) is a
    ConfigError on cloud.model; the same spec with the right id passes."""
    from semcom.errors import ConfigError
    from semcom.neck import NeckSpec, check_backend

    be = FakeBackend()
    spec = NeckSpec(
        family="blip",
        setting="d1",
        layer=1,
        in_ch=32,
        dim=D,
        grid=GRID,
        model_id="blip-000000000000",
        file="x.safetensors",
    )
    with pytest.raises(ConfigError) as e:
        check_backend(spec, be)
    assert e.value.key == "cloud.model" and "retrain" in str(e.value)
    check_backend(NeckSpec(**{**spec.__dict__, "model_id": be.model_id}), be)
