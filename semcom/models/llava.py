"""LLaVA backend: CLIP vision tower on the edge; projector + language model on the cloud.

Directory (``model.path``): a ``LlavaForConditionalGeneration`` saved by
``save_pretrained`` with its tokenizer (the image placeholder ``<image>`` as a special
token) and image processor. Text guidance (``text_features``, ``patch_embeddings``)
needs the CLIP model the vision tower came from, with its text tower: a ``CLIPModel``
directory in ``clip/`` (or where ``semcom.json`` ``{"clip": "relative/or/absolute"}``
points). Real LLaVA-1.5 checkpoints hold only the vision tower; put the matching
``openai/clip-vit-large-patch14-336`` (saved with save_pretrained) there.

Token layout: the edge sends the vision tower's hidden state at ``vision_feature_layer``
(LLaVA-1.5 and the tiny model: -2, the penultimate layer, no final norm), all ``1+P``
tokens, CLS first, *before* the multimodal projector; the projector runs on the cloud.
With ``vision_feature_select_strategy: default`` (LLaVA-1.5, tiny model) the cloud
ignores token 0 (CLS); with ``full`` it is used. The prompt gets one ``<image>``
placeholder per token used, so the number of placeholders follows what arrived.

Prompts: the task gives the task-level prompt (:mod:`semcom.tasks`: the question for
VQA, the caption instruction for captioning); this backend puts it into the family's
chat template, ``semcom.json`` ``"prompt_template"`` (default :data:`DEFAULT_TEMPLATE`,
with ``<image>`` and ``{prompt}``). ``semcom.json`` may also record the prompts the
model was trained with (``"prompts": {task: prompt}``, or ``"caption_prompt"``); the
tasks use those for this model (:attr:`VLMBackend.prompts`).

Already-projected embeddings (a learned projector on the edge or the cloud replaced
``multi_modal_projector``): ``answer(..., projected=True)`` / ``caption(...,
projected=True)`` take ``tokens [B, N, lm_hidden_size]`` and insert ``tokens[mask]`` as
they are at the placeholders (no projector, no CLS handling: the mask says which are real).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.functional import normalize

from semcom.errors import ModelLoadError
from semcom.models import base, common
from semcom.models.base import VisionOutput, VLMBackend
from semcom.models.common import Capture, as_tokens, layer_index, load_part, preprocess
from semcom.tasks.caption import CAPTION_PROMPT

# LLaVA-1.5's conversation wrapper around a task prompt (the family's, not a task's).
DEFAULT_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:"
# The caption task's prompt, which the tiny LLaVA is trained with (semcom.tasks.caption).
DEFAULT_CAPTION_PROMPT = CAPTION_PROMPT


def _attn_probs(mod, h):
    """Post-softmax attention of a CLIP attention module for input ``h`` (no mask: vision)."""
    b, t, _ = h.shape
    q = mod.q_proj(h).view(b, t, mod.num_heads, mod.head_dim).transpose(1, 2)
    k = mod.k_proj(h).view(b, t, mod.num_heads, mod.head_dim).transpose(1, 2)
    return torch.softmax((q @ k.transpose(-1, -2)) * mod.scale, dim=-1)


def generate_text(
    model, tokenizer, embeds, att, *, max_new_tokens: int, beams: int = 1
) -> list[str]:
    """Greedy (or beam) decoding from input embeddings ``[B, L, H]`` + attention mask
    ``[B, L]``; the decoded texts, stripped."""
    tc = model.config.text_config
    out = model.generate(
        inputs_embeds=embeds,
        attention_mask=att,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=beams,
        eos_token_id=tc.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


class LlavaBackend(VLMBackend):
    family = "llava"
    has_cls = True

    def __init__(self, path: Path, device: str = "cpu"):
        from transformers import CLIPModel, LlavaForConditionalGeneration

        self.path = Path(path)
        self.device = device
        base.check_hf_dir(self.path, "LLaVA")
        cfg = base.read_json(self.path / "config.json", "LLaVA")
        if cfg.get("model_type") != "llava":
            raise ModelLoadError(
                f"{self.path}/config.json has model_type "
                f"{cfg.get('model_type')!r}; the llava backend needs "
                "a LlavaForConditionalGeneration checkpoint (model_type 'llava')"
            )
        manifest = base.read_manifest(self.path, "LLaVA")
        cls = LlavaForConditionalGeneration
        self.model, self.tokenizer = load_part(cls, self.path, "LLaVA", device)
        self.tokenizer.padding_side = "left"
        self.processor = common.load_image_processor(self.path, "LLaVA")
        c = self.model.config
        if not isinstance(c.vision_feature_layer, int):
            raise ModelLoadError(
                f"{self.path}: vision_feature_layer {c.vision_feature_layer!r}: "
                "only a single feature layer is supported"
            )
        self.feature_layer = int(c.vision_feature_layer)
        self.strategy = c.vision_feature_select_strategy
        self.image_token_id = int(c.image_token_id)
        self.tower = self.model.model.vision_tower
        self._set_vision(self.tower.config)
        # hidden_states index of the features (0 = embeddings, i = after i layers)
        self.feature_index = (
            self.feature_layer + self.num_layers + 1
            if self.feature_layer < 0
            else self.feature_layer
        )
        self.template = str(manifest.get("prompt_template", DEFAULT_TEMPLATE))
        self.prompts = base.recorded_prompts(manifest)
        if "<image>" not in self.template or "{prompt}" not in self.template:
            raise ModelLoadError(
                f"{self.path}/{base.MANIFEST}: prompt_template must contain '<image>' and '{{prompt}}'"
            )
        self.image_token = self.tokenizer.convert_ids_to_tokens(self.image_token_id)
        self.tasks = {"vqa", "caption"}
        self.clip = self.clip_tok = None
        clip_dir = Path(manifest.get("clip", "clip"))
        clip_dir = clip_dir if clip_dir.is_absolute() else self.path / clip_dir
        dirs = [self.path]
        if clip_dir.is_dir():
            base.check_hf_dir(clip_dir, "LLaVA's CLIP text tower", image_processor=False)
            self.clip, self.clip_tok = load_part(CLIPModel, clip_dir, "LLaVA's CLIP", device)
            if not clip_dir.is_relative_to(self.path):
                dirs.append(clip_dir)
        self.clip_dir = clip_dir
        self.model_id = base.model_id(self.family, dirs)

    # ------------------------------------------------------------------------- edge
    def preprocess(self, images) -> torch.Tensor:
        return preprocess(self.processor, images, self.device)

    def _capture(self, attn_layers, key_layers, start: int = 0) -> Capture:
        layers = self.tower.encoder.layers
        n = len(layers)
        cap = Capture()
        for i in attn_layers:  # recomputed eagerly from the layer's own q/k projections
            cap.add(
                layers[layer_index(i, n, "attention layer", start)].self_attn,
                ("a", i),
                _attn_probs,
                pre=True,
            )
        for i in key_layers:
            cap.add(
                layers[layer_index(i, n, "key layer", start)].self_attn.k_proj,
                ("k", i),
                lambda m, out: out,
            )
        return cap

    @torch.no_grad()
    def vision_tokens(self, pixel_values, *, attn_layers=(), key_layers=(), hidden_layers=()):
        cap = self._capture(attn_layers, key_layers)
        with cap:
            out = self.tower(pixel_values=pixel_values.to(self.device), output_hidden_states=True)
        hs = out.hidden_states
        hidden = {}
        for i in hidden_layers:
            if not -len(hs) <= i < len(hs):
                raise ValueError(f"hidden layer {i} out of range for {len(hs)} hidden states")
            hidden[i] = hs[i]
        return VisionOutput(
            hs[self.feature_index],
            {i: cap.data[("a", i)] for i in attn_layers},
            {i: cap.data[("k", i)] for i in key_layers},
            hidden,
        )

    @torch.no_grad()
    def vision_tokens_from_layer(self, hidden, start_layer: int) -> torch.Tensor:
        n = self.num_layers
        start = start_layer + n + 1 if start_layer < 0 else start_layer
        if not 0 <= start <= self.feature_index:
            raise ValueError(f"start_layer {start_layer} out of range 0..{self.feature_index}")
        h = torch.as_tensor(hidden, dtype=torch.float32, device=self.device)
        for layer in self.tower.encoder.layers[start : self.feature_index]:
            h = layer(h, None)
        return h

    def _need_clip(self):
        if self.clip is None:
            raise NotImplementedError(
                f"LLaVA at {self.path}: text features need the CLIP model of the vision tower "
                f"with its text tower: save a CLIPModel (save_pretrained, with tokenizer) in "
                f"{self.clip_dir}"
            )
        return self.clip

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        """CLIP text tower + text_projection, L2-normalised."""
        clip = self._need_clip()
        enc = self.clip_tok(list(texts), padding=True, return_tensors="pt").to(self.device)
        feats = clip.get_text_features(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).pooler_output
        return normalize(feats, dim=-1)

    text_embed = text_features

    @torch.no_grad()
    def patch_embeddings(self, tokens) -> torch.Tensor:
        """Tokens in CLIP's joint space: the vision layers after ``vision_feature_layer``
        (attention among the given tokens), post-LayerNorm, visual_projection, L2-normalised."""
        clip = self._need_clip()
        h = torch.as_tensor(tokens, dtype=torch.float32, device=self.device)
        vm = clip.vision_model
        for layer in vm.encoder.layers[self.feature_index :]:
            h = layer(h, None)
        return normalize(clip.visual_projection(vm.post_layernorm(h)), dim=-1)

    # ------------------------------------------------------------------------ cloud
    @property
    def lm_hidden_size(self) -> int:
        """Width ``H`` of the language model's input embeddings (what the projector
        outputs; ``projected=True`` inputs are ``[B, N, H]``)."""
        return int(self.model.config.text_config.hidden_size)

    def used_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Which received tokens go to the projector (strategy default: not CLS)."""
        if self.strategy == "default":
            mask = mask.clone()
            mask[:, 0] = False
        return mask

    def build_inputs(self, tokens, mask, prompts: list[str], *, projected: bool = False):
        """Left-padded ``inputs_embeds [B, T, H]`` and ``attention_mask [B, T]``.

        ``projected=False``: ``tokens [B, N, token_dim]`` are vision-tower features; the
        used ones (:meth:`used_mask`) go through ``multi_modal_projector``.
        ``projected=True``: ``tokens [B, N, lm_hidden_size]`` are already projected;
        ``tokens[mask]`` are inserted as they are.
        """
        tokens, mask = as_tokens(tokens, mask, self.device)
        if len(prompts) != tokens.shape[0]:
            raise ValueError(f"{len(prompts)} prompts for {tokens.shape[0]} images")
        want = self.lm_hidden_size if projected else self.token_dim
        if tokens.shape[-1] != want:
            raise ValueError(
                f"tokens are {tokens.shape[-1]}-d; with projected={projected} the "
                f"LLaVA at {self.path} needs {want}-d "
                + ("(the language model's width)" if projected else "(the vision tower's width)")
            )
        used = mask if projected else self.used_mask(mask)
        texts = []
        for p, n in zip(prompts, used.sum(1).tolist()):
            text = self.template.replace("{prompt}", p)
            pre, post = text.split("<image>", 1)
            texts.append(pre + self.image_token * int(n) + post)
        enc = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        ids = enc["input_ids"]
        embeds = self.model.get_input_embeddings()(ids)
        feats = tokens if projected else self.model.model.multi_modal_projector(tokens)
        embeds = embeds.clone()
        embeds[ids == self.image_token_id] = feats[used].to(embeds.dtype)
        return embeds, enc["attention_mask"]

    @property
    def caption_prompt(self) -> str:
        """The caption task's prompt for this model (the recorded one if any)."""
        from semcom.tasks import prompt_for
        from semcom.tasks.caption import CaptionTask

        return prompt_for(CaptionTask.spec, self)

    @torch.no_grad()
    def answer(
        self,
        tokens,
        mask,
        prompts: list[str],
        *,
        max_new_tokens: int = 8,
        beams: int = 1,
        projected: bool = False,
    ) -> list[str]:
        """Greedy (``beams=1``) or beam-search answers, one per prompt (the task's text
        for each sample, e.g. the question), each put into the chat template.

        ``tokens [B, N, token_dim]`` vision features (``projected=False``) or
        ``[B, N, lm_hidden_size]`` already-projected embeddings (``projected=True``);
        ``mask [B, N]`` bool, True = real token (``None``: all).
        """
        embeds, att = self.build_inputs(tokens, mask, list(prompts), projected=projected)
        return generate_text(
            self.model, self.tokenizer, embeds, att, max_new_tokens=max_new_tokens, beams=beams
        )

    def _caption(
        self, tokens, mask, prompt, beams: int, max_new_tokens: int, projected: bool = False
    ) -> list[str]:
        """Captions: :meth:`answer` with the caption task's ``prompt`` (``None``: the
        caption task's prompt for this model), same token conventions."""
        tokens, mask = as_tokens(tokens, mask, self.device)
        prompt = self.caption_prompt if prompt is None else prompt
        return self.answer(
            tokens,
            mask,
            [prompt] * tokens.shape[0],
            max_new_tokens=max_new_tokens,
            beams=beams,
            projected=projected,
        )

    def image_embed(self, tokens, mask=None):
        self._unsupported("retrieval (use BLIP)")

    def itm_scores(self, tokens, mask, texts):
        self._unsupported("retrieval (use BLIP)")
