"""Training of the transform-neck on codec latents, settings d1 / d2 / d3
(``semcom train neck``; :func:`train_neck`).

Teacher: the model's own vision tokens of the UNCOMPRESSED image (final tokens, and the
hidden state at the injection layer L for the warm-up hint), computed once per training
image. Student: ``backend.vision_tokens_from_layer(neck(latent, k), L)``, i.e. the neck
then the encoder's layers L.. (frozen). Loss (see :mod:`semcom.neck`): token MSE over all
1+P tokens / teacher variance, plus a hint term decaying to 0 over the first half.

- d1: the base variable-rate codec is frozen; its latents at every rate point are
  computed once (eval-mode rounding = what the cloud decodes); one neck serves all rate
  points (rate index drawn per sample; the neck has a rate embedding).
- d2 / d3: start from the base codec and the d1 neck; fine-tune both, one rate point per
  step (round robin), with ``R + lambda_k 255^2 (MSE_pix + s_k D_feat)`` (d2, human and
  machine) or ``R + lambda_k 255^2 s_k D_feat`` (d3, machine only). ``s_k`` =
  MSE_pix / D_feat of the base codec + d1 neck at rate point k, measured before
  fine-tuning: the feature distortion is expressed in pixel-MSE units so each rate point
  keeps the rate-distortion slope the base codec was trained at. The codec is saved as
  ``codecs/<arch>-<setting>-<model>.safetensors`` (d3 without g_s: never used).

At the end the neck is evaluated through the REAL bitstream (:func:`evaluate`: encode,
entropy-decode, neck, layers L..) on eval-split images, against the decode-then-encoder
path of the same codec: token distance to the uncompressed image's tokens per rate point.
"""

from __future__ import annotations

import math
import time

import numpy as np


def _grad_fn(backend):
    """``vision_tokens_from_layer`` with autograd (the backend's is under no_grad)."""
    fn = type(backend).vision_tokens_from_layer
    raw = getattr(fn, "__wrapped__", fn)
    return lambda h, layer: raw(backend, h, layer)


def _encoder_modules(backend):
    return [m for m in vars(backend).values() if hasattr(m, "parameters") and hasattr(m, "train")]


def teacher_tokens(backend, images: np.ndarray, layer: int, batch: int = 64):
    """(final tokens, hidden state at ``layer``) of uncompressed images, float32 [n,1+P,D]."""
    import torch

    finals, hints = [], []
    for i in range(0, len(images), batch):
        pv = backend.preprocess(list(images[i : i + batch]))
        with torch.no_grad():
            out = backend.vision_tokens(pv, hidden_layers=(layer,))
        finals.append(out.tokens.float())
        hints.append(out.hidden[layer].float())
    return torch.cat(finals), torch.cat(hints)


def pixel_tokens(backend, images, batch: int = 64):
    import torch

    out = []
    for i in range(0, len(images), batch):
        out.append(backend.vision_tokens(backend.preprocess(list(images[i : i + batch]))).tokens)
    return torch.cat(out)


