"""TokenPacker and VisualPrism compressors and the projector MLP (torch modules).

Both compressors map the vision tower's features of a ``g x g`` patch grid to
``G x G = (g / s)^2`` tokens of the vision width ``C`` (the *compressed tokens*); the
projector MLP maps those into the language model (``C -> H -> H``, the LLaVA-1.5 MLP
shape). The edge/cloud split is between the two (see :class:`LearnedProjector`).

Inputs (as TokenPacker / VisualPrism's ``clip_encoder.py``, scaled to the tiny tower):

- ``x      float32 [B, g*g, C]``   patch tokens of the LLaVA feature layer (``-2``);
- ``x_multi float32 [B, g*g, L*C]`` the same patches' hidden states of ``L`` layers,
  concatenated on channels (LLaVA-1.5: layers 12, 16, 22, 23 of 24; the 4-layer tiny
  tower: hidden states 1, 2, 3).

TokenPacker (CircleRadon/TokenPacker ``builder.py``): point queries = bilinear
downsample of ``x`` to ``G x G`` -> Linear (no bias) -> LayerNorm; region keys / values =
LayerNorm(Linear(GELU(Linear(x_multi)))) at full resolution; each query attends only to
the ``s x s`` region it covers (multi-head attention, no residual in the paper).

VisualPrism (Hrpp1433223/VisualPrism ``builder.py`` at 4e9442a): triple-path queries
(identity Linear, multi-scale depthwise convs 3/5, Haar-wavelet prior with a shared
depthwise conv per sub-band and fixed gains 1, 1.2, 1.2, 1.5) blended by softmax
weights, bilinear downsample, Linear (no bias) -> LayerNorm; hierarchical keys
(multi-scale convs 3/5/7 + 0.6 global context) and values (depthwise 3x3 + 0.4 global
context) after Linear ``L*C -> C``; LayerNorm; the same point-to-region attention.

Deviation (``residual=True``, the default here): the downsampled input features (the
point queries before their projection) are added to the attention output, so training
starts from average pooling, which the frozen LLaVA already half understands; with a
few CPU-minutes of training this converges much faster. ``residual=False`` is the
papers' form.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

TYPES = ("tokenpacker", "visualprism")


def _init(module: nn.Module) -> None:
    """Truncated normal 0.02 for Linear / Conv, LayerNorm / BatchNorm weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def to_map(x: torch.Tensor, g: int) -> torch.Tensor:
    """``[B, g*g, C]`` tokens (raster order) -> ``[B, C, g, g]`` map."""
    b, n, c = x.shape
    if n != g * g:
        raise ValueError(f"expected {g * g} tokens for a {g}x{g} grid, got {n}")
    return x.transpose(1, 2).reshape(b, c, g, g)


