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


# --------------------------------------------------------------------------- per-sample columns

SAMPLE_RATE_FIELDS = ("pixels", "wire_bits", "payload_bits", "coded_bits", "channel_uses")


def compact_samples(rows: Iterable[dict]) -> dict:
    """A run's per-sample columns for paired statistics: ``sample_id``, the rate fields
    (:data:`SAMPLE_RATE_FIELDS`) and ``scores`` ``{"task.metric": [...]}`` (``None``
    where a sample has no such score). A sweep's aggregate embeds this in each record
    (``per_sample``), so paired comparisons and BD intervals need only the aggregate."""
    ok = [r for r in rows if not r.get("error")]
    out: dict[str, Any] = {"sample_id": [r.get("sample_id") for r in ok]}
    for f in SAMPLE_RATE_FIELDS:
        out[f] = [(r.get("rate") or {}).get(f) for r in ok]
    keys = sorted(
        {f"{t}.{m}" for r in ok for t, ms in (r.get("scores") or {}).items() for m in (ms or {})}
    )
    out["scores"] = {
        k: [
            ((r.get("scores") or {}).get(k.split(".", 1)[0]) or {}).get(k.split(".", 1)[1])
            for r in ok
        ]
        for k in keys
    }
    return out


def run_samples(rec: dict) -> dict | None:
    """The per-sample columns of a record: embedded (``per_sample``) or read from the
    ``samples.jsonl`` beside it (``run_dir``); ``None`` when neither is there."""
    if isinstance(rec.get("per_sample"), dict):
        return rec["per_sample"]
    run_dir = rec.get("run_dir")
    if run_dir and (Path(run_dir) / "samples.jsonl").is_file():
        return compact_samples(read_jsonl(Path(run_dir) / "samples.jsonl"))
    return None
