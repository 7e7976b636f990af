"""``semcom train codec``: variable-rate CompressAI codecs on tiny-world images.

One model per architecture covers all rate points (per-rate latent gains and entropy
bottlenecks, see :func:`semcom.stages.codec.gained_codec`). Each step trains one rate
point k (round robin) on ``lambda_k * 255^2 * MSE + bpp_est`` (CompressAI's
RateDistortionLoss), plus the entropy bottlenecks' auxiliary (quantile) loss with its own
optimiser. At the end the weights are rounded to float16 (how they are stored), the CDF
tables are built (``update``), and the codec is evaluated on eval-split images with the
REAL entropy coder: ``bpp_payload`` (bytes of the strings), ``bpp_est`` (likelihoods)
and PSNR per rate point go to the manifest and to ``<arch>.train_metrics.json``.

    semcom train codec --arch mean-scale                 # -> semcom/assets/codecs/
    semcom train codec --arch all --steps 2500
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from semcom.commands.common import parser as make_parser

DEFAULT_LAMBDAS = (0.0008, 0.003, 0.012, 0.048)
DEFAULT_STEPS = {"factorized": 2400, "hyperprior": 2400, "mean-scale": 3000, "elic": 2400}


def tiny_images(split: str, n: int, world_seed: int = 0) -> np.ndarray:
    """``uint8 [n, 96, 96, 3]`` tiny-world images of ``split``."""
    from semcom.world import scenes

    return np.stack([s.render()[0] for s in scenes(world_seed, split, n)])


def augment(batch: np.ndarray, rng: np.random.Generator, crop: int = 0) -> np.ndarray:
    """Random crops (``crop`` pixels square; 0: none), flips and 90-degree rotations (the
    codec does not care about layout)."""
    out = []
    for im in batch:
        if crop and crop < im.shape[0]:
            r, c = rng.integers(0, im.shape[0] - crop + 1), rng.integers(0, im.shape[1] - crop + 1)
            im = im[r:r + crop, c:c + crop]
        im = np.rot90(im, int(rng.integers(4)))
        if rng.random() < 0.5:
            im = im[:, ::-1]
        out.append(np.ascontiguousarray(im))
    return np.stack(out)


def rd_loss(out: dict, x, lmbda: float) -> tuple:
    """(loss, bpp_est, mse) with CompressAI's convention (255^2 * MSE, pixels of x)."""
    import torch

    n, _, h, w = x.shape
    bpp = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values()) / (n * h * w)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return lmbda * 255 ** 2 * mse + bpp, bpp, mse


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def evaluate(model, images: np.ndarray, spec=None) -> list[dict]:
    """Per rate point: real-bitstream bpp, estimated bpp, PSNR, mean over ``images``."""
    from semcom.stages.codec import NeuralCodec

    rows = []
    for rp in range(1, model.K + 1):
        codec = NeuralCodec(model, rp, spec=spec)
        bits, est, side, ps, enc_s, dec_s = [], [], [], [], [], []
        for im in images:
            t0 = time.perf_counter()
            p = codec.encode(im)
            t1 = time.perf_counter()
            rec = codec.decode(p.data, im.shape[:2])
            t2 = time.perf_counter()
            cats = p.ledger.by_category()
            bits.append(cats["payload"])
            side.append(cats["side_info"] + cats["header"])
            est.append(p.meta["est_bits"])
            ps.append(psnr(im, rec))
            enc_s.append(t1 - t0)
            dec_s.append(t2 - t1)
        px = images.shape[1] * images.shape[2]
        rows.append({"rate_point": rp, "bpp_payload": float(np.mean(bits)) / px,
                     "bpp_est": float(np.mean(est)) / px,
                     "bpp_header_side": float(np.mean(side)) / px,
                     "psnr": float(np.mean(ps)), "encode_s": float(np.mean(enc_s)),
                     "decode_s": float(np.mean(dec_s)), "images": len(images)})
    return rows


def save_codec(model, spec, root: str = "", *, skip: tuple[str, ...] = (),
               metrics: dict | None = None) -> Path:
    """finalize + save weights (safetensors) + manifest entry; returns the weights file."""
    from safetensors.torch import save_file

    from semcom.stages.codec import codec_dir, finalize, state_for_saving, write_manifest_entry

    finalize(model)
    state = state_for_saving(model, skip=skip)
    d = codec_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / spec.file
    save_file(state, str(path), metadata={"arch": spec.arch, "variant": spec.variant,
                                          "family": spec.family or "", "N": str(spec.N),
                                          "M": str(spec.M),
                                          "lambdas": json.dumps(spec.lambdas)})
    write_manifest_entry(spec, root)
    if metrics is not None:
        (d / (Path(spec.file).stem + ".train_metrics.json")).write_text(
            json.dumps(metrics, indent=2) + "\n")
    from semcom.stages import codec as C

    C._CACHE.clear()
    return path