def to_tokens(m: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` -> ``[B, h*w, C]`` (raster order)."""
    return m.flatten(2).transpose(1, 2)


def downsample(x: torch.Tensor, g: int, G: int) -> torch.Tensor:
    """Bilinear ``g x g -> G x G`` of tokens ``[B, g*g, C]`` (align_corners False)."""
    m = F.interpolate(to_map(x, g), size=(G, G), mode="bilinear", align_corners=False)
    return to_tokens(m)


def regions(kv: torch.Tensor, g: int, s: int) -> torch.Tensor:
    """``[B, g*g, C]`` -> ``[B*G*G, s*s, C]``: the ``s x s`` block of each coarse cell
    (cells in raster order, the block's patches in raster order)."""
    b, _, c = kv.shape
    G = g // s
    m = kv.reshape(b, G, s, G, s, c).permute(0, 1, 3, 2, 4, 5)
    return m.reshape(b * G * G, s * s, c)


class PointToRegion(nn.Module):
    """Each of the ``G*G`` queries attends to the ``s x s`` keys / values it covers."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q, k, v, g: int, s: int) -> torch.Tensor:
        b, Q, c = q.shape
        out, _ = self.attn(
            q.reshape(b * Q, 1, c), regions(k, g, s), regions(v, g, s), need_weights=False
        )
        return out.reshape(b, Q, c)


# ------------------------------------------------------------------------- TokenPacker


class TokenPacker(nn.Module):
    """Point-to-region cross-attention compressor. ``forward(x, x_multi) -> [B, G*G, C]``."""

    def __init__(
        self, dim: int, multi_dim: int, grid: int, scale: int, heads: int = 4, residual: bool = True
    ):
        super().__init__()
        if grid % scale:
            raise ValueError(f"scale {scale} must divide the patch grid {grid}")
        self.dim, self.grid, self.scale, self.residual = dim, grid, scale, residual
        self.out_grid = grid // scale
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(dim)
        self.k_proj = nn.Sequential(nn.Linear(multi_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.k_norm = nn.LayerNorm(dim)
        self.v_proj = nn.Sequential(nn.Linear(multi_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.v_norm = nn.LayerNorm(dim)
        self.attn = PointToRegion(dim, heads)
        _init(self)

    def forward(self, x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        g, G = self.grid, self.out_grid
        base = downsample(x, g, G)
        q = self.q_norm(self.q_proj(base))
        k = self.k_norm(self.k_proj(x_multi))
        v = self.v_norm(self.v_proj(x_multi))
        out = self.attn(q, k, v, g, self.scale)
        return out + base if self.residual else out


# ------------------------------------------------------------------------- VisualPrism


class HaarWavelet(nn.Module):
    """Orthonormal 2 x 2 Haar analysis / synthesis per channel (LL, LH, HL, HH)."""

    def __init__(self):
        super().__init__()
        f = (
            torch.tensor(
                [[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
                dtype=torch.float32,
            )
            / 2
        )
        self.register_buffer("filters", f.unsqueeze(1), persistent=False)  # [4, 1, 2, 2]

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C, 4, H/2, W/2]``."""
        b, c, h, w = m.shape
        y = F.conv2d(m.reshape(b * c, 1, h, w), self.filters, stride=2)
        return y.reshape(b, c, 4, h // 2, w // 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c, _, h, w = y.shape
        m = F.conv_transpose2d(y.reshape(b * c, 4, h, w), self.filters, stride=2)
        return m.reshape(b, c, 2 * h, 2 * w)


class WaveletPrior(nn.Module):
    """Haar analysis -> shared depthwise 3x3 conv -> BN -> GELU -> fixed gains -> synthesis."""

    GAINS = (1.0, 1.2, 1.2, 1.5)

    def __init__(self, dim: int):
        super().__init__()
        self.haar = HaarWavelet()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)
        self.register_buffer("gains", torch.tensor(self.GAINS), persistent=False)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        y = self.haar(m)
        b, c, _, h, w = y.shape
        bands = y.permute(0, 2, 1, 3, 4).reshape(b * 4, c, h, w)
        bands = F.gelu(self.bn(self.conv(bands))).reshape(b, 4, c, h, w)
        bands = bands * self.gains.view(1, 4, 1, 1, 1)
        return self.haar.inverse(bands.permute(0, 2, 1, 3, 4))


class MultiScaleConv(nn.Module):
    """Per kernel: depthwise k x k -> BN -> GELU; concatenated; 1x1 conv -> BN."""

    def __init__(self, dim: int, kernels=(3, 5)):
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim), nn.BatchNorm2d(dim), nn.GELU()
            )
            for k in kernels
        )
        self.fuse = nn.Sequential(nn.Conv2d(dim * len(kernels), dim, 1), nn.BatchNorm2d(dim))

    def forward(self, m):
        return self.fuse(torch.cat([p(m) for p in self.paths], 1))


class GlobalContext(nn.Module):
    """``m * sigmoid(1x1 -> GELU -> 1x1 (global average pool))`` (SE-style, reduction 4)."""

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        hid = max(1, dim // reduction)
        self.net = nn.Sequential(nn.Conv2d(dim, hid, 1), nn.GELU(), nn.Conv2d(hid, dim, 1))

    def forward(self, m):
        return m * torch.sigmoid(self.net(m.mean((2, 3), keepdim=True)))


class VisualPrism(nn.Module):
    """Triple-path queries + hierarchical keys/values + point-to-region attention.
    ``forward(x, x_multi) -> [B, G*G, C]``."""

    def __init__(
        self, dim: int, multi_dim: int, grid: int, scale: int, heads: int = 4, residual: bool = True
    ):
        super().__init__()
        if grid % scale:
            raise ValueError(f"scale {scale} must divide the patch grid {grid}")
        if grid % 2:
            raise ValueError(f"the Haar prior needs an even patch grid, got {grid}")
        self.dim, self.grid, self.scale, self.residual = dim, grid, scale, residual
        self.out_grid = grid // scale
        # triple-path query projection
        self.q_identity = nn.Linear(dim, dim)
        self.q_local = MultiScaleConv(dim, (3, 5))
        self.q_wavelet = WaveletPrior(dim)
        self.q_wavelet_proj = nn.Conv2d(dim, dim, 1)
        self.path_logits = nn.Parameter(torch.zeros(3))  # softmax -> 1/3 each at init
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(dim)
        # hierarchical key-value encoding
        self.kv_in = nn.Linear(multi_dim, dim)
        self.k_local = MultiScaleConv(dim, (3, 5, 7))
        self.k_context = GlobalContext(dim)
        self.v_local = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU()
        )
        self.v_context = GlobalContext(dim)
        self.k_norm = nn.LayerNorm(dim)
        self.v_norm = nn.LayerNorm(dim)
        self.attn = PointToRegion(dim, heads)
        _init(self)

    def queries(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(queries ``[B, G*G, C]``, downsampled input ``[B, G*G, C]``)."""
        g, G = self.grid, self.out_grid
        m = to_map(x, g)
        q1 = to_map(self.q_identity(x), g)
        q2 = self.q_local(m)
        q3 = self.q_wavelet_proj(self.q_wavelet(m))
        w = torch.softmax(self.path_logits, 0)
        q = w[0] * q1 + w[1] * q2 + w[2] * q3
        q = to_tokens(F.interpolate(q, size=(G, G), mode="bilinear", align_corners=False))
        return self.q_norm(self.q_proj(q)), downsample(x, g, G)

    def keys_values(self, x_multi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = to_map(self.kv_in(x_multi), self.grid)
        k = self.k_local(m) + 0.6 * self.k_context(m)
        v = self.v_local(m) + 0.4 * self.v_context(m)
        return self.k_norm(to_tokens(k)), self.v_norm(to_tokens(v))

    def forward(self, x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        q, base = self.queries(x)
        k, v = self.keys_values(x_multi)
        out = self.attn(q, k, v, self.grid, self.scale)
        return out + base if self.residual else out


# ------------------------------------------------------------------------------ whole


class ProjectorMLP(nn.Module):
    """``Linear(C -> H) -> GELU -> Linear(H -> H)`` (LLaVA's multi_modal_projector shape)."""

    def __init__(self, dim: int, lm_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, lm_dim)
        self.linear_2 = nn.Linear(lm_dim, lm_dim)

    def forward(self, z):
        return self.linear_2(F.gelu(self.linear_1(z)))


class LearnedProjector(nn.Module):
    """Compressor + projector MLP, with the edge/cloud split between them.

    ``compress(x, x_multi) -> z [B, G*G, C]`` is the edge half (the narrowest point:
    ``(g/s)^2`` tokens of the vision width ``C``, fewer and narrower than anything
    before or after it); ``project(z) -> [B, G*G, H]`` is the cloud half (the MLP into
    the language model). ``forward`` is both, unsplit.
    """

    def __init__(
        self,
        type: str,
        *,
        dim: int,
        multi_dim: int,
        lm_dim: int,
        grid: int,
        scale: int,
        heads: int = 4,
        residual: bool = True,
    ):
        super().__init__()
        if type not in TYPES:
            raise ValueError(f"unknown projector type {type!r}; use one of {TYPES}")
        cls = TokenPacker if type == "tokenpacker" else VisualPrism
        self.type, self.scale, self.grid = type, scale, grid
        self.out_grid = grid // scale
        self.compressor = cls(dim, multi_dim, grid, scale, heads=heads, residual=residual)
        self.mlp = ProjectorMLP(dim, lm_dim)

    @property
    def num_tokens(self) -> int:
        return self.out_grid**2

    def compress(self, x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        return self.compressor(x, x_multi)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z)

    def forward(self, x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        return self.project(self.compress(x, x_multi))


def sinkhorn_lsd(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 2.2,
    lam: float = 0.12,
    iters: int = 16,
    max_tokens: int = 768,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """VisualPrism's optional Sinkhorn regulariser on next-token distributions.

    ``logits float [N, V]`` and ``labels int64 [N]`` of the valid target positions. With
    ``s_n = softmax(logits_n / tau)``: ``D_ij = 2 (1 - s_i[y_j])``, ``K = exp(-D / lam)``,
    ``P*`` = Sinkhorn normalisation of K (``iters`` alternating row / column passes to
    unit sums, no gradient); returns ``sum(P* * D) / N^2``. At most ``max_tokens`` positions (random).
    """
    n = logits.shape[0]
    if n == 0:
        return logits.sum() * 0
    if n > max_tokens:
        pick = torch.randperm(n, generator=generator)[:max_tokens]
        logits, labels, n = logits[pick], labels[pick], max_tokens
    s = torch.softmax(logits.float() / tau, -1)
    D = 2 * (1 - s[:, labels])  # [i, j] = 2 (1 - s_i[y_j])
    with torch.no_grad():  # doubly stochastic: rows and columns sum to 1
        P = torch.exp(-(D - D.min()) / lam).clamp_min(1e-30)
        for _ in range(iters):
            P = P / P.sum(1, keepdim=True)
            P = P / P.sum(0, keepdim=True)
    return (P * D).sum() / (n * n)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "TYPES",
    "TokenPacker",
    "VisualPrism",
    "HaarWavelet",
    "WaveletPrior",
    "MultiScaleConv",
    "GlobalContext",
    "PointToRegion",
    "ProjectorMLP",
    "LearnedProjector",
    "sinkhorn_lsd",
    "regions",
    "downsample",
    "count_parameters",
]
