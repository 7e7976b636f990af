"""Where a result came from: code version, packages, host and time (no heavy imports)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "semcom",
    "torch",
    "transformers",
    "sionna-no-rt",
    "numpy",
    "scipy",
    "compressai",
    "grpcio",
    "protobuf",
    "pillow",
    "tokenizers",
    "safetensors",
    "ray",
)
REPO = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_info() -> dict:
    """``{"commit", "dirty"}`` of the source tree semcom runs from (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def host() -> dict:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance() -> dict:
    """Everything needed to say how a record was produced (config is stored beside it)."""
    return {
        "git": git_info(),
        "versions": versions(),
        "host": host(),
        "utc": utc_now(),
        "argv": sys.argv,
    }
