"""``semcom train TARGET``: train what semcom ships (tiny models, codebooks, codecs...).

Each target is its own module with a ``main(argv)``; ``semcom train TARGET --help``
shows its options.
"""

from __future__ import annotations

import os
import sys

from semcom.cliargs import Dispatcher

TARGETS: dict[str, tuple[str, str]] = {
    "tinyworld": (
        "semcom.commands.train.tinyworld:main",
        "tiny BLIP / LLaVA on the tiny world (--model)",
    ),
    "codebook": ("semcom.commands.train.codebook:main", "VQ codebooks on vision tokens (k-means)"),
    "codec": ("semcom.commands.train.codec:main", "CompressAI codecs on tiny-world images"),
    "neck": (
        "semcom.commands.train.neck:main",
        "transform-neck on codec latents (--setting d1|d2|d3)",
    ),
    "projector": ("semcom.commands.train.projector:main", "TokenPacker / VisualPrism projectors"),
}

DISPATCHER = Dispatcher("semcom train", TARGETS, __doc__.strip().splitlines()[0], noun="target")


def main(argv: list[str] | None = None) -> int:
    return DISPATCHER(list(sys.argv[1:] if argv is None else argv))


def limit_threads(threads: int) -> None:
    """Run this process's torch on ``threads`` intra-op threads (and OpenMP's, if torch
    is not imported yet) and one inter-op thread."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
