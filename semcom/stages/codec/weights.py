"""Trained codecs on disk: the manifest, weight files, loading a codec by name.

``semcom/assets/codecs/`` (or ``<edge.image.weights>/codecs/``) holds one safetensors
file per trained variable-rate codec and ``manifest.json``, one :class:`CodecSpec` per
(arch, variant, family). Parameters are stored as float16 and the entropy bottlenecks'
CDF tables with them (so edge and cloud use the same tables); the Gaussian tables are
rebuilt from the fixed scale table on load. :func:`load_codec` returns a
:class:`~semcom.stages.codec.stage.NeuralCodec` at one rate point. torch is imported
inside the functions.

>>> spec = find_spec("mean-scale")
>>> spec.rates, spec.file
(4, 'mean-scale.safetensors')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semcom.stages.codec.stage import NeuralCodec

ASSETS = Path(__file__).resolve().parents[2] / "assets"

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def _is_gc_buffer(name: str) -> bool:
    return "gaussian_conditional" in name and name.rsplit(".", 1)[-1] in (
        *CDF_BUFFERS,
        "scale_table",
    )


def finalize(model) -> None:
    """Round float weights to float16 precision (how they are stored), then build the
    CDF tables (``update``): the tables match the stored weights exactly."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))
    model.update(force=True)


def state_for_saving(model, skip: tuple[str, ...] = ()) -> dict:
    """Parameters as float16, buffers as they are (the entropy bottlenecks' CDF tables as
    int32); Gaussian tables are left out (rebuilt from the fixed scale table on load);
    keys starting with any of ``skip`` (e.g. ``net.g_s.`` for a machine-only codec) are
    left out."""
    import torch

    params = {k for k, _ in model.named_parameters()}
    out = {}
    for k, v in model.state_dict().items():
        if _is_gc_buffer(k) or any(k.startswith(p) for p in skip):
            continue
        v = v.detach().cpu()
        # parameters as float16; buffers (likelihood bound 1e-9, GDN pedestal 2^-36...)
        # keep their precision: in float16 they would round to 0
        out[k] = (v.to(torch.float16) if k in params else v).contiguous()
    return out


