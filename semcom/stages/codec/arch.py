"""Codec architectures: CompressAI models at tiny width, and the image/tensor helpers.

:func:`build_model` builds an untrained CompressAI model of an architecture
(``factorized``, ``hyperprior``, ``mean-scale``, ``elic``; see :mod:`semcom.stages.codec`)
with one-stage hyper transforms (:func:`_tiny_hyper`) so that a 96 x 96 image needs no
padding. torch and compressai are imported inside the functions.

>>> latent_shape("mean-scale", 96, 96), latent_shape("factorized", 50, 70)
((6, 6), (4, 5))
>>> n_strings("elic", groups=5)
11
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ARCH_CODES = {"factorized": 1, "hyperprior": 2, "mean-scale": 3, "elic": 4}

# Default widths (N: transform channels, M: latent channels) per architecture.
DEFAULT_WIDTH = {
    "factorized": (48, 64),
    "hyperprior": (48, 64),
    "mean-scale": (48, 64),
    "elic": (32, 64),
}
# ELIC's uneven channel groups for M = 64 (the paper's [16, 16, 32, 64, M-128] scaled).
ELIC_GROUPS = {64: [4, 4, 8, 16, 32], 96: [8, 8, 16, 32, 32]}


def _compressai():
    """compressai, imported through the shim (:func:`semcom.compat.import_compressai`)."""
    from semcom.compat import import_compressai

    return import_compressai()


def hyper_channels(N: int) -> int:
    """Channels of the hyper-latent z: N // 3 (the zoo uses N). On a 96 x 96 image z is
    3 x 3, so every z channel costs at least a few bits per image; a third of N keeps
    that floor low without starving the scale prediction."""
    return max(8, N // 3)


def _tiny_hyper(arch: str, N: int, M: int):
    """(h_a, h_s) with a single stride-2 stage (the zoo's have two) and a narrower z."""
    Z = hyper_channels(N)
    import torch.nn as nn
    from compressai.models.utils import conv, deconv

    if arch == "hyperprior":
        h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
            conv(N, N, stride=2, kernel_size=5),
            nn.ReLU(inplace=True),
            conv(N, Z, stride=1, kernel_size=3),
        )
        h_s = nn.Sequential(
            deconv(Z, N, stride=2, kernel_size=5),
            nn.ReLU(inplace=True),
            conv(N, N, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
            conv(N, M, stride=1, kernel_size=3),
            nn.ReLU(inplace=True),
        )
    elif arch == "mean-scale":
        h_a = nn.Sequential(
            conv(M, N, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(N, N, stride=2, kernel_size=5),
            nn.LeakyReLU(inplace=True),
            conv(N, Z, stride=1, kernel_size=3),
        )
        h_s = nn.Sequential(
            deconv(Z, M, stride=2, kernel_size=5),
            nn.LeakyReLU(inplace=True),
            conv(M, M * 3 // 2, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
        )
    elif arch == "elic":
        h_a = nn.Sequential(
            conv(M, N, kernel_size=3, stride=1),
            nn.ReLU(inplace=True),
            conv(N, N, kernel_size=5, stride=2),
            nn.ReLU(inplace=True),
            conv(N, Z, kernel_size=3, stride=1),
        )
        h_s = nn.Sequential(
            deconv(Z, N, kernel_size=5, stride=2),
            nn.ReLU(inplace=True),
            conv(N, N * 3 // 2, kernel_size=3, stride=1),
            nn.ReLU(inplace=True),
            conv(N * 3 // 2, N * 2, kernel_size=3, stride=1),
        )
    else:  # pragma: no cover
        raise ValueError(arch)
    return h_a, h_s


def _elic(N: int, M: int):
    """ELIC (He et al. 2022) as CompressAI's ``Elic2022Official`` builds it, at tiny width:
    g_a/g_s of residual bottleneck + attention blocks (one block per stage instead of
    three), uneven channel groups with channel context and checkerboard spatial context;
    the channel-context nets are 3x3 convs of 32 channels (the official 5x5 convs of
    224/128 channels would dominate a 64-channel latent)."""
    import torch.nn as nn
    from compressai.entropy_models import EntropyBottleneck
    from compressai.latent_codecs import (
        ChannelGroupsLatentCodec,
        CheckerboardLatentCodec,
        GaussianConditionalLatentCodec,
        HyperLatentCodec,
        HyperpriorLatentCodec,
    )
    from compressai.layers import (
        AttentionBlock,
        CheckerboardMaskedConv2d,
        sequential_channel_ramp,
    )
    from compressai.models.base import SimpleVAECompressionModel
    from compressai.models.sensetime import ResidualBottleneckBlock
    from compressai.models.utils import conv, deconv

    groups = ELIC_GROUPS.get(M) or [M // 16, M // 16, M // 8, M // 4, M - M // 2]
    assert sum(groups) == M

    class TinyElic(SimpleVAECompressionModel):
        def __init__(self):
            super().__init__()
            self.groups = list(groups)
            rbb = ResidualBottleneckBlock
            self.g_a = nn.Sequential(
                conv(3, N, kernel_size=5, stride=2),
                rbb(N, N),
                conv(N, N, kernel_size=5, stride=2),
                rbb(N, N),
                AttentionBlock(N),
                conv(N, N, kernel_size=5, stride=2),
                rbb(N, N),
                conv(N, M, kernel_size=5, stride=2),
                AttentionBlock(M),
            )
            self.g_s = nn.Sequential(
                AttentionBlock(M),
                deconv(M, N, kernel_size=5, stride=2),
                rbb(N, N),
                deconv(N, N, kernel_size=5, stride=2),
                AttentionBlock(N),
                rbb(N, N),
                deconv(N, N, kernel_size=5, stride=2),
                rbb(N, N),
                deconv(N, 3, kernel_size=5, stride=2),
            )
            h_a, h_s = _tiny_hyper("elic", N, M)
            width = 32
            channel_context = {
                f"y{k}": nn.Sequential(
                    conv(sum(groups[:k]), width, kernel_size=3, stride=1),
                    nn.ReLU(inplace=True),
                    conv(width, groups[k] * 2, kernel_size=3, stride=1),
                )
                for k in range(1, len(groups))
            }
            spatial_context = [
                CheckerboardMaskedConv2d(g, g * 2, kernel_size=5, stride=1, padding=2)
                for g in groups
            ]
            param_aggregation = [
                sequential_channel_ramp(
                    groups[k] * 2 + (k > 0) * groups[k] * 2 + N * 2,
                    groups[k] * 2,
                    min_ch=N,
                    num_layers=2,
                    interp="linear",
                    make_layer=nn.Conv2d,
                    make_act=lambda: nn.ReLU(inplace=True),
                    kernel_size=1,
                    stride=1,
                    padding=0,
                )
                for k in range(len(groups))
            ]
            scctx = {
                f"y{k}": CheckerboardLatentCodec(
                    latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                    context_prediction=spatial_context[k],
                    entropy_parameters=param_aggregation[k],
                )
                for k in range(len(groups))
            }
            self.latent_codec = HyperpriorLatentCodec(
                latent_codec={
                    "y": ChannelGroupsLatentCodec(
                        groups=groups, channel_context=channel_context, latent_codec=scctx
                    ),
                    "hyper": HyperLatentCodec(
                        entropy_bottleneck=EntropyBottleneck(hyper_channels(N)),
                        h_a=h_a,
                        h_s=h_s,
                        quantizer="ste",
                    ),
                }
            )

        @property
        def downsampling_factor(self) -> int:
            return 32

    return TinyElic()


def build_model(arch: str, N: int | None = None, M: int | None = None):
    """An untrained CompressAI model of ``arch`` at width (N, M)."""
    if arch not in ARCH_CODES:
        raise ValueError(f"unknown codec architecture {arch!r}; use one of {list(ARCH_CODES)}")
    _compressai()
    from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior

    dn, dm = DEFAULT_WIDTH[arch]
    N, M = N or dn, M or dm
    if arch == "factorized":
        return FactorizedPrior(N, M)
    if arch == "elic":
        return _elic(N, M)
    cls = ScaleHyperprior if arch == "hyperprior" else MeanScaleHyperprior
    model = cls(N, M)
    model.h_a, model.h_s = _tiny_hyper(arch, N, M)
    return model


def downsampling(arch: str) -> int:
    return 16 if arch == "factorized" else 32


def latent_shape(arch: str, h: int, w: int) -> tuple[int, int]:
    """(h, w) of y for an original H x W image (after padding to the factor)."""
    f = downsampling(arch)
    ph, pw = math.ceil(h / f) * f, math.ceil(w / f) * f
    return ph // 16, pw // 16


def pad_image(x, factor: int):
    """Replicate-pad ``x [B,3,H,W]`` at bottom/right to a multiple of ``factor``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def to_tensor(images) -> Any:
    """uint8 [H,W,3] (or a list of them, same size) -> float [B,3,H,W] in [0, 1]."""
    import torch

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    arr = np.stack([np.asarray(im) for im in images])
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] images, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x) -> np.ndarray:
    """float [B,3,H,W] in [0, 1] -> uint8 [B,H,W,3] (rounded, as CompressAI's metrics)."""
    return x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def n_strings(arch: str, groups: int = 0) -> int:
    """Entropy-coded strings per image: y (per ELIC group: anchor + non-anchor) and z."""
    if arch == "factorized":
        return 1
    if arch in ("hyperprior", "mean-scale"):
        return 2
    return 2 * groups + 1