def evaluate(
    backend, codec_model, neck, layer: int, images: np.ndarray, spec=None, variant: str = "base"
) -> list[dict]:
    """Per rate point through the real bitstream: bpp, PSNR, and the token MSE (over the
    teacher variance) of the neck path and of decode-then-encoder, vs the uncompressed."""
    import torch

    from semcom.neck import neck_tokens
    from semcom.stages.codec.stage import NeuralCodec
    from semcom.train.codec import psnr

    teacher = pixel_tokens(backend, images)
    var = float(teacher.var())
    rows = []
    for rp in range(1, codec_model.K + 1):
        codec = NeuralCodec(codec_model, rp, variant)
        lats, recs, bits = [], [], []
        for im in images:
            p = codec.encode(im)
            lat = codec.decode_latent(p.data, im.shape[:2])
            lats.append(lat)
            bits.append(p.ledger.by_category()["payload"])
            if "net.g_s.0.weight" in dict(codec_model.named_parameters()):
                recs.append(codec.synthesize(lat, im.shape[:2]))
        lat = torch.cat(lats)
        t_neck = neck_tokens(neck, backend, lat, rp - 1, layer)
        row = {
            "rate_point": rp,
            "bpp_payload": float(np.mean(bits)) / (images.shape[1] * images.shape[2]),
            "neck_token_mse": float(((t_neck - teacher) ** 2).mean()) / var,
            "neck_cls_mse": float(((t_neck[:, 0] - teacher[:, 0]) ** 2).mean()) / var,
        }
        if recs:
            t_dec = pixel_tokens(backend, np.stack(recs))
            row["decode_token_mse"] = float(((t_dec - teacher) ** 2).mean()) / var
            row["decode_cls_mse"] = float(((t_dec[:, 0] - teacher[:, 0]) ** 2).mean()) / var
            row["psnr"] = float(np.mean([psnr(a, b) for a, b in zip(images, recs)]))
        rows.append(row)
    return rows


