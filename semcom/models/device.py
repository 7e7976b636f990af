"""Which torch device a model or a trainer runs on (``run.device``, ``--device``).

``auto`` is CUDA when torch sees a GPU, else the CPU; ``cuda`` (or ``cuda:N``) without
one is a :class:`~semcom.errors.ConfigError` that says why (a CPU-only torch build, or
no GPU visible), never a silent fall-back to the CPU.
"""

from __future__ import annotations

from semcom.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto", *, key: str = "run.device") -> str:
    """``"cpu"`` or ``"cuda[:N]"`` for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    name = str(device or "auto").strip().lower()
    if name == "cpu":
        return "cpu"
    if name not in ("auto", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(key, f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    import torch

    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = (
            f"this torch ({torch.__version__}) is built without CUDA"
            if torch.version.cuda is None
            else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
        )
        raise ConfigError(key, f"{device!r} asked for, but {why}; use cpu or auto")
    if ":" in name:
        try:
            index = int(name.split(":", 1)[1])
        except ValueError:
            raise ConfigError(key, f"bad CUDA device {device!r}; use cuda:N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ConfigError(
                key, f"{device!r}: there are {torch.cuda.device_count()} CUDA device(s)"
            )
    return name
