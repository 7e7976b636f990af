"""``edge.source: neck``: the transform-neck's tokens flow into the token path (selection,
quantization, MDC); and ``vision_from_layer`` (the encoder from
layer L on, with the attentions / keys selectors need) equals the full pixel pass."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_models import save_tiny_blip, save_tiny_llava  # noqa: E402

from semcom.config.model import ModelRef  # noqa: E402
from semcom.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return save_tiny_blip(tmp_path_factory.mktemp("blip"), seed=1)


@pytest.fixture(scope="module")
def backends(blip_dir, tmp_path_factory):
    from semcom.models import load_backend

    llava_dir = save_tiny_llava(tmp_path_factory.mktemp("llava"), seed=2)
    return {
        "blip": load_backend(ModelRef("blip", str(blip_dir))),
        "llava": load_backend(ModelRef("llava", str(llava_dir))),
    }


@pytest.fixture(scope="module")
def images():
    from semcom.world import scenes

    return [s.render()[0] for s in scenes(0, "eval", 3)]


@pytest.mark.parametrize("family,layer", [("blip", -1), ("llava", 1)])
def test_vision_from_layer_equals_the_pixel_pass(backends, images, family, layer):
    b = backends[family]
    pv = b.preprocess(images)
    full = b.vision_tokens(pv, attn_layers=(layer,), key_layers=(layer,), hidden_layers=(1,))
    part = b.vision_from_layer(full.hidden[1], 1, attn_layers=(layer,), key_layers=(layer,))
    assert torch.allclose(part.tokens, full.tokens, atol=1e-5)
    assert torch.allclose(part.attentions[layer], full.attentions[layer], atol=1e-5)
    assert torch.allclose(part.keys[layer], full.keys[layer], atol=1e-5)
    with pytest.raises(ValueError, match="does not run"):  # layer 0 is replaced
        b.vision_from_layer(full.hidden[1], 1, attn_layers=(0,))


@pytest.fixture(scope="module")
def weights(backends, tmp_path_factory):
    """A random mean-scale codec (3 rate points) and a d1 neck for the tiny BLIP."""
    from semcom.neck import NeckSpec, build_neck, save_neck
    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import CodecSpec
    from semcom.train.codec import save_codec

    b = backends["blip"]
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    codec = gained_codec("mean-scale", 16, 32, 3)
    with torch.no_grad():  # random g_a outputs round to one latent for every image
        codec.log_gain += 4.0
    save_codec(
        codec,
        CodecSpec(
            arch="mean-scale",
            N=16,
            M=32,
            lambdas=[1e-3, 4e-3, 1.6e-2],
            file="mean-scale.safetensors",
        ),
        str(root),
    )
    save_neck(
        build_neck(32, b.token_dim, b.grid, rates=3),
        NeckSpec(
            family="blip",
            setting="d1",
            layer=1,
            in_ch=32,
            dim=b.token_dim,
            grid=b.grid,
            rates=3,
            model_id=b.model_id,
            file="blip-d1-L1-mean-scale.safetensors",
        ),
        str(root),
    )
    return str(root)


def _cfg(blip_dir, weights, *sets):
    from semcom.config import load_config

    return load_config(
        None,
        [
            "edge.method=tokens",
            "edge.source=neck",
            f"edge.model.path={blip_dir}",
            f"cloud.model.path={blip_dir}",
            f"edge.image.weights={weights}",
            "edge.image.rate_point=2",
            "edge.image.neck_layer=1",
            *sets,
        ],
    )


def _samples(images):
    from semcom.types import Sample

    return [Sample(f"s{i}", f"i{i}", im) for i, im in enumerate(images)]


def test_neck_tokens_are_selected_quantized_and_mdc_coded(backends, blip_dir, weights, images):
    """Edge: codec -> latent -> neck -> layers 1.. -> cls-attn top-16 -> 8-bit scalar ->
    2 descriptions. Cloud (the plain token method): the received tokens are the neck's
    tokens at the kept positions, within the quantizer's step."""
    from cloud.methods.tokens import TokenCloud
    from cloud.pipeline import CloudItem
    from edge.methods.tokens import TokenEdge
    from semcom.neck import load_neck, neck_tokens
    from semcom.stages.codec.weights import load_codec

    b = backends["blip"]
    cfg = _cfg(
        blip_dir,
        weights,
        "edge.select.budget=16",
        "edge.select.scorer=cls-attn",
        "edge.quant.type=scalar",
        "edge.quant.bits=8",
        "edge.mdc.descriptions=2",
    )
    edge = TokenEdge(cfg, b)
    samples = _samples(images)
    setup = edge.setup(samples)
    results = edge.encode(samples, "caption")
    codec = load_codec("mean-scale", 2, weights=weights)
    neck, _ = load_neck("blip", "d1", 1, "mean-scale", weights)
    for s, r in zip(samples, results):
        assert len(r.descriptions) == 2 and r.info["tokens_sent"] == 16
        payload = codec.encode(s.image)
        assert r.info["source_bits"] == 8 * len(payload.data) > 0
        assert r.info["source_bpp"] == pytest.approx(r.info["source_bits"] / (96 * 96))
    cloud = TokenCloud(cfg, b)
    cloud.open(setup)
    mi = cloud.decode(
        [CloudItem(s.sample_id, list(r.descriptions), s.hw) for s, r in zip(samples, results)]
    )
    refs = []
    for i, s in enumerate(samples):
        lat = codec.decode_latent(codec.encode(s.image).data, s.hw)
        ref = neck_tokens(neck, b, lat, codec.k, 1)[0]  # [1 + P, D]
        got = mi.tokens[i][mi.mask[i]]
        # the kept patches (CLS first): compare each received token with the neck's
        kept = got[1:]
        d = torch.cdist(kept, ref[1:])  # [16, P]
        near = ref[1:][d.argmin(1)]
        assert len(set(d.argmin(1).tolist())) == 16  # 16 distinct patches
        assert (kept - near).abs().max() < (ref.max() - ref.min()) / 255  # 8-bit step
        refs.append(ref)
        assert torch.allclose(got[0], ref[0], atol=1e-2)  # CLS, float16
    assert not torch.allclose(refs[0], refs[1], atol=0.05)  # the images matter
    # the pixel source sends other tokens for the same images
    pix = TokenEdge(
        _cfg(
            blip_dir,
            weights,
            "edge.source=pixels",
            "edge.select.budget=16",
            "edge.select.scorer=cls-attn",
        ),
        b,
    ).encode(samples[:1], "caption")
    assert "source_bits" not in pix[0].info
    assert pix[0].descriptions[0].data != results[0].descriptions[0].data