def train_one(arch: str, *, steps: int, lambdas, batch: int, lr: float, seed: int,
              n_train: int, n_eval: int, out: str, N: int | None, M: int | None,
              crop: int = 64, clip: float = 1.0, gain_lr: float = 10.0,
              log_every: int = 100) -> dict:
    import torch

    from semcom.stages.codec import DEFAULT_WIDTH, CodecSpec, gained_codec

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    N, M = N or DEFAULT_WIDTH[arch][0], M or DEFAULT_WIDTH[arch][1]
    K = len(lambdas)
    t_data = time.perf_counter()
    train = tiny_images("train", n_train)
    evalset = tiny_images("eval", n_eval)
    data_s = time.perf_counter() - t_data
    model = gained_codec(arch, N, M, K).train()
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    gains = [p for n, p in model.named_parameters() if n.startswith("log_")]
    rest = [p for n, p in model.named_parameters()
            if not n.endswith(".quantiles") and not n.startswith("log_")]
    opt = torch.optim.Adam([{"params": rest}, {"params": gains, "lr": lr * gain_lr}], lr=lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * 0.75), int(steps * 0.92)], 0.2)
    t0 = time.perf_counter()
    log, window = [], []
    for step in range(steps):
        k = step % K
        idx = rng.integers(0, len(train), batch)
        from semcom.stages.codec import to_tensor

        x = to_tensor(augment(train[idx], rng, crop))
        out_ = model(x, k)
        loss, bpp, mse = rd_loss(out_, x, lambdas[k])
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(main_params, clip)
        opt.step()
        sched.step()
        aux = model.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        window.append((k, loss.item(), bpp.item(), mse.item()))
        if (step + 1) % log_every == 0 or step == steps - 1:
            per_k = {}
            for kk in range(K):
                w = [r for r in window if r[0] == kk]
                if w:
                    per_k[kk + 1] = {"loss": float(np.mean([r[1] for r in w])),
                                     "bpp_est": float(np.mean([r[2] for r in w])),
                                     "psnr": float(np.mean([10 * math.log10(1 / max(r[3], 1e-10))
                                                            for r in w]))}
            log.append({"step": step + 1, "elapsed_s": time.perf_counter() - t0,
                        "aux": aux.item(), "rates": per_k})
            msg = " | ".join(f"q{q}: {v['bpp_est']:.4f} bpp {v['psnr']:.1f} dB"
                             for q, v in per_k.items())
            print(f"[{arch}] step {step + 1}/{steps} {time.perf_counter() - t0:.0f}s  {msg}",
                  flush=True)
            window = []
    train_s = time.perf_counter() - t0
    model.eval()
    spec = CodecSpec(arch=arch, N=N, M=M, lambdas=list(lambdas), file=f"{arch}.safetensors")
    from semcom.stages.codec import finalize

    finalize(model)
    t1 = time.perf_counter()
    rows = evaluate(model, evalset, spec)
    metrics = {"arch": arch, "N": N, "M": M, "lambdas": list(lambdas), "steps": steps,
               "batch": batch, "crop": crop, "lr": lr, "seed": seed, "n_train_images": n_train,
               "train_wall_s": train_s, "data_s": data_s,
               "eval_wall_s": time.perf_counter() - t1, "eval": rows, "log": log,
               "torch_threads": torch.get_num_threads()}
    spec.meta = {"eval": rows, "train_wall_s": round(train_s, 1), "steps": steps}
    path = save_codec(model, spec, out, metrics=metrics)
    for r in rows:
        print(f"[{arch}] rate point {r['rate_point']}: bpp_payload {r['bpp_payload']:.4f} "
              f"(est {r['bpp_est']:.4f}, header+side {r['bpp_header_side']:.4f}) "
              f"PSNR {r['psnr']:.2f} dB")
    print(f"[{arch}] trained in {train_s:.0f}s -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from semcom.stages.codec import ARCH_CODES

    p = make_parser("train codec", __doc__)
    p.add_argument("--arch", default="mean-scale", choices=[*ARCH_CODES, "all"],
                   help="architecture (default mean-scale; all: each in turn)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default per arch: "
                   + ", ".join(f"{a} {s}" for a, s in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--lambdas", default=",".join(map(str, DEFAULT_LAMBDAS)),
                   help="rate-distortion trade-offs, one per rate point, increasing "
                   "(default %(default)s)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64,
                   help="random square crops of this size (0: whole 96 x 96 images)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=4000)
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument("-N", type=int, default=None, help="transform channels")
    p.add_argument("-M", type=int, default=None, help="latent channels")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared CPU more threads spin and "
                   "run several times slower; 0: torch default)")
    p.add_argument("--out", default="", help="weights root (codecs/ under it); "
                   "default: the committed assets semcom/assets/")
    args = p.parse_args(argv)
    lambdas = [float(v) for v in args.lambdas.split(",") if v.strip()]
    if not lambdas or sorted(lambdas) != lambdas or len(lambdas) > 15:
        p.error("--lambdas must be 1..15 increasing values")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    archs = list(ARCH_CODES) if args.arch == "all" else [args.arch]
    for arch in archs:
        train_one(arch, steps=args.steps or DEFAULT_STEPS[arch], lambdas=lambdas,
                  batch=args.batch, lr=args.lr, seed=args.seed, n_train=args.train_images,
                  n_eval=args.eval_images, out=args.out, N=args.N, M=args.M,
                  crop=args.crop, clip=args.clip)
    return 0
