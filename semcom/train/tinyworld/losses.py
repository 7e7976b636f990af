"""The tiny models' training-only losses: text-to-patch alignment, the per-patch
attribute classification (with its head) and LLaVA's attention lookup supervision."""

from __future__ import annotations

ATTRIBUTE_CLASSES = (1 + 3, 5, 2)  # shape (+ background), colour, size


def dense_loss(patch_emb, text_emb, targets, tau: float = 0.07):
    """Text -> patches alignment: softmax over the patches of each image should put its
    mass on the target patches (uniform target). Rows without a target are skipped."""
    import torch

    logits = torch.einsum("bpe,be->bp", patch_emb, text_emb) / tau
    t = targets.float()
    n = t.sum(1, keepdim=True)
    ok = n.squeeze(1) > 0
    if not ok.any():
        return logits.sum() * 0
    logp = torch.log_softmax(logits[ok], 1)
    return -((t[ok] / n[ok]) * logp).sum(1).mean()


def attribute_head(dim: int, seed: int):
    """The training-only linear head of :func:`attribute_loss` (not saved with the model)."""
    import torch

    from semcom.world import vocab as V

    assert ATTRIBUTE_CLASSES == (1 + len(V.SHAPES), len(V.COLOURS), len(V.SIZES))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Linear(dim, sum(ATTRIBUTE_CLASSES))


def attribute_loss(head, patch_tokens, lab8, lab1, attributes):
    """Auxiliary per-patch attribute classification (the training-only ``head``).

    Each patch token that shows >= 8 pixels of an object must tell that object's shape,
    colour and size; each patch without any object pixel must say "background" in the
    shape head. Why: with 12-20 px objects on 8-px patches, the first tiny models learned
    colour, position and count but not shape (shape questions at chance, captions
    swapping square/triangle/circle), because the caption and answer losses give the
    shape only a weak, late signal. This loss puts the shape into every object patch.

    ``patch_tokens`` [B, K, D]; ``lab8`` / ``lab1`` [B, K] object slot of each patch
    (>= 8 / >= 1 pixels, -1 none); ``attributes`` [B, MAX_OBJECTS, 3] class ids.
    """
    import torch
    from torch.nn import functional as F

    logits = head(patch_tokens)  # [B, K, 11]
    ls, lc, lz = logits.split(ATTRIBUTE_CLASSES, -1)
    obj = lab8 >= 0
    bg = lab1 < 0
    slot = lab8.clamp(min=0)
    attr = torch.gather(attributes, 1, slot.unsqueeze(-1).expand(-1, -1, 3))  # [B, K, 3]
    shape_t = torch.where(obj, attr[..., 0] + 1, torch.zeros_like(slot))
    use = obj | bg
    loss = F.cross_entropy(ls[use], shape_t[use])
    if obj.any():
        loss = (
            loss
            + F.cross_entropy(lc[obj], attr[..., 1][obj])
            + F.cross_entropy(lz[obj], attr[..., 2][obj])
        )
    return loss


def lookup_loss(attentions, ids, prompt_len, attr_ids, img_id, patch_labels, relevant):
    """Training-only supervision of the two attention steps of an attribute lookup, at the
    last prompt position (the one that predicts the answer's first token), head 0:

    - layer 0 must put its mass on the question's attribute words ("red", "circle"...),
      so that the position carries what to look for;
    - layer 1 must put its mass on the image tokens of the question's object(s).

    Why: "is there a red circle?" depends only on the interaction of question and image.
    Without help the 3-layer language model never found it (its loss stayed at ln 2 / 2
    for 1,000 steps of "is there" questions alone; experiments/llava_lm/README.md).

    ``attentions``: the language model's per-layer [B, H, T, T]; ``ids`` [B, T];
    ``prompt_len``: per row, the number of prompt tokens; ``attr_ids`` [A] token ids of
    attribute words; ``patch_labels``: per row, the object slot of each inserted image
    token (-1 background); ``relevant``: per row, the question's object slots, or None
    (a caption prompt). Rows with nothing to look at are skipped; 0 if none is left.
    """
    import torch

    terms = []
    for j, rel in enumerate(relevant):
        if rel is None:
            continue
        last = prompt_len[j] - 1
        words = torch.isin(ids[j, : prompt_len[j]], attr_ids).nonzero().squeeze(-1)
        if len(words):
            terms.append(-torch.log(attentions[0][j, 0, last, words].sum() + 1e-6))
        if rel:
            img = (ids[j] == img_id).nonzero().squeeze(-1)
            hit = img[torch.isin(patch_labels[j], torch.tensor(rel, dtype=patch_labels[j].dtype))]
            if len(hit):
                terms.append(-torch.log(attentions[1][j, 0, last, hit].sum() + 1e-6))
    if not terms:
        return attentions[0].sum() * 0
    return torch.stack(terms).mean()


def attribute_token_ids(tok):
    """Token ids of the world's colour, shape and size words in the LLaVA tokenizer (the
    words :func:`lookup_loss` wants the answer position to attend to)."""
    import torch

    from semcom.world import vocab as V

    ids = {
        i
        for w in (*V.COLOURS, *V.SHAPES, *V.SIZES)
        for i in tok(w, add_special_tokens=False)["input_ids"]
        if i != tok.unk_token_id
    }
    return torch.tensor(sorted(ids))
