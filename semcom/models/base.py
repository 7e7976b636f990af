"""What every backend shares: the output type, directory checks, the model id.

No torch at module top: this module is imported by config checks and the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.errors import ModelLoadError

MANIFEST = "semcom.json"  # optional: how a combined directory is put together
TRAIN_METRICS = "train_metrics.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")
IMAGE_PROC_FILES = ("preprocessor_config.json", "processor_config.json")
# Files that do not change what a model computes (left out of the model id).
_NOT_HASHED = {TRAIN_METRICS, "README.md", ".gitattributes"}


@dataclass
class VisionOutput:
    """The edge's view of an image.

    ``tokens [B, 1+P, D]``: what the edge can send (CLS first where the model has one);
    ``attentions {layer: [B, heads, 1+P, 1+P]}`` post-softmax maps of encoder layer
    ``layer`` (0-based, negative counts from the end); ``keys {layer: [B, 1+P, D]}`` the
    attention keys of that layer (heads concatenated); ``hidden {i: [B, 1+P, D]}`` the
    encoder's hidden states as transformers numbers them (0: embeddings, i: after i
    layers, -1: after the last layer, before any final norm).
    """

    tokens: Any
    attentions: dict[int, Any] = field(default_factory=dict)
    keys: dict[int, Any] = field(default_factory=dict)
    hidden: dict[int, Any] = field(default_factory=dict)


def recorded_prompts(manifest: dict) -> dict[str, str]:
    """``{task: prompt}`` a model directory records (``semcom.json``): its ``"prompts"``
    mapping, and ``"caption_prompt"`` for the caption task."""
    out = {str(k): str(v) for k, v in (manifest.get("prompts") or {}).items()}
    if "caption_prompt" in manifest:
        out.setdefault("caption", str(manifest["caption_prompt"]))
    return out


def expected_files_text() -> str:
    return (
        "a model directory saved by save_pretrained: config.json, weights "
        f"({' or '.join(WEIGHT_FILES[:1] + WEIGHT_FILES[2:3])}), a tokenizer "
        f"({' or '.join(TOKENIZER_FILES[:2])} with tokenizer_config.json) and an image "
        f"processor ({' or '.join(IMAGE_PROC_FILES)})"
    )


def check_hf_dir(
    path: Path, what: str, *, tokenizer: bool = True, image_processor: bool = True
) -> None:
    """Raise :class:`ModelLoadError` naming the missing files of a save_pretrained dir."""
    if not path.is_dir():
        raise ModelLoadError(
            f"{what}: directory not found: {path}. Expected " + expected_files_text() + "."
        )
    names = set(os.listdir(path))
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names & set(WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if tokenizer and not names & set(TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.txt / tokenizer.model) + tokenizer_config.json")
    if image_processor and not names & set(IMAGE_PROC_FILES):
        missing.append("preprocessor_config.json (or processor_config.json)")
    if missing:
        raise ModelLoadError(
            f"{what}: {path} is incomplete; missing: {', '.join(missing)}. "
            "Expected " + expected_files_text() + "."
        )


def read_manifest(root: Path, what: str) -> dict:
    """``root/semcom.json`` (how a model directory is put together), ``{}`` if absent."""
    path = Path(root) / MANIFEST
    return read_json(path, what) if path.is_file() else {}


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{what}: cannot read {path}: {exc}") from None


def _file_digest(path: Path, full_limit: int = 256 << 20) -> str:
    """sha256 of a file; files over ``full_limit`` bytes: size + 16 sampled 1 MiB chunks."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= full_limit:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(str(size).encode())
            for k in range(16):
                f.seek(k * (size - (1 << 20)) // 15)
                h.update(f.read(1 << 20))
    return h.hexdigest()


def model_id(family: str, dirs: list[Path]) -> str:
    """``<family>-<12 hex>``: hash of the configs, tokenizers and weights of ``dirs``.

    Edge and cloud compare it to check that they use the same model. Training metrics
    and READMEs are left out. Weight files over 256 MiB are sampled (size + 16 chunks).
    """
    h = hashlib.sha256(family.encode())
    for root in dirs:
        for p in sorted(root.rglob("*")):
            if (
                not p.is_file()
                or p.name in _NOT_HASHED
                or p.suffix not in (".json", ".safetensors", ".bin", ".model", ".txt")
            ):
                continue
            h.update(p.relative_to(root).as_posix().encode())
            h.update(_file_digest(p).encode())
    return f"{family}-{h.hexdigest()[:12]}"


class VLMBackend:
    """The interface edge and cloud use (see docs/ARCHITECTURE.md, "Models").

    Subclasses set the attributes below and implement the methods; a method a family
    does not support raises :class:`NotImplementedError` with a message (the defaults
    here do). ``tasks`` names the capabilities the backend has (``caption``: the
    method :meth:`caption`; ``vqa``: :meth:`answer`; ``retrieval``: :meth:`image_embed`,
    :meth:`text_embed`, :meth:`itm_scores`). ``prompts`` maps a task name to the prompt
    the model was trained with (``semcom.json``); the task's own prompt otherwise.

    Prompts come from the task (:mod:`semcom.tasks`): :meth:`caption` gets the task's
    prompt, :meth:`answer` one task-formatted prompt per sample (for VQA, the
    question); a family that needs a chat wrapper (LLaVA) puts it around them.
    """

    family: str
    model_id: str
    path: Path
    image_size: int
    patch_size: int
    has_cls: bool
    token_dim: int
    tasks: set[str]
    prompts: dict[str, str]
    device: str = "cpu"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.model_id}, {self.path}, tokens "
            f"{int(self.has_cls)}+{self.num_patches}x{self.token_dim}, "
            f"tasks={sorted(self.tasks)})"
        )

    def _set_vision(self, vc) -> None:
        """``image_size``, ``patch_size``, ``token_dim``, ``num_layers`` from the vision
        encoder's config."""
        self.image_size, self.patch_size = int(vc.image_size), int(vc.patch_size)
        self.token_dim, self.num_layers = int(vc.hidden_size), int(vc.num_hidden_layers)

    def _unsupported(self, what: str):
        raise NotImplementedError(f"{self.family} backend ({self.path}) does not provide {what}")

    # ------------------------------------------------------------------------- edge
    def preprocess(self, images):
        """uint8 ``[H, W, 3]`` images -> ``pixel_values [B, 3, S, S]`` float32."""
        self._unsupported("preprocess")

    def vision_tokens(
        self, pixel_values, *, attn_layers=(), key_layers=(), hidden_layers=()
    ) -> VisionOutput:
        """:class:`VisionOutput` of ``pixel_values``: tokens ``[B, 1+P, D]`` (CLS first)
        and the attentions / keys / hidden states of the layers asked for."""
        self._unsupported("vision tokens")

    def text_features(self, texts: list[str]):
        """``[T, E]`` L2-normalised (the model's own text encoder + projection)."""
        self._unsupported("text features")

    def patch_embeddings(self, tokens):
        """``[B, N, E]`` L2-normalised, in the joint space of :meth:`text_features`."""
        self._unsupported("patch embeddings")

    # ------------------------------------------------------------------------ cloud
    def caption(
        self,
        tokens,
        mask=None,
        *,
        prompt: str | None = None,
        beams: int = 1,
        max_new_tokens: int = 24,
        **kw,
    ) -> list[str]:
        """One caption per image of ``tokens [B, N, D]`` + ``mask [B, N]`` (True = real
        token; ``None``: all); ``prompt``: the caption task's prompt (``None``: the
        task's prompt for this model). Families implement :meth:`_caption`."""
        return self._caption(tokens, mask, prompt, beams, max_new_tokens, **kw)

    def _caption(self, tokens, mask, prompt, beams: int, max_new_tokens: int, **kw) -> list[str]:
        self._unsupported("captioning")

    def answer(
        self, tokens, mask, prompts: list[str], *, max_new_tokens: int = 8, beams: int = 1, **kw
    ) -> list[str]:
        """One answer per prompt (the task-formatted text; for VQA, the question)."""
        self._unsupported("VQA")

    def image_embed(self, tokens, mask=None):
        """ITC image embeddings ``[B, E]``, L2-normalised."""
        self._unsupported("retrieval")

    def text_embed(self, texts: list[str]):
        """ITC text embeddings ``[T, E]``, L2-normalised."""
        self._unsupported("retrieval")

    def itm_scores(self, tokens, mask, texts: list[str]):
        """ITM match score ``[B]`` of pair (image i, ``texts[i]``)."""
        self._unsupported("retrieval")

    def vision_from_layer(
        self, hidden, start_layer: int, *, attn_layers=(), key_layers=()
    ) -> VisionOutput:
        """``vision_tokens`` for hidden states ``[B, 1+P, D]`` that enter the encoder at
        ``start_layer`` (a transform-neck's output): the tokens of
        ``vision_tokens_from_layer`` plus the attentions / keys of the requested layers,
        which must be among those that run (a layer before ``start_layer``, or after the
        layer whose output the model reads, is a ValueError naming it). Backends provide
        ``num_layers``, ``vision_tokens_from_layer`` and ``_capture(attn_layers,
        key_layers, start)`` (forward hooks, :class:`semcom.models.common.Capture`)."""
        n = self.num_layers
        start = start_layer + n + 1 if start_layer < 0 else start_layer
        cap = self._capture(attn_layers, key_layers, start)
        with cap:
            tokens = self.vision_tokens_from_layer(hidden, start_layer)
        for i in list(attn_layers) + list(key_layers):
            if ("a", i) not in cap.data and ("k", i) not in cap.data:
                raise ValueError(
                    f"layer {i} does not run for these tokens (the encoder stops before it)"
                )
        return VisionOutput(
            tokens,
            {i: cap.data[("a", i)] for i in attn_layers},
            {i: cap.data[("k", i)] for i in key_layers},
        )
