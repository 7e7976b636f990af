"""The agreed files of the token path (codebooks, token priors) as ``.npz`` archives: a
``meta`` JSON string beside named arrays, written atomically and read with a clear error
that names the file, and loaded once per path and modification time.

>>> import tempfile, numpy as np
>>> p = Path(tempfile.mkdtemp()) / "x.npz"
>>> _ = write_npz(p, {"format": "demo/1"}, a=np.arange(3))
>>> meta, arrays = read_npz(p, ("a",), ValueError, "demo")
>>> meta["format"], arrays["a"].tolist()
('demo/1', [0, 1, 2])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_npz(path: str | Path, meta: dict, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` through a temporary file, so a killed
    writer leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays, meta=np.array(json.dumps(meta, sort_keys=True)))
    tmp.replace(path)
    return path


def read_npz(
    path: str | Path,
    keys: tuple[str, ...],
    error: type[Exception],
    what: str,
    hint: str = "",
) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, {key: array})`` of a file written by :func:`write_npz`; ``error`` naming
    the file when it is missing (with ``hint``) or is not a ``what`` file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}" + (f" ({hint})" if hint else ""))
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError) as exc:
        raise error(f"{path} is not a semcom {what} file: {exc}") from None
    return meta, arrays


class FileCache:
    """``load(path)`` memoised by resolved path and modification time: a retrained file
    is read again, an unchanged one once."""

    def __init__(self, load: Callable[[Path], object]):
        self._load = load
        self._items: dict[tuple[str, float], object] = {}

    def __call__(self, path: str | Path):
        p = Path(path).resolve()
        if not p.is_file():
            return self._load(p)
        key = (str(p), p.stat().st_mtime)
        if key not in self._items:
            self._items[key] = self._load(p)
        return self._items[key]
