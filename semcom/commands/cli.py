"""The ``semcom`` command: one entry point, lazily loaded subcommands.

Each subcommand is a ``main(argv) -> int`` function in its own module, imported only
when that subcommand runs, so ``semcom --help`` never imports torch.
"""

from __future__ import annotations

import sys

from semcom.cliargs import Dispatcher

# name -> (module:function, one-line help). Listing them needs no import.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("semcom.commands.demo:main", "the product's point in one run on the tiny world"),
    "run": ("semcom.commands.run:main", "one in-process run: edge -> link -> cloud -> metrics"),
    "sweep": ("semcom.commands.sweep:main", "expand a YAML grid into runs; resumable"),
    "plot": ("semcom.commands.plot:main", "figures from saved results"),
    "frontier": (
        "semcom.commands.frontier:main",
        "per family, the lowest bpp_wire at 95% of full-token accuracy",
    ),
    "ber": ("semcom.commands.channel:ber_main", "BER/BLER versus SNR of a 5G NR link"),
    "bler-table": ("semcom.commands.channel:bler_table_main", "build or inspect BLER tables"),
    "train": (
        "semcom.commands.train:main",
        "train tiny models, codebooks, codecs, necks, projectors",
    ),
    "edge": ("semcom.commands.edge:main", "the edge daemon (gRPC client of the cloud)"),
    "cloud": ("semcom.commands.cloud:main", "the cloud daemon (gRPC server)"),
}

DISPATCHER = Dispatcher("semcom", COMMANDS, "Edge-to-cloud semantic communication simulator.")


def load_command(name: str):
    """Import and return the ``main`` function of subcommand ``name``."""
    return DISPATCHER.resolve(name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        from semcom import __version__

        print(f"semcom {__version__}")
        return 0
    name = argv[0] if argv else ""
    from semcom.errors import SemcomError

    try:
        return DISPATCHER(argv)
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
