"""The variable-rate (gained) codec: one CompressAI model, K rate points.

This module imports torch at import time (its class is an ``nn.Module``); the rest of
:mod:`semcom.stages.codec` imports it inside functions. compressai is imported through
the shim (:func:`semcom.compat.import_compressai`) when a codec is built.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from semcom.compat import import_compressai
from semcom.stages.codec.arch import DEFAULT_WIDTH, build_model, hyper_channels


def _ste(x):
    from compressai.ops import quantize_ste

    return quantize_ste(x)


class GainedCodec(nn.Module):
    """A variable-rate codec: one CompressAI model of ``arch`` whose latent is scaled per
    rate point k by learned channel gains (Cui et al., CVPR 2021, "asymmetric gained").

    ``y_k = g_a(x) * gain[k]`` is quantised and entropy-coded, ``x_hat = g_s(y_hat_k *
    inv_gain[k])``; the hyper-latent likewise (``hgain``). The factorized codec has one
    entropy bottleneck (density of y) per rate point; the hyperprior codecs share one
    density of z. The K points share the transforms and cost about one model in weights
    and training time. ``latent`` (what the neck reads) is ``y_hat_k * inv_gain[k]``: the
    same domain at every rate point.

    :param arch: ``factorized``, ``hyperprior``, ``mean-scale`` or ``elic``
    :param N, M: transform and latent channels (default :data:`~.arch.DEFAULT_WIDTH`)
    :param rates: K, the number of rate points
    :input forward: ``x float32 [B, 3, H, W]`` in [0, 1] (H, W multiples of the
        downsampling factor) and the rate index ``k`` in ``[0, K)``
    :output forward: ``{"x_hat": [B, 3, H, W], "likelihoods": {"y", "z"}, "latent":
        float32 [B, M, H/16, W/16]}``

    The entropy-coding methods (:meth:`compress_latent`, :meth:`decompress_latent`) run
    on a float64 copy inside :func:`~semcom.stages.codec.stage.coding_mode`.

    >>> m = GainedCodec("hyperprior", 8, 16, rates=3)
    >>> out = m(torch.rand(1, 3, 64, 64), 2)
    >>> out["x_hat"].shape, out["latent"].shape, sorted(out["likelihoods"])
    (torch.Size([1, 3, 64, 64]), torch.Size([1, 16, 4, 4]), ['y', 'z'])
    """

    def __init__(self, arch: str, N: int | None = None, M: int | None = None, rates: int = 4):
        super().__init__()
        import_compressai()
        from compressai.entropy_models import EntropyBottleneck

        dn, dm = DEFAULT_WIDTH[arch]
        N, M = N or dn, M or dm
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
            y_hat = self.net.latent_codec["y"].decompress([[s] for s in strings[:-1]], shape, a)[
                "y_hat"
            ]
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


def gained_codec(
    arch: str, N: int | None = None, M: int | None = None, rates: int = 4
) -> GainedCodec:
    """The untrained :class:`GainedCodec` of ``arch`` at width (N, M) with ``rates`` points."""
    return GainedCodec(arch, N, M, rates)
