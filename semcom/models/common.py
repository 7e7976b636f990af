"""Torch helpers shared by the backends (imported only when a backend is loaded)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from semcom.errors import ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_transformers():
    """Silence transformers' info/warning chatter while loading (e.g. the torchvision
    fallback notice of image processors)."""
    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def ctx():
        old = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(old)
            if bars:
                hf_logging.enable_progress_bar()

    return ctx()


def load_pretrained(cls, path: Path, what: str, device: str):
    """``cls.from_pretrained`` from a local directory, in float32, in eval mode."""
    try:
        with quiet_transformers():
            model = cls.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{what}: cannot load {cls.__name__} from {path}: {exc}") from None
    return model.to(device).eval()


def load_part(cls, path: Path, what: str, device: str):
    """(``cls`` model from ``path``, its tokenizer): one save_pretrained directory."""
    return load_pretrained(cls, path, what, device), load_tokenizer(path, what)


def load_tokenizer(path: Path, what: str):
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{what}: cannot load the tokenizer from {path}: {exc}") from None


def load_image_processor(path: Path, what: str):
    from transformers import AutoImageProcessor

    try:
        with quiet_transformers():
            return AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{what}: cannot load the image processor from {path}: {exc}"
        ) from None


def preprocess(processor, images, device: str) -> torch.Tensor:
    """uint8 [H, W, 3] images -> pixel_values [B, 3, S, S] float32 (the model's processor)."""
    arrs = [np.asarray(im, dtype=np.uint8) for im in images]
    for a in arrs:
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"images must be uint8 [H, W, 3], got shape {a.shape}")
    with quiet_transformers():
        out = processor(images=arrs, return_tensors="pt")
    return out["pixel_values"].to(device=device, dtype=torch.float32)


def layer_index(i: int, n: int, what: str, start: int = 0) -> int:
    """0-based index of layer ``i`` (negative: from the end) of ``n``; ``start``: the
    first layer that runs (the layers before it are replaced, e.g. by a neck)."""
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise ValueError(f"{what} {i} out of range for {n} layers")
    if j < start:
        raise ValueError(
            f"{what} {i} does not run: the tokens enter the encoder at layer "
            f"{start} (choose a layer >= {start})"
        )
    return j


class Capture:
    """Forward hooks that record per-layer tensors during one call (removed on exit)."""

    def __init__(self):
        self.handles = []
        self.data: dict = {}

    def add(self, module, key, fn, pre: bool = False):
        if pre:

            def hook(mod, args, kwargs):
                h = kwargs.get("hidden_states", args[0] if args else None)
                self.data[key] = fn(mod, h)

            self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        else:

            def hook(mod, args, out):
                self.data[key] = fn(mod, out)

            self.handles.append(module.register_forward_hook(hook))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


def masked_first_or_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token 0 where ``mask[:, 0]``; else the mean of the real tokens (no CLS received)."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    mean = (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)
    return torch.where(mask[:, :1], tokens[:, 0], mean)


def as_tokens(tokens, mask, device: str):
    """Checked float32 tokens [B, N, D] and bool mask [B, N] on ``device``."""
    tokens = torch.as_tensor(tokens).to(device=device, dtype=torch.float32)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [B, N, D], got shape {tuple(tokens.shape)}")
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask).to(device=device, dtype=torch.bool)
    if mask.shape != tokens.shape[:2]:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match tokens {tuple(tokens.shape[:2])}"
        )
    return tokens, mask


def silence(logger_name: str = "transformers"):
    logging.getLogger(logger_name).setLevel(logging.ERROR)
