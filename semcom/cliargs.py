"""Command-line helpers shared by every ``semcom`` command (argparse only, no heavy imports).

:class:`Dispatcher` maps subcommand names to ``"module:function"`` entry points, imported
only when that subcommand runs, so listing them (``semcom --help``) imports no torch.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from collections.abc import Mapping


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"semcom {prog}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_config_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--config",
        "-c",
        required=required,
        metavar="YAML",
        help="config file (YAML); defaults apply to everything it leaves out",
    )
    add_set_arg(p)


def add_set_arg(
    p: argparse.ArgumentParser,
    help: str = "override a config value, e.g. --set channel.snr_db=5 (repeatable)",
) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class Dispatcher:
    """``prog NAME [args...]``: runs ``commands[NAME]``, a ``"module:function"`` taking argv.

    >>> d = Dispatcher("semcom x", {"hello": ("builtins:print", "say hello")}, "Demo.")
    >>> d.resolve("hello") is print
    True
    """

    def __init__(
        self,
        prog: str,
        commands: Mapping[str, tuple[str, str]],
        about: str,
        *,
        noun: str = "command",
    ):
        self.prog, self.commands, self.about, self.noun = prog, dict(commands), about, noun

    @property
    def usage(self) -> str:
        return f"usage: {self.prog} [-h] <{self.noun}> [args...]"

    def help(self) -> str:
        width = max(map(len, self.commands))
        lines = [self.usage, "", self.about, "", f"{self.noun}s:"]
        lines += [f"  {n:<{width}}  {text}" for n, (_, text) in self.commands.items()]
        lines += ["", f"Run `{self.prog} <{self.noun}> --help` for its options."]
        return "\n".join(lines)

    def resolve(self, name: str):
        """The entry point of ``name``, imported now."""
        module, func = self.commands[name][0].split(":")
        return getattr(importlib.import_module(module), func)

    def __call__(self, argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "--help"):
            print(self.help())
            return 0 if argv else 2
        name, rest = argv[0], argv[1:]
        if name not in self.commands:
            hint = difflib.get_close_matches(name, self.commands, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            print(
                f"{self.usage}\n{self.prog}: error: unknown {self.noun} '{name}'{extra}; "
                f"{self.noun}s: {', '.join(self.commands)}",
                file=sys.stderr,
            )
            return 2
        return int(self.resolve(name)(rest) or 0)
