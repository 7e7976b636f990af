"""The tiny BLIP's training step: ``BlipForConditionalGeneration`` +
``BlipForImageTextRetrieval`` sharing ONE vision encoder, trained on captioning (LM),
ITC, ITM with in-batch hard negatives (as BLIP), the phrase-to-patch alignment loss and
the per-patch attribute loss; run by :func:`semcom.train.tinyworld.loop.fit`."""

from __future__ import annotations

from pathlib import Path

from semcom.train.tinyworld.data import (
    gather_tokens,
    keep_masks,
    normalize_images,
    subset_index,
    token_labels,
)
from semcom.train.tinyworld.loop import fit, unique_params
from semcom.train.tinyworld.losses import attribute_head, attribute_loss, dense_loss


def blip_encode(vision, x, index=None):
    """BlipVisionModel's forward (post-LayerNorm last hidden state), optionally on a
    token subset."""
    h = vision.embeddings(x)
    if index is not None:
        h = gather_tokens(h, index)
    for layer in vision.encoder.layers:
        h = layer(h)
    return vision.post_layernorm(h)


class BlipStep:
    """The tiny BLIP (captioner + retrieval model) and one training step of it."""

    name = "blip"

    def __init__(self, data, *, seed: int, aux_weight: float = 1.0):
        import torch

        from semcom.models.tiny import TinySizes, build_blip
        from semcom.seeding import derive_seed

        self.data, self.seed, self.aux_weight = data, seed, aux_weight
        self.sizes = TinySizes()
        self.cap, self.ret, self.tok = build_blip(
            self.sizes, seed=derive_seed(seed, "blip-init") % 2**31
        )
        self.cap.train()
        self.ret.train()
        enc = self.tok(
            data.captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt"
        )
        self.ids_all, self.att_all = enc["input_ids"], enc["attention_mask"]
        self.bos = self.cap.config.text_config.bos_token_id
        self.phrases = [[o.phrase() for o in s.objects] for s in data.scenes]
        self.generic = ["a picture of", "an image of"]
        self.temp = torch.nn.Parameter(torch.tensor(0.07))
        self.head = attribute_head(self.sizes.vision_dim, derive_seed(seed, "blip-attr") % 2**31)
        self.params = unique_params(self.cap, self.ret) + [self.temp]
        self.extra_params = list(self.head.parameters())
        self.g = torch.Generator().manual_seed(derive_seed(seed, "blip-aug") % 2**63)

    def __call__(self, step: int, idx, full: bool):
        import torch
        from torch.nn import functional as F

        from semcom.seeding import rng

        data, cap, ret, g = self.data, self.cap, self.ret, self.g
        idx_t = torch.from_numpy(idx)
        b = len(idx)
        x = normalize_images(data.images[idx_t])
        plab = data.plabels[idx_t]
        if not full:  # encoder on objects + some background (patch dropout)
            index = subset_index(plab, g)
            keep = torch.ones(index.shape, dtype=torch.bool)
            keep[:, 0] = torch.rand(b, generator=g) >= 0.3  # CLS dropped for the decoders
        else:  # all tokens, object-preserving output subsets
            index = None
            keep = keep_masks(plab, g, 0.4, 0.3)
        tokens = blip_encode(cap.vision_model, x, index)  # [B, 1+K, D]
        lab8 = token_labels(data.plabels8[idx_t], index)[:, 1:]
        lab1 = token_labels(plab, index)[:, 1:]
        l_attr = attribute_loss(self.head, tokens[:, 1:], lab8, lab1, data.attributes[idx_t])
        ids, att = self.ids_all[idx_t], self.att_all[idx_t]
        # captioning (decoder starts with BOS = [DEC], as generate does)
        dec_ids = ids.clone()
        dec_ids[:, 0] = self.bos
        labels = dec_ids.masked_fill(att == 0, -100)
        l_lm = cap.text_decoder(
            input_ids=dec_ids,
            attention_mask=att,
            encoder_hidden_states=tokens,
            encoder_attention_mask=keep.long(),
            labels=labels,
        ).loss
        # ITC (CLS)
        h_txt = ret.text_encoder(input_ids=ids, attention_mask=att).last_hidden_state[:, 0]
        tf = F.normalize(ret.text_proj(h_txt), dim=-1)
        vf = F.normalize(ret.vision_proj(tokens[:, 0]), dim=-1)
        sim = vf @ tf.T / self.temp.clamp(0.01, 0.5)
        ar = torch.arange(b)
        l_itc = (F.cross_entropy(sim, ar) + F.cross_entropy(sim.T, ar)) / 2
        # ITM: positives + one hard negative per pair (text for the first half of the
        # batch, image for the second), drawn from the ITC similarities
        with torch.no_grad():
            same = torch.tensor([[data.captions[i] == data.captions[j] for j in idx] for i in idx])
            w = (torch.softmax(sim.float(), 1) + 1e-9).masked_fill(same, 0)
            neg_t = torch.multinomial(w, 1, generator=g).squeeze(1)
            neg_i = torch.multinomial(w.T.contiguous(), 1, generator=g).squeeze(1)
        half = b // 2
        img_idx = torch.cat([ar, ar[:half], neg_i[half:]])
        txt_idx = torch.cat([ar, neg_t[:half], ar[half:]])
        h_itm = ret.text_encoder(
            input_ids=ids[txt_idx],
            attention_mask=att[txt_idx],
            encoder_hidden_states=tokens[img_idx],
            encoder_attention_mask=keep[img_idx].long(),
        ).last_hidden_state[:, 0]
        itm_labels = torch.cat([torch.ones(b), torch.zeros(b)]).long()
        l_itm = F.cross_entropy(ret.itm_head(h_itm), itm_labels)
        # phrase -> patch alignment (text guidance points at objects)
        r = rng(self.seed, "blip-dense", step)
        texts, targets = [], []
        for j, i in enumerate(idx):
            if r.random() < 0.7:
                k = int(r.integers(len(self.phrases[i])))
                texts.append(self.phrases[i][k])
                targets.append(lab8[j] == k)
            else:
                texts.append(self.generic[int(r.integers(2))])
                targets.append(lab8[j] >= 0)
        denc = self.tok(texts, padding=True, return_tensors="pt")
        h_d = ret.text_encoder(
            input_ids=denc["input_ids"], attention_mask=denc["attention_mask"]
        ).last_hidden_state[:, 0]
        l_dense = dense_loss(
            F.normalize(ret.vision_proj(tokens[:, 1:]), dim=-1),
            F.normalize(ret.text_proj(h_d), dim=-1),
            torch.stack(targets),
        )
        loss = l_lm + l_itc + l_itm + 0.5 * l_dense + self.aux_weight * l_attr
        return loss, {"lm": l_lm, "itc": l_itc, "itm": l_itm, "dense": l_dense, "attr": l_attr}

    def info(self) -> dict:
        from semcom.models.tiny import sizes_dict

        return {
            "sizes": sizes_dict(self.sizes),
            "params": sum(p.numel() for p in self.params) - 1,
        }  # without temp

    def save(self, out: Path) -> None:
        from semcom.models.tiny import save_blip

        self.cap.eval()
        self.ret.eval()
        save_blip(
            out,
            self.cap,
            self.ret,
            self.tok,
            manifest={"trained_by": "semcom train tinyworld --model blip"},
        )


def train_blip(out: Path, *, seed: int, aux_weight: float = 1.0, **loop) -> dict:
    """Train the tiny BLIP, save it into ``out``; the training record. ``loop``: the
    options of :func:`~semcom.train.tinyworld.loop.fit` (steps, batch_size, lr, ...)."""
    return fit(
        lambda data: BlipStep(data, seed=seed, aux_weight=aux_weight), out, seed=seed, **loop
    )
