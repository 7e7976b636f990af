"""Tiny BLIP / LLaVA / CLIP of the real transformers classes, and offline tokenizers.

Used by ``semcom train tinyworld`` (which trains them on the tiny world) and by the
tests (random weights in a temporary directory). Tokenizers are word-level, built from
the tiny world's vocabulary with the ``tokenizers`` library, wrapped in
``PreTrainedTokenizerFast`` and saved with ``save_pretrained``, so that ``AutoTokenizer``
and ``AutoProcessor`` load them like any other.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from semcom.models.base import MANIFEST
from semcom.world import IMAGE_SIZE
from semcom.world import words as world_words

PATCH = 8
BLIP_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
LLAVA_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
CLIP_SPECIALS = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]


@dataclass(frozen=True)
class TinySizes:
    vision_dim: int = 96
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp: int = 2  # MLP width = vision_mlp * vision_dim
    text_dim: int = 96
    text_layers: int = 2
    text_heads: int = 4
    text_mlp: int = 2
    lm_dim: int = 128
    lm_layers: int = 3
    lm_heads: int = 4
    lm_mlp: int = 2
    lm_rope_theta: float = 10000.0
    embed_dim: int = 64
    image_size: int = IMAGE_SIZE  # the vision encoders' input (the tiny world: 96 x 96)
    patch: int = PATCH
    text_positions: int = 64  # BLIP text / CLIP text position embeddings


def _word_tokenizer(
    specials: list[str],
    single: str,
    *,
    bos=None,
    eos=None,
    pad=None,
    unk=None,
    cls=None,
    sep=None,
    mask=None,
    extra=(),
    max_len=256,
):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials)}
    for w in world_words():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    ids = [(t, vocab[t]) for t in specials if t in single]
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=ids)
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    kw = {
        k: v
        for k, v in dict(
            bos_token=bos,
            eos_token=eos,
            pad_token=pad,
            unk_token=unk,
            cls_token=cls,
            sep_token=sep,
            mask_token=mask,
        ).items()
        if v
    }
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_len, **kw)
    if extra:
        fast.add_special_tokens({"additional_special_tokens": list(extra)})
    return fast


# special tokens by role, per family (the ids follow the *_SPECIALS order)
BLIP_ROLES = dict(bos="[DEC]", eos="[SEP]", pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]")
LLAVA_ROLES = dict(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
CLIP_ROLES = dict(bos="<|startoftext|>", eos="<|endoftext|>", pad="<pad>", unk="<unk>")


def blip_tokenizer():
    """BERT-like: ``[CLS] text [SEP]``; ``[DEC]`` is the decoder's BOS."""
    single, extra = "[CLS] $A [SEP]", ["[ENC]"]
    return _word_tokenizer(
        BLIP_SPECIALS, single, mask="[MASK]", extra=extra, max_len=64, **BLIP_ROLES
    )


def llava_tokenizer(image_tokens: int = 0):
    """Llama-like: ``<s> text``; ``<image>`` is the image placeholder. The maximum length
    is 512, or ``image_tokens + 512`` when a prompt's placeholders need more room."""
    n = 512 if image_tokens + 64 <= 512 else image_tokens + 512
    return _word_tokenizer(LLAVA_SPECIALS, "<s> $A", extra=["<image>"], max_len=n, **LLAVA_ROLES)


def clip_tokenizer():
    single = "<|startoftext|> $A <|endoftext|>"
    return _word_tokenizer(CLIP_SPECIALS, single, max_len=64, **CLIP_ROLES)


def blip_image_processor(size: int = IMAGE_SIZE):
    """BLIP's: a square resize to ``size`` (bicubic), CLIP mean / std."""
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    return BlipImageProcessorPil(size={"height": size, "width": size})


