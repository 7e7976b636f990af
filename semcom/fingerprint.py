"""What a run's results depend on besides its config: the content of its weights.

The models, and per method the codebook (tokens), the codec and neck weights (codec,
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
    stamp = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in root.rglob("*") if p.is_file()))
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
    ``codebook`` (tokens), ``codecs`` / ``necks`` (codec, neck), ``projector``."""
    out = {"edge_model": _model_id(cfg.edge.model), "cloud_model": _model_id(cfg.cloud.model)}
    method = cfg.edge.method
    if method == "tokens":
        from semcom.stages.codebook import quant_codebook_path

        path = quant_codebook_path(cfg.edge.quant, cfg.edge.model.name)
        if path is not None:
            out["codebook"] = _file_digest(Path(path))
    elif method in ("codec", "neck"):
        from semcom.stages.codec import codec_dir

        out["codecs"] = _dir_digest(codec_dir(cfg.edge.image.weights))
        if method == "neck":
            from semcom.neck import neck_dir

            out["necks"] = _dir_digest(neck_dir(cfg.edge.image.weights))
    elif method == "projector":
        from semcom.projectors.io import weights_path

        out["projector"] = _file_digest(weights_path(cfg.edge.projector))
    return out
