"""The transform-neck: codec latents -> vision-encoder tokens at layer L, no pixels.

After "Bridging Compressed Image Latents and Multimodal LLMs" (ICLR 2025; METHODS.md
section 3): the cloud entropy-decodes the codec latent ``y_hat`` and, instead of
synthesising pixels and running the whole vision encoder, maps the latent into the
encoder's residual stream at an intermediate layer ``L``; encoder layers ``L..`` run
unchanged (``backend.vision_tokens_from_layer``).

Architecture (the paper's, scaled to the tiny models)::

    latent [B, M, h, w]  (common domain of the variable-rate codec, h = H/16)
      -> per cell Linear(M -> s*s*D), pixel-shuffle to the patch grid [B, (s*h)*(s*w), D]
         (s = 16 / patch = 2: one latent cell covers exactly s x s patches)
      -> (resize to the encoder's grid if the image is not the encoder's size)
      -> prepend a learned CLS, + learned positional table (1+P, D), + rate embedding[k]
      -> LayerNorm (ln_pre) -> one pre-LN transformer block (heads, MLP 4D, GELU)
      -> tokens [B, 1+P, D] injected at encoder layer L

Why the sub-pixel (pixel-shuffle) mapping rather than interpolation: the paper's 256 x 256
inputs give a 16 x 16 latent that matches ViT-L/14's 16 x 16 grid one-to-one; here a
6 x 6 latent meets a 12 x 12 grid, and each latent cell (16 px) covers exactly 2 x 2
patches (8 px). A learned projection per sub-position lets the four patches of a cell
differ (interpolation would make them near copies); the positional table says where
each token is, and the attention block brings in neighbouring cells, which the patch
content also depends on (g_a's receptive field spans cells). The rate embedding tells the
neck which quantiser (rate point) produced the latent, so one neck serves all rate
points of a variable-rate codec.

Loss (:func:`distill_loss`): MSE between the encoder's final tokens on the neck path and
on the uncompressed image, over all 1+P tokens, normalised by the teacher tokens'
variance. The paper distils only the final CLS embedding because its MLLMs
(LLaMA-Adapter, V2L) read the global embedding; our tiny BLIP's caption decoder
cross-attends to every token and LLaVA projects every patch token into the language
model, so the tokens themselves are what the model consumes. An auxiliary "hint" term
(MSE of the neck output against the uncompressed image's hidden state at layer L)
warms the neck up and decays to zero over the first half of training (the paper's
progressive schedule likewise changes the objective partway through).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
SETTINGS = ("d1", "d2", "d3")


def _nn():
    import torch.nn as nn

    return nn


def build_neck(
    in_ch: int,
    dim: int,
    grid: int,
    *,
    rates: int = 4,
    heads: int = 4,
    mlp_ratio: int = 4,
    scale: int = 2,
    has_cls: bool = True,
):
    """A :class:`TransformNeck` module (torch imported here)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        """Pre-LN residual attention block (CLIP's ResidualAttentionBlock, GELU)."""

        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(
                nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
            )

        def forward(self, x):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    class TransformNeck(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_ch, self.dim, self.grid, self.scale = in_ch, dim, grid, scale
            self.has_cls = has_cls
            self.proj = nn.Linear(in_ch, dim * scale * scale)
            self.cls = nn.Parameter(torch.zeros(1, 1, dim))
            n = grid * grid + int(has_cls)
            self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
            self.rate = nn.Parameter(torch.zeros(rates, dim))
            self.ln_pre = nn.LayerNorm(dim)
            self.block = Block()

        def forward(self, latent, k):
            """latent [B, M, h, w]; k: rate index (int or LongTensor [B]) -> [B, 1+P, D]."""
            b, m, h, w = latent.shape
            s = self.scale
            t = self.proj(latent.permute(0, 2, 3, 1))  # [B, h, w, s*s*D]
            t = t.view(b, h, w, s, s, self.dim).permute(0, 1, 3, 2, 4, 5)
            t = t.reshape(b, h * s, w * s, self.dim)
            if (h * s, w * s) != (self.grid, self.grid):
                t = F.interpolate(
                    t.permute(0, 3, 1, 2),
                    size=(self.grid, self.grid),
                    mode="bilinear",
                    align_corners=False,
                ).permute(0, 2, 3, 1)
            t = t.reshape(b, self.grid * self.grid, self.dim)
            if self.has_cls:
                t = torch.cat([self.cls.expand(b, -1, -1), t], 1)
            kk = torch.as_tensor(k, device=t.device).long().reshape(-1)
            t = t + self.pos + self.rate[kk].reshape(-1, 1, self.dim)
            return self.block(self.ln_pre(t))

    return TransformNeck()


def distill_loss(student, teacher, scale: float = 1.0):
    """Mean squared error over all tokens and dims, divided by ``scale`` (the teacher's
    token variance), so the loss is comparable across models (1.0 = predicting the mean)."""
    import torch

    return torch.mean((student - teacher) ** 2) / scale


# --------------------------------------------------------------------------------------
# weights and manifest
# --------------------------------------------------------------------------------------


@dataclass
class NeckSpec:
    """One trained neck: an entry of ``necks/manifest.json``."""

    family: str  # blip | llava (whose encoder it feeds)
    setting: str  # d1 | d2 | d3
    layer: int  # injection layer L
    codec: str = "mean-scale"  # codec architecture whose latents it reads
    model_id: str = ""  # the VLM it was trained against
    in_ch: int = 64
    dim: int = 128
    grid: int = 12
    rates: int = 4
    heads: int = 4
    has_cls: bool = True
    scale: int = 2  # latent cell -> scale x scale patches (16 px cells / patch size)
    file: str = ""
    meta: dict = field(default_factory=dict)


def neck_scale(patch_size: int) -> int:
    """Patches per latent cell along a side: 16 px cells over ``patch_size`` px patches
    (2 for the tiny models' 8 px; 1 for ViT-B/16 and CLIP-L/14, whose grid the neck then
    meets by interpolation when the image is not a multiple of 16 patches)."""
    return max(1, round(16 / int(patch_size)))


def neck_dir(weights: str = "") -> Path:
    return Path(weights).expanduser() / "necks" if weights else ASSETS / "necks"


def read_manifest(weights: str = "") -> dict:
    path = neck_dir(weights) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"necks": []}


