"""What the dataset readers share: annotation files (parsed once per process), paths
relative to ``data.path``, the first ``data.num_images`` images, lazy samples."""

from __future__ import annotations

import json
from pathlib import Path

from semcom.data.images import ImageFile, LazySample
from semcom.errors import DataError

_JSON: dict[tuple, object] = {}


def resolve(cfg, value: str, default: str = "") -> Path | None:
    """``value`` (or ``default``) as a path; relative ones are under ``data.path``."""
    value = value or default
    if not value:
        return None
    p = Path(value).expanduser()
    if not p.is_absolute() and cfg.path:
        p = Path(cfg.path).expanduser() / p
    return p


def need(cfg, field: str, value: str, default: str, what: str) -> Path:
    """A file or folder the dataset cannot do without (a DataError naming the key)."""
    p = resolve(cfg, value, default)
    if p is None:
        raise DataError(f"data.dataset {cfg.dataset} needs data.{field} ({what})")
    if not p.exists():
        raise DataError(f"data.{field}: {p} not found ({what})")
    return p


def read_json(path: Path, what: str = "annotation file", reduce=None):
    """Parsed JSON of ``path`` (``reduce(parsed)`` if given, which is what is kept),
    cached by path, size and modification time; a DataError naming the file otherwise."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    key = (str(path), st.st_size, st.st_mtime_ns, reduce)
    if key not in _JSON:
        try:
            with path.open("rb") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {what} {path}: {exc}") from None
        try:
            _JSON[key] = reduce(data) if reduce else data
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(
                f"{path} is not a {what} in the expected layout: {type(exc).__name__}: {exc}"
            ) from None
    return _JSON[key]


def first(items: list, cfg) -> list:
    """The first ``data.num_images`` items (all when it is null)."""
    n = cfg.num_images
    return list(items) if n is None else list(items)[:n]


def image_file(root: Path, rel: str, cfg) -> ImageFile:
    return ImageFile(root / rel, rel, cfg.max_pixels)


def per_image(records, root: Path, cfg, make_id) -> list[LazySample]:
    """One lazy sample per ``(rel, captions, meta)`` record."""
    out = []
    for rel, captions, meta in records:
        sid, iid = make_id(rel, meta)
        out.append(
            LazySample(sid, iid, image_file(root, rel, cfg), captions=list(captions), meta=meta)
        )
    return out
