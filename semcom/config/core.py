"""Strict YAML -> frozen dataclass loading, ``--set`` overrides and config hashing.

Every config section is a frozen dataclass. :func:`from_dict` builds one from plain
data and refuses anything it does not know: an unknown key names its full dotted path,
the allowed keys and the closest match; a wrong type or an out-of-range value names
the key and the value. Range checks live in each dataclass's ``__post_init__`` and use
:func:`check`, which raises with the key relative to the section; :func:`from_dict`
adds the section's path.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from semcom.errors import ConfigError

_NONE = type(None)
_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    hashed: bool = True,
    default_factory: Any = dataclasses.MISSING,
    plugin: str | None = None,
) -> Any:
    """A dataclass field with a help text.

    ``hashed=False`` marks fields that cannot change a run's results (output folder,
    worker count, progress bars): they are left out of the config hash, so changing
    them does not change the run id. ``plugin="<registry kind>"`` lets a choice field
    also take a user's part as ``"package.module:Name"`` (see :mod:`semcom.registry`).
    """
    meta = {"help": help, "hashed": hashed, "plugin": plugin}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_import_path(value: Any) -> bool:
    """``"package.module:Name"``: a user's part, imported when the run is built."""
    return isinstance(value, str) and _PLUGIN.match(value) is not None


def check(condition: bool, key: str, value: Any, requirement: str) -> None:
    """Raise a :class:`ConfigError` for ``key`` unless ``condition`` holds.

    Call it from a section's ``__post_init__`` with the field name; the loader
    prefixes the section's dotted path.
    """
    if not condition:
        raise ConfigError(key, f"{requirement}, got {value!r}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if tp is _NONE:
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _closest(word: str, choices: list[str]) -> str:
    hit = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{hit[0]}'?)" if hit else ""


def parse_value(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(
            path,
            f"{value!r} is not allowed; choose one of "
            f"{', '.join(repr(a) for a in allowed)}{_closest(value, list(allowed))}",
        )
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and _NONE in args:
            return None
        errors = []
        for arg in (a for a in args if a is not _NONE):
            try:
                return parse_value(arg, value, path)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(path, f"expected {type_name(tp)}, got {value!r}")
    if origin is tuple or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected {type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return tuple(parse_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(path, f"expected {len(args)} values, got {value!r}")
        return tuple(parse_value(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): parse_value(vt, v, join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is _NONE:
        if value is None:
            return None
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config annotation {tp!r} at {path}")
    raise ConfigError(path, f"expected {type_name(tp)}, got {value!r} ({type(value).__name__})")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from ``data`` (a mapping), strictly."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(
                join(path, str(key)),
                f"unknown key{_closest(key, names)}; "
                f"allowed keys under '{path or '<top>'}': {', '.join(names)}",
            )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if fields[k].metadata.get("plugin") and is_import_path(v):
            kwargs[k] = v  # a user's part, imported (and checked) when the run is built
        else:
            kwargs[k] = parse_value(hints[k], v, join(path, k))
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # raised by __post_init__ with a section-relative key
        raise ConfigError(join(path, exc.key), exc.message) from None


def to_dict(obj: Any, *, hashed_only: bool = False) -> Any:
    """Plain data (dicts, lists, scalars) of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if hashed_only and not f.metadata.get("hashed", True):
                continue
            out[f.name] = to_dict(getattr(obj, f.name), hashed_only=hashed_only)
        return out
    if isinstance(obj, (tuple, list)):
        return [to_dict(v, hashed_only=hashed_only) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v, hashed_only=hashed_only) for k, v in obj.items()}
    return obj


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable hash of the fields that can change results (see :func:`option`)."""
    return hashlib.sha256(canonical_json(to_dict(cfg, hashed_only=True)).encode()).hexdigest()[
        :length
    ]


def parse_override(text: str) -> tuple[str, Any]:
    """``'a.b=value'`` -> ``('a.b', value)``; the value is parsed as a YAML scalar/list."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            "", f"--set expects KEY=VALUE with a dotted key (e.g. channel.snr_db=5), got {text!r}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse the value {raw!r}: {exc}") from None
    return key, value


def set_dotted(data: dict, key: str, value: Any) -> dict:
    """Set ``data[a][b]... = value`` for ``key='a.b...'``, creating mappings on the way."""
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(
                ".".join(parts[: i + 1]),
                f"is a value ({child!r}), so '{key}' cannot be set under it",
            )
        node = child
    node[parts[-1]] = value
    return data


def schema_paths(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every dotted path of a dataclass schema -> its annotation (leaves and sections)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = join(prefix, f.name)
        tp = hints[f.name]
        out[path] = tp
        if dataclasses.is_dataclass(tp):
            out.update(schema_paths(tp, path))
    return out


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(path, type, default, help) rows: the config reference, from the dataclasses."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, path))
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        rows.append((path, type_name(tp), to_dict(default), f.metadata.get("help", "")))
    return rows
