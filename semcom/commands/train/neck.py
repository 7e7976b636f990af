"""``semcom train neck``: the transform-neck on codec latents, settings d1 / d2 / d3.

    semcom train neck --model blip --setting d1 --out W  # codec frozen (train d1 first)
    semcom train neck --model blip --setting d2 --out W  # codec + neck: R + D_pix + D_feat
    semcom train neck --model blip --setting d3 --out W  # codec + neck: R + D_feat
    semcom train neck --model blip --model-path /models/blip --data coco \
        --data-set annotations=/data/coco/annotations/captions_train2017.json --out W

Use it with ``--set edge.image.weights=W`` (the neck reads W/necks/, d2 / d3 codecs
W/codecs/). Any dataset trains it (``--data``; images square-resized to the model's
input size); the neck records the model id and the data, and a run with another model
is an error naming both.

How the neck is trained (teacher, student, loss, the d1 / d2 / d3 settings) is
documented in :mod:`semcom.train.neck`.

At the end the neck is evaluated through the REAL bitstream (encode, entropy-decode,
neck, layers L..) on eval-split images, against the decode-then-encoder path of the same
codec: token distance to the uncompressed image's tokens per rate point.
"""

from __future__ import annotations

import argparse

from semcom.cliargs import parser as make_parser
from semcom.data.training import add_data_args
from semcom.train.assets import ASSETS, add_device_arg, add_model_args, add_out_args


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("train neck", __doc__)
    add_model_args(p)
    p.add_argument("--setting", default="d1", choices=["d1", "d2", "d3"])
    p.add_argument("--layer", type=int, default=1, help="injection layer L (default 1)")
    p.add_argument("--codec", default="mean-scale", help="codec architecture")
    p.add_argument("--steps", type=int, default=None, help="default: d1 2000, d2/d3 800")
    p.add_argument("--batch", type=int, default=None, help="default: d1 32, d2/d3 8")
    p.add_argument("--lr", type=float, default=None, help="default: d1 1e-3, d2/d3 2e-4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--eval-images", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, help="training image size (default: the model's input)")
    add_data_args(p)
    add_out_args(p, ASSETS, "neck weights (W/necks/, d2/d3 codecs in W/codecs/; d1 is read there)")
    add_device_arg(p)
    p.add_argument(
        "--codec-weights", default="", help="root of the base codec (default: the committed assets)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from semcom.data.training import data_config
    from semcom.train.assets import output_dir
    from semcom.train.neck import train_neck

    out = output_dir(args, ASSETS, "neck")
    data = data_config(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    train_neck(
        args.model,
        args.setting,
        layer=args.layer,
        codec_arch=args.codec,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        n_train=args.train_images,
        n_eval=args.eval_images,
        out=str(out),
        model_path=args.model_path,
        codec_weights=args.codec_weights,
        data=data,
        size=args.size,
        device=args.device,
    )
    return 0
