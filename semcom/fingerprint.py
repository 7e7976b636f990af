"""A run's identity: its config plus the content of the weights and data it uses.

The data (file names, references and image bytes; :func:`semcom.data.fingerprint`), the
models, and per method the codebook (tokens), the codec and neck weights (codec,
neck) or the projector (projector). The run id hashes the resolved config *and* this
fingerprint, so retraining any of them in place gives new run ids: a sweep never skips a run because of a record
made with other weights. Digests are cached per (path, size, mtime), so a sweep of
hundreds of points hashes each file once. Nothing heavy is imported.
"""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[tuple, str] = {}


def _model_id(ref) -> str:
    """``<family>-<12 hex>`` of the model directory (as the wire checks), or a marker."""
    from semcom.config.model import model_dir
    from semcom.models.base import model_id

    root = model_dir(ref)
    if not root.is_dir():
        return f"{ref.name}-missing:{root}"
    stamp = tuple(
        sorted(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
        )
    )
    key = ("model", ref.name, str(root), stamp)
    if key not in _CACHE:
        _CACHE[key] = model_id(ref.name, [root])
    return _CACHE[key]


def _file_digest(path: Path) -> str:
    from semcom.models.base import _file_digest as digest

    if not path.is_file():
        return f"missing:{path}"
    st = path.stat()
    key = ("file", str(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = digest(path)[:16]
    return _CACHE[key]


def _dir_digest(root: Path) -> str:
    """Digest of every weight / manifest file under ``root`` (conservative: any change)."""
    import hashlib

    if not root.is_dir():
        return f"missing:{root}"
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".json", ".npz", ".pt", ".pth"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(_file_digest(p).encode())
    return h.hexdigest()[:16]


def fingerprint(cfg) -> dict[str, str]:
    """Content ids for ``cfg``: ``edge_model``, ``cloud_model`` and, by method,
    ``codebook`` (tokens), ``codec`` / ``neck`` (codec, neck, and tokens with
    ``edge.source: neck``), ``projector``."""
    out = {"edge_model": _model_id(cfg.edge.model), "cloud_model": _model_id(cfg.cloud.model)}
    from semcom.data import fingerprint as data_fingerprint

    data = data_fingerprint(cfg.data, cfg.cloud.tasks)  # None for the tiny world
    if data is not None:
        out["data"] = data
    method = cfg.edge.method
    if method == "tokens":
        from semcom.stages.codebook import quant_codebook_path

        path = quant_codebook_path(cfg.edge.quant, cfg.edge.model.name)
        if path is not None:
            out["codebook"] = _file_digest(Path(path))
    if method in ("codec", "neck") or cfg.edge.source == "neck":
        out.update(_codec_assets(cfg))
    elif method == "projector":
        from semcom.projectors.io import weights_path

        out["projector"] = _file_digest(weights_path(cfg.edge.projector))
    return out


def _codec_assets(cfg) -> dict[str, str]:
    """``codec``: the manifest entry and weight files of the codec the run uses (the base
    codec, or the d2/d3 codec of the model the neck feeds, with the base file it shares);
    ``neck``: the neck's entry and file. Only those files: training another codec or
    another model's neck leaves this run's id alone. Where the manifest has no such entry
    the whole directory stands in (the run then fails with the manifest's error)."""
    import hashlib
    import json
    from dataclasses import asdict

    from semcom.errors import ConfigError
    from semcom.neck import find_spec as find_neck
    from semcom.neck import neck_dir
    from semcom.stages.codec.weights import codec_dir, find_spec

    im, method = cfg.edge.image, cfg.edge.method
    neck = method == "neck" or cfg.edge.source == "neck"
    # the neck feeds the cloud's encoder (method neck) or the edge's (source neck)
    family = cfg.cloud.model.name if method == "neck" else cfg.edge.model.name
    variant = im.neck_setting if neck and im.neck_setting != "d1" else "base"

    def entry(spec, root, files):
        h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
        for f in files:
            h.update(_file_digest(root / f).encode())
        return h.hexdigest()[:16]

    out = {}
    try:
        spec = find_spec(im.codec, variant, family, im.weights)
        out["codec"] = entry(
            spec, codec_dir(im.weights), [spec.file] + ([spec.base] if spec.base else [])
        )
    except (ConfigError, OSError, ValueError, TypeError):
        out["codec"] = _dir_digest(codec_dir(im.weights))
    if neck:
        try:
            nspec = find_neck(family, im.neck_setting, im.neck_layer, im.codec, im.weights)
            out["neck"] = entry(nspec, neck_dir(im.weights), [nspec.file])
        except (ConfigError, OSError, ValueError, TypeError):
            out["neck"] = _dir_digest(neck_dir(im.weights))
    return out


def run_id(cfg) -> str:
    """The run id: a stable hash of everything that can change results: the config's
    hashed fields and the content of the models and codebook it uses
    (:func:`fingerprint`), so retrained weights never reuse old records."""
    import hashlib

    from semcom.config.core import canonical_json, to_dict

    payload = {"config": to_dict(cfg, hashed_only=True), "assets": fingerprint(cfg)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:12]
