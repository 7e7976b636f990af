"""``semcom train codebook``: the token prior and position-aware codebooks of a model.

Runs the edge encoder of ``--model`` over the training images and writes into ``--out``:

- ``<model>-prior.npz``: the token prior (the mean token of every slot; the context
  models that entropy-code kept positions, learned from the default language-guided
  selection at several budgets);
- ``<model>-k<bits>-<metric>.npz`` per ``--bits``: the codebook ``edge.quant.codebook``
  defaults to. By default position-residual (``x - pos_mean[slot]`` is quantised) and
  trained on the tokens the selection keeps at ``--train-budget``, with ``--stages``
  residual stages; each stage's usage counts are the entropy model of its indices.
  ``--residual none --weighting all`` trains the plain k-means codebook on every token
  (``-plain`` in the name); ``--method running-mean`` the first seed paper's
  importance-weighted running mean (``--importance``).

The training data is any dataset semcom reads (``--data``, default the tiny world's
train split); ``--out`` is required (``--shipped`` rewrites the shipped files, for
maintainers). Examples::

    nice -n 10 semcom train codebook --model llava --bits 6 8 10 --out cb/
    nice -n 10 semcom train codebook --model blip --bits 8 --stages 6 --out cb/
    semcom train codebook --model blip --model-path /models/blip --data coco \
        --data-set annotations=/data/coco/annotations/captions_train2017.json --out cb/
"""

from __future__ import annotations

import argparse
import logging

from semcom.cliargs import parser as make_parser
from semcom.data.training import add_data_args
from semcom.train.assets import ASSETS, add_device_arg, add_model_args, add_out_args

CODEBOOKS = ASSETS / "codebooks"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("train codebook", __doc__)
    add_model_args(p)
    p.add_argument(
        "--bits",
        type=int,
        nargs="+",
        default=[6, 8, 10],
        help="log2 of the codebook sizes, per stage (2..20)",
    )
    p.add_argument("--stages", type=int, default=1, help="residual stages (default 1)")
    p.add_argument(
        "--residual",
        choices=["position", "none"],
        default="position",
        help="position: quantise the token minus its slot's prior mean (default); none: "
        "the token itself",
    )
    p.add_argument(
        "--weighting",
        choices=["selected", "all"],
        default="selected",
        help="selected: train on the tokens the selection keeps (default); all: every token",
    )
    p.add_argument(
        "--train-budget",
        type=int,
        default=16,
        help="selected: the selection budget of the training tokens (default 16)",
    )
    p.add_argument("--metric", choices=["l2", "cosine", "ip"], default="l2")
    p.add_argument("--method", choices=["kmeans", "running-mean"], default="kmeans")
    p.add_argument(
        "--importance",
        choices=["cls-attn", "l2-norm", "uniform"],
        default="cls-attn",
        help="running-mean: the token weights",
    )
    p.add_argument("--images", type=int, default=3000, help="training images (default 3000)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=150_000,
        help="k-means on at most this many tokens (random subset)",
    )
    p.add_argument("--iters", type=int, default=20, help="k-means iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64, help="images per encoder batch")
    add_data_args(p)
    add_out_args(p, CODEBOOKS, "prior and codebooks")
    add_device_arg(p)
    p.add_argument(
        "--prompt",
        default="a picture of",
        help="guidance text of the selection for a model without questions",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    bad = [b for b in args.bits if not 2 <= b <= 20]
    if bad:
        build_parser().error(f"--bits must be in [2, 20], got {bad}")
    if not 1 <= args.stages <= 16:
        build_parser().error(f"--stages must be in [1, 16], got {args.stages}")
    if args.train_budget < 1:
        build_parser().error(f"--train-budget must be >= 1, got {args.train_budget}")
    from semcom.data.training import data_config
    from semcom.train.assets import output_dir

    out = output_dir(args, CODEBOOKS, "prior and codebooks")
    data = data_config(args, num_images=args.images)
    import torch

    from semcom.train.codebook import train_codebooks

    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_codebooks(
        args.model,
        args.bits,
        model_path=args.model_path,
        stages=args.stages,
        metric=args.metric,
        method=args.method,
        residual=args.residual,
        weighting=args.weighting,
        train_budget=args.train_budget,
        prompt=args.prompt,
        importance=args.importance,
        images=args.images,
        max_tokens=args.max_tokens,
        iters=args.iters,
        seed=args.seed,
        batch=args.batch,
        out=out,
        device=args.device,
        data=data,
    )
    return 0