def write_manifest_entry(spec: NeckSpec, weights: str = "") -> None:
    from semcom.results import atomic_write_json

    man = read_manifest(weights)
    key = (spec.family, spec.setting, spec.layer, spec.codec)
    man["necks"] = [
        e for e in man["necks"] if (e["family"], e["setting"], e["layer"], e["codec"]) != key
    ] + [asdict(spec)]
    man["necks"].sort(key=lambda e: (e["family"], e["setting"], e["layer"], e["codec"]))
    neck_dir(weights).mkdir(parents=True, exist_ok=True)
    atomic_write_json(neck_dir(weights) / "manifest.json", man)


def find_spec(family: str, setting: str, layer: int, codec: str, weights: str = "") -> NeckSpec:
    from semcom.errors import ConfigError

    entries = [NeckSpec(**e) for e in read_manifest(weights)["necks"]]
    for e in entries:
        if (e.family, e.setting, e.layer, e.codec) == (family, setting, layer, codec):
            return e
    have = sorted({(e.setting, e.layer, e.codec) for e in entries if e.family == family})
    key = (
        "edge.image.neck_layer"
        if any(s == setting and c == codec for s, _, c in have)
        else "edge.image.neck_setting"
        if any(c == codec for _, _, c in have)
        else "edge.image.codec"
    )
    raise ConfigError(
        key,
        f"no trained neck for model '{family}', setting {setting}, layer "
        f"{layer}, codec '{codec}' in {neck_dir(weights)} (trained: "
        f"{have or 'none'}; train one: semcom train neck --model {family} "
        f"--setting {setting} --layer {layer})",
    )


def save_neck(neck, spec: NeckSpec, weights: str = "", metrics: dict | None = None) -> Path:
    import torch

    from semcom.train.assets import save_weights

    state = {
        k: v.detach().cpu().to(torch.float16).contiguous() for k, v in neck.state_dict().items()
    }
    meta = {"family": spec.family, "setting": spec.setting, "layer": spec.layer}
    path = save_weights(neck_dir(weights), spec.file, state, meta | {"codec": spec.codec}, metrics)
    write_manifest_entry(spec, weights)
    _CACHE.clear()
    return path


_CACHE: dict[tuple, Any] = {}


def load_neck(family: str, setting: str, layer: int, codec: str, weights: str = ""):
    """(neck module in eval mode, spec); cached per process."""
    key = (family, setting, layer, codec, weights)
    if key not in _CACHE:
        from safetensors.torch import load_file

        from semcom.errors import ConfigError

        spec = find_spec(family, setting, layer, codec, weights)
        path = neck_dir(weights) / spec.file
        try:
            state = load_file(str(path))
        except Exception as exc:  # missing, truncated or not safetensors
            raise ConfigError(
                "edge.image.weights",
                f"cannot read the neck weights {path}: "
                f"{exc} (retrain: semcom train neck --model {family} "
                f"--setting {setting} --layer {layer})",
            ) from None
        neck = build_neck(
            spec.in_ch,
            spec.dim,
            spec.grid,
            rates=spec.rates,
            heads=spec.heads,
            has_cls=spec.has_cls,
            scale=spec.scale,
        )
        neck.load_state_dict({k: v.float() for k, v in state.items()})
        _CACHE[key] = (neck.eval(), spec)
    return _CACHE[key]


def check_backend(spec: NeckSpec, backend) -> None:
    """The neck must match the backend's token layout and, if recorded, its model id (a
    neck distilled against other encoder weights would give wrong tokens silently)."""
    from semcom.errors import ConfigError

    if (spec.dim, spec.grid, spec.has_cls) != (backend.token_dim, backend.grid, backend.has_cls):
        raise ConfigError(
            "cloud.model",
            f"the {spec.family} neck ({spec.file}) makes "
            f"{int(spec.has_cls)}+{spec.grid}x{spec.grid} tokens of {spec.dim}; "
            f"the model has {int(backend.has_cls)}+{backend.grid}x{backend.grid} "
            f"of {backend.token_dim}",
        )
    mid = getattr(backend, "model_id", "")
    if spec.model_id and mid and spec.model_id != mid:
        raise ConfigError(
            "cloud.model",
            f"the {spec.family} neck ({spec.file}) was trained "
            f"against model {spec.model_id}, this model is {mid}: retrain it "
            f"(semcom train neck --model {spec.family} --setting {spec.setting} "
            f"--layer {spec.layer})",
        )


def neck_tokens(neck, backend, latent, k, layer: int):
    """Latents [B, M, h, w] -> the model's tokens [B, 1+P, D] (neck, then layers L..)."""
    import torch

    with torch.no_grad():
        h = neck(latent, k).to(getattr(backend, "device", "cpu"))
        return backend.vision_tokens_from_layer(h, layer)


def param_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
