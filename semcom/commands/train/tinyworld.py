"""``semcom train tinyworld``: train the tiny BLIP or LLaVA on the tiny world, save it
where ``load_backend`` finds it (or into ``--out``) and evaluate it
(:mod:`semcom.train.tinyworld`); ``--eval-only`` evaluates a saved model."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from semcom.cliargs import parser as make_parser


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("train tinyworld", "train the tiny BLIP or LLaVA on the tiny world")
    p.add_argument("--model", required=True, choices=("blip", "llava"))
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (required to train: the embedded semcom/models/tiny/<model>/ "
        "is rewritten only with --shipped; --eval-only: the model to evaluate, default "
        "the embedded one)",
    )
    p.add_argument(
        "--shipped",
        action="store_true",
        help="maintainers: train into the embedded semcom/models/tiny/<model>/",
    )
    p.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="init, batch order and augmentation seed")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--train-images", type=int, help="tiny-world train scenes (default 20000)")
    p.add_argument(
        "--aux-weight",
        type=float,
        default=1.0,
        help="weight of the auxiliary per-patch attribute loss (default 1; 0 = off)",
    )
    p.add_argument(
        "--prompt-template",
        metavar="T",
        help="LLaVA: the conversation template, with <image> and {prompt} "
        "(default the LLaVA-1.5 one, image first); saved in the model's "
        "semcom.json, which the backend reads",
    )
    p.add_argument(
        "--lm-init-std",
        type=float,
        metavar="S",
        help="LLaVA: redraw the language model's linear layers with std S at init (default 0.088)",
    )
    p.add_argument(
        "--lookup-weight",
        type=float,
        metavar="W",
        help="LLaVA: weight of the training-only lookup loss (attention of "
        "the answer position to the question's words, then to its object; "
        "default 1, 0 = off)",
    )
    p.add_argument(
        "--rope-theta",
        type=float,
        metavar="B",
        help="LLaVA: the language model's RoPE base (default 1e6)",
    )
    p.add_argument("--eval-images", type=int, default=1000, help="eval scenes (default 1000)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the model in --out")
    p.add_argument("--no-eval", action="store_true", help="train and save only")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads "
        "were up to 10x slower than one, from OpenMP contention)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from semcom.commands.train import limit_threads

    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    limit_threads(args.threads)
    from semcom.train.tinyworld import (
        default_out,
        evaluate,
        print_metrics,
        train_tinyworld,
        write_record,
    )

    options = {} if args.eval_only else _model_options(args)
    if args.eval_only:
        out = Path(args.out) if args.out else default_out(args.model)
    else:
        from semcom.train.assets import output_dir

        out = output_dir(args, default_out(args.model), f"tiny {args.model}")
    command = "semcom train tinyworld " + " ".join(argv if argv is not None else sys.argv[1:])
    record = None
    if not args.eval_only:
        _check_writable(out)
        record = {
            "command": command,
            **train_tinyworld(
                args.model,
                out,
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                n_train=args.train_images,
                seed=args.seed,
                aux_weight=args.aux_weight,
                progress=not args.quiet,
                **options,
            ),
        }
        print(
            f"trained {args.model} in {record['wall_s'] / 60:.1f} min wall, "
            f"{record['cpu_s'] / 60:.1f} min CPU ({record['threads']} thread(s)) -> {out}",
            file=sys.stderr,
        )
    if not args.no_eval:
        t1 = time.perf_counter()
        metrics = evaluate(out, args.model, args.eval_images, progress=not args.quiet)
        metrics["eval_s"] = round(time.perf_counter() - t1, 1)
        print_metrics(args.model, metrics)
        if record is not None:
            record["eval"] = metrics
        if args.json:
            Path(args.json).write_text(
                json.dumps({"command": command, "eval": metrics}, indent=2) + "\n"
            )
    if record is not None:
        write_record(out, args.model, record)
    return 0


def _model_options(args) -> dict:
    """The LLaVA-only options given, checked (SemcomError naming the flag)."""
    from semcom.errors import SemcomError

    kw = {"template": args.prompt_template} if args.prompt_template else {}
    if kw:
        _check_template(args.model, args.prompt_template)
    for flag, key in (
        ("--lm-init-std", "lm_init_std"),
        ("--lookup-weight", "lookup_weight"),
        ("--rope-theta", "rope_theta"),
    ):
        v = getattr(args, key)
        if v is None:
            continue
        if args.model != "llava":
            raise SemcomError(f"{flag} applies to --model llava only")
        zero_ok = key == "lookup_weight"  # 0 turns the lookup loss off
        if not (v > 0 or (zero_ok and v == 0)):
            raise SemcomError(f"{flag} must be {'>=' if zero_ok else '>'} 0, got {v}")
        kw[key] = v
    return kw


def _check_template(model: str, template: str) -> None:
    from semcom.errors import SemcomError

    if model != "llava":
        raise SemcomError("--prompt-template is for --model llava")
    if "<image>" not in template or "{prompt}" not in template:
        raise SemcomError(
            f"--prompt-template must contain <image> and {{prompt}}, got {template!r}"
        )


def _check_writable(out: Path) -> None:
    """Fail before training (not after it) when ``out`` cannot be written."""
    from semcom.errors import SemcomError

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SemcomError(
            f"cannot write the trained model to {out}: {exc}; choose another directory with --out"
        ) from None
