"""Not built yet (its issue is open)."""

from semcom.commands.common import parser


def main(argv=None):
    parser("edge", "not built yet").parse_args(argv)
    raise SystemExit("not built yet")