def clip_image_processor(size: int = IMAGE_SIZE):
    """CLIP's: the shorter side to ``size``, a centre crop of ``size`` x ``size``."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


# ---------------------------------------------------------------------------------- BLIP


def blip_config(sizes: TinySizes = TinySizes(), vocab_size: int | None = None):
    from transformers import BlipConfig, BlipTextConfig, BlipVisionConfig

    tok = blip_tokenizer()
    s = sizes
    vision = BlipVisionConfig(
        hidden_size=s.vision_dim,
        intermediate_size=s.vision_mlp * s.vision_dim,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads,
        image_size=s.image_size,
        patch_size=s.patch,
        initializer_range=0.02,
    )
    text = BlipTextConfig(
        vocab_size=vocab_size or len(tok),
        hidden_size=s.text_dim,
        encoder_hidden_size=s.vision_dim,
        intermediate_size=s.text_mlp * s.text_dim,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads,
        max_position_embeddings=s.text_positions,
        projection_dim=s.embed_dim,
        bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        sep_token_id=tok.sep_token_id,
        is_decoder=True,
    )
    return BlipConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        image_text_hidden_size=s.embed_dim,
        projection_dim=s.embed_dim,
    ), tok


def sincos_positions(dim: int, grid: int, temperature: float = 100.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``[1 + grid*grid, dim]`` (row 0, the CLS
    slot, is zero), as MAE: half the channels encode the row, half the column.

    Why: ViTs initialise learned position embeddings at std 0.02 (norm ~0.3 here) while
    the patch embeddings of these images grow to norm ~9; in the first semcom training
    the tiny models never learned where anything was (VQA position and shape questions
    at chance, every caption starting "top left"). Entries of +-1 (norm sqrt(dim/2)) keep
    the position visible from the first step. ``temperature`` 100 spreads the
    frequencies over a 12-wide grid (10000, MAE's, leaves half the channels constant).
    """
    if dim % 4:
        raise ValueError(f"sincos_positions needs dim divisible by 4, got {dim}")
    q = dim // 4
    omega = 1.0 / temperature ** (torch.arange(q, dtype=torch.float64) / q)
    pos = torch.arange(grid, dtype=torch.float64)
    ang = pos[:, None] * omega[None]  # [grid, q]
    one = torch.cat([ang.sin(), ang.cos()], 1)  # [grid, 2q]
    rows = one[:, None, :].expand(grid, grid, 2 * q)
    cols = one[None, :, :].expand(grid, grid, 2 * q)
    emb = torch.cat([rows, cols], -1).reshape(grid * grid, dim)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()


def _fixed_positions(embeddings) -> None:
    """Put :func:`sincos_positions` into a BLIP / CLIP vision embedding module and freeze
    them (they are saved with the weights like any parameter, so loading is unchanged)."""
    pe = embeddings.position_embedding
    param = pe.weight if isinstance(pe, torch.nn.Embedding) else pe
    grid = embeddings.image_size // embeddings.patch_size
    table = sincos_positions(param.shape[-1], grid)
    with torch.no_grad():
        param.copy_(table.view(param.shape))
    param.requires_grad_(False)


def build_blip(sizes: TinySizes = TinySizes(), seed: int = 0):
    """(caption model, retrieval model, tokenizer) with ONE shared vision encoder."""
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

    cfg, tok = blip_config(sizes)
    torch.manual_seed(seed)
    cap = BlipForConditionalGeneration(cfg)
    ret = BlipForImageTextRetrieval(cfg)
    ret.vision_model = cap.vision_model
    _fixed_positions(cap.vision_model.embeddings)
    from semcom.models.blip import enforce_cross_attention_mask

    enforce_cross_attention_mask(cap)  # training sees the token masks it is given
    enforce_cross_attention_mask(ret)
    return cap, ret, tok


def _save(model, path: Path, fp16: bool):
    from semcom.models.common import quiet_transformers

    m = copy.deepcopy(model)
    if fp16:
        m = m.half()
    with quiet_transformers():
        m.save_pretrained(str(path))


