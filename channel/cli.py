"""Not built yet (its issue is open)."""

from semcom.commands.common import parser


def ber_main(argv=None):
    parser("ber", "not built yet").parse_args(argv)
    raise SystemExit("not built yet")


def bler_table_main(argv=None):
    parser("bler-table", "not built yet").parse_args(argv)
    raise SystemExit("not built yet")
