"""Neural image codecs (CompressAI 1.2.8) as a reversible stage with real bitstreams.

``NeuralCodec.encode(image)`` runs the analysis transform and the entropy coder (rANS)
and returns the wire body: a versioned header, the lengths of the entropy-coded
strings, and the strings. ``decode_latent(body)`` entropy-decodes the quantised latent
``y_hat`` (what the transform-neck consumes, no pixel synthesis) and ``decode(body)``
also runs the synthesis transform (decode-then-VLM baselines).

Architectures (``edge.image.codec``), all built from CompressAI's classes and layers at
tiny width (N, M <= 64/96 so they train on a CPU and their weights stay small):

===============  ========================================  ===========================
``factorized``   Balle et al. 2017 (``bmshj2018-factorized``)  y: factorized prior
``hyperprior``   Balle et al. 2018 (``bmshj2018-hyperprior``)  y: zero-mean Gaussian, scales from z
``mean-scale``   Minnen et al. 2018 (``mbt2018-mean``)         y: Gaussian, means+scales from z
``elic``         He et al. 2022 (``elic2022-official``)        uneven channel groups + checkerboard
===============  ========================================  ===========================

Tiny-image adaptation: the zoo hyper transforms downsample y by 4 (total factor 64), so a
96 x 96 image (y: 6 x 6) would need padding to 128 x 128. Here ``h_a``/``h_s`` have one
stride-2 stage (total factor 32, 96 = 3 * 32): y is 6 x 6 and z is 3 x 3 with no padding.
Other sizes are replicate-padded to a multiple of the factor; rates always count the
original H x W.

Wire body (after the envelope), version 1::

    byte 0   codec wire version (4 bits) | architecture code (4 bits)
    byte 1   rate point 1..15 (4 bits)   | variant (4 bits: 0 base, 2 d2, 3 d3)
    byte 2   weights tag (8 bits of the weights' SHA-256: catches edge/cloud mismatch)
    varint   length of each entropy-coded string but the last
    bytes    the strings (y strings..., z string), concatenated

Ledger: strings -> ``payload`` (CompressAI's "actual bpp"), the length varints ->
``side_info``, bytes 0-2 -> ``header``. Latent and hyper-latent shapes are not sent:
they follow from the original H x W in the envelope.

Cross-process determinism (STYLE 7.5, CompressAI #279/#309): the entropy-parameter path
(hyper-synthesis ``h_s``, context models, CDF index building) runs in float64 on the
CPU with one thread and deterministic algorithms, on both ends (:func:`coding_mode`), and
the factorized prior's CDF tables are stored with the weights rather than recomputed.
Edge and cloud then compute bit-identical indexes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcom.errors import WireFormatError
from semcom.stages.envelope import get_varint, put_varint
from semcom.types import Payload, RateLedger

WIRE_VERSION = 1
ARCH_CODES = {"factorized": 1, "hyperprior": 2, "mean-scale": 3, "elic": 4}
ARCH_NAMES = {v: k for k, v in ARCH_CODES.items()}
VARIANT_CODES = {"base": 0, "d2": 2, "d3": 3}
VARIANT_NAMES = {v: k for k, v in VARIANT_CODES.items()}
MAX_RATE_POINTS = 15
HEADER_BYTES = 3

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# Default widths (N: transform channels, M: latent channels) per architecture.
DEFAULT_WIDTH = {"factorized": (48, 64), "hyperprior": (48, 64), "mean-scale": (48, 64),
                 "elic": (32, 64)}
# ELIC's uneven channel groups for M = 64 (the paper's [16, 16, 32, 64, M-128] scaled).
ELIC_GROUPS = {64: [4, 4, 8, 16, 32], 96: [8, 8, 16, 32, 32]}


def _compressai():
    from semcom.compat import import_compressai

    return import_compressai()


# --------------------------------------------------------------------------------------
# architectures
# --------------------------------------------------------------------------------------

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
        h_a = nn.Sequential(conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True),
                            conv(N, N, stride=2, kernel_size=5), nn.ReLU(inplace=True),
                            conv(N, Z, stride=1, kernel_size=3))
        h_s = nn.Sequential(deconv(Z, N, stride=2, kernel_size=5), nn.ReLU(inplace=True),
                            conv(N, N, stride=1, kernel_size=3), nn.ReLU(inplace=True),
                            conv(N, M, stride=1, kernel_size=3), nn.ReLU(inplace=True))
    elif arch == "mean-scale":
        h_a = nn.Sequential(conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
                            conv(N, N, stride=2, kernel_size=5), nn.LeakyReLU(inplace=True),
                            conv(N, Z, stride=1, kernel_size=3))
        h_s = nn.Sequential(deconv(Z, M, stride=2, kernel_size=5), nn.LeakyReLU(inplace=True),
                            conv(M, M * 3 // 2, stride=1, kernel_size=3),
                            nn.LeakyReLU(inplace=True),
                            conv(M * 3 // 2, M * 2, stride=1, kernel_size=3))
    elif arch == "elic":
        h_a = nn.Sequential(conv(M, N, kernel_size=3, stride=1), nn.ReLU(inplace=True),
                            conv(N, N, kernel_size=5, stride=2), nn.ReLU(inplace=True),
                            conv(N, Z, kernel_size=3, stride=1))
        h_s = nn.Sequential(deconv(Z, N, kernel_size=5, stride=2), nn.ReLU(inplace=True),
                            conv(N, N * 3 // 2, kernel_size=3, stride=1), nn.ReLU(inplace=True),
                            conv(N * 3 // 2, N * 2, kernel_size=3, stride=1))
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
        ChannelGroupsLatentCodec, CheckerboardLatentCodec, GaussianConditionalLatentCodec,
        HyperLatentCodec, HyperpriorLatentCodec,
    )
    from compressai.layers import (
        AttentionBlock, CheckerboardMaskedConv2d, sequential_channel_ramp,
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
                conv(3, N, kernel_size=5, stride=2), rbb(N, N),
                conv(N, N, kernel_size=5, stride=2), rbb(N, N), AttentionBlock(N),
                conv(N, N, kernel_size=5, stride=2), rbb(N, N),
                conv(N, M, kernel_size=5, stride=2), AttentionBlock(M))
            self.g_s = nn.Sequential(
                AttentionBlock(M), deconv(M, N, kernel_size=5, stride=2), rbb(N, N),
                deconv(N, N, kernel_size=5, stride=2), AttentionBlock(N), rbb(N, N),
                deconv(N, N, kernel_size=5, stride=2), rbb(N, N),
                deconv(N, 3, kernel_size=5, stride=2))
            h_a, h_s = _tiny_hyper("elic", N, M)
            width = 32
            channel_context = {
                f"y{k}": nn.Sequential(
                    conv(sum(groups[:k]), width, kernel_size=3, stride=1), nn.ReLU(inplace=True),
                    conv(width, groups[k] * 2, kernel_size=3, stride=1))
                for k in range(1, len(groups))}
            spatial_context = [CheckerboardMaskedConv2d(g, g * 2, kernel_size=5, stride=1,
                                                        padding=2) for g in groups]
            param_aggregation = [
                sequential_channel_ramp(groups[k] * 2 + (k > 0) * groups[k] * 2 + N * 2,
                                        groups[k] * 2, min_ch=N, num_layers=2, interp="linear",
                                        make_layer=nn.Conv2d,
                                        make_act=lambda: nn.ReLU(inplace=True),
                                        kernel_size=1, stride=1, padding=0)
                for k in range(len(groups))]
            scctx = {f"y{k}": CheckerboardLatentCodec(
                latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                context_prediction=spatial_context[k], entropy_parameters=param_aggregation[k])
                for k in range(len(groups))}
            self.latent_codec = HyperpriorLatentCodec(latent_codec={
                "y": ChannelGroupsLatentCodec(groups=groups, channel_context=channel_context,
                                              latent_codec=scctx),
                "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(hyper_channels(N)), h_a=h_a,
                                          h_s=h_s, quantizer="ste")})

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
    return (x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


# --------------------------------------------------------------------------------------
# deterministic entropy coding
# --------------------------------------------------------------------------------------

@contextlib.contextmanager
def coding_mode():
    """The numerics of the entropy-parameter path, identical on edge and cloud: float64
    default dtype, one intra-op thread, deterministic algorithms, no autograd."""
    import torch

    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    det = torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True)
        with torch.no_grad():
            yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def n_strings(arch: str, groups: int = 0) -> int:
    """Entropy-coded strings per image: y (per ELIC group: anchor + non-anchor) and z."""
    if arch == "factorized":
        return 1
    if arch in ("hyperprior", "mean-scale"):
        return 2
    return 2 * groups + 1


def _ste(x):
    from compressai.ops import quantize_ste

    return quantize_ste(x)


def gained_codec(arch: str, N: int | None = None, M: int | None = None, rates: int = 4):
    """A variable-rate codec: one CompressAI model of ``arch`` whose latent is scaled per
    rate point k by learned channel gains (Cui et al., CVPR 2021, "asymmetric gained"):
    ``y_k = g_a(x) * gain[k]``, quantised and entropy-coded, ``g_s(y_hat_k * inv_gain[k])``;
    the hyper-latent likewise (``hgain``). The factorized codec has one entropy bottleneck
    (density of y) per rate point; the hyperprior codecs share one density of z. The K
    points share the transforms and cost about one model in weights and training time. ``latent`` (what the neck reads) is
    ``y_hat_k * inv_gain[k]``: the same domain at every rate point.
    """
    import torch
    import torch.nn as nn

    _compressai()
    from compressai.entropy_models import EntropyBottleneck

    dn, dm = DEFAULT_WIDTH[arch]
    N, M = N or dn, M or dm

    class _Gained(nn.Module):
        def __init__(self):
            super().__init__()
            self.arch, self.N, self.M, self.K = arch, N, M, rates
            self.net = build_model(arch, N, M)
            # gains are stored as logs (positive, and Adam moves them multiplicatively);
            # rate point k starts with a quantiser step 2^-(k - (K-1)/2)
            init = torch.tensor([math.log(2.0) * (k - (rates - 1) / 2) for k in range(rates)])
            self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
            self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))
            if arch == "factorized":
                del self.net.entropy_bottleneck
                self.ebs = nn.ModuleList(EntropyBottleneck(M) for _ in range(rates))
            else:
                Z = hyper_channels(N)
                self.log_hgain = nn.Parameter(torch.zeros(rates, Z))
                self.log_inv_hgain = nn.Parameter(torch.zeros(rates, Z))
                if arch == "elic":
                    del self.net.latent_codec["hyper"].entropy_bottleneck
                else:
                    del self.net.entropy_bottleneck
                # one hyper-latent density for all rate points (hgain adapts z per rate):
                # it then learns from every step, and z's bits fall 4x sooner
                self.ebs = nn.ModuleList([EntropyBottleneck(Z)])

        # parts ------------------------------------------------------------------
        @property
        def groups(self) -> list[int]:
            return list(self.net.groups) if self.arch == "elic" else []

        @property
        def g_a(self):
            return self.net.g_a

        @property
        def g_s(self):
            return self.net.g_s

        def _h(self):
            return self.net.latent_codec["hyper"] if self.arch == "elic" else self.net

        def _eb(self, k: int):
            return self.ebs[k] if len(self.ebs) > 1 else self.ebs[0]

        def _g(self, name: str, k: int):
            return torch.exp(getattr(self, "log_" + name)[k])[None, :, None, None]

        def _params(self, z_hat, k):
            """Entropy parameters of y from z_hat: (scales, means) or ELIC side params."""
            p = self._h().h_s(z_hat * self._g("inv_hgain", k))
            if self.arch == "hyperprior":
                return p, None
            if self.arch == "mean-scale":
                return p.chunk(2, 1)
            return p, None

        def _z(self, y, k):
            h_in = torch.abs(y) if self.arch == "hyperprior" else y
            return self._h().h_a(h_in) * self._g("hgain", k)

        # training / estimation ----------------------------------------------------
        def forward(self, x, k: int):
            """Differentiable pass: x_hat, likelihoods (noise), latent (STE-rounded)."""
            y = self.net.g_a(x) * self._g("gain", k)
            eb = self._eb(k)
            if self.arch == "factorized":
                _, y_lik = eb(y)
                med = eb._get_medians()
                y_hat = _ste(y - med) + med
                liks = {"y": y_lik}
            else:
                z = self._z(y, k)
                _, z_lik = eb(z)
                zm = eb._get_medians()
                z_hat = _ste(z - zm) + zm
                a, b = self._params(z_hat, k)
                if self.arch == "elic":
                    out = self.net.latent_codec["y"](y, a)
                    y_lik, y_hat = out["likelihoods"]["y"], out["y_hat"]
                else:
                    _, y_lik = self.net.gaussian_conditional(y, a, means=b)
                    y_hat = _ste(y) if b is None else _ste(y - b) + b
                liks = {"y": y_lik, "z": z_lik}
            latent = y_hat * self._g("inv_gain", k)
            return {"x_hat": self.net.g_s(latent), "likelihoods": liks, "latent": latent}

        def aux_loss(self):
            return sum(eb.loss() for eb in self.ebs)

        def estimate_bits(self, y, k: int) -> float:
            """-log2 likelihoods (eval-mode rounding) of a gained latent y (batch 1)."""
            eb = self._eb(k)
            if self.arch == "factorized":
                liks = [eb(y, training=False)[1]]
            else:
                z = self._z(y, k)
                z_hat, z_lik = eb(z, training=False)
                a, b = self._params(z_hat, k)
                if self.arch == "elic":
                    y_lik = self.net.latent_codec["y"](y, a)["likelihoods"]["y"]
                else:
                    y_lik = self.net.gaussian_conditional(y, a, means=b, training=False)[1]
                liks = [y_lik, z_lik]
            return float(sum(-torch.log2(lk).sum() for lk in liks))

        # entropy coding (call inside coding_mode, on a float64 copy) ----------------
        def compress_latent(self, y, k: int):
            """Gained latent y (batch 1) -> (strings, y_hat in the common domain)."""
            eb = self._eb(k)
            if self.arch == "factorized":
                strings = eb.compress(y)
                y_hat = eb.decompress(strings, y.shape[-2:])
                return [strings[0]], y_hat * self._g("inv_gain", k)
            z = self._z(y, k)
            z_strings = eb.compress(z)
            z_hat = eb.decompress(z_strings, z.shape[-2:])
            a, b = self._params(z_hat, k)
            if self.arch == "elic":
                out = self.net.latent_codec["y"].compress(y, a)
                strings = [s[0] for s in out["strings"]] + [z_strings[0]]
                y_hat = out["y_hat"]
            else:
                gc = self.net.gaussian_conditional
                idx = gc.build_indexes(a)
                y_strings = gc.compress(y, idx, means=b)
                y_hat = gc.decompress(y_strings, idx, dtype=y.dtype, means=b)
                strings = [y_strings[0], z_strings[0]]
            return strings, y_hat * self._g("inv_gain", k)

        def decompress_latent(self, strings: list[bytes], k: int, y_hw: tuple[int, int]):
            """Strings -> y_hat in the common domain (batch 1)."""
            h, w = y_hw
            eb = self._eb(k)
            if self.arch == "factorized":
                return eb.decompress([strings[0]], (h, w)) * self._g("inv_gain", k)
            z_hat = eb.decompress([strings[-1]], ((h + 1) // 2, (w + 1) // 2))
            a, b = self._params(z_hat, k)
            if self.arch == "elic":
                shape = [(g, h, w) for g in self.groups]
                y_hat = self.net.latent_codec["y"].decompress(
                    [[s] for s in strings[:-1]], shape, a)["y_hat"]
            else:
                gc = self.net.gaussian_conditional
                idx = gc.build_indexes(a)
                y_hat = gc.decompress([strings[0]], idx, dtype=z_hat.dtype, means=b)
            return y_hat * self._g("inv_gain", k)

        def update(self, force: bool = True):
            from compressai.models.base import get_scale_table

            for eb in self.ebs:
                eb.update(force=force)
            for m in self.modules():
                if type(m).__name__ == "GaussianConditional":
                    m.update_scale_table(get_scale_table(), force=force)

    return _Gained()


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def _is_gc_buffer(name: str) -> bool:
    return "gaussian_conditional" in name and name.rsplit(".", 1)[-1] in (
        *CDF_BUFFERS, "scale_table")


def finalize(model) -> None:
    """Round float weights to float16 precision (how they are stored), then build the
    CDF tables (``update``): the tables match the stored weights exactly."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))
    model.update(force=True)


