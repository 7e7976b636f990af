"""Training of a TokenPacker / VisualPrism projector for the LLaVA
(``semcom train projector``; :func:`train_projector`).

The LLaVA (vision tower, language model) stays frozen; only the new projector trains:
the compressor (:mod:`semcom.projectors.modules`) and its MLP into the language model,
the MLP initialised from LLaVA's own ``multi_modal_projector``. Loss: the language-model
loss on tiny-world VQA answers (75 %) and captions (25 %), the tiny LLaVA's own mix,
with ``(12 / s)^2`` image placeholders; optionally VisualPrism's Sinkhorn regulariser
(off by default as in both released VisualPrism scripts).

Training stops after ``steps`` or ``time_limit`` CPU seconds of training (the process's
CPU time, not wall time), whichever comes first; on a shared CPU the step count a budget
buys varies, so the file records the steps done, wall and CPU seconds. The learning
rate warms up over 30 steps, then follows a cosine over the fraction of the binding
budget used (steps or CPU time). At the end the compressed tokens of ``calib_images``
train scenes give the per-channel range and mean stored with the weights (calibrated
scalar quantiser, concealment mean). Output: ``<out>/<type>-s<scale>.safetensors`` and
``<out>/<type>-s<scale>.json`` (the record).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class _TinySource:
    """Tiny-world training pairs: rendered train scenes, a fresh question per use (75 %)
    or the caption (25 %), the tiny LLaVA's own mix; 64 extra scenes for validation."""

    def __init__(self, backend, n_train: int):
        import numpy as np

        from semcom.train.tinyworld.data import TrainSet

        self.backend, self.n = backend, n_train
        self.data = TrainSet(n_train + 64)
        self.val_idx = np.arange(n_train, n_train + 64)

    def batch(self, idx, r, layers, *, train: bool = True):
        """``(x, x_multi, prompts, targets)`` of scenes ``idx`` (``r``: the question rng)."""
        import torch

        from semcom.projectors.io import features
        from semcom.train.tinyworld.data import normalize_images
        from semcom.world import make_question

        prompts, targets = [], []
        for i in idx:
            q = make_question(self.data.scenes[i], r)
            if train and r.random() < 0.25:
                prompts.append(self.backend.caption_prompt)
                targets.append(self.data.captions[i])
            else:
                prompts.append(q["question"])
                targets.append(q["answer"])
        x = normalize_images(self.data.images[torch.as_tensor(idx)]).to(self.backend.device)
        return (*features(self.backend, x, layers), prompts, targets)