def train_neck(
    family: str,
    setting: str,
    *,
    layer: int = 1,
    codec_arch: str = "mean-scale",
    steps: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    n_train: int = 3000,
    n_eval: int = 48,
    out: str = "",
    model_path: str = "",
    codec_weights: str = "",
    log_every: int = 100,
    data=None,
    size: int | None = None,
    device: str = "cpu",
) -> dict:
    """Train, evaluate and save the neck of ``family``'s encoder at injection layer
    ``layer`` on the latents of codec ``codec_arch``, setting d1 / d2 / d3 (None takes the
    setting's defaults: d1 2000 steps of 32 at lr 1e-3, d2 / d3 800 of 8 at 2e-4); its
    metrics. ``out``: the weights root of the necks (and d2 / d3 codecs; where d1 is read
    for d2 / d3), ``model_path`` / ``codec_weights``: the model directory and base codec
    root (empty: the tiny model, the committed assets). ``data``: a
    :class:`~semcom.config.data.DataConfig` (None: the tiny world's train scenes), its
    images square-resized to ``size`` (None: the model's input size; the tiny world as
    rendered); eval images from its eval split or held out after the training ones.
    ``device``: where the model, neck and codec train (evaluated and saved on the CPU
    side of the codec, the model's device for the encoder)."""
    import copy

    import torch

    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.data.training import train_eval_arrays
    from semcom.models import load_backend
    from semcom.models.device import resolve_device
    from semcom.neck import (
        NeckSpec,
        build_neck,
        distill_loss,
        load_neck,
        neck_scale,
        param_count,
        save_neck,
    )
    from semcom.stages.codec.arch import to_tensor
    from semcom.stages.codec.weights import CodecSpec, find_spec, load_codec
    from semcom.train.assets import trained_on
    from semcom.train.codec import rd_loss, save_codec

    d1 = setting == "d1"
    steps = steps or (2000 if d1 else 800)
    batch = batch or (32 if d1 else 8)
    lr = lr or (1e-3 if d1 else 2e-4)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    device = resolve_device(device, key="--device")
    backend = load_backend(ModelRef(family, model_path), device=device)
    for m in _encoder_modules(backend):
        m.requires_grad_(False)
        m.eval()
    student_from = _grad_fn(backend)
    base = load_codec(codec_arch, 1, "base", None, codec_weights)
    base_spec: CodecSpec = find_spec(codec_arch, "base", None, codec_weights)
    codec = base.model
    K = codec.K
    data = data or DataConfig(split="train")
    if size is None and data.dataset != "tinyworld":
        size = backend.image_size
    train_imgs, eval_imgs = train_eval_arrays(data, n_train, n_eval, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        t_final, t_hint = teacher_tokens(backend, train_imgs, layer)
    var_f, var_h = float(t_final.var()), float(t_hint.var())
    prep_s = time.perf_counter() - t0

    if setting == "d1":
        neck = build_neck(
            codec.M,
            backend.token_dim,
            backend.grid,
            rates=K,
            has_cls=backend.has_cls,
            scale=neck_scale(backend.patch_size),
        ).to(device)
        t0 = time.perf_counter()
        lat_all = []
        with torch.no_grad():
            codec.eval().to(device)
            for k in range(K):
                lat_k = []
                for i in range(0, len(train_imgs), 64):
                    x = to_tensor(train_imgs[i : i + 64]).to(device)
                    lat_k.append(codec(x, k)["latent"])
                lat_all.append(torch.cat(lat_k))
            codec.cpu()
        lat_all = torch.stack(lat_all, 1)  # [n, K, M, h, w]
        prep_s += time.perf_counter() - t0
        params = list(neck.parameters())
        codec_train = None
    else:
        neck0, _ = load_neck(family, "d1", layer, codec_arch, out)
        neck0 = copy.deepcopy(neck0).to(device)
        neck = copy.deepcopy(neck0).train()
        codec_train = copy.deepcopy(codec).to(device)
        for n_, p in codec_train.named_parameters():
            p.requires_grad_(not (setting == "d3" and n_.startswith("net.g_s.")))
        codec_train.train()
        params = list(neck.parameters()) + [
            p
            for n_, p in codec_train.named_parameters()
            if p.requires_grad and not n_.endswith("quantiles")
        ]
        aux_params = [p for n_, p in codec_train.named_parameters() if n_.endswith("quantiles")]
        aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
        # s_k: pixel MSE / feature distortion of base codec + d1 neck, per rate point
        s_k = []
        with torch.no_grad():
            idx = rng.integers(0, len(train_imgs), 64)
            x = to_tensor(train_imgs[idx]).to(device)
            codec.eval().to(device)
            for k in range(K):
                o = codec(x, k)
                mse = float(torch.mean((o["x_hat"].clamp(0, 1) - x) ** 2))
                st = student_from(neck0(o["latent"], k), layer)
                s_k.append(mse / max(float(distill_loss(st, t_final[idx], var_f)), 1e-8))
            codec.cpu()
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * 0.75)], 0.2)
    lambdas = base_spec.lambdas
    log, window = [], []
    t0 = time.perf_counter()
    for step in range(steps):
        alpha = max(0.0, 1.0 - step / max(1, steps // 2)) if setting == "d1" else 0.0
        idx = torch.as_tensor(rng.integers(0, len(train_imgs), batch))
        if setting == "d1":
            kk = torch.as_tensor(rng.integers(0, K, batch))
            lat = lat_all[idx, kk]
            h = neck(lat, kk)
            d_feat = distill_loss(student_from(h, layer), t_final[idx], var_f)
            loss = d_feat + alpha * distill_loss(h, t_hint[idx], var_h)
            rec = {"d_feat": d_feat.item()}
            k = -1
        else:
            k = step % K
            x = to_tensor(train_imgs[idx.numpy()]).to(device)
            o = codec_train(x, k)
            h = neck(o["latent"], k)
            d_feat = distill_loss(student_from(h, layer), t_final[idx], var_f)
            _, bpp, mse = rd_loss(o, x, 0.0)
            dist = s_k[k] * d_feat + (mse if setting == "d2" else 0.0)
            loss = bpp + lambdas[k] * 255**2 * dist
            rec = {
                "d_feat": d_feat.item(),
                "bpp_est": bpp.item(),
                "psnr": 10 * math.log10(1 / max(mse.item(), 1e-10)),
            }
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if codec_train is not None:
            aux = codec_train.aux_loss()
            aux_opt.zero_grad()
            aux.backward()
            aux_opt.step()
        window.append((k, rec))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"neck training diverged at step {step} (rate point "
                f"{k + 1}): loss {loss.item()}, {rec}"
            )
        if (step + 1) % log_every == 0 or step == steps - 1:
            keys = window[0][1].keys()
            entry = {
                "step": step + 1,
                "elapsed_s": time.perf_counter() - t0,
                **{key: float(np.mean([r[key] for _, r in window])) for key in keys},
            }
            log.append(entry)
            print(
                f"[neck {family} {setting} L{layer}] step {step + 1}/{steps} "
                f"{entry['elapsed_s']:.0f}s " + " ".join(f"{key} {entry[key]:.4f}" for key in keys),
                flush=True,
            )
            window = []
    train_s = time.perf_counter() - t0
    neck = neck.cpu().eval()
    if codec_train is not None:
        codec_train = codec_train.cpu()
    variant = "base" if setting == "d1" else setting
    codec_file = base_spec.file
    eval_codec = codec
    if codec_train is not None:
        codec_train.eval()
        codec_file = f"{codec_arch}-{setting}-{family}.safetensors"
        cspec = CodecSpec(
            arch=codec_arch,
            variant=setting,
            family=family,
            N=base_spec.N,
            M=base_spec.M,
            lambdas=list(lambdas),
            file=codec_file,
            base=base_spec.file if setting == "d3" else "",
        )
        skip = ("net.g_s.",) if setting == "d3" else ()
        from semcom.stages.codec.weights import finalize

        finalize(codec_train)
        eval_codec = codec_train
    t1 = time.perf_counter()
    rows = evaluate(backend, eval_codec, neck, layer, eval_imgs, variant=variant)
    eval_s = time.perf_counter() - t1
    spec = NeckSpec(
        family=family,
        setting=setting,
        layer=layer,
        codec=codec_arch,
        model_id=backend.model_id,
        in_ch=codec.M,
        dim=backend.token_dim,
        grid=backend.grid,
        rates=K,
        has_cls=backend.has_cls,
        scale=neck.scale,
        file=f"{family}-{setting}-L{layer}-{codec_arch}.safetensors",
        meta={
            "codec_file": codec_file,
            "eval": rows,
            "train_wall_s": round(train_s, 1),
            "steps": steps,
            "trained_on": trained_on(backend, data),
        },
    )
    metrics = {
        "family": family,
        "setting": setting,
        "layer": layer,
        "codec": codec_arch,
        "model_id": backend.model_id,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "n_train_images": len(train_imgs),
        "device": device,
        "trained_on": spec.meta["trained_on"],
        "params": param_count(neck),
        "teacher_var_final": var_f,
        "teacher_var_hint": var_h,
        "prep_s": prep_s,
        "train_wall_s": train_s,
        "eval_wall_s": eval_s,
        "total_wall_s": time.perf_counter() - t_start,
        "eval": rows,
        "log": log,
        "loss": "token MSE / teacher var (all 1+P final tokens)"
        + (
            " + hint MSE at layer L (weight 1 -> 0 over the first half)"
            if setting == "d1"
            else f" ; codec loss R + lambda_k 255^2 ({'MSE_pix + ' if setting == 'd2' else ''}"
            "s_k D_feat)"
        ),
        **({"s_k": s_k} if setting != "d1" else {}),
    }
    if codec_train is not None:
        save_codec(
            codec_train,
            cspec,
            out,
            skip=skip,
            metrics={
                "setting": setting,
                "family": family,
                "eval": rows,
                "train_wall_s": train_s,
                "s_k": s_k,
            },
        )
    path = save_neck(neck, spec, out, metrics=metrics)
    for r in rows:
        print(
            f"[neck {family} {setting}] rate point {r['rate_point']}: bpp_payload "
            f"{r['bpp_payload']:.4f}  token MSE neck {r['neck_token_mse']:.4f}"
            + (
                f"  decode {r['decode_token_mse']:.4f}  PSNR {r['psnr']:.2f}"
                if "decode_token_mse" in r
                else ""
            )
        )
    print(f"[neck {family} {setting}] trained in {train_s:.0f}s -> {path}")
    return metrics
