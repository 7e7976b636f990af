"""Feeding already-projected image embeddings to the LLaVA language model.

The learned projectors replace LLaVA's ``multi_modal_projector``: the cloud holds
embeddings ``[B, N, H]`` in the language model's width, which go into the prompt's
``<image>`` placeholders as they are (one placeholder per real token). When the
backend's ``answer`` takes ``projected=True`` (the LLaVA backend's own path) it is used;
otherwise :func:`build_inputs` below does the same with the backend's public objects
(``tokenizer``, ``template``, ``model``, ``image_token``, ``image_token_id``).
"""

from __future__ import annotations

import inspect

import torch


def lm_hidden_size(backend) -> int:
    """The language model's width ``H`` (``backend.lm_hidden_size`` when it has one)."""
    h = getattr(backend, "lm_hidden_size", None)
    if h is not None:
        return int(h)
    return int(backend.model.config.text_config.hidden_size)


def backend_takes_projected(backend) -> bool:
    try:
        return "projected" in inspect.signature(backend.answer).parameters
    except (TypeError, ValueError):
        return False


def _check(feats, mask):
    feats = torch.as_tensor(feats, dtype=torch.float32)
    if feats.ndim != 3:
        raise ValueError(f"projected embeddings must be [B, N, H], got {tuple(feats.shape)}")
    if mask is None:
        mask = torch.ones(feats.shape[:2], dtype=torch.bool)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != feats.shape[:2]:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match embeddings {tuple(feats.shape[:2])}"
        )
    return feats, mask


def prompt_text(backend, prompt: str, n_image: int) -> str:
    """The chat template with ``n_image`` image placeholders."""
    text = backend.template.replace("{prompt}", prompt)
    pre, post = text.split("<image>", 1)
    return pre + backend.image_token * int(n_image) + post


def build_inputs(backend, feats, mask, prompts: list[str]):
    """Left-padded ``(inputs_embeds [B, T, H], attention_mask [B, T])``; ``feats[mask]``
    replace the ``<image>`` placeholders in order."""
    feats, mask = _check(feats, mask)
    dev = backend.device
    feats, mask = feats.to(dev), mask.to(dev)
    if len(prompts) != feats.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {feats.shape[0]} images")
    if feats.shape[-1] != lm_hidden_size(backend):
        raise ValueError(
            f"embeddings are {feats.shape[-1]}-d, the language model {lm_hidden_size(backend)}-d"
        )
    texts = [prompt_text(backend, p, n) for p, n in zip(prompts, mask.sum(1).tolist())]
    tok = backend.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = tok(texts, padding=True, return_tensors="pt").to(dev)
    finally:
        tok.padding_side = side
    ids = enc["input_ids"]
    embeds = backend.model.get_input_embeddings()(ids).clone()
    embeds[ids == backend.image_token_id] = feats[mask].to(embeds.dtype)
    return embeds, enc["attention_mask"]


@torch.no_grad()
def generate(
    backend, feats, mask, prompts: list[str], *, max_new_tokens: int = 8, beams: int = 1
) -> list[str]:
    """Greedy (or beam) answers from projected embeddings ``[B, N, H]`` + mask ``[B, N]``."""
    if backend_takes_projected(backend):
        return backend.answer(
            feats, mask, list(prompts), max_new_tokens=max_new_tokens, beams=beams, projected=True
        )
    from semcom.models.llava import generate_text

    embeds, att = build_inputs(backend, feats, mask, list(prompts))
    return generate_text(
        backend.model, backend.tokenizer, embeds, att, max_new_tokens=max_new_tokens, beams=beams
    )


def answer(
    backend, feats, mask, questions: list[str], *, max_new_tokens: int = 8, beams: int = 1
) -> list[str]:
    return generate(backend, feats, mask, questions, max_new_tokens=max_new_tokens, beams=beams)


def caption(
    backend,
    feats,
    mask=None,
    *,
    prompt: str | None = None,
    max_new_tokens: int = 24,
    beams: int = 1,
) -> list[str]:
    n = torch.as_tensor(feats).shape[0]
    return generate(
        backend,
        feats,
        mask,
        [backend.caption_prompt if prompt is None else prompt] * n,
        max_new_tokens=max_new_tokens,
        beams=beams,
    )


def lm_batch(backend, n_image: int, prompts: list[str], targets: list[str]):
    """Right-padded training batch: ``(ids [B, T], labels [B, T], attention [B, T])``;
    labels are -100 except on the target words and the final EOS; every prompt has
    ``n_image`` placeholders."""
    tok = backend.tokenizer
    eos = backend.model.config.text_config.eos_token_id
    seqs, labs = [], []
    for p, t in zip(prompts, targets):
        p_ids = tok(prompt_text(backend, p, n_image))["input_ids"]
        a_ids = tok(t, add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p_ids + a_ids)
        labs.append([-100] * len(p_ids) + a_ids)
    n = max(len(q) for q in seqs)
    ids = torch.full((len(seqs), n), tok.pad_token_id)
    labels = torch.full((len(seqs), n), -100)
    att = torch.zeros((len(seqs), n), dtype=torch.long)
    for j, (q, lab) in enumerate(zip(seqs, labs)):
        ids[j, : len(q)] = torch.tensor(q)
        labels[j, : len(q)] = torch.tensor(lab)
        att[j, : len(q)] = 1
    return ids, labels, att


def lm_logits(backend, feats: torch.Tensor, ids, att) -> torch.Tensor:
    """Logits ``[B, T, V]`` of the (frozen) language model with ``feats [B, N, H]`` in
    the placeholders (gradients flow into ``feats``)."""
    model = backend.model
    emb = model.get_input_embeddings()(ids)
    slot = (ids == backend.image_token_id).unsqueeze(-1)
    emb = emb.masked_scatter(slot, feats.reshape(-1, feats.shape[-1]).to(emb.dtype))
    return model(inputs_embeds=emb, attention_mask=att).logits


def shifted(logits: torch.Tensor, labels: torch.Tensor):
    """(logits ``[M, V]``, labels ``[M]``) of the valid next-token positions."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    keep = lb != -100
    return lg[keep], lb[keep]
