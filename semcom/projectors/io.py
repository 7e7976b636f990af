"""Projector weight files: where they are, how they are saved, loaded and checked.

One file per (type, scale): ``<dir>/<type>-s<scale>.safetensors`` (weights as float16,
BatchNorm counters as int64) whose safetensors metadata ``semcom`` is a JSON object::

    {"format": "semcom.projector/1", "type", "scale", "grid", "dim", "multi_dim",
     "lm_dim", "heads", "residual", "layers": [hidden-state indices of x_multi],
     "feature_index", "model_id": the LLaVA it was trained with, "train": {...}}

and three float32 tensors ``stats.lo``, ``stats.hi``, ``stats.mean`` ``[C]``: per-channel
range and mean of the compressed tokens on training images (the calibrated scalar
quantiser's range and the concealment mean). ``<dir>`` is ``edge.projector.weights`` or
the committed ``semcom/assets/projectors/``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from semcom.errors import ConfigError

FORMAT = "semcom.projector/1"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "projectors"


def weights_dir(pcfg) -> Path:
    return Path(pcfg.weights).expanduser() if pcfg.weights else ASSETS


def weights_path(
    pcfg=None, *, type: str | None = None, scale: int | None = None, directory: Path | None = None
) -> Path:
    t = type or pcfg.type
    s = scale or pcfg.scale
    d = directory if directory is not None else weights_dir(pcfg)
    return Path(d) / f"{t}-s{s}.safetensors"


@dataclass
class LoadedProjector:
    """A loaded projector: ``module`` (eval mode, float32), ``meta``, ``stats``
    (``lo``, ``hi``, ``mean`` numpy float32 ``[C]``), ``path``, ``id`` (12 hex of the file's
    SHA-256: edge and cloud must load the same file)."""

    module: object
    meta: dict
    stats: dict
    path: Path
    id: str

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.meta["layers"])


def file_id(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def save_projector(path: Path, module, meta: dict, stats: dict) -> Path:
    """Write ``module``'s state (float16) + ``meta`` + ``stats`` (float32 ``[C]`` arrays)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        tensors[k] = v.half().contiguous() if v.is_floating_point() else v.contiguous()
    for k, v in stats.items():
        tensors[f"stats.{k}"] = torch.as_tensor(v, dtype=torch.float32).contiguous()
    meta = {"format": FORMAT, **meta}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"semcom": json.dumps(meta, sort_keys=True)})
    tmp.replace(path)
    return path


def build_module(meta: dict):
    from semcom.projectors.modules import LearnedProjector

    return LearnedProjector(
        meta["type"],
        dim=int(meta["dim"]),
        multi_dim=int(meta["multi_dim"]),
        lm_dim=int(meta["lm_dim"]),
        grid=int(meta["grid"]),
        scale=int(meta["scale"]),
        heads=int(meta["heads"]),
        residual=bool(meta["residual"]),
    )


def read_projector(path: Path) -> LoadedProjector:
    """Load a projector file (no model checks); raises ConfigError naming the file."""
    from safetensors import safe_open

    path = Path(path)
    key = "edge.projector.weights"
    if not path.is_file():
        raise ConfigError(
            key,
            f"no projector weights at {path}; train them with "
            "`semcom train projector --type TYPE --scale S` (writes "
            "<dir>/<type>-s<scale>.safetensors)",
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("semcom", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ConfigError(key, f"cannot read projector weights {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(key, f"{path} is not a {FORMAT} file (format {meta.get('format')!r})")
    stats = {k[6:]: tensors.pop(k).float().numpy() for k in list(tensors) if k.startswith("stats.")}
    for k in ("lo", "hi", "mean"):
        if k not in stats:
            raise ConfigError(key, f"{path} lacks stats.{k}")
    module = build_module(meta)
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            key, f"{path} does not match its {meta.get('type')} architecture: {exc}"
        ) from None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return LoadedProjector(module, meta, stats, path, file_id(path))


def load_projector(pcfg, backend, *, check_model: bool = True) -> LoadedProjector:
    """The projector of ``edge.projector`` for ``backend``, checked against it.

    Raises ConfigError (key ``edge.projector.*``) when the file is missing, is of another
    type / scale, or was trained for another vision tower / language model.
    """
    path = weights_path(pcfg)
    lp = read_projector(path)
    m = lp.meta
    if m["type"] != pcfg.type or int(m["scale"]) != pcfg.scale:
        raise ConfigError(
            "edge.projector.weights",
            f"{path} holds {m['type']} s={m['scale']}, not {pcfg.type} s={pcfg.scale}",
        )
    from semcom.projectors.lm import lm_hidden_size

    g = backend.grid
    if int(m["grid"]) != g or int(m["dim"]) != backend.token_dim:
        raise ConfigError(
            "edge.projector.weights",
            f"{path} is for a {m['grid']}x{m['grid']} "
            f"grid of {m['dim']}-d tokens; the model has {g}x{g} x "
            f"{backend.token_dim}-d",
        )
    if int(m["lm_dim"]) != lm_hidden_size(backend):
        raise ConfigError(
            "edge.projector.weights",
            f"{path} projects into a {m['lm_dim']}-d "
            f"language model; this one is {lm_hidden_size(backend)}-d",
        )
    if check_model and m.get("model_id") and m["model_id"] != backend.model_id:
        raise ConfigError(
            "edge.projector.weights",
            f"{path} was trained with model "
            f"{m['model_id']}; this run uses {backend.model_id} (the committed "
            "projectors are for the embedded tiny LLaVA; retrain with "
            "`semcom train projector`)",
        )
    return lp


def features(backend, pixel_values, layers) -> tuple:
    """The compressor's inputs from the vision tower (no gradients).

    Returns ``(x float32 [B, P, C], x_multi float32 [B, P, len(layers) * C])``: the patch
    tokens of the LLaVA feature layer and the concatenated hidden states ``layers``
    (transformers numbering), CLS dropped.
    """
    import torch

    with torch.no_grad():
        out = backend.vision_tokens(pixel_values, hidden_layers=tuple(layers))
    pre = out.tokens.shape[1] - backend.num_patches
    x = out.tokens[:, pre:].float()
    xm = torch.cat([out.hidden[i][:, pre:].float() for i in layers], -1)
    return x, xm
