"""The tiny LLaVA's training step: ``LlavaForConditionalGeneration`` (CLIP-style vision
tower, MLP projector, 3-layer Llama) plus a ``CLIPModel`` whose vision tower IS LLaVA's
(text tower for guidance), trained on VQA and captioning (LM), CLIP contrastive, the
question-to-patch alignment loss, the per-patch attribute loss on the features LLaVA
projects and the lookup loss; run by :func:`semcom.train.tinyworld.loop.fit`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from semcom.train.tinyworld.data import (
    gather_tokens,
    keep_masks,
    normalize_images,
    subset_index,
    token_labels,
)
from semcom.train.tinyworld.loop import fit, unique_params
from semcom.train.tinyworld.losses import (
    attribute_head,
    attribute_loss,
    attribute_token_ids,
    dense_loss,
    lookup_loss,
)


def clip_encode(vm, x, index=None):
    """CLIPVisionModel's hidden states (embeddings, after each layer), optionally on a subset."""
    h = vm.pre_layrnorm(vm.embeddings(x))
    if index is not None:
        h = gather_tokens(h, index)
    hs = [h]
    for layer in vm.encoder.layers:
        h = layer(h, None)
        hs.append(h)
    return hs


def reinit_linears(module, std: float, seed: int) -> None:
    """Draw every ``nn.Linear`` weight in ``module`` from N(0, std^2), seeded (biases kept)."""
    import torch

    g = torch.Generator().manual_seed(seed % 2**63)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)