def save_blip(root: Path, cap, ret, tok, *, fp16: bool = True, manifest: dict | None = None):
    """``root/caption/`` and ``root/retrieval/`` (each with tokenizer + processor at the
    vision encoder's input size)."""
    from transformers import BlipProcessor

    root = Path(root)
    for name, model in (("caption", cap), ("retrieval", ret)):
        if model is None:
            continue
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        _save(model, d, fp16)
        ip = blip_image_processor(model.config.vision_config.image_size)
        BlipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(str(d))
        ip.save_pretrained(str(d))
    (root / MANIFEST).write_text(
        json.dumps(
            {
                "family": "blip",
                "caption": "caption",
                "retrieval": "retrieval",
                "vision": "retrieval" if ret is not None else "caption",
                **(manifest or {}),
            },
            indent=2,
        )
        + "\n"
    )


# --------------------------------------------------------------------------------- LLaVA


def llava_configs(sizes: TinySizes = TinySizes()):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig, LlamaConfig, LlavaConfig

    s = sizes
    tok, ctok = llava_tokenizer((s.image_size // s.patch) ** 2), clip_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=s.vision_dim,
        intermediate_size=s.vision_mlp * s.vision_dim,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads,
        image_size=s.image_size,
        patch_size=s.patch,
        projection_dim=s.embed_dim,
    )
    lm = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=s.lm_dim,
        intermediate_size=s.lm_mlp * s.lm_dim,
        num_hidden_layers=s.lm_layers,
        num_attention_heads=s.lm_heads,
        num_key_value_heads=s.lm_heads,
        max_position_embeddings=max(512, tok.model_max_length),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": s.lm_rope_theta},
    )
    llava = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=lm.to_dict(),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(s.image_size // s.patch) ** 2,
        tie_word_embeddings=True,
    )
    ctext = CLIPTextConfig(
        vocab_size=len(ctok),
        hidden_size=s.text_dim,
        intermediate_size=s.text_mlp * s.text_dim,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads,
        max_position_embeddings=s.text_positions,
        projection_dim=s.embed_dim,
        pad_token_id=ctok.pad_token_id,
        bos_token_id=ctok.bos_token_id,
        eos_token_id=ctok.eos_token_id,
    )
    clip = CLIPConfig(
        text_config=ctext.to_dict(), vision_config=vision.to_dict(), projection_dim=s.embed_dim
    )
    return llava, clip, tok, ctok


def build_llava(sizes: TinySizes = TinySizes(), seed: int = 0):
    """(llava, clip, tokenizer, clip tokenizer); LLaVA's vision tower IS clip.vision_model."""
    from transformers import CLIPModel, LlavaForConditionalGeneration

    lcfg, ccfg, tok, ctok = llava_configs(sizes)
    torch.manual_seed(seed)
    llava = LlavaForConditionalGeneration(lcfg)
    clip = CLIPModel(ccfg)
    llava.model.vision_tower = clip.vision_model
    _fixed_positions(clip.vision_model.embeddings)
    return llava, clip, tok, ctok


def save_llava(
    root: Path, llava, clip, tok, ctok, *, fp16: bool = True, manifest: dict | None = None
):
    """``root/`` = LLaVA (+ tokenizer, processor); ``root/clip/`` = its CLIP with text tower."""
    from transformers import LlavaProcessor

    from semcom.models.llava import DEFAULT_TEMPLATE
    from semcom.tasks.caption import CAPTION_PROMPT

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _save(llava, root, fp16)
    vc = llava.config.vision_config
    ip = clip_image_processor(vc.image_size)
    LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=vc.patch_size,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    ).save_pretrained(str(root))
    ip.save_pretrained(str(root))
    if clip is not None:
        (root / "clip").mkdir(exist_ok=True)
        _save(clip, root / "clip", fp16)
        ctok.save_pretrained(str(root / "clip"))
        ip.save_pretrained(str(root / "clip"))
    (root / MANIFEST).write_text(
        json.dumps(
            {
                "family": "llava",
                "clip": "clip",
                "prompt_template": DEFAULT_TEMPLATE,
                "caption_prompt": CAPTION_PROMPT,
                **(manifest or {}),
            },
            indent=2,
        )
        + "\n"
    )


def sizes_dict(sizes: TinySizes) -> dict:
    return asdict(sizes)
