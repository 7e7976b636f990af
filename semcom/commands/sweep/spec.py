"""What a sweep is: a YAML grid (or plain data) expanded into points with run ids.

A sweep file is a normal config plus a ``sweep:`` block (see
:func:`semcom.config.expand_sweep`: dotted keys to value lists are grid axes, an axis
name to a list of mappings is a zipped axis) and three optional top-level keys that
only the sweep reads: ``name`` (default: the file's stem), ``description`` and
``plot`` (defaults for ``semcom plot``: ``anchor``, ``metric``, ``x``, ``upper_bound``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcom.config import Config, apply_overrides, expand_sweep, load_raw
from semcom.errors import ConfigError

SWEEP_META_KEYS = ("name", "description", "plot")
PLOT_KEYS = ("anchor", "metric", "x", "upper_bound")


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: the settings of this point, its resolved config and run id."""

    settings: dict[str, Any]
    config: Config
    run_id: str


@dataclass
class Sweep:
    """An expanded sweep: its name, meta data and points (in grid order)."""

    name: str
    points: list[SweepPoint]
    source: str | None = None
    description: str = ""
    plot: dict = field(default_factory=dict)
    duplicates: int = 0

    @property
    def out_dir(self) -> Path:
        """The results root of the first point (``run.out_dir``)."""
        return Path(self.points[0].config.run.out_dir)

    @property
    def results_dir(self) -> Path:
        """Where the aggregate goes: ``<run.out_dir>/sweeps/<name>/``."""
        return self.out_dir / "sweeps" / self.name


def load_sweep(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    name: str | None = None,
    data: Mapping | None = None,
) -> Sweep:
    """Read a sweep YAML (or plain ``data``), apply ``--set`` overrides and expand it.

    Points with the same run id (e.g. axes over fields that do not change results)
    are run once; :attr:`Sweep.duplicates` counts the ones dropped.
    """
    raw = dict(load_raw(path) if data is None else data)
    meta = {k: raw.pop(k) for k in SWEEP_META_KEYS if k in raw}
    plot = meta.get("plot") or {}
    if not isinstance(plot, Mapping):
        raise ConfigError("plot", f"must be a mapping ({', '.join(PLOT_KEYS)}), got {plot!r}")
    unknown = sorted(set(plot) - set(PLOT_KEYS))
    if unknown:
        raise ConfigError(f"plot.{unknown[0]}", f"unknown key; allowed: {', '.join(PLOT_KEYS)}")
    raw = apply_overrides(raw, overrides)
    from semcom.fingerprint import run_id

    points = [SweepPoint(p.settings, p.config, run_id(p.config)) for p in expand_sweep(raw)]
    seen: set[str] = set()
    unique = []
    for p in points:
        if p.run_id not in seen:
            seen.add(p.run_id)
            unique.append(p)
    sweep_name = name or meta.get("name") or (Path(path).stem if path else "sweep")
    if not isinstance(sweep_name, str) or not sweep_name or "/" in sweep_name:
        raise ConfigError("name", f"must be a non-empty string without '/', got {sweep_name!r}")
    return Sweep(
        name=sweep_name,
        points=unique,
        source=str(path) if path else None,
        description=str(meta.get("description") or ""),
        plot=dict(plot),
        duplicates=len(points) - len(unique),
    )
