"""Tiny random BLIP / LLaVA directories for the tests (saved with ``save_pretrained``,
loaded back through ``load_backend`` like real weights)."""

from __future__ import annotations

SIZES = dict(
    vision_dim=32,
    vision_layers=3,
    vision_heads=2,
    vision_mlp=2,
    text_dim=32,
    text_layers=1,
    text_heads=2,
    text_mlp=2,
    lm_dim=32,
    lm_layers=1,
    lm_heads=2,
    lm_mlp=2,
    embed_dim=16,
)


def save_tiny_blip(path, seed: int = 1):
    from semcom.models.tiny import TinySizes, build_blip, save_blip

    cap, ret, tok = build_blip(TinySizes(**SIZES), seed=seed)
    save_blip(path, cap, ret, tok)
    return path


def save_tiny_llava(path, seed: int = 2):
    from semcom.models.tiny import TinySizes, build_llava, save_llava

    llava, clip, tok, ctok = build_llava(TinySizes(**SIZES), seed=seed)
    save_llava(path, llava, clip, tok, ctok)
    return path
