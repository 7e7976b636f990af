"""Registries of pluggable parts, by kind (``scorer``, ``reducer``, ``link``, ``method``...).

Built-in parts are listed in :data:`MANIFEST` as ``"module:attr"`` strings, so listing
or validating names imports nothing heavy. A user plugs in their own part either by
decorating it with :func:`register` in a module they import, or by naming it in a config
as ``"package.module:ClassName"`` (imported when the run is built).

>>> @register("scorer", "my-scorer")
... class MyScorer: ...
>>> get("scorer", "my-scorer") is MyScorer
True
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from semcom.errors import ConfigError

# kind -> name -> "module:attr". Filled by the packages that implement them.
MANIFEST: dict[str, dict[str, str]] = {}
_LOADED: dict[str, dict[str, Any]] = {}


def register(kind: str, name: str) -> Callable[[Any], Any]:
    def deco(obj: Any) -> Any:
        _LOADED.setdefault(kind, {})[name] = obj
        return obj

    return deco


def declare(kind: str, entries: dict[str, str]) -> None:
    """Add lazy ``name -> "module:attr"`` entries for ``kind``."""
    MANIFEST.setdefault(kind, {}).update(entries)


def names(kind: str) -> list[str]:
    return sorted(set(MANIFEST.get(kind, {})) | set(_LOADED.get(kind, {})))


def import_path(path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError("", f"cannot import '{module}' for '{path}': {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError("", f"'{module}' has no attribute '{attr}'") from None
    return obj


def get(kind: str, name: str) -> Any:
    """The registered object, importing it on first use."""
    if name in _LOADED.get(kind, {}):
        return _LOADED[kind][name]
    if name in MANIFEST.get(kind, {}):
        obj = import_path(MANIFEST[kind][name])
        _LOADED.setdefault(kind, {})[name] = obj
        return obj
    if ":" in name:
        return import_path(name)
    raise ConfigError("", unknown_message(kind, name))


def unknown_message(
    kind: str, name: str, choices: list[str] | None = None, own: str = "Name"
) -> str:
    """``unknown <kind> '<name>' (did you mean ...?); known: ...``. ``choices``: the known
    names (default: the registered ones); ``own``: what an import path names."""
    choices = names(kind) if choices is None else list(choices)
    hit = difflib.get_close_matches(name, choices, n=1)
    return (
        f"unknown {kind} '{name}'"
        + (f" (did you mean '{hit[0]}'?)" if hit else "")
        + f"; known: {', '.join(choices) or 'none'}, or 'package.module:{own}' for your "
        "own"
    )


def check_name(kind: str, key: str, value: str) -> None:
    """For a config ``__post_init__``: accept registered names and import paths."""
    if ":" in value or value in names(kind):
        return
    raise ConfigError(key, unknown_message(kind, value))