def weights_tag(state: dict) -> int:
    """8-bit tag of a state dict (sent in the header; the cloud checks it)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.digest()[0]


def load_state(model, state: dict, *, allow_missing: tuple[str, ...] = ()) -> None:
    """Load a saved state (float16 floats, EB tables) into a gained codec; rebuild the
    Gaussian tables. Keys under ``allow_missing`` prefixes may be absent (kept as is)."""
    import torch

    from semcom.compat import import_compressai

    import_compressai()
    from compressai.entropy_models import EntropyBottleneck
    from compressai.models.utils import update_registered_buffers

    # likelihood lower bounds are constants of the entropy models (1e-9), not learned:
    # keep the constructed value (weights saved by an early version stored them as
    # float16, i.e. 0, which makes -log2(likelihood) infinite when fine-tuning)
    state = {
        k: (v.float() if v.is_floating_point() else v)
        for k, v in state.items()
        if not k.endswith(".likelihood_lower_bound.bound")
    }
    for name, module in model.named_modules():
        if isinstance(module, EntropyBottleneck) and f"{name}._quantized_cdf" in state:
            update_registered_buffers(module, name, list(CDF_BUFFERS), state)
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    missing = [
        k
        for k in missing
        if not _is_gc_buffer(k)
        and not k.endswith(".likelihood_lower_bound.bound")
        and not any(k.startswith(p) for p in allow_missing)
    ]
    if missing or unexpected:
        raise ValueError(
            f"codec weights do not match {model.arch}(N={model.N}, M={model.M}, "
            f"K={model.K}): missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    from compressai.models.base import get_scale_table

    for m in model.modules():
        if type(m).__name__ == "GaussianConditional":
            m.update_scale_table(get_scale_table(), force=True)
    model.eval()


@dataclass
class CodecSpec:
    """One trained (variable-rate) codec: an entry of ``codecs/manifest.json``."""

    arch: str
    variant: str = "base"  # base | d2 | d3
    family: str | None = None  # d2/d3: the VLM whose neck the codec was tuned for
    N: int = 48
    M: int = 64
    lambdas: list = field(default_factory=list)  # one per rate point (1 = lowest rate)
    file: str = ""
    base: str = ""  # d3: file of the base codec whose g_s it shares
    meta: dict = field(default_factory=dict)

    @property
    def rates(self) -> int:
        return len(self.lambdas)


def codec_dir(weights: str = "") -> Path:
    return Path(weights).expanduser() / "codecs" if weights else ASSETS / "codecs"


def read_manifest(weights: str = "") -> dict:
    path = codec_dir(weights) / "manifest.json"
    if not path.is_file():
        return {"codecs": []}
    return json.loads(path.read_text())


def write_manifest_entry(spec: CodecSpec, weights: str = "") -> None:
    """Add or replace the manifest entry of (arch, variant, family)."""
    from dataclasses import asdict

    from semcom.results import atomic_write_json

    man = read_manifest(weights)
    key = (spec.arch, spec.variant, spec.family)
    man["codecs"] = [
        e for e in man["codecs"] if (e["arch"], e["variant"], e.get("family")) != key
    ] + [asdict(spec)]
    man["codecs"].sort(key=lambda e: (e["arch"], e["variant"], e.get("family") or ""))
    codec_dir(weights).mkdir(parents=True, exist_ok=True)
    atomic_write_json(codec_dir(weights) / "manifest.json", man)


def find_spec(
    arch: str, variant: str = "base", family: str | None = None, weights: str = ""
) -> CodecSpec:
    """The manifest entry of (arch, variant[, family]); a ConfigError naming the key else."""
    from semcom.errors import ConfigError

    entries = [CodecSpec(**e) for e in read_manifest(weights)["codecs"]]
    for e in entries:
        if (e.arch, e.variant) == (arch, variant) and (variant == "base" or e.family == family):
            return e
    if variant == "base":
        raise ConfigError(
            "edge.image.codec",
            f"no trained '{arch}' codec in "
            f"{codec_dir(weights)} (train it: semcom train codec --arch {arch})",
        )
    raise ConfigError(
        "edge.image.neck_setting",
        f"no '{variant}' codec of '{arch}' for model "
        f"'{family}' in {codec_dir(weights)} (train it: semcom train neck "
        f"--setting {variant} --model {family})",
    )


_CACHE: dict[tuple, Any] = {}


def load_codec(
    arch: str, rate_point: int, variant: str = "base", family: str | None = None, weights: str = ""
) -> NeuralCodec:
    """The trained codec at ``rate_point`` (1 = lowest rate); models cached per process."""
    from semcom.errors import ConfigError

    key = (arch, variant, family if variant != "base" else None, weights)
    if key not in _CACHE:
        from safetensors.torch import load_file

        spec = find_spec(arch, variant, family, weights)

        def read(name: str):
            path = codec_dir(weights) / name
            try:
                return load_file(str(path))
            except Exception as exc:  # missing, truncated or not safetensors
                raise ConfigError(
                    "edge.image.weights", f"cannot read the codec weights {path}: {exc}"
                ) from None

        from semcom.stages.codec.gained import GainedCodec

        state = read(spec.file)
        model = GainedCodec(arch, spec.N, spec.M, spec.rates)
        if spec.base:  # shares the base codec's synthesis transform (not stored twice)
            base = read(spec.base)
            state = {**{k: v for k, v in base.items() if k.startswith("net.g_s.")}, **state}
        load_state(model, state)
        _CACHE[key] = (model, spec, weights_tag(state))
    model, spec, tag = _CACHE[key]
    if not 1 <= rate_point <= spec.rates:
        raise ConfigError(
            "edge.image.rate_point",
            f"{rate_point} is not a trained rate point "
            f"of '{arch}' ({variant}): use 1..{spec.rates}",
        )
    from semcom.stages.codec.stage import NeuralCodec

    return NeuralCodec(model, rate_point, variant, tag, spec)
