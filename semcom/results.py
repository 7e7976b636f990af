"""Results on disk: one JSON record per run plus per-sample JSONL beside it.

Layout: ``<out_dir>/<run_id>/{record.json, samples.jsonl, config.yaml}``. The record is
written last and atomically (temp file, fsync, rename), so its presence means the run is
complete; a killed run leaves no record and is redone. Record fields are documented in
the README ("Results").
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_SCHEMA = "semcom.record/1"


def _json_default(obj: Any):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_clean(obj), default=_json_default, indent=indent, sort_keys=False)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write all rows atomically (one JSON object per line)."""
    return atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path, *, tolerate_partial_tail: bool = True) -> list[dict]:
    """Rows of a JSONL file. A torn last line (a process killed mid-append) is skipped."""
    rows = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if tolerate_partial_tail and i == len(lines) - 1:
                break
            raise
    return rows


class DurableJsonl:
    """Append-only JSONL, each row flushed and fsynced before :meth:`append` returns.

    Opening repairs a torn last line left by a killed writer, so appends stay parseable.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                cut = raw.rfind(b"\n") + 1
                with open(self.path, "r+b") as fh:
                    fh.truncate(cut)
        self._fh = open(self.path, "ab")

    def append(self, row: dict) -> None:
        self._fh.write((dumps(row) + "\n").encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def rows(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> DurableJsonl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class RunPaths:
    """Files of one run."""

    out_dir: Path
    run_id: str

    @property
    def dir(self) -> Path:
        return Path(self.out_dir) / self.run_id

    @property
    def record(self) -> Path:
        return self.dir / "record.json"

    @property
    def samples(self) -> Path:
        return self.dir / "samples.jsonl"

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    def done(self) -> bool:
        """True if a complete record exists (the run can be skipped)."""
        if not self.record.is_file():
            return False
        try:
            rec = json.loads(self.record.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return (
            rec.get("schema") == RECORD_SCHEMA
            and rec.get("run_id") == self.run_id
            and rec.get("status") == "ok"
        )


def read_record(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "record.json"
    return json.loads(path.read_text())


def iter_records(paths: Iterable[str | Path]) -> Iterator[dict]:
    """Records from files or folders (folders are searched recursively for record.json;
    each such record gets ``run_dir``, the folder it was found in)."""
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("record.json")):
                rec = read_record(f)
                if isinstance(rec, dict):
                    rec.setdefault("run_dir", str(f.parent))
                yield rec
        elif p.suffix == ".jsonl":
            yield from read_jsonl(p)
        else:
            data = json.loads(p.read_text())
            if isinstance(data, list):
                yield from data
            elif isinstance(data, dict) and "records" in data:
                yield from data["records"]
            else:
                yield data
