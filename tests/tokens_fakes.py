"""A small fake vision backend for the token-path tests (the VLMBackend interface, edge side).

Tokens are a fixed random function of each 8x8 patch's colour statistics, so coloured
objects on a grey background give distinct tokens; attentions are real softmaxes of
query/key projections; the text encoder maps colour words onto the projected tokens of
that colour, so the language-guided score finds the object a question names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
          "yellow": (230, 220, 30), "purple": (150, 40, 180)}
GREY = (120, 120, 120)


def make_image(objects=(("red", 1, 1), ("blue", 8, 9)), size=96, patch=8, seed=0) -> np.ndarray:
    """``uint8 [size, size, 3]``: grey noise background, 2x2-patch squares at (row, col)."""
    r = np.random.default_rng(seed)
    img = np.clip(r.normal(GREY[0], 6, (size, size, 3)), 0, 255).astype(np.uint8)
    for name, row, col in objects:
        y, x = row * patch, col * patch
        img[y:y + 2 * patch, x:x + 2 * patch] = COLORS[name]
    return img


@dataclass
class VisionOutput:
    tokens: object
    attentions: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    hidden: dict = field(default_factory=dict)


class FakeBackend:
    family = "blip"
    image_size = 96
    patch_size = 8
    tasks = {"caption", "retrieval"}
    num_layers = 2

    def __init__(self, dim: int = 32, heads: int = 4, seed: int = 0, has_cls: bool = True):
        r = np.random.default_rng(seed)
        self.grid = self.image_size // self.patch_size
        self.num_patches = self.grid ** 2
        self.has_cls = has_cls
        self.token_dim = dim
        self.heads = heads
        self.model_id = f"fake-{dim}-{heads}-{seed}"
        self.device = "cpu"
        self.w_in = r.normal(0, 1.0, (6, dim)).astype(np.float32)
        self.b_in = r.normal(0, 0.1, dim).astype(np.float32)
        self.wq = r.normal(0, dim ** -0.5, (dim, dim)).astype(np.float32)
        self.wk = r.normal(0, dim ** -0.5, (dim, dim)).astype(np.float32)
        self.wp = r.normal(0, dim ** -0.5, (dim, 16)).astype(np.float32)
        self.cls_bias = r.normal(0, 0.5, dim).astype(np.float32)

    def preprocess(self, images):
        import torch

        arr = np.stack([np.asarray(im, np.float32) / 255.0 for im in images])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def _patch_features(self, x: np.ndarray) -> np.ndarray:
        B, C, S, _ = x.shape
        g, p = self.grid, self.patch_size
        t = x.reshape(B, C, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, g * g, C, p * p)
        return np.concatenate([t.mean(-1) - 0.47, t.std(-1) * 4], -1)  # [B, P, 6]

    def _tokens_np(self, x: np.ndarray) -> np.ndarray:
        feats = self._patch_features(x)
        patches = np.tanh(feats @ self.w_in + self.b_in)
        if not self.has_cls:
            return patches.astype(np.float32)
        cls = np.tanh(patches.mean(1) * 2 + self.cls_bias)[:, None, :]
        return np.concatenate([cls, patches], 1).astype(np.float32)

    def vision_tokens(self, pixel_values, *, attn_layers=(), key_layers=(), hidden_layers=()):
        import torch

        tok = self._tokens_np(pixel_values.numpy())
        B, N, D = tok.shape
        h, dh = self.heads, D // self.heads
        q = (tok @ self.wq).reshape(B, N, h, dh).transpose(0, 2, 1, 3)
        k = (tok @ self.wk).reshape(B, N, h, dh).transpose(0, 2, 1, 3)
        logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) * 4
        logits -= logits.max(-1, keepdims=True)
        att = np.exp(logits)
        att /= att.sum(-1, keepdims=True)
        keys = (tok @ self.wk).astype(np.float32)
        T = torch.from_numpy
        return VisionOutput(T(tok), {L: T(att.astype(np.float32)) for L in attn_layers},
                            {L: T(keys) for L in key_layers}, {L: T(tok) for L in hidden_layers})

    def _project(self, tok: np.ndarray) -> np.ndarray:
        e = tok @ self.wp
        return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)

    def patch_embeddings(self, tokens):
        import torch

        return torch.from_numpy(self._project(tokens.numpy()).astype(np.float32))

    def text_features(self, texts):
        import torch

        out = []
        for t in texts:
            v = np.zeros(16, np.float32)
            for word in t.lower().replace("?", " ").split():
                if word in COLORS:
                    img = np.zeros((1, 3, 96, 96), np.float32) + np.asarray(
                        COLORS[word], np.float32)[None, :, None, None] / 255.0
                    tok = self._tokens_np(img)[0, -1]
                    v += self._project(tok) * 3
                else:
                    hsh = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                    v += np.random.default_rng(hsh).normal(0, 0.05, 16).astype(np.float32)
            out.append(v / max(np.linalg.norm(v), 1e-12))
        return torch.from_numpy(np.stack(out).astype(np.float32))
