"""``semcom demo``: not built yet (its issue is open)."""

from __future__ import annotations

from semcom.commands.common import parser


def main(argv: list[str] | None = None) -> int:
    parser("demo", "not built yet").parse_args(argv)
    raise SystemExit("semcom demo: not built yet")
