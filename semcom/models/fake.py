"""A deterministic fake VLM backend: no weights, no download, CPU, milliseconds.

For tests, benchmarks and for trying a plugin (an edge method, a scorer, a reducer, a
task, a link) without a model. :class:`FakeBackend` implements
:class:`~semcom.models.base.VLMBackend` on both sides with fixed functions of the
pixels; everything follows from the constructor's arguments, so two processes built
with the same arguments compute the same tokens, outputs and ``model_id`` (which the
edge and cloud daemons compare).

>>> be = FakeBackend()                                  # 1 + 2x2 tokens of 3 values
>>> out = be.vision_tokens(be.preprocess([image]))      # doctest: +SKIP
>>> be.caption(out.tokens, None)                        # doctest: +SKIP
['bright 3 0.614379']

Vision encoders (``encoder=``):

- ``means`` (default): the mean colour (R, G, B in [0, 1]) of each of ``grid x grid``
  regions, CLS = the whole image's mean; 3-d tokens, any image size.
- ``colour``: ``token_dim``-d random features of each 8 x 8 patch's colour statistics
  (mean and spread of R, G, B), so coloured objects on a plain background get distinct
  tokens; the text encoder maps colour words onto the tokens of that colour, so a
  language-guided scorer finds the object a text names.
- ``vit``: a small torch ViT (patch embedding, ``num_layers`` pre-norm transformer
  layers, final LayerNorm) with random weights fixed by ``seed``; the encoder runs from
  any layer (``vision_tokens_from_layer``, with autograd where a neck's training needs
  it); hidden states are its own, layer by layer.

Attention maps and keys (``attn_layers`` / ``key_layers``) are softmaxes of fixed random
query / key projections of the tokens, the same for every layer; without the ViT, the
hidden state of every layer is the tokens.

Cloud side, from the received tokens (``mask``):

- ``caption``: ``"<bright|dark> <q> <m>"``, ``m`` the mean of the first received token
  (with ``means``: the image's brightness; ``bright`` when over 0.5), ``q`` the index of
  the received patch token with the largest mean (``-1``: none);
- ``answer``: ``"yes"`` when ``len(prompt) + q`` is odd, else ``"no"``;
- retrieval: ``image_embed`` projects the first received token (the mean of the received
  ones without CLS) onto ``embed_dim``; ``text_embed`` is ``text_features``; the ITM
  score is 10 x their cosine.
- ``captions=[...]`` (a vocabulary) instead: a token's first value indexes it. The
  caption is that of the first received token; ITC embeds an image as one-hot(token 0)
  + 0.5 one-hot(token 1) and a text as 0.5 one-hot(its index); ITM scores 10 for the
  caption of token 1 and 0 otherwise, so ITM re-ranking can be told from ITC.

``delay_s`` is "model time": seconds per sample slept in ``caption`` and ``answer``.
``last_call`` records the latest cloud call (method, prompts, decoding settings).

No torch at module import (the ViT and the tensors are built on use).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from semcom.models.base import VisionOutput, VLMBackend

ENCODERS = ("means", "colour", "vit")
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
    "purple": (150, 40, 180),
}


def _no_grad(fn):
    """``torch.no_grad()`` around ``fn`` without importing torch here; ``__wrapped__``
    is the function itself, as ``semcom.train.neck._grad_fn`` expects."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _normalize(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


