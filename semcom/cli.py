"""The ``semcom`` command: one entry point, lazily loaded subcommands.

Each subcommand is a ``main(argv) -> int`` function in its own module, imported only
when that subcommand runs, so ``semcom --help`` never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# name -> (module:function, one-line help). Listing them needs no import.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("semcom.commands.demo:main", "the product's point in one run on the tiny world"),
    "run": ("semcom.commands.run:main", "one in-process run: edge -> link -> cloud -> metrics"),
    "sweep": ("semcom.commands.sweep:main", "expand a YAML grid into runs; resumable"),
    "plot": ("semcom.commands.plot:main", "figures from saved results"),
    "ber": ("channel.cli:ber_main", "BER/BLER versus SNR of a 5G NR link"),
    "bler-table": ("channel.cli:bler_table_main", "build or inspect BLER tables"),
    "train": ("semcom.commands.train:main", "train tiny models, codebooks, codecs, necks, projectors"),
    "edge": ("edge.daemon:main", "the edge daemon (gRPC client of the cloud)"),
    "cloud": ("cloud.daemon:main", "the cloud daemon (gRPC server)"),
}

USAGE = "usage: semcom [-h] [--version] <command> [args...]"


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [USAGE, "", "Edge-to-cloud semantic communication simulator.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `semcom <command> --help` for a command's options."]
    return "\n".join(lines)


def load_command(name: str):
    """Import and return the ``main`` function of subcommand ``name``."""
    target, _ = COMMANDS[name]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_help())
        return 0 if argv else 2
    if argv[0] == "--version":
        from semcom import __version__

        print(f"semcom {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        hint = difflib.get_close_matches(name, COMMANDS, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        print(f"{USAGE}\nsemcom: error: unknown command '{name}'{extra}; "
              f"commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from semcom.errors import SemcomError

    try:
        return int(load_command(name)(rest) or 0)
    except SemcomError as exc:
        print(f"semcom {name}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse exits 2 on bad flags, 0 on --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("semcom: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `semcom run --print-config | head`: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
