"""Argument helpers shared by the subcommands (no heavy imports)."""

from __future__ import annotations

import argparse
import logging


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"semcom {prog}", description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("--config", "-c", required=required, metavar="YAML",
                   help="config file (YAML); defaults apply to everything it leaves out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set channel.snr_db=5 (repeatable)")


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