class LlavaStep:
    """The tiny LLaVA (+ the CLIP sharing its vision tower) and one training step of it.

    Three settings of the language model made its question-image lookups learnable in
    the budget (VQA 67 % -> 93 %, docs/models.md): ``lm_init_std`` redraws its linear
    layers with this std at init (None: transformers' ``initializer_range``, 0.02, sized
    for wide models); ``lookup_weight`` weighs :func:`lookup_loss`; ``rope_theta`` is its
    RoPE base (None: TinySizes', 1e4; 1e6 leaves most rotary dimensions nearly still
    over the ~170 positions, free for matching content).
    """

    name = "llava"

    def __init__(
        self,
        data,
        *,
        seed: int,
        aux_weight: float = 1.0,
        template: str | None = None,
        lm_init_std: float | None = 0.088,
        lookup_weight: float = 1.0,
        rope_theta: float | None = 1e6,
    ):
        import torch

        from semcom.models.llava import DEFAULT_TEMPLATE
        from semcom.models.tiny import TinySizes, build_llava
        from semcom.seeding import derive_seed

        self.data, self.seed, self.aux_weight = data, seed, aux_weight
        self.template = template or DEFAULT_TEMPLATE
        self.lm_init_std, self.lookup_weight = lm_init_std, lookup_weight
        sizes = TinySizes()
        if rope_theta is not None:
            sizes = dataclasses.replace(sizes, lm_rope_theta=float(rope_theta))
        self.sizes = sizes
        llava, clip, tok, ctok = build_llava(sizes, seed=derive_seed(seed, "llava-init") % 2**31)
        if lm_init_std is not None:
            reinit_linears(
                llava.model.language_model, lm_init_std, derive_seed(seed, "llava-lm-init")
            )
        if lookup_weight:
            llava.model.language_model.set_attn_implementation("eager")  # sdpa: no weights
            self.attr_ids = attribute_token_ids(tok)
        llava.train()
        clip.train()
        self.llava, self.clip, self.tok, self.ctok = llava, clip, tok, ctok
        cfg = llava.config
        self.img_id, self.eos = cfg.image_token_id, cfg.text_config.eos_token_id
        self.image_token = tok.convert_ids_to_tokens(self.img_id)
        cenc = ctok(data.captions, padding=True, return_tensors="pt")
        self.cids_all, self.catt_all = cenc["input_ids"], cenc["attention_mask"]
        self.params = unique_params(llava, clip)
        self.head = attribute_head(sizes.vision_dim, derive_seed(seed, "llava-attr") % 2**31)
        self.extra_params = list(self.head.parameters())
        self.g = torch.Generator().manual_seed(derive_seed(seed, "llava-aug") % 2**63)

    def __call__(self, step: int, idx, full: bool):
        import torch
        from torch.nn import functional as F

        from semcom.models.llava import DEFAULT_CAPTION_PROMPT
        from semcom.seeding import rng
        from semcom.world import make_question

        data, llava, clip, tok, ctok, g = (
            self.data,
            self.llava,
            self.clip,
            self.tok,
            self.ctok,
            self.g,
        )
        vm, cfg, img_id = clip.vision_model, llava.config, self.img_id
        idx_t = torch.from_numpy(idx)
        b = len(idx)
        x = normalize_images(data.images[idx_t])
        plab = data.plabels[idx_t]
        if not full:
            index = subset_index(plab, g)
            keep = torch.ones(index.shape, dtype=torch.bool)
        else:
            index = None
            keep = keep_masks(plab, g, 0.5, 0.0)
        keep[:, 0] = False  # strategy "default": CLS not projected
        hs = clip_encode(vm, x, index)
        feats = hs[cfg.vision_feature_layer]  # [B, 1+K, D]
        lab8 = token_labels(data.plabels8[idx_t], index)[:, 1:]
        lab1 = token_labels(plab, index)[:, 1:]
        l_attr = attribute_loss(self.head, feats[:, 1:], lab8, lab1, data.attributes[idx_t])
        # CLIP contrastive (image pooled output vs caption)
        img = F.normalize(clip.visual_projection(vm.post_layernorm(hs[-1][:, 0])), dim=-1)
        txt = F.normalize(
            clip.get_text_features(
                input_ids=self.cids_all[idx_t], attention_mask=self.catt_all[idx_t]
            ).pooler_output,
            dim=-1,
        )
        logits = clip.logit_scale.exp().clamp(max=100) * img @ txt.T
        ar = torch.arange(b)
        l_clip = (F.cross_entropy(logits, ar) + F.cross_entropy(logits.T, ar)) / 2
        # questions / captions for this batch
        r = rng(self.seed, "llava-batch", step)
        prompts, targets, dtexts, dtargets, relevant = [], [], [], [], []
        for j, i in enumerate(idx):
            q = make_question(data.scenes[i], r)
            if q["relevant"]:
                dtexts.append(q["question"])
                dtargets.append(torch.isin(lab8[j], torch.tensor(q["relevant"])))
            else:
                dtexts.append("a picture of")
                dtargets.append(lab8[j] >= 0)
            if r.random() < 0.25:
                prompts.append(DEFAULT_CAPTION_PROMPT)
                targets.append(data.captions[i])
                relevant.append(None)
            else:
                prompts.append(q["question"])
                targets.append(q["answer"])
                relevant.append(q["relevant"])
        # question -> patch alignment (in CLIP space, after the last vision layer)
        denc = ctok(dtexts, padding=True, return_tensors="pt")
        dt = F.normalize(
            clip.get_text_features(
                input_ids=denc["input_ids"], attention_mask=denc["attention_mask"]
            ).pooler_output,
            dim=-1,
        )
        pe = F.normalize(clip.visual_projection(vm.post_layernorm(hs[-1][:, 1:])), dim=-1)
        l_dense = dense_loss(pe, dt, torch.stack(dtargets))
        # LM: one <image> placeholder per kept patch token
        seqs, labs = [], []
        for j in range(b):
            text = self.template.replace("{prompt}", prompts[j])
            pre, post = text.split("<image>", 1)
            p_ids = tok(pre + self.image_token * int(keep[j].sum()) + post)["input_ids"]
            a_ids = tok(targets[j], add_special_tokens=False)["input_ids"] + [self.eos]
            seqs.append(p_ids + a_ids)
            labs.append([-100] * len(p_ids) + a_ids)
        n = max(len(q) for q in seqs)
        ids = torch.full((b, n), tok.pad_token_id)
        labels = torch.full((b, n), -100)
        att = torch.zeros((b, n), dtype=torch.long)
        for j, (q, lab) in enumerate(zip(seqs, labs)):
            ids[j, : len(q)] = torch.tensor(q)
            labels[j, : len(q)] = torch.tensor(lab)
            att[j, : len(q)] = 1
        emb = llava.get_input_embeddings()(ids)
        pf = llava.model.multi_modal_projector(feats)[keep]
        emb = emb.masked_scatter((ids == img_id).unsqueeze(-1), pf.to(emb.dtype))
        lm_out = llava(
            inputs_embeds=emb,
            attention_mask=att,
            labels=labels,
            output_attentions=bool(self.lookup_weight),
        )
        l_lm = lm_out.loss
        loss = l_lm + 0.5 * l_clip + 0.5 * l_dense + self.aux_weight * l_attr
        parts = {"lm": l_lm, "clip": l_clip, "dense": l_dense, "attr": l_attr}
        if self.lookup_weight:
            plen = [lab.count(-100) for lab in labs]
            kept = [lab1[j][keep[j, 1:]] for j in range(b)]
            l_look = lookup_loss(
                lm_out.attentions, ids, plen, self.attr_ids, img_id, kept, relevant
            )
            loss = loss + self.lookup_weight * l_look
            parts["lookup"] = l_look
        return loss, parts

    def info(self) -> dict:
        from semcom.models.tiny import sizes_dict

        return {
            "sizes": sizes_dict(self.sizes),
            "lm_init_std": self.lm_init_std,
            "lookup_weight": self.lookup_weight,
            "params": sum(p.numel() for p in self.params),
        }

    def save(self, out: Path) -> None:
        from semcom.models.tiny import save_llava

        self.llava.eval()
        self.clip.eval()
        if self.lookup_weight:
            self.llava.model.language_model.set_attn_implementation("sdpa")
        save_llava(
            out,
            self.llava,
            self.clip,
            self.tok,
            self.ctok,
            manifest={
                "trained_by": "semcom train tinyworld --model llava",
                "prompt_template": self.template,
            },
        )


def train_llava(
    out: Path,
    *,
    seed: int,
    aux_weight: float = 1.0,
    template: str | None = None,
    lm_init_std: float | None = 0.088,
    lookup_weight: float = 1.0,
    rope_theta: float | None = 1e6,
    **loop,
) -> dict:
    """Train the tiny LLaVA (options: :class:`LlavaStep`), save it into ``out``; the
    training record. ``loop``: the options of :func:`~semcom.train.tinyworld.loop.fit`."""
    options = dict(template=template, lm_init_std=lm_init_std, lookup_weight=lookup_weight)
    return fit(
        lambda data: LlavaStep(
            data, seed=seed, aux_weight=aux_weight, rope_theta=rope_theta, **options
        ),
        out,
        seed=seed,
        **loop,
    )
