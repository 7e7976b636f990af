"""``semcom train codebook``: VQ codebooks on tiny-world vision tokens.

Runs the edge encoder of ``--model`` over the tiny world's *train* split, collects every
token (CLS and patches), and writes one codebook file per size into ``--out``
(default ``semcom/assets/codebooks/``, named ``<model>-k<bits>-<metric>.npz``, the name
``edge.quant.codebook`` defaults to). Methods:

- ``kmeans`` (default): Lloyd's k-means with chunked nearest-neighbour assignment
  (spherical for ``--metric cosine``), initialised from random training tokens;
- ``running-mean``: the first seed's importance-weighted running mean (``CodeBook.add``),
  importance = CLS attention of the last layer (``--importance``).

Each file also stores the usage counts (the entropy model of the indices), the token
mean (``mean`` concealment) and per-channel 0.1 / 99.9 % percentiles (the calibrated
scalar range). Example::

    nice -n 10 semcom train codebook --model blip --bits 6 8 10 12
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semcom train codebook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["blip", "llava"], default="blip", help="model family")
    p.add_argument("--model-path", default="", help="model directory (default: the tiny model)")
    p.add_argument("--bits", type=int, nargs="+", default=[6, 8, 10, 12],
                   help="log2 of the codebook sizes (6..16)")
    p.add_argument("--metric", choices=["l2", "cosine", "ip"], default="l2")
    p.add_argument("--method", choices=["kmeans", "running-mean"], default="kmeans")
    p.add_argument("--importance", choices=["cls-attn", "l2-norm", "uniform"], default="cls-attn",
                   help="running-mean: the token weights")
    p.add_argument("--images", type=int, default=1000, help="tiny-world train images")
    p.add_argument("--max-tokens", type=int, default=150_000,
                   help="k-means on at most this many tokens (random subset)")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64, help="images per encoder batch")
    p.add_argument("--out", default="", help="output folder (default semcom/assets/codebooks)")
    p.add_argument("--device", default="cpu")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def collect_tokens(backend, images, *, batch: int = 64, importance: str = "uniform"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """All tokens of ``images`` (``float32 [n * (1 + P), D]``) and their importance."""
    import torch

    toks, imps = [], []
    layer = (-1,) if importance == "cls-attn" and backend.has_cls else ()
    for i in range(0, len(images), batch):
        with torch.no_grad():
            out = backend.vision_tokens(backend.preprocess(images[i:i + batch]), attn_layers=layer)
        t = out.tokens.float().cpu().numpy()
        b, n, d = t.shape
        if layer:
            a = out.attentions[-1].float().cpu().numpy()[:, :, 0, :].sum(1)  # [B, N]
            a[:, 0] = a[:, 1:].max(1)  # CLS: as important as the most attended patch
        elif importance == "l2-norm":
            a = np.linalg.norm(t, axis=-1)
        else:
            a = np.ones((b, n))
        toks.append(t.reshape(-1, d))
        imps.append(a.reshape(-1))
    return np.concatenate(toks).astype(np.float32), np.concatenate(imps)


def train(tokens: np.ndarray, bits: int, *, metric: str = "l2", method: str = "kmeans",
          weights: np.ndarray | None = None, iters: int = 20, seed: int = 0,
          max_tokens: int = 150_000, meta: dict | None = None):
    """One :class:`~semcom.stages.codebook.Codebook` of ``2**bits`` entries."""
    from semcom.stages.codebook import Codebook, kmeans, nearest, running_mean

    k = 2 ** bits
    rs = np.random.default_rng(seed)
    if method == "kmeans":
        x = tokens
        if len(x) > max_tokens:
            x = x[np.sort(rs.choice(len(x), max_tokens, replace=False))]
        cw, _ = kmeans(x, k, metric=metric, iters=iters, seed=seed,
                       log=lambda m: log.info(m))
    else:
        order = rs.permutation(len(tokens))
        cw, _ = running_mean(tokens[order], weights[order] if weights is not None
                             else np.ones(len(tokens)), k, metric=metric)
    cw16 = cw.astype(np.float16).astype(np.float32)
    counts = np.bincount(nearest(tokens, cw16, metric), minlength=k)
    lo, hi = np.percentile(tokens, [0.1, 99.9], axis=0)
    m = {"metric": metric, "method": method, "size": k, "bits": bits, "dim": int(tokens.shape[1]),
         "train_tokens": int(len(tokens)), "seed": seed, **(meta or {})}
    return Codebook(cw16, counts, tokens.mean(0), lo, hi, m)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    bad = [b for b in args.bits if not 6 <= b <= 16]
    if bad:
        build_parser().error(f"--bits must be in [6, 16], got {bad}")
    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.data import load_samples
    from semcom.models import load_backend
    from semcom.seeding import seed_everything
    from semcom.stages.codebook import ASSETS

    seed_everything(args.seed)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    backend = load_backend(ModelRef(args.model, args.model_path), device=args.device)
    t0 = time.perf_counter()
    samples = load_samples(DataConfig(split="train", num_images=args.images), "caption",
                           seed=args.seed)
    tokens, imp = collect_tokens(backend, [s.image for s in samples], batch=args.batch,
                                 importance=args.importance if args.method == "running-mean"
                                 else "uniform")
    print(f"{len(tokens)} tokens of {len(samples)} train images ({backend.model_id}), "
          f"{time.perf_counter() - t0:.1f}s")
    out = Path(args.out) if args.out else ASSETS
    for bits in args.bits:
        t1 = time.perf_counter()
        cb = train(tokens, bits, metric=args.metric, method=args.method, weights=imp,
                   iters=args.iters, seed=args.seed, max_tokens=args.max_tokens,
                   meta={"model_id": backend.model_id, "model": args.model,
                         "train_images": len(samples), "world_split": "train"})
        name = f"{args.model}-k{bits}-{args.metric}"
        if args.method != "kmeans":
            name += f"-{args.method}"
        path = cb.save(out / f"{name}.npz")
        used = int((cb.counts > 0).sum())
        mse = float(((tokens[:20000] - cb.lookup(cb.search(tokens[:20000]))) ** 2).mean())
        print(f"{path}: {cb.size} x {cb.dim}, {used} entries used, token MSE {mse:.4g}, "
              f"var {float(tokens.var(0).mean()):.4g}, hash {cb.hash[:12]}, "
              f"{time.perf_counter() - t1:.1f}s")
    return 0
