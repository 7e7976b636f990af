"""BLIP backend: one vision encoder for the edge; captioning and retrieval on the cloud.

Directory layouts (``model.path``):

- a ``BlipForConditionalGeneration`` directory (captioning only);
- a ``BlipForImageTextRetrieval`` directory (retrieval and text guidance only);
- a combined directory with ``caption/`` and/or ``retrieval/`` sub-directories, each
  saved by ``save_pretrained`` (with tokenizer and processor). The edge's vision tokens
  come from ``retrieval/`` if present (``semcom.json`` ``{"vision": "caption"}`` picks
  the other); with real BLIP checkpoints the caption decoder then reads the retrieval
  ViT's tokens, as in the seed paper's cross-checkpoint swap. semcom's tiny BLIP is
  trained with one shared vision encoder, saved in both.

Token layout: ``tokens [B, 1+P, D]`` = the ViT's last hidden state after its final
LayerNorm (what BLIP's heads read); token 0 is CLS.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.functional import normalize

from semcom.errors import ModelLoadError
from semcom.models.base import (
    MANIFEST,
    VisionOutput,
    VLMBackend,
    check_hf_dir,
    model_id,
    read_json,
    read_manifest,
    recorded_prompts,
)
from semcom.models.common import (
    Capture,
    as_tokens,
    layer_index,
    load_image_processor,
    load_part,
    masked_first_or_mean,
    preprocess,
)

CAPTION_ARCH = "BlipForConditionalGeneration"
RETRIEVAL_ARCH = "BlipForImageTextRetrieval"


def _arch(path: Path) -> str:
    cfg = read_json(path / "config.json", "BLIP")
    if cfg.get("model_type") != "blip":
        raise ModelLoadError(
            f"{path}/config.json has model_type {cfg.get('model_type')!r}; "
            "the blip backend needs a BLIP checkpoint (model_type 'blip')"
        )
    archs = cfg.get("architectures") or []
    return archs[0] if archs else ""


def enforce_cross_attention_mask(model) -> int:
    """Make BLIP's text transformer honour ``encoder_attention_mask`` (the image mask).

    In transformers 5.x ``BlipTextAttention.forward`` passes the (already expanded,
    additive) image mask to its cross-attention as ``attention_mask``, while
    ``BlipTextSelfAttention`` reads ``encoder_attention_mask`` for cross-attention, which
    is then ``None``: the mask is silently dropped and every image token is attended,
    received or not. A forward pre-hook on each cross-attention module restores the
    intended behaviour (a no-op if the keyword is already set, e.g. once fixed upstream).
    With an all-ones mask (the pixel path) nothing changes. Returns the number of
    modules hooked; hooks are not saved with the weights, so every loader calls this.
    """

    def hook(mod, args, kwargs):
        if (
            kwargs.get("encoder_hidden_states") is not None
            and kwargs.get("encoder_attention_mask") is None
            and kwargs.get("attention_mask") is not None
        ):
            kwargs = dict(kwargs)
            kwargs["encoder_attention_mask"] = kwargs["attention_mask"]
            return args, kwargs
        return None

    n = 0
    for name, mod in model.named_modules():
        if name.endswith("crossattention.self") and not getattr(mod, "_semcom_mask_hook", False):
            mod.register_forward_pre_hook(hook, with_kwargs=True)
            mod._semcom_mask_hook = True
            n += 1
    return n


def find_parts(root: Path) -> tuple[Path | None, Path | None, str]:
    """(caption dir, retrieval dir, which one gives the vision tokens)."""
    if not root.is_dir():
        check_hf_dir(root, "BLIP")
    manifest = read_json(root / MANIFEST, "BLIP") if (root / MANIFEST).is_file() else {}
    cap = ret = None
    if (root / "config.json").is_file():
        check_hf_dir(root, "BLIP")
        arch = _arch(root)
        if arch == CAPTION_ARCH:
            cap = root
        elif arch == RETRIEVAL_ARCH:
            ret = root
        else:
            raise ModelLoadError(
                f"{root}/config.json: architecture {arch!r} is not supported; "
                f"use {CAPTION_ARCH} or {RETRIEVAL_ARCH}"
            )
    else:
        sub_cap = root / manifest.get("caption", "caption")
        sub_ret = root / manifest.get("retrieval", "retrieval")
        if not sub_cap.is_dir() and not sub_ret.is_dir():
            raise ModelLoadError(
                f"BLIP: {root} has neither config.json nor caption/ or retrieval/ "
                "sub-directories. Expected a BlipForConditionalGeneration or "
                "BlipForImageTextRetrieval directory saved by save_pretrained (config.json, "
                "model.safetensors, tokenizer.json + tokenizer_config.json, "
                "preprocessor_config.json or processor_config.json), or caption/ and "
                "retrieval/ sub-directories each holding one."
            )
        for sub, want in ((sub_cap, CAPTION_ARCH), (sub_ret, RETRIEVAL_ARCH)):
            if sub.is_dir():
                check_hf_dir(sub, f"BLIP {sub.name}")
                if _arch(sub) != want:
                    raise ModelLoadError(
                        f"{sub}: expected a {want} checkpoint, found {_arch(sub)!r}"
                    )
        cap = sub_cap if sub_cap.is_dir() else None
        ret = sub_ret if sub_ret.is_dir() else None
    vision = manifest.get("vision", "retrieval" if ret is not None else "caption")
    if (
        vision not in ("caption", "retrieval")
        or (vision == "caption" and cap is None)
        or (vision == "retrieval" and ret is None)
    ):
        raise ModelLoadError(
            f"{root}/{MANIFEST}: 'vision' must name a present part "
            f"(caption or retrieval), got {vision!r}"
        )
    return cap, ret, vision


class BlipBackend(VLMBackend):
    family = "blip"
    has_cls = True

    def __init__(self, path: Path, device: str = "cpu"):
        from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

        self.path = Path(path)
        self.device = device
        cap_dir, ret_dir, vision = find_parts(self.path)
        self.cap = self.ret = None
        self.cap_tok = self.ret_tok = None
        if cap_dir is not None:
            cls = BlipForConditionalGeneration
            self.cap, self.cap_tok = load_part(cls, cap_dir, "BLIP caption", device)
            enforce_cross_attention_mask(self.cap)
        if ret_dir is not None:
            cls = BlipForImageTextRetrieval
            self.ret, self.ret_tok = load_part(cls, ret_dir, "BLIP retrieval", device)
            enforce_cross_attention_mask(self.ret)
        vdir = ret_dir if vision == "retrieval" else cap_dir
        self.vision = (self.ret if vision == "retrieval" else self.cap).vision_model
        self.processor = load_image_processor(vdir, "BLIP")
        self._set_vision(self.vision.config)
        self.tasks = ({"caption"} if self.cap is not None else set()) | (
            {"retrieval"} if self.ret is not None else set()
        )
        self.prompts = recorded_prompts(read_manifest(self.path, "BLIP"))
        self.model_id = model_id(self.family, [self.path])

    # ------------------------------------------------------------------------- edge
    def preprocess(self, images) -> torch.Tensor:
        return preprocess(self.processor, images, self.device)

    def _capture(self, attn_layers, key_layers, start: int = 0) -> Capture:
        layers = self.vision.encoder.layers
        n, d = len(layers), self.token_dim
        cap = Capture()
        for i in attn_layers:  # BlipAttention returns its post-softmax probabilities
            cap.add(
                layers[layer_index(i, n, "attention layer", start)].self_attn,
                ("a", i),
                lambda m, out: out[1],
            )
        for i in key_layers:
            cap.add(
                layers[layer_index(i, n, "key layer", start)].self_attn.qkv,
                ("k", i),
                lambda m, out: out[..., d : 2 * d],
            )
        return cap

    @torch.no_grad()
    def vision_tokens(self, pixel_values, *, attn_layers=(), key_layers=(), hidden_layers=()):
        cap = self._capture(attn_layers, key_layers)
        with cap:
            out = self.vision(
                pixel_values=pixel_values.to(self.device), output_hidden_states=bool(hidden_layers)
            )
        hidden = {}
        if hidden_layers:
            hs = out.hidden_states
            for i in hidden_layers:
                hidden[i] = hs[i] if -len(hs) <= i < len(hs) else _bad_hidden(i, len(hs))
        return VisionOutput(
            out.last_hidden_state,
            {i: cap.data[("a", i)] for i in attn_layers},
            {i: cap.data[("k", i)] for i in key_layers},
            hidden,
        )

    @torch.no_grad()
    def vision_tokens_from_layer(self, hidden, start_layer: int) -> torch.Tensor:
        n = self.num_layers
        start = start_layer + n + 1 if start_layer < 0 else start_layer
        if not 0 <= start <= n:
            raise ValueError(f"start_layer {start_layer} out of range 0..{n}")
        h = torch.as_tensor(hidden, dtype=torch.float32, device=self.device)
        for layer in self.vision.encoder.layers[start:]:
            h = layer(h)
        return self.vision.post_layernorm(h)

    def _need(self, part: str):
        model = self.ret if part == "retrieval" else self.cap
        if model is None:
            raise NotImplementedError(
                f"BLIP at {self.path} has no {part} model (add a {part}/ sub-directory)"
            )
        return model

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """ITC text embeddings: BLIP's text encoder (unimodal) + text_proj, L2-normalised."""
        ret = self._need("retrieval")
        enc = self.ret_tok(list(texts), padding=True, return_tensors="pt").to(self.device)
        h = ret.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return normalize(ret.text_proj(h.last_hidden_state[:, 0]), dim=-1)

    text_embed = text_features

    @torch.no_grad()
    def patch_embeddings(self, tokens) -> torch.Tensor:
        """vision_proj of every token (CLS included if given), L2-normalised."""
        ret = self._need("retrieval")
        tokens = torch.as_tensor(tokens, dtype=torch.float32, device=self.device)
        return normalize(ret.vision_proj(tokens), dim=-1)

    # ------------------------------------------------------------------------ cloud
    @property
    def caption_prompt(self) -> str:
        """The caption task's prompt for this model (BLIP: none unless recorded)."""
        from semcom.tasks import prompt_for
        from semcom.tasks.caption import CaptionTask

        return prompt_for(CaptionTask.spec, self)

    @torch.no_grad()
    def _caption(self, tokens, mask, prompt, beams: int, max_new_tokens: int) -> list[str]:
        """Captions from the text decoder over ``tokens`` (cross-attention masked by
        ``mask``). ``prompt`` (``None``: the caption task's prompt for this model, for
        BLIP none) is a text prefix of the decoder (as "a picture of"), cut from the
        outputs."""
        cap = self._need("caption")
        tokens, mask = as_tokens(tokens, mask, self.device)
        b = tokens.shape[0]
        tc = cap.config.text_config
        prompt = self.caption_prompt if prompt is None else prompt
        if prompt:
            ids = self.cap_tok([prompt] * b, return_tensors="pt")["input_ids"][:, :-1]
        else:
            ids = torch.full((b, 1), tc.bos_token_id, dtype=torch.long)
        ids = ids.to(self.device)
        ids[:, 0] = tc.bos_token_id
        out = cap.text_decoder.generate(
            input_ids=ids,
            eos_token_id=tc.sep_token_id,
            pad_token_id=tc.pad_token_id,
            encoder_hidden_states=tokens,
            encoder_attention_mask=mask.long(),
            num_beams=beams,
            max_new_tokens=max_new_tokens,
            do_sample=False,
        )
        texts = self.cap_tok.batch_decode(out, skip_special_tokens=True)
        if prompt:
            p = prompt.strip().lower()
            texts = [t[len(p) :].strip() if t.lower().startswith(p) else t for t in texts]
        return [t.strip() for t in texts]

    def answer(
        self, tokens, mask, prompts, *, max_new_tokens: int = 8, beams: int = 1, **kw
    ) -> list[str]:
        self._unsupported("VQA (use LLaVA)")

    @torch.no_grad()
    def image_embed(self, tokens, mask=None) -> torch.Tensor:
        """ITC image embedding: vision_proj(CLS), L2-normalised (mean of the received
        tokens if CLS was not received)."""
        ret = self._need("retrieval")
        tokens, mask = as_tokens(tokens, mask, self.device)
        return normalize(ret.vision_proj(masked_first_or_mean(tokens, mask)), dim=-1)

    @torch.no_grad()
    def itm_scores(self, tokens, mask, texts: list[str]) -> torch.Tensor:
        """ITM match logit (``itm_head(...)[:, 1]``, as BLIP's re-ranking) of pair (i, texts[i])."""
        ret = self._need("retrieval")
        tokens, mask = as_tokens(tokens, mask, self.device)
        if len(texts) != tokens.shape[0]:
            raise ValueError(f"{len(texts)} texts for {tokens.shape[0]} images")
        enc = self.ret_tok(list(texts), padding=True, return_tensors="pt").to(self.device)
        h = ret.text_encoder(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            encoder_hidden_states=tokens,
            encoder_attention_mask=mask.long(),
        )
        return ret.itm_head(h.last_hidden_state[:, 0])[:, 1]


def _bad_hidden(i: int, n: int):
    raise ValueError(f"hidden layer {i} out of range for {n} hidden states")