class _DataSource:
    """Training pairs from any dataset: (question, its most frequent answer) for a VQA
    dataset, (the caption prompt, one of its captions) otherwise; images decoded per
    batch (unreadable ones dropped from it); the last 64 samples (at most a quarter)
    validate."""

    def __init__(self, backend, data, n_train: int):
        import numpy as np

        from semcom.data import training_samples

        self.backend = backend
        from semcom.data.files import resolve

        qfile = resolve(data, data.questions, "questions.json" if data.dataset == "folder" else "")
        has_q = data.dataset in ("vqav2", "gqa") or (qfile is not None and qfile.is_file())
        task = "vqa" if has_q else "caption"
        samples = training_samples(data, task)
        samples = [s for s in samples if (s.answers if task == "vqa" else s.captions)]
        if len(samples) < 2:
            from semcom.errors import DataError

            raise DataError(
                f"projector training needs samples with {'answers' if task == 'vqa' else 'captions'}"
                f"; {data.dataset} {data.path} has {len(samples)}"
            )
        n_val = min(64, max(1, len(samples) // 4))
        self.samples = samples[: min(n_train, len(samples) - n_val)] + samples[-n_val:]
        self.n = len(self.samples) - n_val
        self.val_idx = np.arange(self.n, len(self.samples))

    def batch(self, idx, r, layers, *, train: bool = True):
        from collections import Counter

        from semcom.data import read_batch, release
        from semcom.projectors.io import features

        chunk = [self.samples[int(i)] for i in idx]
        ok, _ = read_batch(chunk)
        prompts, targets = [], []
        for s in ok:
            if s.question is not None:
                prompts.append(s.question)
                targets.append(Counter(s.answers).most_common(1)[0][0])
            else:
                prompts.append(self.backend.caption_prompt)
                targets.append(s.captions[int(r.integers(len(s.captions)))])
        pv = self.backend.preprocess([s.image for s in ok])
        release(chunk)
        return (*features(self.backend, pv, layers), prompts, targets)


def _val_loss(backend, module, layers, source, n_tok, seed) -> float:
    import torch

    from semcom.projectors.lm import lm_batch, lm_logits, shifted
    from semcom.seeding import rng

    x, xm, prompts, targets = source.batch(
        source.val_idx, rng(seed, "projector-val"), layers, train=False
    )
    with torch.no_grad():
        ids, labels, att = (
            t.to(backend.device) for t in lm_batch(backend, n_tok, prompts, targets)
        )
        lg, lb = shifted(lm_logits(backend, module(x, xm), ids, att), labels)
        return float(torch.nn.functional.cross_entropy(lg, lb))


def train_projector(
    kind: str,
    scale: int,
    *,
    model_path: str = "",
    out: str | Path | None = None,
    steps: int = 3000,
    time_limit: float = 300.0,
    batch_size: int = 32,
    lr: float = 1e-3,
    train_images: int = 4000,
    calib_images: int = 512,
    layers: tuple[int, ...] = (1, 2, 3),
    heads: int = 4,
    residual: bool = True,
    sinkhorn: bool = False,
    seed: int = 0,
    progress: bool = True,
    command: str = "",
    data=None,
    device: str = "cpu",
) -> dict:
    """Train a projector of type ``kind`` ("tokenpacker" / "visualprism") at grid
    downsampling ``scale`` for the LLaVA in ``model_path`` (empty: the tiny one) and save
    it into ``out`` (None: ``semcom/assets/projectors/``) with its record (returned;
    ``command``: what ran, kept in it). ``layers``: the hidden states concatenated into
    the multi-layer keys / values; ``residual``: the pooled-query residual on the
    attention output (False: the papers' form). Raises :class:`ConfigError` (key
    ``layers``) for hidden-state indices outside the model. ``data``: a
    :class:`~semcom.config.data.DataConfig` (None: the tiny world; else VQA pairs of a
    VQA dataset or caption pairs of a captions dataset, :class:`_DataSource`);
    ``device``: where the LLaVA and the projector run."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.errors import ConfigError
    from semcom.models import load_backend
    from semcom.models.device import resolve_device
    from semcom.projectors.io import ASSETS, file_id, save_projector, weights_path
    from semcom.projectors.lm import lm_batch, lm_hidden_size, lm_logits, shifted
    from semcom.projectors.modules import LearnedProjector, count_parameters, sinkhorn_lsd
    from semcom.seeding import derive_seed, rng, seed_everything
    from semcom.train.assets import trained_on
    from semcom.train.tinyworld.data import batches
    from semcom.train.tinyworld.loop import make_optimizer, schedule

    seed_everything(seed)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)
    device = resolve_device(device, key="--device")
    backend = load_backend(ModelRef("llava", model_path), device=device)
    model = backend.model
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = tuple(layers)
    nl = backend.num_layers
    if any(not 0 <= i <= nl for i in layers):
        raise ConfigError("layers", f"hidden-state indices must be in 0..{nl}")
    t_data = time.perf_counter()
    if data is None or data.dataset == "tinyworld":
        source = _TinySource(backend, train_images)
    else:
        source = _DataSource(backend, data, train_images)
    train_images = source.n
    log(f"{train_images} training samples ready in {time.perf_counter() - t_data:.1f}s")
    torch.manual_seed(derive_seed(seed, "projector-init", kind, scale) % 2**31)
    dim, g = backend.token_dim, backend.grid
    meta = {
        "type": kind,
        "scale": scale,
        "grid": g,
        "dim": dim,
        "multi_dim": dim * len(layers),
        "lm_dim": lm_hidden_size(backend),
        "heads": heads,
        "residual": residual,
        "layers": list(layers),
        "feature_index": backend.feature_index,
        "model_id": backend.model_id,
    }
    module = LearnedProjector(
        kind,
        dim=dim,
        multi_dim=dim * len(layers),
        lm_dim=meta["lm_dim"],
        grid=g,
        scale=scale,
        heads=heads,
        residual=residual,
    ).to(device)
    src = model.model.multi_modal_projector
    with torch.no_grad():  # the MLP starts as LLaVA's own projector
        module.mlp.linear_1.load_state_dict(src.linear_1.state_dict())
        module.mlp.linear_2.load_state_dict(src.linear_2.state_dict())
    params = [p for p in module.parameters() if p.requires_grad]
    opt = make_optimizer(params, lr)
    n_tok = module.num_tokens
    plan = batches(train_images, batch_size, steps, seed)
    val0 = _val_loss(backend, module.eval(), layers, source, n_tok, seed)
    module.train()
    log(
        f"{kind} s={scale}: {n_tok} tokens, {count_parameters(module)} parameters; "
        f"val loss at init {val0:.3f}"
    )
    curve, done = [], 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for step, idx in enumerate(plan):
        if time.process_time() - cpu0 > time_limit:
            break
        # cosine over whichever budget binds: steps or CPU time
        used = max(step / steps, (time.process_time() - cpu0) / time_limit)
        for group in opt.param_groups:
            group["lr"] = (
                lr * schedule(int(used * 10000), 10000, warmup=0) * min(1.0, (step + 1) / 30)
            )
        r = rng(seed, "projector-batch", step)
        x, xm, prompts, targets = source.batch(idx, r, layers)
        feats = module(x, xm)
        ids, labels, att = (t.to(device) for t in lm_batch(backend, n_tok, prompts, targets))
        lg, lb = shifted(lm_logits(backend, feats, ids, att), labels)
        loss = F.cross_entropy(lg, lb)
        parts = {"lm": loss.item()}
        if sinkhorn:
            reg = sinkhorn_lsd(lg, lb)
            loss = loss + 0.6 * reg
            parts["lsd"] = reg.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done = step + 1
        if step % 50 == 0:
            curve.append(
                {
                    "step": step,
                    "s": round(time.perf_counter() - t0, 1),
                    **{k: round(v, 4) for k, v in parts.items()},
                }
            )
            log(
                f"  step {step:5d}  {time.perf_counter() - t0:6.1f}s  "
                + "  ".join(f"{k} {v:.3f}" for k, v in parts.items())
            )
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    module.eval()
    val1 = _val_loss(backend, module, layers, source, n_tok, seed)
    # calibration: range and mean of the compressed tokens
    zs = []
    with torch.no_grad():
        for b in range(0, min(calib_images, train_images), 64):
            idx = np.arange(b, min(b + 64, calib_images, train_images))
            x, xm, _, _ = source.batch(idx, rng(seed, "projector-calib", b), layers)
            zs.append(module.compress(x, xm).reshape(-1, dim).cpu())
    z = torch.cat(zs)
    module = module.cpu()
    stats = {"lo": z.min(0).values, "hi": z.max(0).values, "mean": z.mean(0)}
    out = Path(out) if out else ASSETS
    record = {
        "steps": done,
        "batch_size": batch_size,
        "lr": lr,
        "train_images": train_images,
        "time_limit_s": time_limit,
        "train_wall_s": round(train_s, 1),
        "train_cpu_s": round(cpu_s, 1),
        "threads": torch.get_num_threads(),
        "sinkhorn": bool(sinkhorn),
        "seed": seed,
        "val_loss_init": round(val0, 4),
        "val_loss": round(val1, 4),
        "params": count_parameters(module),
        "loss_curve": curve,
        "device": device,
        "trained_on": trained_on(backend, data or DataConfig(split="train")),
    }
    meta["train"] = {k: v for k, v in record.items() if k != "loss_curve"}
    path = save_projector(weights_path(type=kind, scale=scale, directory=out), module, meta, stats)
    record.update(meta=meta, file=str(path), file_id=file_id(path), command=command)
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log(
        f"{done} steps in {train_s:.0f}s wall / {cpu_s:.0f}s CPU; val loss {val0:.3f} -> "
        f"{val1:.3f}; saved {path}"
    )
    return record
