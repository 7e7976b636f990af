"""``semcom train TARGET``: train what semcom ships (tiny models, codebooks, codecs...).

Each target is its own module with a ``main(argv)``; ``semcom train TARGET --help``
shows its options.
"""

from __future__ import annotations

import difflib
import importlib
import sys

TARGETS: dict[str, tuple[str, str]] = {
    "tinyworld": ("semcom.train.tinyworld:main", "tiny BLIP / LLaVA on the tiny world (--model)"),
    "codebook": ("semcom.train.codebook:main", "VQ codebooks on vision tokens (k-means)"),
    "codec": ("semcom.train.codec:main", "CompressAI codecs on tiny-world images"),
    "neck": ("semcom.train.neck:main", "transform-neck on codec latents (--setting d1|d2|d3)"),
    "projector": ("semcom.train.projector:main", "TokenPacker / VisualPrism projectors"),
}

USAGE = "usage: semcom train [-h] TARGET [options]"


def _help() -> str:
    width = max(map(len, TARGETS))
    lines = [USAGE, "", __doc__.strip().splitlines()[0], "", "targets:"]
    lines += [f"  {n:<{width}}  {h}" for n, (_, h) in TARGETS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_help())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TARGETS:
        hint = difflib.get_close_matches(name, TARGETS, n=1)
        print(f"{USAGE}\nsemcom train: error: unknown target '{name}'"
              + (f" (did you mean '{hint[0]}'?)" if hint else "")
              + f"; targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    module, func = TARGETS[name][0].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)
