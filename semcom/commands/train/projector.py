"""``semcom train projector``: train a TokenPacker / VisualPrism projector for the LLaVA.

The LLaVA (vision tower, language model) stays frozen; only the new projector trains:
the compressor (:mod:`semcom.projectors.modules`) and its MLP into the language model,
the MLP initialised from LLaVA's own ``multi_modal_projector``. Loss: the language-model
loss on tiny-world VQA answers (75 %) and captions (25 %), the tiny LLaVA's own mix,
with ``(12 / s)^2`` image placeholders; optionally VisualPrism's Sinkhorn regulariser
(``--sinkhorn``, off by default as in both released VisualPrism scripts).

Training stops at ``--steps`` or after ``--time-limit`` CPU seconds of training (the
process's CPU time, not wall time), whichever comes first; on a shared CPU the step
count a budget buys varies, so the file records the steps done, wall and CPU seconds.
The learning rate warms up over 30 steps, then follows a cosine over the fraction of
the binding budget used (steps or CPU time). At the end the compressed tokens of
``--calib-images`` train scenes give the per-channel range and mean stored with the
weights (calibrated scalar quantiser, concealment mean). Output:
``<out>/<type>-s<scale>.safetensors`` and ``<out>/<type>-s<scale>.json`` (the record).

    OMP_NUM_THREADS=1 nice -n 10 semcom train projector --type tokenpacker --scale 2 --out P
    semcom train projector --type tokenpacker --scale 2 --model-path /models/llava-1.5-7b \
        --layers 12,16,22,23 --data vqav2 --data-set questions=Q.json \
        --data-set annotations=A.json --data-set images=/data/coco/train2014 --out P

Use it with ``--set edge.projector.weights=P``. Any dataset trains it: a VQA dataset
(vqav2, gqa, a folder with questions.json) gives (question, most frequent answer) pairs,
a captions dataset (caption prompt, caption) pairs; the file records the LLaVA's model
id and the data, and loading it for another model is an error naming both.
"""

from __future__ import annotations

import argparse
import sys

from semcom.cliargs import parser as make_parser
from semcom.data.training import add_data_args
from semcom.projectors.io import ASSETS
from semcom.train.assets import add_device_arg, add_model_args, add_out_args


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "train projector",
        "train a TokenPacker / VisualPrism projector for the LLaVA (the LLaVA stays frozen)",
    )
    p.add_argument("--type", required=True, choices=("tokenpacker", "visualprism"))
    p.add_argument(
        "--scale",
        required=True,
        type=int,
        choices=(2, 3, 4),
        help="grid downsampling s: a 12x12 grid gives (12/s)^2 tokens",
    )
    add_model_args(p, families=("llava",))
    add_data_args(p)
    add_out_args(p, ASSETS, "projector")
    add_device_arg(p)
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps at most (default 3000)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        metavar="S",
        help="stop training after S CPU seconds of this process (default 300: 5 CPU-minutes)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-images", type=int, default=4000, help="tiny-world train scenes")
    p.add_argument(
        "--calib-images",
        type=int,
        default=512,
        help="train scenes for the stored token range / mean",
    )
    p.add_argument(
        "--layers",
        default="1,2,3",
        help="hidden states (transformers numbering) "
        "concatenated into the multi-layer keys / values (default 1,2,3 of the "
        "4-layer tiny tower; LLaVA-1.5 used 12,16,22,23 of 24)",
    )
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument(
        "--no-residual",
        action="store_true",
        help="the papers' form: no pooled-query residual on the attention output",
    )
    p.add_argument(
        "--sinkhorn",
        action="store_true",
        help="add VisualPrism's Sinkhorn regulariser (beta 0.6, tau 2.2, lambda "
        "0.12, 16 iterations)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> int:
    from semcom.commands.train import limit_threads

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    limit_threads(args.threads)
    from semcom.data.training import data_config
    from semcom.errors import ConfigError
    from semcom.train.assets import output_dir
    from semcom.train.projector import train_projector

    out = output_dir(args, ASSETS, "projector")
    data = data_config(args)
    try:
        train_projector(
            args.type,
            args.scale,
            model_path=args.model_path,
            out=out,
            data=None if data.dataset == "tinyworld" else data,
            device=args.device,
            steps=args.steps,
            time_limit=args.time_limit,
            batch_size=args.batch_size,
            lr=args.lr,
            train_images=args.train_images,
            calib_images=args.calib_images,
            layers=tuple(int(i) for i in args.layers.split(",")),
            heads=args.heads,
            residual=not args.no_residual,
            sinkhorn=args.sinkhorn,
            seed=args.seed,
            progress=not args.quiet,
            command="semcom train projector " + " ".join(argv),
        )
    except ConfigError as exc:
        if exc.key != "layers":
            raise
        raise SystemExit(f"--layers {args.layers}: {exc.message}") from None
    return 0
