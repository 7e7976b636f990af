"""Training of the variable-rate CompressAI codecs on tiny-world images
(``semcom train codec``).

One model per architecture covers all rate points (per-rate latent gains and entropy
bottlenecks, see :func:`semcom.stages.codec.gained_codec`). Each step of
:func:`train_codec` trains one rate point k (round robin) on
``lambda_k * 255^2 * MSE + bpp_est`` (CompressAI's RateDistortionLoss), plus the entropy
bottlenecks' auxiliary (quantile) loss with its own optimiser. At the end the weights
are rounded to float16 (how they are stored), the CDF tables are built (``update``),
and the codec is evaluated on eval-split images with the REAL entropy coder
(:func:`evaluate`): ``bpp_payload`` (bytes of the strings), ``bpp_est`` (likelihoods)
and PSNR per rate point go to the manifest and to ``<arch>.train_metrics.json``
(:func:`save_codec`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

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
            im = im[r : r + crop, c : c + crop]
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
    return lmbda * 255**2 * mse + bpp, bpp, mse


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def evaluate(model, images: np.ndarray, spec=None) -> list[dict]:
    """Per rate point: real-bitstream bpp, estimated bpp, PSNR, mean over ``images``."""
    from semcom.stages.codec.stage import NeuralCodec

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
        rows.append(
            {
                "rate_point": rp,
                "bpp_payload": float(np.mean(bits)) / px,
                "bpp_est": float(np.mean(est)) / px,
                "bpp_header_side": float(np.mean(side)) / px,
                "psnr": float(np.mean(ps)),
                "encode_s": float(np.mean(enc_s)),
                "decode_s": float(np.mean(dec_s)),
                "images": len(images),
            }
        )
    return rows


def save_codec(
    model, spec, root: str = "", *, skip: tuple[str, ...] = (), metrics: dict | None = None
) -> Path:
    """finalize + save weights (safetensors) + manifest entry; returns the weights file."""
    from semcom.stages.codec.weights import (
        codec_dir,
        finalize,
        state_for_saving,
        write_manifest_entry,
    )
    from semcom.train.assets import save_weights

    finalize(model)
    meta = {"arch": spec.arch, "variant": spec.variant, "family": spec.family or ""}
    meta |= {"N": spec.N, "M": spec.M, "lambdas": json.dumps(spec.lambdas)}
    state = state_for_saving(model, skip=skip)
    path = save_weights(codec_dir(root), spec.file, state, meta, metrics)
    write_manifest_entry(spec, root)
    from semcom.stages.codec import weights as C

    C._CACHE.clear()
    return path


def train_codec(
    arch: str,
    *,
    steps: int | None = None,
    lambdas=DEFAULT_LAMBDAS,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    n_train: int = 4000,
    n_eval: int = 64,
    out: str = "",
    N: int | None = None,
    M: int | None = None,
    crop: int = 64,
    clip: float = 1.0,
    gain_lr: float = 10.0,
    log_every: int = 100,
    data=None,
    size: int | None = None,
    device: str = "cpu",
) -> dict:
    """Train, evaluate and save one codec of ``arch`` with one rate point per lambda
    (``steps`` None: :data:`DEFAULT_STEPS`; ``N`` / ``M`` None: the arch's default
    widths; ``out``: the weights root, empty: ``semcom/assets/``); its metrics.

    ``data``: a :class:`~semcom.config.data.DataConfig` (None: the tiny world's train
    scenes), its images square-resized to ``size`` (None: the tiny world's 96 x 96); the
    eval images come from its eval split, or are held out after the training images.
    ``device``: where the training steps run (the codec is finalised, evaluated with the
    real entropy coder and saved on the CPU)."""
    import torch

    from semcom.config.data import DataConfig
    from semcom.data.training import train_eval_arrays
    from semcom.models.device import resolve_device
    from semcom.stages.codec.arch import DEFAULT_WIDTH
    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.weights import CodecSpec
    from semcom.train.assets import trained_on

    steps = steps or DEFAULT_STEPS[arch]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    N, M = N or DEFAULT_WIDTH[arch][0], M or DEFAULT_WIDTH[arch][1]
    K = len(lambdas)
    device = resolve_device(device, key="--device")
    data = data or DataConfig(split="train")
    t_data = time.perf_counter()
    train, evalset = train_eval_arrays(data, n_train, n_eval, size)
    data_s = time.perf_counter() - t_data
    model = gained_codec(arch, N, M, K).train().to(device)
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    gains = [p for n, p in model.named_parameters() if n.startswith("log_")]
    rest = [
        p
        for n, p in model.named_parameters()
        if not n.endswith(".quantiles") and not n.startswith("log_")
    ]
    opt = torch.optim.Adam([{"params": rest}, {"params": gains, "lr": lr * gain_lr}], lr=lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * 0.75), int(steps * 0.92)], 0.2)
    t0 = time.perf_counter()
    log, window = [], []
    for step in range(steps):
        k = step % K
        idx = rng.integers(0, len(train), batch)
        from semcom.stages.codec.arch import to_tensor

        x = to_tensor(augment(train[idx], rng, crop)).to(device)
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
                    per_k[kk + 1] = {
                        "loss": float(np.mean([r[1] for r in w])),
                        "bpp_est": float(np.mean([r[2] for r in w])),
                        "psnr": float(np.mean([10 * math.log10(1 / max(r[3], 1e-10)) for r in w])),
                    }
            log.append(
                {
                    "step": step + 1,
                    "elapsed_s": time.perf_counter() - t0,
                    "aux": aux.item(),
                    "rates": per_k,
                }
            )
            msg = " | ".join(
                f"q{q}: {v['bpp_est']:.4f} bpp {v['psnr']:.1f} dB" for q, v in per_k.items()
            )
            print(
                f"[{arch}] step {step + 1}/{steps} {time.perf_counter() - t0:.0f}s  {msg}",
                flush=True,
            )
            window = []
    train_s = time.perf_counter() - t0
    model = model.cpu().eval()
    spec = CodecSpec(arch=arch, N=N, M=M, lambdas=list(lambdas), file=f"{arch}.safetensors")
    from semcom.stages.codec.weights import finalize

    finalize(model)
    t1 = time.perf_counter()
    rows = evaluate(model, evalset, spec)
    metrics = {
        "arch": arch,
        "N": N,
        "M": M,
        "lambdas": list(lambdas),
        "steps": steps,
        "batch": batch,
        "crop": crop,
        "lr": lr,
        "seed": seed,
        "n_train_images": n_train,
        "train_wall_s": train_s,
        "data_s": data_s,
        "eval_wall_s": time.perf_counter() - t1,
        "eval": rows,
        "log": log,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "trained_on": trained_on(None, data),
    }
    spec.meta = {
        "eval": rows,
        "train_wall_s": round(train_s, 1),
        "steps": steps,
        "trained_on": metrics["trained_on"],
    }
    path = save_codec(model, spec, out, metrics=metrics)
    for r in rows:
        print(
            f"[{arch}] rate point {r['rate_point']}: bpp_payload {r['bpp_payload']:.4f} "
            f"(est {r['bpp_est']:.4f}, header+side {r['bpp_header_side']:.4f}) "
            f"PSNR {r['psnr']:.2f} dB"
        )
    print(f"[{arch}] trained in {train_s:.0f}s -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return metrics
