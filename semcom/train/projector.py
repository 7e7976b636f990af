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

    OMP_NUM_THREADS=1 nice -n 10 semcom train projector --type tokenpacker --scale 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from semcom.commands.common import parser as make_parser


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("train projector", "train a TokenPacker / VisualPrism projector for the "
                    "LLaVA (the LLaVA stays frozen)")
    p.add_argument("--type", required=True, choices=("tokenpacker", "visualprism"))
    p.add_argument("--scale", required=True, type=int, choices=(2, 3, 4),
                   help="grid downsampling s: a 12x12 grid gives (12/s)^2 tokens")
    p.add_argument("--model-path", default="", metavar="DIR",
                   help="LLaVA directory (default: the embedded tiny LLaVA)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the committed "
                   "semcom/assets/projectors/)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps at most (default 3000)")
    p.add_argument("--time-limit", type=float, default=300.0, metavar="S",
                   help="stop training after S CPU seconds of this process (default 300: "
                   "5 CPU-minutes)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-images", type=int, default=4000, help="tiny-world train scenes")
    p.add_argument("--calib-images", type=int, default=512,
                   help="train scenes for the stored token range / mean")
    p.add_argument("--layers", default="1,2,3", help="hidden states (transformers numbering) "
                   "concatenated into the multi-layer keys / values (default 1,2,3 of the "
                   "4-layer tiny tower; LLaVA-1.5 used 12,16,22,23 of 24)")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--no-residual", action="store_true",
                   help="the papers' form: no pooled-query residual on the attention output")
    p.add_argument("--sinkhorn", action="store_true",
                   help="add VisualPrism's Sinkhorn regulariser (beta 0.6, tau 2.2, lambda "
                   "0.12, 16 iterations)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _val_loss(backend, module, layers, data, idx, n_tok, seed) -> float:
    import torch

    from semcom.projectors.lm import lm_batch, lm_logits, shifted
    from semcom.seeding import rng
    from semcom.world import make_question

    prompts, targets = [], []
    r = rng(seed, "projector-val")
    for i in idx:
        q = make_question(data.scenes[i], r)
        prompts.append(q["question"])
        targets.append(q["answer"])
    x, xm = _feats(backend, data, idx, layers)
    with torch.no_grad():
        ids, labels, att = lm_batch(backend, n_tok, prompts, targets)
        lg, lb = shifted(lm_logits(backend, module(x, xm), ids, att), labels)
        return float(torch.nn.functional.cross_entropy(lg, lb))


def _feats(backend, data, idx, layers):
    import torch

    from semcom.projectors.io import features
    from semcom.train.tinyworld import normalize_images

    x = normalize_images(data.images[torch.as_tensor(idx)])
    return features(backend, x, layers)


def train(args) -> dict:
    import numpy as np
    import torch
    from torch.nn import functional as F

    from semcom.config.model import ModelRef
    from semcom.models import load_backend
    from semcom.projectors.io import ASSETS, file_id, save_projector, weights_path
    from semcom.projectors.lm import lm_batch, lm_hidden_size, lm_logits, shifted
    from semcom.projectors.modules import LearnedProjector, count_parameters, sinkhorn_lsd
    from semcom.seeding import derive_seed, rng, seed_everything
    from semcom.train.tinyworld import TrainSet, batches, make_optimizer, schedule
    from semcom.world import make_question

    seed_everything(args.seed)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    backend = load_backend(ModelRef("llava", args.model_path))
    model = backend.model
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = tuple(int(i) for i in args.layers.split(","))
    nl = backend.num_layers
    if any(not 0 <= i <= nl for i in layers):
        raise SystemExit(f"--layers {args.layers}: hidden-state indices must be in 0..{nl}")
    t_data = time.perf_counter()
    data = TrainSet(args.train_images + 64)
    val_idx = np.arange(args.train_images, args.train_images + 64)
    log(f"{len(data)} train scenes rendered in {time.perf_counter() - t_data:.1f}s")
    torch.manual_seed(derive_seed(args.seed, "projector-init", args.type, args.scale) % 2**31)
    dim, g = backend.token_dim, backend.grid
    meta = {"type": args.type, "scale": args.scale, "grid": g, "dim": dim,
            "multi_dim": dim * len(layers), "lm_dim": lm_hidden_size(backend),
            "heads": args.heads, "residual": not args.no_residual, "layers": list(layers),
            "feature_index": backend.feature_index, "model_id": backend.model_id}
    module = LearnedProjector(args.type, dim=dim, multi_dim=dim * len(layers),
                              lm_dim=meta["lm_dim"], grid=g, scale=args.scale,
                              heads=args.heads, residual=not args.no_residual)
    src = model.model.multi_modal_projector
    with torch.no_grad():  # the MLP starts as LLaVA's own projector
        module.mlp.linear_1.load_state_dict(src.linear_1.state_dict())
        module.mlp.linear_2.load_state_dict(src.linear_2.state_dict())
    params = [p for p in module.parameters() if p.requires_grad]
    opt = make_optimizer(params, args.lr)
    n_tok = module.num_tokens
    plan = batches(args.train_images, args.batch_size, args.steps, args.seed)
    val0 = _val_loss(backend, module.eval(), layers, data, val_idx, n_tok, args.seed)
    module.train()
    log(f"{args.type} s={args.scale}: {n_tok} tokens, {count_parameters(module)} parameters; "
        f"val loss at init {val0:.3f}")
    curve, done = [], 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for step, idx in enumerate(plan):
        if time.process_time() - cpu0 > args.time_limit:
            break
        # cosine over whichever budget binds: steps or CPU time
        used = max(step / args.steps, (time.process_time() - cpu0) / args.time_limit)
        for group in opt.param_groups:
            group["lr"] = (args.lr * schedule(int(used * 10000), 10000, warmup=0)
                           * min(1.0, (step + 1) / 30))
        r = rng(args.seed, "projector-batch", step)
        prompts, targets = [], []
        for i in idx:
            q = make_question(data.scenes[i], r)
            if r.random() < 0.25:
                prompts.append(backend.caption_prompt)
                targets.append(data.captions[i])
            else:
                prompts.append(q["question"])
                targets.append(q["answer"])
        x, xm = _feats(backend, data, idx, layers)
        feats = module(x, xm)
        ids, labels, att = lm_batch(backend, n_tok, prompts, targets)
        lg, lb = shifted(lm_logits(backend, feats, ids, att), labels)
        loss = F.cross_entropy(lg, lb)
        parts = {"lm": loss.item()}
        if args.sinkhorn:
            reg = sinkhorn_lsd(lg, lb)
            loss = loss + 0.6 * reg
            parts["lsd"] = reg.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done = step + 1
        if step % 50 == 0:
            curve.append({"step": step, "s": round(time.perf_counter() - t0, 1),
                          **{k: round(v, 4) for k, v in parts.items()}})
            log(f"  step {step:5d}  {time.perf_counter() - t0:6.1f}s  "
                + "  ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    module.eval()
    val1 = _val_loss(backend, module, layers, data, val_idx, n_tok, args.seed)
    # calibration: range and mean of the compressed tokens
    zs = []
    with torch.no_grad():
        for b in range(0, min(args.calib_images, args.train_images), 64):
            idx = np.arange(b, min(b + 64, args.calib_images, args.train_images))
            x, xm = _feats(backend, data, idx, layers)
            zs.append(module.compress(x, xm).reshape(-1, dim))
    z = torch.cat(zs)
    stats = {"lo": z.min(0).values, "hi": z.max(0).values, "mean": z.mean(0)}
    out = Path(args.out) if args.out else ASSETS
    record = {"steps": done, "batch_size": args.batch_size, "lr": args.lr,
              "train_images": args.train_images, "time_limit_s": args.time_limit,
              "train_wall_s": round(train_s, 1), "train_cpu_s": round(cpu_s, 1),
              "threads": args.threads, "sinkhorn": bool(args.sinkhorn), "seed": args.seed,
              "val_loss_init": round(val0, 4), "val_loss": round(val1, 4),
              "params": count_parameters(module), "loss_curve": curve}
    meta["train"] = {k: v for k, v in record.items() if k != "loss_curve"}
    path = save_projector(weights_path(type=args.type, scale=args.scale, directory=out),
                          module, meta, stats)
    record.update(meta=meta, file=str(path), file_id=file_id(path),
                  command="semcom train projector " + " ".join(args.argv))
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"{done} steps in {train_s:.0f}s wall / {cpu_s:.0f}s CPU; val loss {val0:.3f} -> "
        f"{val1:.3f}; saved {path}")
    return record


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    train(args)
    return 0
