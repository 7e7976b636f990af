"""BLER tables of the link abstraction: the builder (:mod:`channel.tables.build`: the
exact link measured over a grid, resumable) and the lookups, which live in the core
(:mod:`semcom.linkmodel.bler`) so that a config can be checked against its table when it
loads. See docs/channel.md."""

from channel.tables.build import (
    DEFAULT_GRID,
    LIMITS,
    SNR_STEP,
    build_entry,
    build_table,
    dumps_table,
    shannon_esno_db,
)
from semcom.linkmodel.bler import (
    DEFAULT_TABLE,
    MODES,
    RATE_TOL,
    SCHEMA,
    BlerTable,
    shipped_tables,
)

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_TABLE",
    "LIMITS",
    "MODES",
    "RATE_TOL",
    "SCHEMA",
    "SNR_STEP",
    "BlerTable",
    "build_entry",
    "build_table",
    "dumps_table",
    "shannon_esno_db",
    "shipped_tables",
]