class FakeBackend(VLMBackend):
    """See the module docstring. ``grid`` defaults to 2 (``means``) or
    ``image_size // 8``; ``token_dim`` to 3 (``means``, the only choice) or 32;
    ``heads`` to 4 (1 when ``token_dim`` is not a multiple of 4)."""

    def __init__(
        self,
        *,
        encoder: str = "means",
        family: str = "blip",
        tasks=("caption", "retrieval", "vqa"),
        image_size: int = 96,
        grid: int | None = None,
        token_dim: int | None = None,
        has_cls: bool = True,
        heads: int | None = None,
        num_layers: int = 2,
        embed_dim: int = 16,
        seed: int = 0,
        captions: list[str] | None = None,
        delay_s: float = 0.0,
        prompts: dict[str, str] | None = None,
        model_id: str | None = None,
    ):
        if encoder not in ENCODERS:
            raise ValueError(f"unknown fake encoder {encoder!r}; use one of {ENCODERS}")
        grid = grid or (2 if encoder == "means" else image_size // 8)
        if image_size % grid:
            raise ValueError(f"image_size {image_size} is not a multiple of grid {grid}")
        if encoder == "means" and token_dim not in (None, 3):
            raise ValueError("the means encoder's tokens are 3-d (R, G, B)")
        token_dim = token_dim or (3 if encoder == "means" else 32)
        heads = heads or (4 if token_dim % 4 == 0 else 1)
        if token_dim % heads:
            raise ValueError(f"token_dim {token_dim} is not a multiple of heads {heads}")
        self.encoder, self.family, self.tasks = encoder, family, set(tasks)
        self.image_size, self.patch_size = image_size, image_size // grid
        self.token_dim, self.has_cls, self.heads = token_dim, has_cls, heads
        self.num_layers, self.embed_dim, self.seed = num_layers, embed_dim, seed
        self.captions = list(captions) if captions is not None else None
        self.delay_s = float(delay_s)
        self.prompts = dict(prompts or {})
        self.path = Path(f"<fake {encoder}>")
        self.device = "cpu"
        self.last_call: tuple | None = None
        settings = {
            "encoder": encoder,
            "family": family,
            "image_size": image_size,
            "grid": grid,
            "token_dim": token_dim,
            "has_cls": has_cls,
            "heads": heads,
            "num_layers": num_layers,
            "embed_dim": embed_dim,
            "seed": seed,
            "captions": self.captions,
            "prompts": self.prompts,
        }
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        self.model_id = model_id or f"fake-{digest[:12]}"
        r = np.random.default_rng(seed)
        f32 = np.float32
        if encoder == "colour":
            self.w_in = r.normal(0, 1.0, (6, token_dim)).astype(f32)
            self.b_in = r.normal(0, 0.1, token_dim).astype(f32)
        self.wq = r.normal(0, token_dim**-0.5, (token_dim, token_dim)).astype(f32)
        self.wk = r.normal(0, token_dim**-0.5, (token_dim, token_dim)).astype(f32)
        self.wp = r.normal(0, token_dim**-0.5, (token_dim, embed_dim)).astype(f32)
        if encoder == "colour":
            self.cls_bias = r.normal(0, 0.5, token_dim).astype(f32)
        if encoder == "vit":
            self._build_vit()
        self._colour_tokens: dict[str, np.ndarray] = {}

    def _build_vit(self) -> None:
        import torch
        from torch import nn

        d, p, n = self.token_dim, self.patch_size, 1 + self.num_patches
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            vit = nn.Module()
            vit.embed = nn.Conv2d(3, d, p, p)
            vit.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            vit.pos = nn.Parameter(torch.randn(1, n, d) * 0.02)
            vit.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    d, self.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True
                )
                for _ in range(self.num_layers)
            )
            vit.norm = nn.LayerNorm(d)
        self.vit = vit.eval()
        self.layers = vit.layers  # the encoder layers (frozen by a neck's training)

    # ------------------------------------------------------------------------- edge
    def preprocess(self, images):
        """uint8 ``[H, W, 3]`` images -> float32 ``[B, 3, H, W]`` in [0, 1]."""
        import torch

        arr = np.stack([np.asarray(im, np.float32) / 255.0 for im in images])
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [H, W, 3], got shape {arr.shape[1:]}")
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def _means(self, x: np.ndarray) -> np.ndarray:
        _, _, h, w = x.shape
        g = self.grid
        cells = [
            x[:, :, r * h // g : (r + 1) * h // g, c * w // g : (c + 1) * w // g].mean((2, 3))
            for r in range(g)
            for c in range(g)
        ]
        patches = np.stack(cells, 1)  # [B, P, 3]
        if not self.has_cls:
            return patches.astype(np.float32)
        return np.concatenate([x.mean((2, 3))[:, None], patches], 1).astype(np.float32)

    def _colour(self, x: np.ndarray) -> np.ndarray:
        b, c = x.shape[:2]
        g, p = self.grid, self.patch_size
        t = x.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, p * p)
        feats = np.concatenate([t.mean(-1) - 0.47, t.std(-1) * 4], -1)  # [B, P, 6]
        patches = np.tanh(feats @ self.w_in + self.b_in)
        if not self.has_cls:
            return patches.astype(np.float32)
        cls = np.tanh(patches.mean(1) * 2 + self.cls_bias)[:, None, :]
        return np.concatenate([cls, patches], 1).astype(np.float32)

    def _vit_hidden(self, pixel_values):
        """The ViT's hidden states: [embeddings, after layer 1, ..., after layer L]."""
        import torch

        v = self.vit
        x = torch.as_tensor(pixel_values, dtype=torch.float32)
        t = v.embed((x - 0.5) / 0.5).flatten(2).transpose(1, 2)
        if self.has_cls:
            h = torch.cat([v.cls.expand(len(t), -1, -1), t], 1) + v.pos
        else:
            h = t + v.pos[:, 1:]
        hs = [h]
        for layer in v.layers:
            h = layer(h)
            hs.append(h)
        return hs

    def _attend(self, tok: np.ndarray, attn_layers, key_layers) -> tuple[dict, dict]:
        import torch

        b, n, d = tok.shape
        h, dh = self.heads, d // self.heads
        q = (tok @ self.wq).reshape(b, n, h, dh).transpose(0, 2, 1, 3)
        k = (tok @ self.wk).reshape(b, n, h, dh).transpose(0, 2, 1, 3)
        logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) * 4
        logits -= logits.max(-1, keepdims=True)
        att = np.exp(logits)
        att /= att.sum(-1, keepdims=True)
        keys = torch.from_numpy((tok @ self.wk).astype(np.float32))
        att_t = torch.from_numpy(att.astype(np.float32))
        return {i: att_t for i in attn_layers}, {i: keys for i in key_layers}

    def vision_tokens(self, pixel_values, *, attn_layers=(), key_layers=(), hidden_layers=()):
        import torch

        if self.encoder == "vit":
            with torch.no_grad():
                hs = self._vit_hidden(pixel_values)
                tokens = self.vit.norm(hs[-1])
            hidden = {}
            for i in hidden_layers:
                if not -len(hs) <= i < len(hs):
                    raise ValueError(f"hidden layer {i} out of range for {len(hs)} hidden states")
                hidden[i] = hs[i]
        else:
            x = _np(pixel_values)
            tokens = torch.from_numpy(
                self._means(x) if self.encoder == "means" else self._colour(x)
            )
            hidden = {i: tokens for i in hidden_layers}
        att, keys = self._attend(_np(tokens), attn_layers, key_layers)
        return VisionOutput(tokens, att, keys, hidden)

    def _start(self, start_layer: int) -> int:
        n = self.num_layers
        start = start_layer + n + 1 if start_layer < 0 else start_layer
        if not 0 <= start <= n:
            raise ValueError(f"start_layer {start_layer} out of range 0..{n}")
        return start

    @_no_grad
    def vision_tokens_from_layer(self, hidden, start_layer: int):
        """The tokens when ``hidden [B, 1+P, D]`` enters the encoder at ``start_layer``
        (the ViT runs its layers from there; the other encoders are the identity)."""
        import torch

        start = self._start(start_layer)
        h = torch.as_tensor(hidden, dtype=torch.float32)
        if self.encoder != "vit":
            return h
        for layer in self.vit.layers[start:]:
            h = layer(h)
        return self.vit.norm(h)

    def vision_from_layer(self, hidden, start_layer: int, *, attn_layers=(), key_layers=()):
        start = self._start(start_layer)
        for i in (*attn_layers, *key_layers):
            j = i + self.num_layers if i < 0 else i
            if not start <= j < self.num_layers:
                raise ValueError(
                    f"layer {i} does not run for these tokens (they enter the "
                    f"encoder at layer {start})"
                )
        tokens = self.vision_tokens_from_layer(hidden, start_layer)
        att, keys = self._attend(_np(tokens), attn_layers, key_layers)
        return VisionOutput(tokens, att, keys)

    def patch_embeddings(self, tokens):
        """Tokens projected onto ``embed_dim`` (fixed random map), L2-normalised."""
        import torch

        return torch.from_numpy(_normalize(_np(tokens) @ self.wp).astype(np.float32))

    def _colour_token(self, word: str) -> np.ndarray:
        """The last patch token of a plain image of colour ``word``."""
        if word not in self._colour_tokens:
            s = self.image_size
            img = (
                np.zeros((1, 3, s, s), np.float32)
                + np.asarray(COLORS[word], np.float32)[None, :, None, None] / 255.0
            )
            self._colour_tokens[word] = _np(self.vision_tokens(img).tokens)[0, -1]
        return self._colour_tokens[word]

    def text_features(self, texts: list[str]):
        """Colour words: 3 x the embedding of that colour's token; other words: a small
        random vector fixed by the word; summed and L2-normalised."""
        import torch

        out = []
        for t in texts:
            v = np.zeros(self.embed_dim, np.float32)
            for word in t.lower().replace("?", " ").split():
                if word in COLORS:
                    v += _normalize(self._colour_token(word) @ self.wp) * 3
                else:
                    h = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                    v += np.random.default_rng(h).normal(0, 0.05, self.embed_dim).astype(np.float32)
            out.append(v / max(np.linalg.norm(v), 1e-12))
        return torch.from_numpy(np.stack(out).astype(np.float32))

    # ------------------------------------------------------------------------ cloud
    def _received(self, tokens, mask) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(_np(tokens), np.float64)
        if t.ndim != 3:
            raise ValueError(f"tokens must be [B, N, D], got shape {t.shape}")
        m = np.ones(t.shape[:2], bool) if mask is None else np.asarray(_np(mask), bool)
        return t, m

    def _read(self, t: np.ndarray, m: np.ndarray) -> tuple[float, int]:
        """(mean of the first received token, index of the brightest received patch)."""
        first = t[m][0] if m.any() else np.zeros(t.shape[-1])
        c = int(self.has_cls)
        means = np.where(m[c:], t[c:].mean(-1), -np.inf)
        return float(first.mean()), int(np.argmax(means)) if m[c:].any() else -1

    def _wait(self, n: int) -> None:
        if self.delay_s:
            time.sleep(self.delay_s * n)

    def _caption(self, tokens, mask, prompt, beams: int, max_new_tokens: int, **kw) -> list[str]:
        self.last_call = ("caption", prompt, beams, max_new_tokens)
        t, m = self._received(tokens, mask)
        self._wait(len(t))
        out = []
        for ti, mi in zip(t, m):
            if self.captions is not None:
                first = ti[mi][0] if mi.any() else ti[0]
                out.append(self.captions[int(first[0])])
            else:
                mean, q = self._read(ti, mi)
                out.append(f"{'bright' if mean > 0.5 else 'dark'} {q} {mean:.6f}")
        return out

    def answer(
        self, tokens, mask, prompts: list[str], *, max_new_tokens: int = 8, beams: int = 1, **kw
    ) -> list[str]:
        self.last_call = ("answer", list(prompts), beams, max_new_tokens)
        t, m = self._received(tokens, mask)
        if len(prompts) != len(t):
            raise ValueError(f"{len(prompts)} prompts for {len(t)} images")
        self._wait(len(t))
        return [
            "yes" if (len(p or "") + self._read(ti, mi)[1]) % 2 else "no"
            for p, ti, mi in zip(prompts, t, m)
        ]

    def _one_hot(self, index) -> np.ndarray:
        return np.eye(len(self.captions), dtype=np.float32)[np.asarray(index, int)]

    def image_embed(self, tokens, mask=None):
        import torch

        t, m = self._received(tokens, mask)
        if self.captions is not None:
            e = self._one_hot(t[:, 0, 0]) + 0.5 * self._one_hot(t[:, 1, 0])
            return torch.from_numpy(e)
        w = m[..., None].astype(np.float64)
        mean = (t * w).sum(1) / np.maximum(w.sum(1), 1.0)
        pooled = np.where(m[:, :1], t[:, 0], mean) if self.has_cls else mean
        return torch.from_numpy(_normalize(pooled.astype(np.float32) @ self.wp))

    def text_embed(self, texts: list[str]):
        import torch

        if self.captions is not None:
            return torch.from_numpy(0.5 * self._one_hot([self.captions.index(t) for t in texts]))
        return self.text_features(texts)

    def itm_scores(self, tokens, mask, texts: list[str]):
        import torch

        t, _ = self._received(tokens, mask)
        if len(texts) != len(t):
            raise ValueError(f"{len(texts)} texts for {len(t)} images")
        if self.captions is not None:
            return torch.tensor(
                [10.0 if self.captions[int(ti[1, 0])] == x else 0.0 for ti, x in zip(t, texts)]
            )
        img = self.image_embed(tokens, mask)
        return 10.0 * (img * self.text_features(texts)).sum(-1)