def test_neck_source_errors_name_the_key(backends, blip_dir, weights):
    from edge.methods.tokens import TokenEdge

    b = backends["blip"]
    edge = TokenEdge(
        _cfg(
            blip_dir,
            weights,
            "edge.select.budget=8",
            "edge.select.scorer=cls-attn",
            "edge.select.layer=0",
        ),
        b,
    )
    with pytest.raises(ConfigError) as e:  # layer 0 is replaced by the neck
        edge.encode(_samples([np.zeros((96, 96, 3), np.uint8)]), "caption")
    assert e.value.key == "edge.select.layer" and "neck_layer" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _cfg(blip_dir, weights, "edge.method=jpeg")
    assert e.value.key == "edge.source"
    with pytest.raises(ConfigError) as e:  # no d3 neck among the weights
        TokenEdge(_cfg(blip_dir, weights, "edge.image.neck_setting=d3"), b)
    assert e.value.key == "edge.image.neck_setting"


def test_run_id_covers_the_neck_and_codec_weights(blip_dir, weights):
    """With edge.source neck the record's assets (and so the run id) include the codec and
    neck weights; with pixels they do not."""
    from semcom.fingerprint import fingerprint

    neck = fingerprint(_cfg(blip_dir, weights))
    pixels = fingerprint(_cfg(blip_dir, weights, "edge.source=pixels"))
    assert {"codec", "neck"} <= set(neck) and not {"codec", "neck"} & set(pixels)


def test_corrupt_neck_or_codec_file_names_the_file(backends, blip_dir, weights, tmp_path):
    import shutil

    from edge.methods.tokens import TokenEdge

    for name, rel, data in (
        ("w", "necks/blip-d1-L1-mean-scale.safetensors", b"garbage"),
        ("w2", "codecs/mean-scale.safetensors", b""),
    ):
        root = tmp_path / name  # a fresh root each: loaded codecs are cached per root
        shutil.copytree(weights, root)
        bad = root / rel
        bad.write_bytes(data)
        with pytest.raises(ConfigError) as e:
            TokenEdge(_cfg(blip_dir, str(root)), backends["blip"])
        assert e.value.key == "edge.image.weights" and str(bad) in str(e.value)