def state_for_saving(model, skip: tuple[str, ...] = ()) -> dict:
    """Parameters as float16, buffers as they are (the entropy bottlenecks' CDF tables as
    int32); Gaussian
    tables are left out (rebuilt from the fixed scale table on load); keys starting with
    any of ``skip`` (e.g. ``net.g_s.`` for a machine-only codec) are left out."""
    import torch

    params = {k for k, _ in model.named_parameters()}
    out = {}
    for k, v in model.state_dict().items():
        if _is_gc_buffer(k) or any(k.startswith(p) for p in skip):
            continue
        v = v.detach().cpu()
        # parameters as float16; buffers (likelihood bound 1e-9, GDN pedestal 2^-36...)
        # keep their precision: in float16 they would round to 0
        out[k] = (v.to(torch.float16) if k in params else v).contiguous()
    return out


def weights_tag(state: dict) -> int:
    """8-bit tag of a state dict (sent in the header; the cloud checks it)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.digest()[0]


def load_state(model, state: dict, *, allow_missing: tuple[str, ...] = ()) -> None:
    """Load a saved state (float16 floats, EB tables) into a gained codec; rebuild the
    Gaussian tables. Keys under ``allow_missing`` prefixes may be absent (kept as is)."""
    import torch

    _compressai()
    from compressai.entropy_models import EntropyBottleneck
    from compressai.models.utils import update_registered_buffers

    # likelihood lower bounds are constants of the entropy models (1e-9), not learned:
    # keep the constructed value (weights saved by an early version stored them as
    # float16, i.e. 0, which makes -log2(likelihood) infinite when fine-tuning)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()
             if not k.endswith(".likelihood_lower_bound.bound")}
    for name, module in model.named_modules():
        if isinstance(module, EntropyBottleneck) and f"{name}._quantized_cdf" in state:
            update_registered_buffers(module, name, list(CDF_BUFFERS), state)
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    missing = [k for k in missing if not _is_gc_buffer(k)
               and not k.endswith(".likelihood_lower_bound.bound")
               and not any(k.startswith(p) for p in allow_missing)]
    if missing or unexpected:
        raise ValueError(f"codec weights do not match {model.arch}(N={model.N}, M={model.M}, "
                         f"K={model.K}): missing {missing[:5]}, unexpected {unexpected[:5]}")
    from compressai.models.base import get_scale_table

    for m in model.modules():
        if type(m).__name__ == "GaussianConditional":
            m.update_scale_table(get_scale_table(), force=True)
    model.eval()


@dataclass
class CodecSpec:
    """One trained (variable-rate) codec: an entry of ``codecs/manifest.json``."""

    arch: str
    variant: str = "base"          # base | d2 | d3
    family: str | None = None      # d2/d3: the VLM whose neck the codec was tuned for
    N: int = 48
    M: int = 64
    lambdas: list = field(default_factory=list)   # one per rate point (1 = lowest rate)
    file: str = ""
    base: str = ""                 # d3: file of the base codec whose g_s it shares
    meta: dict = field(default_factory=dict)

    @property
    def rates(self) -> int:
        return len(self.lambdas)


def codec_dir(weights: str = "") -> Path:
    return Path(weights).expanduser() / "codecs" if weights else ASSETS / "codecs"


def read_manifest(weights: str = "") -> dict:
    path = codec_dir(weights) / "manifest.json"
    if not path.is_file():
        return {"codecs": []}
    return json.loads(path.read_text())


def write_manifest_entry(spec: CodecSpec, weights: str = "") -> None:
    """Add or replace the manifest entry of (arch, variant, family)."""
    from dataclasses import asdict

    from semcom.results import atomic_write_json

    man = read_manifest(weights)
    key = (spec.arch, spec.variant, spec.family)
    man["codecs"] = [e for e in man["codecs"]
                     if (e["arch"], e["variant"], e.get("family")) != key] + [asdict(spec)]
    man["codecs"].sort(key=lambda e: (e["arch"], e["variant"], e.get("family") or ""))
    codec_dir(weights).mkdir(parents=True, exist_ok=True)
    atomic_write_json(codec_dir(weights) / "manifest.json", man)


def find_spec(arch: str, variant: str = "base", family: str | None = None,
              weights: str = "") -> CodecSpec:
    """The manifest entry of (arch, variant[, family]); a ConfigError naming the key else."""
    from semcom.errors import ConfigError

    entries = [CodecSpec(**e) for e in read_manifest(weights)["codecs"]]
    for e in entries:
        if (e.arch, e.variant) == (arch, variant) and (variant == "base" or e.family == family):
            return e
    if variant == "base":
        raise ConfigError("edge.image.codec", f"no trained '{arch}' codec in "
                          f"{codec_dir(weights)} (train it: semcom train codec --arch {arch})")
    raise ConfigError("edge.image.neck_setting", f"no '{variant}' codec of '{arch}' for model "
                      f"'{family}' in {codec_dir(weights)} (train it: semcom train neck "
                      f"--setting {variant} --model {family})")


_CACHE: dict[tuple, Any] = {}


def load_codec(arch: str, rate_point: int, variant: str = "base", family: str | None = None,
               weights: str = "") -> NeuralCodec:
    """The trained codec at ``rate_point`` (1 = lowest rate); models cached per process."""
    from semcom.errors import ConfigError

    key = (arch, variant, family if variant != "base" else None, weights)
    if key not in _CACHE:
        from safetensors.torch import load_file

        spec = find_spec(arch, variant, family, weights)

        def read(name: str):
            path = codec_dir(weights) / name
            try:
                return load_file(str(path))
            except Exception as exc:  # missing, truncated or not safetensors
                raise ConfigError("edge.image.weights", f"cannot read the codec weights "
                                  f"{path}: {exc}") from None

        state = read(spec.file)
        model = gained_codec(arch, spec.N, spec.M, spec.rates)
        if spec.base:  # shares the base codec's synthesis transform (not stored twice)
            base = read(spec.base)
            state = {**{k: v for k, v in base.items() if k.startswith("net.g_s.")}, **state}
        load_state(model, state)
        _CACHE[key] = (model, spec, weights_tag(state))
    model, spec, tag = _CACHE[key]
    if not 1 <= rate_point <= spec.rates:
        raise ConfigError("edge.image.rate_point", f"{rate_point} is not a trained rate point "
                          f"of '{arch}' ({variant}): use 1..{spec.rates}")
    return NeuralCodec(model, rate_point, variant, tag, spec)


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CodecHeader:
    arch: str
    rate_point: int
    variant: str
    tag: int
    version: int = WIRE_VERSION

    def pack(self) -> bytes:
        return bytes([(self.version << 4) | ARCH_CODES[self.arch],
                      (self.rate_point << 4) | VARIANT_CODES[self.variant], self.tag & 0xFF])

    @classmethod
    def unpack(cls, data: bytes) -> CodecHeader:
        if len(data) < HEADER_BYTES:
            raise WireFormatError(f"codec body too short for its header ({len(data)} bytes)")
        version, code = data[0] >> 4, data[0] & 0x0F
        if version != WIRE_VERSION:
            raise WireFormatError(f"unsupported codec wire version {version} "
                                  f"(this is {WIRE_VERSION})")
        if code not in ARCH_NAMES:
            raise WireFormatError(f"unknown codec architecture code {code}")
        rp, vc = data[1] >> 4, data[1] & 0x0F
        if vc not in VARIANT_NAMES or rp == 0:
            raise WireFormatError(f"bad codec rate point / variant byte {data[1]:#04x}")
        return cls(ARCH_NAMES[code], rp, VARIANT_NAMES[vc], data[2])


class NeuralCodec:
    """A trained variable-rate codec at one rate point (``rate_point`` 1 = lowest rate).

    :input encode: ``uint8 [H, W, 3]`` RGB
    :output decode: ``uint8 [H, W, 3]``; ``decode_latent``: ``float32 [1, M, h, w]``
    """

    def __init__(self, model, rate_point: int, variant: str = "base", tag: int = 0,
                 spec: CodecSpec | None = None):
        if not 1 <= rate_point <= min(MAX_RATE_POINTS, model.K):
            raise ValueError(f"rate point must be in [1, {model.K}], got {rate_point}")
        self.model = model.eval()
        self.arch = model.arch
        self.rate_point, self.variant, self.tag = rate_point, variant, tag
        self.k = rate_point - 1
        self.spec = spec
        self.name = f"codec-{self.arch}"

    @property
    def M(self) -> int:
        return self.model.M

    @property
    def coder(self):
        """A float64 copy of the model for the entropy-coding path (shared per model)."""
        c = getattr(self.model, "_coder64", None)
        if c is None:
            import copy

            c = copy.deepcopy(self.model).double().eval()
            object.__setattr__(self.model, "_coder64", c)
        return c

    @property
    def header(self) -> CodecHeader:
        return CodecHeader(self.arch, self.rate_point, self.variant, self.tag)

    def analysis(self, image: np.ndarray):
        """Gained latent y_k = g_a(x) * gain[k] (float32) of one image."""
        import torch

        x = pad_image(to_tensor(image), downsampling(self.arch))
        with torch.no_grad():
            return self.model.g_a(x) * self.model._g("gain", self.k)

    def encode(self, image: np.ndarray) -> Payload:
        """Real bitstream of one image; ``meta``: est_bits, latent (float32), strings."""
        y = self.analysis(image)
        with coding_mode():
            strings, latent = self.coder.compress_latent(y.double(), self.k)
            est = self.coder.estimate_bits(y.double(), self.k)
        lengths = b"".join(put_varint(len(s)) for s in strings[:-1])
        head = self.header.pack()
        body = b"".join(strings)
        ledger = (RateLedger().add(self.name, "header", 8 * len(head))
                  .add(self.name, "side_info", 8 * len(lengths))
                  .add(self.name, "payload", 8 * len(body)))
        return Payload(data=head + lengths + body, ledger=ledger,
                       meta={"est_bits": est, "latent": latent.float(), "strings": strings})

    def parse(self, data: bytes) -> tuple[CodecHeader, list[bytes]]:
        head = CodecHeader.unpack(data)
        mine = self.header
        if (head.arch, head.rate_point, head.variant) != (mine.arch, mine.rate_point,
                                                          mine.variant):
            raise WireFormatError(f"bitstream is {head.arch} rate point {head.rate_point} "
                                  f"({head.variant}); this cloud decodes {mine.arch} rate "
                                  f"point {mine.rate_point} ({mine.variant})")
        if head.tag != mine.tag:
            raise WireFormatError(f"codec weights differ between edge and cloud (tag "
                                  f"{head.tag:#04x} != {mine.tag:#04x})")
        pos, lengths = HEADER_BYTES, []
        for _ in range(n_strings(self.arch, len(self.model.groups)) - 1):
            n, pos = get_varint(data, pos)
            lengths.append(n)
        if pos + sum(lengths) > len(data):
            raise WireFormatError("codec bitstream truncated")
        strings = []
        for n in lengths:
            strings.append(bytes(data[pos:pos + n]))
            pos += n
        strings.append(bytes(data[pos:]))
        return head, strings

    def decode_latent(self, data: bytes, hw: tuple[int, int]):
        """Entropy-decode the latent (float32 [1, M, h, w], common domain), no g_s."""
        _, strings = self.parse(data)
        with coding_mode():
            try:
                lat = self.coder.decompress_latent(strings, self.k, latent_shape(self.arch, *hw))
            except (RuntimeError, ValueError, IndexError) as exc:
                raise WireFormatError(f"codec bitstream does not decode: {exc}") from None
        return lat.float()

    def synthesize(self, latent, hw: tuple[int, int]) -> np.ndarray:
        """x_hat = g_s(latent), cropped to H x W, as uint8 [H, W, 3]."""
        import torch

        with torch.no_grad():
            x_hat = self.model.g_s(latent.float())
        h, w = hw
        return to_uint8(x_hat[..., :h, :w])[0]

    def decode(self, data: bytes, hw: tuple[int, int]) -> np.ndarray:
        return self.synthesize(self.decode_latent(data, hw), hw)
