"""Vision-language model backends (BLIP, LLaVA) behind one interface.

>>> # backend = load_backend(ModelRef("blip"))          # the embedded tiny BLIP
>>> # out = backend.vision_tokens(backend.preprocess(images), attn_layers=(-1,))
>>> # backend.caption(out.tokens, mask)

Importing this package does not import torch or transformers; :func:`load_backend` does.
:class:`semcom.models.fake.FakeBackend` is a deterministic stand-in with no weights (for
tests and for trying plugins without a model).
"""

from __future__ import annotations

from semcom.models.base import VisionOutput, VLMBackend

__all__ = [
    "load_backend",
    "get_backend",
    "resolve_device",
    "VisionOutput",
    "VLMBackend",
    "model_dir",
]


def model_dir(ref):
    from semcom.config.model import model_dir as _model_dir

    return _model_dir(ref)


def resolve_device(device: str = "auto") -> str:
    from semcom.models.device import resolve_device as _resolve

    return _resolve(device)


def load_backend(ref, device: str = "auto") -> VLMBackend:
    """The backend of ``ref`` (:class:`~semcom.config.model.ModelRef`) from local weights,
    on ``device`` (``auto``: CUDA when torch sees a GPU; see :func:`resolve_device`).

    ``ref.path`` empty: the tiny model of ``ref.name`` shipped in ``semcom/models/tiny/``.
    A missing or incomplete directory raises :class:`~semcom.errors.ModelLoadError`
    naming the files expected.
    """
    from semcom.errors import ModelLoadError

    device = resolve_device(device)
    path = model_dir(ref)
    if not path.exists():
        from semcom.models.base import expected_files_text

        raise ModelLoadError(
            f"model.path {str(path)!r} (family {ref.name}) does not exist; "
            "expected "
            + expected_files_text()
            + (
                ". BLIP may also be a directory with caption/ and retrieval/ sub-directories."
                if ref.name == "blip"
                else "."
            )
        )
    if ref.name == "blip":
        from semcom.models.blip import BlipBackend

        return BlipBackend(path, device)
    if ref.name == "llava":
        from semcom.models.llava import LlavaBackend

        return LlavaBackend(path, device)
    raise ModelLoadError(f"unknown model family {ref.name!r}; use blip or llava")


# Loaded backends, shared by every run of one process (sweeps, the daemons' warm-up).
_BACKENDS: dict[tuple, VLMBackend] = {}


def get_backend(ref, device: str = "auto") -> VLMBackend:
    """:func:`load_backend`, cached per (family, path, device) for the life of the process."""
    device = resolve_device(device)
    key = (ref.name, ref.path, device)
    if key not in _BACKENDS:
        _BACKENDS[key] = load_backend(ref, device=device)
    return _BACKENDS[key]
