"""``semcom train codec``: variable-rate CompressAI codecs on tiny-world images.

One model per architecture covers all rate points (per-rate latent gains and entropy
bottlenecks, see :func:`semcom.stages.codec.gained_codec`). Each step trains one rate
point k (round robin) on ``lambda_k * 255^2 * MSE + bpp_est`` (CompressAI's
RateDistortionLoss), plus the entropy bottlenecks' auxiliary (quantile) loss with its own
optimiser. At the end the weights are rounded to float16 (how they are stored), the CDF
tables are built (``update``), and the codec is evaluated on eval-split images with the
REAL entropy coder: ``bpp_payload`` (bytes of the strings), ``bpp_est`` (likelihoods)
and PSNR per rate point go to the manifest and to ``<arch>.train_metrics.json``.

    semcom train codec --arch mean-scale --out W         # -> W/codecs/
    semcom train codec --arch all --steps 2500 --shipped # maintainers: semcom/assets/codecs/
    semcom train codec --arch mean-scale --data /photos --size 256 --crop 128 --out W

Use it with ``--set edge.image.weights=W``. Any dataset trains it (``--data``; images
square-resized to ``--size``, random ``--crop`` crops); the manifest entry records the
data it was trained on.
"""

from __future__ import annotations

import argparse

from semcom.cliargs import parser as make_parser
from semcom.data.training import add_data_args
from semcom.train.assets import ASSETS, add_device_arg, add_out_args


def build_parser() -> argparse.ArgumentParser:
    from semcom.stages.codec.arch import ARCH_CODES
    from semcom.train.codec import DEFAULT_LAMBDAS, DEFAULT_STEPS

    p = make_parser("train codec", __doc__)
    p.add_argument(
        "--arch",
        default="mean-scale",
        choices=[*ARCH_CODES, "all"],
        help="architecture (default mean-scale; all: each in turn)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps (default per arch: "
        + ", ".join(f"{a} {s}" for a, s in DEFAULT_STEPS.items())
        + ")",
    )
    p.add_argument(
        "--lambdas",
        default=",".join(map(str, DEFAULT_LAMBDAS)),
        help="rate-distortion trade-offs, one per rate point, increasing (default %(default)s)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--crop",
        type=int,
        default=64,
        help="random square crops of this size (0: whole 96 x 96 images)",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=4000)
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument("-N", type=int, default=None, help="transform channels")
    p.add_argument("-M", type=int, default=None, help="latent channels")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared CPU more threads spin and "
        "run several times slower; 0: torch default)",
    )
    p.add_argument(
        "--size",
        type=int,
        help="training image size (default: the tiny world's 96; needed for other data)",
    )
    add_data_args(p)
    add_out_args(p, ASSETS, "codec weights (W/codecs/)")
    add_device_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    lambdas = [float(v) for v in args.lambdas.split(",") if v.strip()]
    if not lambdas or sorted(lambdas) != lambdas or len(lambdas) > 15:
        p.error("--lambdas must be 1..15 increasing values")
    import torch

    from semcom.data.training import data_config
    from semcom.stages.codec.arch import ARCH_CODES
    from semcom.train.assets import output_dir
    from semcom.train.codec import train_codec

    out = output_dir(args, ASSETS, "codec")
    data = data_config(args)
    if data.dataset != "tinyworld" and not args.size:
        p.error(f"--size is needed with --data {args.data} (the square training image size)")

    if args.threads:
        torch.set_num_threads(args.threads)
    archs = list(ARCH_CODES) if args.arch == "all" else [args.arch]
    for arch in archs:
        train_codec(
            arch,
            steps=args.steps,
            lambdas=lambdas,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
            n_train=args.train_images,
            n_eval=args.eval_images,
            out=str(out),
            data=data,
            size=args.size,
            device=args.device,
            N=args.N,
            M=args.M,
            crop=args.crop,
            clip=args.clip,
        )
    return 0
