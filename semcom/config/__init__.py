"""Configuration: YAML into frozen dataclasses, one per section.

>>> cfg = load_config(None, ["channel.snr_db=3", "edge.select.budget=16"])
>>> cfg.channel.snr_db, cfg.edge.select.budget
(3.0, 16)

Sections: ``data``, ``edge``, ``channel``, ``cloud``, ``run`` and ``sweep``. The
``sweep`` block maps a dotted key to a list of values (a grid axis) or an axis name to
a list of mappings of dotted keys (a zipped axis); see :func:`expand_sweep`.
A run's id (:func:`semcom.fingerprint.run_id`) hashes the resolved config (``sweep``
excluded) and the content of the weights it uses.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from semcom.config.channel import ChannelConfig
from semcom.config.cloud import CloudConfig
from semcom.config.core import (
    check,
    config_hash,
    from_dict,
    option,
    parse_override,
    schema_paths,
    set_dotted,
    to_dict,
)
from semcom.config.data import DataConfig
from semcom.config.edge import EdgeConfig
from semcom.config.model import num_patches
from semcom.config.run import RunConfig
from semcom.errors import ConfigError

__all__ = [
    "Config",
    "load_config",
    "load_raw",
    "resolve",
    "expand_sweep",
    "config_hash",
    "to_dict",
    "ConfigError",
    "GridPoint",
]


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = option(default_factory=DataConfig)
    edge: EdgeConfig = option(default_factory=EdgeConfig)
    channel: ChannelConfig = option(default_factory=ChannelConfig)
    cloud: CloudConfig = option(default_factory=CloudConfig)
    run: RunConfig = option(default_factory=RunConfig)
    sweep: dict[str, Any] = option(
        default_factory=dict, hashed=False, help="sweep axes (only for `semcom sweep`)"
    )

    def __post_init__(self):
        budget = self.edge.select.budget
        if budget is not None and self.edge.method == "tokens":
            n = num_patches(self.edge.model)
            if n is not None:
                check(
                    budget <= n,
                    "edge.select.budget",
                    budget,
                    f"must be <= the model's {n} patch tokens",
                )


def load_raw(path: str | Path | None) -> dict:
    """The YAML file as plain data (a mapping), with a clear error if it is not one."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError("", f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{p} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{p} must hold a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply ``--set KEY=VALUE`` strings. ``sweep.<dotted key>=[...]`` sets one sweep axis."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("sweep."):
            data.setdefault("sweep", {})
            if not isinstance(data["sweep"], dict):
                raise ConfigError("sweep", "must be a mapping of axes")
            data["sweep"][key[len("sweep.") :]] = value
        else:
            set_dotted(data, key, value)
    return data


def resolve(data: Mapping) -> Config:
    """Validate plain data into a :class:`Config` (sweep axes checked against the schema)."""
    cfg = from_dict(Config, data)
    _check_sweep(cfg.sweep)
    return cfg


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config, apply ``--set`` overrides and validate everything."""
    return resolve(apply_overrides(load_raw(path), overrides))


_PATHS: dict[str, Any] | None = None


def _schema() -> dict[str, Any]:
    global _PATHS
    if _PATHS is None:
        _PATHS = {k: v for k, v in schema_paths(Config).items() if not k.startswith("sweep")}
    return _PATHS


def _check_key(key: str, where: str) -> None:
    paths = _schema()
    if key not in paths:
        import difflib

        hit = difflib.get_close_matches(key, list(paths), n=1, cutoff=0.6)
        raise ConfigError(
            where, f"'{key}' is not a config key" + (f" (did you mean '{hit[0]}'?)" if hit else "")
        )


def _axis_points(name: str, values: Any) -> list[dict[str, Any]]:
    where = f"sweep.{name}"
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(where, f"must be a non-empty list of values, got {values!r}")
    if all(isinstance(v, Mapping) for v in values):  # zipped axis: each item sets several keys
        points = []
        for i, item in enumerate(values):
            for key in item:
                _check_key(str(key), f"{where}[{i}]")
            points.append({str(k): v for k, v in item.items()})
        return points
    _check_key(name, where)
    return [{name: v} for v in values]


def _check_sweep(sweep: Mapping[str, Any]) -> None:
    for name, values in sweep.items():
        _axis_points(name, values)


@dataclasses.dataclass(frozen=True)
class GridPoint:
    """One run of a sweep: the settings of this point and the resolved config."""

    settings: dict[str, Any]
    config: Config


def expand_sweep(data: Mapping) -> list[GridPoint]:
    """All runs of a sweep: the cartesian product of its axes (zipped axes move together).

    ``data`` is the raw config (YAML plus overrides). Each point's config is validated;
    an invalid point raises a :class:`ConfigError` that names the axis and the value.
    Without a ``sweep`` block the result is the single base config.
    """
    base = {k: v for k, v in data.items() if k != "sweep"}
    sweep = data.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep", f"must be a mapping of axes, got {sweep!r}")
    axes = [_axis_points(str(name), values) for name, values in sweep.items()]
    points = []
    for combo in itertools.product(*axes) if axes else [()]:
        settings: dict[str, Any] = {}
        for part in combo:
            settings.update(part)
        point = copy.deepcopy(base)
        for key, value in settings.items():
            set_dotted(point, key, value)
        try:
            cfg = from_dict(Config, point)
        except ConfigError as exc:
            raise ConfigError(exc.key, f"{exc.message} (in sweep point {settings})") from None
        points.append(GridPoint(settings, cfg))
    return points
