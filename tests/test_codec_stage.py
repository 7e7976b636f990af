"""Neural codec stage: the compressai shim, real bitstreams, wire format, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from semcom.errors import ConfigError, WireFormatError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared, busy CPU more threads spin and run much slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


ARCHS = ("factorized", "hyperprior", "mean-scale", "elic")


def _image(seed=0, h=96, w=96):
    from semcom.world import make_scene

    if (h, w) == (96, 96):
        return make_scene(seed, "eval", 0).render()[0]
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _model(arch, seed=0, rates=3):
    import torch

    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import finalize

    torch.manual_seed(seed)
    m = gained_codec(arch, 16, 32, rates)
    finalize(m)
    return m.eval()


@pytest.fixture(scope="module")
def models():
    return {a: _model(a) for a in ARCHS}


def test_shim_imports_compressai_and_leaves_no_stubs():
    from semcom.compat import import_compressai, is_stub

    compressai = import_compressai()
    assert "ans" in compressai.available_entropy_coders()
    for name in ("torchvision", "torchvision.transforms", "torch_geometric", "pandas"):
        # a stub must not linger where other libraries probe for the real package
        mod = sys.modules.get(name)
        assert mod is None or not is_stub(mod), name
    # compressai's registry module got its (stand-in or real) torchvision at import time
    import compressai.registry.transforms as reg

    assert isinstance(reg.TRANSFORMS, dict)


def test_stub_classes_refuse_use():
    from semcom.compat import StubUseError, _stub_class

    cls = _stub_class("torch_geometric.data", "Data")
    with pytest.raises(StubUseError, match="torch_geometric"):
        cls()


@pytest.mark.parametrize(
    "name,kw", [("bmshj2018-factorized", {}), ("bmshj2018-hyperprior", {}), ("mbt2018-mean", {})]
)
def test_zoo_models_through_shim(name, kw):
    """The zoo architectures we build on: construct, update, compress, decompress."""
    import torch

    from semcom.compat import import_compressai

    import_compressai()
    from compressai.zoo import image_models

    torch.manual_seed(0)
    net = image_models[name](quality=1, pretrained=False, **kw).eval()
    assert net.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        enc = net.compress(x)
        dec = net.decompress(enc["strings"], enc["shape"])
    assert all(isinstance(s[0], bytes) and len(s[0]) > 0 for s in enc["strings"])
    assert dec["x_hat"].shape == x.shape


def test_elic_zoo_through_shim():
    import torch

    from semcom.compat import import_compressai

    import_compressai()
    from compressai.models import Elic2022Official

    torch.manual_seed(0)
    net = Elic2022Official(N=16, M=32, groups=[4, 4, 8, 16]).eval()
    net.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        enc = net.compress(x)
        dec = net.decompress(enc["strings"], enc["shape"])
    assert dec["x_hat"].shape == x.shape


@pytest.mark.parametrize("arch", ARCHS)
def test_roundtrip_bytes(models, arch):
    from semcom.stages.codec.stage import HEADER_BYTES, NeuralCodec

    img = _image(1)
    for rp in (1, 3):
        codec = NeuralCodec(models[arch], rp, tag=7)
        p = codec.encode(img)
        cats = p.ledger.by_category()
        assert p.ledger.total() == 8 * len(p.data)
        assert cats["payload"] == 8 * sum(len(s) for s in p.meta["strings"])
        assert cats["header"] == 8 * HEADER_BYTES
        lat = codec.decode_latent(p.data, img.shape[:2])
        assert lat.shape == p.meta["latent"].shape == (1, 32, 6, 6)
        assert bool((lat == p.meta["latent"]).all()), "entropy decoding is not exact"
        rec = codec.decode(p.data, img.shape[:2])
        assert rec.shape == img.shape and rec.dtype == np.uint8
        assert p.meta["est_bits"] > 0


def test_rate_points_differ(models):
    from semcom.stages.codec.stage import NeuralCodec

    img = _image(2)
    sizes = [len(NeuralCodec(models["mean-scale"], rp).encode(img).data) for rp in (1, 2, 3)]
    lat = [NeuralCodec(models["mean-scale"], rp).encode(img).meta["latent"] for rp in (1, 3)]
    assert not bool((lat[0] == lat[1]).all())
    assert len(set(sizes)) > 1


def test_odd_sizes_are_padded_and_cropped(models):
    from semcom.stages.codec.stage import NeuralCodec

    img = _image(3, 50, 70)
    for arch in ("factorized", "mean-scale"):
        codec = NeuralCodec(models[arch], 2)
        p = codec.encode(img)
        assert codec.decode(p.data, (50, 70)).shape == (50, 70, 3)


def test_header_checks(models):
    from semcom.stages.codec.stage import NeuralCodec

    img = _image(4)
    codec = NeuralCodec(models["mean-scale"], 2, tag=5)
    data = codec.encode(img).data
    with pytest.raises(WireFormatError, match="version"):
        codec.decode_latent(bytes([0xF3]) + data[1:], (96, 96))
    with pytest.raises(WireFormatError, match="rate point"):
        NeuralCodec(models["mean-scale"], 1, tag=5).decode_latent(data, (96, 96))
    with pytest.raises(WireFormatError, match="weights differ"):
        NeuralCodec(models["mean-scale"], 2, tag=6).decode_latent(data, (96, 96))
    with pytest.raises(WireFormatError):
        codec.decode_latent(data[:3], (96, 96))
    other = NeuralCodec(models["hyperprior"], 2, tag=5)
    with pytest.raises(WireFormatError, match="hyperprior|mean-scale"):
        other.decode_latent(data, (96, 96))


def test_save_load_and_config_errors(tmp_path, models):
    """Weights round trip through safetensors + manifest; bad keys name the config key."""
    import torch

    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import CodecSpec, load_codec
    from semcom.train.codec import save_codec

    torch.manual_seed(0)
    m = gained_codec("mean-scale", 16, 32, 3)
    spec = CodecSpec(
        arch="mean-scale", N=16, M=32, lambdas=[1e-3, 4e-3, 1.6e-2], file="mean-scale.safetensors"
    )
    save_codec(m, spec, str(tmp_path))
    c = load_codec("mean-scale", 2, weights=str(tmp_path))
    img = _image(5)
    # the loaded codec computes what the saved (float16-rounded) model computes
    assert c.tag == load_codec("mean-scale", 3, weights=str(tmp_path)).tag
    p = c.encode(img)
    assert bool((c.decode_latent(p.data, (96, 96)) == p.meta["latent"]).all())
    with pytest.raises(ConfigError) as e:
        load_codec("mean-scale", 4, weights=str(tmp_path))
    assert e.value.key == "edge.image.rate_point"
    with pytest.raises(ConfigError) as e:
        load_codec("elic", 1, weights=str(tmp_path))
    assert e.value.key == "edge.image.codec"
    with pytest.raises(ConfigError) as e:
        load_codec("mean-scale", 1, "d2", "blip", weights=str(tmp_path))
    assert e.value.key == "edge.image.neck_setting"


def test_config_keys():
    from semcom.config import load_config

    cfg = load_config(
        None,
        [
            "edge.method=neck",
            "edge.image.codec=elic",
            "edge.image.rate_point=3",
            "edge.image.neck_setting=d3",
            "edge.image.neck_layer=2",
        ],
    )
    im = cfg.edge.image
    assert (im.codec, im.rate_point, im.neck_setting, im.neck_layer) == ("elic", 3, "d3", 2)
    for bad, key in (
        ("edge.image.rate_point=0", "edge.image.rate_point"),
        ("edge.image.neck_layer=-1", "edge.image.neck_layer"),
        ("edge.image.codec=bpg", "edge.image.codec"),
        ("edge.image.neck_setting=d4", "edge.image.neck_setting"),
    ):
        with pytest.raises(ConfigError) as e:
            load_config(None, [bad])
        assert e.value.key == key


ENCODE = textwrap.dedent("""
    import sys, json, numpy as np, torch
    torch.set_num_threads(2)
    from semcom.stages.codec.stage import NeuralCodec
    from semcom.stages.codec.weights import load_codec
    from semcom.world import make_scene
    root, out = sys.argv[1], sys.argv[2]
    res = {}
    archs, rps, n = json.loads(sys.argv[3])
    for arch in archs:
        for rp in rps:
            c = load_codec(arch, rp, weights=root)
            for i in range(n):
                p = c.encode(make_scene(7, "eval", i).render()[0])
                key = f"{arch}-{rp}-{i}"
                open(f"{out}/{key}.bin", "wb").write(p.data)
                np.save(f"{out}/{key}.npy", p.meta["latent"].numpy())
                res[key] = len(p.data)
    print(json.dumps(res))
