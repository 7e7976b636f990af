"""JPEG / WebP with shared headers: the same pixels as standalone files, fewer bytes."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.methods.image import PillowCloud
from cloud.pipeline import CloudItem
from edge.methods.image import PillowEdge
from semcom.config import load_config
from semcom.data import tinyworld_samples
from semcom.errors import WireFormatError
from semcom.stages.image import PillowCodec, jpeg_segments, jpeg_template

SAMPLES = tinyworld_samples("eval", 6, "caption", world_seed=5)


class _Backend:  # the cloud methods only need these to place their tokens
    num_patches = 4

    def preprocess(self, images):
        return images

    def vision_tokens(self, images):
        import torch

        class Out:
            tokens = torch.tensor(np.stack([im.astype(np.float32) for im in images]))

        return Out()


@pytest.mark.parametrize("fmt,quality", [("jpeg", 10), ("jpeg", 75), ("webp", 5), ("webp", 50)])
def test_shared_headers_decode_to_the_pixels_of_the_standalone_file(fmt, quality):
    file = PillowCodec(fmt, quality)
    shared = PillowCodec(
        fmt, quality, headers="shared", template=jpeg_template(quality) if fmt == "jpeg" else b""
    )
    for s in SAMPLES:
        a, b = file.encode(s.image), shared.encode(s.image, hw=s.hw)
        assert b.ledger.total() == 8 * len(b.data) and len(b.data) < len(a.data)
        assert np.array_equal(file.decode(a.data), shared.decode(b.data, hw=s.hw))


def test_jpeg_template_is_the_constant_part_of_every_file():
    t = jpeg_template(35)
    markers = [m for m, _ in jpeg_segments(t + b"\xff\xd9")]
    assert markers.count(0xDB) == 2 and markers.count(0xC4) == 4 and 0xDA in markers
    assert t == jpeg_template(35) and t != jpeg_template(36)


def _methods(*sets):
    cfg = load_config(None, ["edge.method=jpeg", "edge.image.quality=30", *sets])
    return cfg, PillowEdge(cfg), PillowCloud(cfg, _Backend())


def test_edge_and_cloud_agree_through_the_setup_and_refuse_another():
    cfg, edge, cloud = _methods()
    setup = edge.setup(SAMPLES)
    res = edge.encode(SAMPLES, "caption")
    cloud.open(setup)
    out = cloud.decode([CloudItem(s.sample_id, r.descriptions, s.hw) for s, r in zip(SAMPLES, res)])
    assert out.tokens.shape[0] == len(SAMPLES)
    _, _, other = _methods("edge.image.quality=31")
    with pytest.raises(WireFormatError, match="quality"):
        other.open(setup)
    _, file_edge, file_cloud = _methods("edge.image.headers=file")
    assert file_edge.setup(SAMPLES) == b""
    file_cloud.open(b"")
    with pytest.raises(WireFormatError):  # a lean description without its setup
        file_cloud.decode([CloudItem("s0", res[0].descriptions, SAMPLES[0].hw)])
