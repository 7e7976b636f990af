"""Full-size model directories with random weights, built offline (no hub access).

For trying the real-size path (577 tokens per image, real encoder widths and costs)
without downloading a checkpoint: the slow tests and ``benchmarks/bench_realsize.py``
use them. The architectures are those of the public checkpoints, the weights random:

- :data:`BLIP_BASE_384`: BLIP with ViT-B/16 at 384 px (768 wide, 12 layers: 1 + 24 x 24
  = 577 tokens) and a BERT-base text side (12 layers), as
  ``Salesforce/blip-image-captioning-base`` / ``blip-itm-base-coco``; caption and
  retrieval models share one vision encoder.
- :data:`LLAVA_CLIP_L_336`: the LLaVA-1.5 architecture with a CLIP-L/14 tower at 336 px
  (1024 wide, 24 layers: 1 + 24 x 24 = 577 tokens, ``vision_feature_layer`` -2) and a
  small Llama (256 wide, 2 layers) in place of Vicuna-7B, plus the ``CLIPModel`` (small
  text tower, 768-d projection) the edge's text guidance reads.

Tokenizers are the tiny models' word-level ones (built with the ``tokenizers`` library
from the tiny world's vocabulary), processors the BLIP / CLIP ones at the full input
size; everything is saved with ``save_pretrained`` as float16 and loads through
:func:`semcom.models.load_backend` exactly like a downloaded checkpoint.

    from semcom.models.fullsize import build
    build("blip", "/tmp/blip-384")        # then: --set edge.model.path=/tmp/blip-384
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from semcom.models.tiny import TinySizes


def _sizes(vision, text, *, lm=(128, 3, 4), embed: int, image, text_positions: int) -> TinySizes:
    """``vision`` / ``text`` / ``lm``: (width, layers, heads), MLPs 4x wide; ``image``:
    (input size, patch size)."""
    (vd, vl, vh), (td, tl, th), (ld, ll, lh) = vision, text, lm
    return TinySizes(
        *(vd, vl, vh, 4, td, tl, th, 4, ld, ll, lh, 4),
        embed_dim=embed,
        image_size=image[0],
        patch=image[1],
        text_positions=text_positions,
    )


BLIP_BASE_384 = _sizes((768, 12, 12), (768, 12, 12), embed=256, image=(384, 16), text_positions=512)
LLAVA_CLIP_L_336 = _sizes(
    (1024, 24, 16), (256, 2, 4), lm=(256, 2, 4), embed=768, image=(336, 14), text_positions=77
)
SIZES = {"blip": BLIP_BASE_384, "llava": LLAVA_CLIP_L_336}
STAMP = "fullsize.json"  # written last: a directory without it is incomplete


def build(family: str, out: str | Path, *, seed: int = 0, force: bool = False) -> Path:
    """Build and save the full-size random-init ``family`` model into ``out`` (reused
    when ``out`` already holds the same build, unless ``force``); returns ``out``."""
    import torch

    from semcom.models import tiny

    if family not in SIZES:
        raise ValueError(f"unknown family {family!r}; use one of {', '.join(SIZES)}")
    out = Path(out)
    sizes = SIZES[family]
    want = {"family": family, "seed": seed, "sizes": tiny.sizes_dict(sizes), "version": 2}
    stamp = out / STAMP
    if not force and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    stamp.unlink(missing_ok=True)
    manifest = {"trained_by": "random init (semcom.models.fullsize)", "fullsize": family}
    with torch.no_grad():
        if family == "blip":
            cap, ret, tok = tiny.build_blip(sizes, seed=seed)
            tiny.save_blip(out, cap, ret, tok, manifest=manifest)
            del cap, ret
        else:
            llava, clip, tok, ctok = tiny.build_llava(sizes, seed=seed)
            tiny.save_llava(out, llava, clip, tok, ctok, manifest=manifest)
            del llava, clip
    gc.collect()
    stamp.write_text(json.dumps(want, indent=2) + "\n")
    return out