""")

DECODE = textwrap.dedent("""
    import sys, json, numpy as np, torch
    torch.set_num_threads(1)
    from semcom.stages.codec.weights import load_codec
    root, out = sys.argv[1], sys.argv[2]
    bad = []
    for key in json.loads(sys.argv[3]):
        arch, rp, i = key.rsplit("-", 2)
        c = load_codec(arch, int(rp), weights=root)
        lat = c.decode_latent(open(f"{out}/{key}.bin", "rb").read(), (96, 96)).numpy()
        ref = np.load(f"{out}/{key}.npy")
        if lat.shape != ref.shape or not np.array_equal(lat, ref):
            bad.append(key)
    print(json.dumps(bad))
""")


def _cross_process(root, out, archs, rps, n):
    def run(code, arg):
        res = subprocess.run(
            [sys.executable, "-c", code, str(root), str(out), json.dumps(arg)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return json.loads(res.stdout.strip().splitlines()[-1])

    out.mkdir(exist_ok=True)
    sizes = run(ENCODE, [archs, rps, n])
    assert len(sizes) == len(archs) * len(rps) * n and all(v > 3 for v in sizes.values())
    return run(DECODE, sorted(sizes))


def test_cross_process_determinism(tmp_path):
    """Encode in one process (2 threads), entropy-decode in another (1 thread):
    bit-identical latents, for a hyperprior codec and a context-model (ELIC) codec."""
    import torch

    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import CodecSpec
    from semcom.train.codec import save_codec

    archs = ["mean-scale", "elic"]
    for arch in archs:
        torch.manual_seed(1)
        save_codec(
            gained_codec(arch, 16, 32, 3),
            CodecSpec(
                arch=arch, N=16, M=32, lambdas=[1e-3, 4e-3, 1.6e-2], file=f"{arch}.safetensors"
            ),
            str(tmp_path),
        )
    assert _cross_process(tmp_path, tmp_path / "bits", archs, [1, 3], 2) == []


@pytest.mark.slow
def test_cross_process_determinism_committed_codecs(tmp_path):
    """The same with the committed codecs, every architecture, every rate point."""
    from semcom.stages.codec.weights import ASSETS, read_manifest

    specs = [e for e in read_manifest()["codecs"] if e["variant"] == "base"]
    if not specs:
        pytest.skip("no committed codecs")
    archs = sorted(e["arch"] for e in specs)
    rps = list(range(1, min(len(e["lambdas"]) for e in specs) + 1))
    assert _cross_process(ASSETS, tmp_path / "bits", archs, rps, 3) == []


@pytest.mark.slow
def test_committed_codecs_reproduce_their_recorded_rates():
    """The committed codecs load, and re-encoding the eval images they were measured on
    after training gives the recorded bpp_payload exactly (integer byte counts) and the
    recorded bpp_est and PSNR: the stored weights, CDF tables and coder are what
    produced the manifest's numbers."""
    from semcom.stages.codec.weights import load_codec, read_manifest
    from semcom.train.codec import evaluate, tiny_images

    specs = [e for e in read_manifest()["codecs"] if e["variant"] == "base"]
    if not specs:
        pytest.skip("no committed codecs")
    for e in specs:
        recorded = e["meta"]["eval"]
        c = load_codec(e["arch"], 1)
        rows = evaluate(c.model, tiny_images("eval", recorded[0]["images"]), c.spec)
        assert len(rows) == len(recorded) == len(e["lambdas"])
        assert [r["bpp_payload"] for r in rows] == sorted(r["bpp_payload"] for r in rows)
        for r, ref in zip(rows, recorded):
            assert r["bpp_payload"] == ref["bpp_payload"], (e["arch"], r["rate_point"])
            assert r["bpp_est"] == pytest.approx(ref["bpp_est"], rel=1e-4)
            assert r["psnr"] == pytest.approx(ref["psnr"], abs=1e-3)
