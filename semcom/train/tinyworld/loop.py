"""The one training loop of the tiny models, shared by BLIP and LLaVA.

A model plugs in as a :class:`ModelStep`: it builds itself from the train set, computes
one step's loss (and its named parts) from the batch indices, and saves itself. The
loop owns everything else: seeding, the train set, the optimiser and its learning-rate
schedule, which steps see all tokens, gradient clipping, the progress bar, the loss
curve, writing the checkpoint, and the training record it returns.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from semcom.train.tinyworld.data import TrainSet, batches


class ModelStep(Protocol):
    """One model's part of training (see :mod:`semcom.train.tinyworld.blip`, ``.llava``)."""

    name: str  # "blip" / "llava": the progress bar's label
    params: list  # the model's parameters: optimised, gradient-clipped, saved
    extra_params: list  # training-only ones (the attribute head): optimised only

    def __call__(self, step: int, idx, full: bool) -> tuple[Any, dict[str, Any]]:
        """The loss of step ``step`` on train scenes ``idx`` and its parts (tensors, logged
        in this order); ``full``: the vision encoder sees all tokens this step."""

    def info(self) -> dict:
        """The model's entries of the training record (sizes, parameter count...)."""

    def save(self, out: Path) -> None:
        """Switch to eval mode and save the trained model into ``out``."""


def schedule(step: int, steps: int, warmup: int = 100) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))


def make_optimizer(params, lr):
    import torch

    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.02}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def unique_params(*modules):
    seen, out = set(), []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def progress_bar(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=2.0,
    )


def fit(
    make_step: Callable[[TrainSet], ModelStep],
    out: Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    n_train: int,
    seed: int,
    progress: bool = True,
    full_fraction: float = 0.1,
    full_every: int = 5,
) -> dict:
    """Train the model ``make_step`` builds from ``n_train`` train scenes, save it into
    ``out`` and return the training record (``train_s`` includes ``data_s``: rendering
    the scenes and building the model).

    The vision encoder runs on a token subset on most steps and sees all tokens every
    ``full_every``-th step and over the last ``full_fraction`` of training."""
    import numpy as np
    import torch

    from semcom.seeding import seed_everything

    seed_everything(seed)
    t_data = time.perf_counter()
    model = make_step(TrainSet(n_train))
    opt = make_optimizer(model.params + model.extra_params, lr)
    plan = batches(n_train, batch_size, steps, seed)
    first_full = int(round(steps * (1 - full_fraction)))
    curve, t0 = [], time.perf_counter()
    data_s = t0 - t_data
    bar = progress_bar(steps, f"train {model.name}", progress)
    for step, idx in enumerate(plan):
        for group in opt.param_groups:
            group["lr"] = lr * schedule(step, steps)
        full = step >= first_full or step % full_every == full_every - 1
        loss, terms = model(step, idx, full)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.params, 1.0)
        opt.step()
        parts = {k: v.item() for k, v in terms.items()}
        if step % 50 == 0 or step == steps - 1:
            curve.append(
                {
                    "step": step,
                    "s": round(time.perf_counter() - t0, 1),
                    **{k: round(v, 4) for k, v in parts.items()},
                }
            )
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)
        bar.update(1)
    bar.close()
    train_s = time.perf_counter() - t0
    model.save(out)
    return {
        "train_s": train_s + data_s,
        "data_s": round(data_s, 1),
        **model.info(),
        "full_token_steps": steps - first_full + first_full // full_every,
        "position_embedding": "2-D sin-cos, fixed",
        "loss_curve": curve,
        "final": curve[-1] if curve else {},
        "np_version": np.__version__,
    }
