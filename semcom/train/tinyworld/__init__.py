"""Training of the tiny BLIP and LLaVA on the tiny world (``semcom train tinyworld``),
saved (safetensors, fp16) where ``load_backend`` finds them, and their evaluation.

- BLIP (:mod:`.blip`): ``BlipForConditionalGeneration`` + ``BlipForImageTextRetrieval``
  sharing ONE vision encoder (4 layers, 96 wide, patch 8: 1 + 144 tokens). Losses:
  captioning (LM), ITC, ITM with in-batch hard negatives (as BLIP), a phrase-to-patch
  alignment loss that makes ``patch_embeddings`` vs ``text_features`` point at objects,
  and the per-patch attribute loss (:func:`.losses.attribute_loss`).
- LLaVA (:mod:`.llava`): ``LlavaForConditionalGeneration`` (CLIP-style vision tower, MLP
  projector, 3-layer Llama) plus a ``CLIPModel`` whose vision tower IS LLaVA's (text
  tower for guidance). Losses: VQA and captioning (LM), CLIP contrastive, the
  question-to-patch alignment loss, the per-patch attribute loss on the features LLaVA
  projects and the lookup loss (:func:`.losses.lookup_loss`).

Both run in the one loop of :mod:`.loop` (optimiser, schedule, progress, checkpoint).
The vision encoders run on a token subset (every object patch + 12 random background
patches, patch dropout as FLIP) on most steps; every ``full_every``-th step and the last
``full_fraction`` of training they see all 1 + 144 tokens, so there is no abrupt switch
(the first runs, full tokens only at the end, had LLaVA's losses jump 0.4 -> 1.8 there).
Position embeddings are fixed 2-D sin-cos (:func:`semcom.models.tiny.sincos_positions`).

The decoders see object-preserving token subsets part of the time (all object patches,
a random fraction of background patches, BLIP's CLS sometimes dropped), so they accept
the variable token sets the cloud receives; objects are never dropped in training, so
the vision encoder has no reason to copy object content into background tokens
(:mod:`.data`).

The evaluation (:mod:`.evaluation`) loads the saved directory through
:func:`semcom.models.load_backend` (the same path as real weights) and runs the tasks on
1,000 eval scenes with full tokens, with zeroed tokens (chance check) and with oracle /
random token subsets (does choosing tokens matter?).
"""

from __future__ import annotations

from semcom.train.tinyworld.evaluation import blind_vqa_baseline, evaluate, print_metrics
from semcom.train.tinyworld.run import (
    DEFAULTS,
    default_out,
    train_tinyworld,
    versions,
    write_record,
)

__all__ = [
    "DEFAULTS",
    "blind_vqa_baseline",
    "default_out",
    "evaluate",
    "print_metrics",
    "train_tinyworld",
    "versions",
    "write_record",
]
