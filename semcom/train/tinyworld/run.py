"""Train a tiny model on the tiny world, end to end: the defaults, the model's step
through the shared loop, the training record and where it is written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from semcom.train.tinyworld.blip import train_blip
from semcom.train.tinyworld.llava import train_llava

DEFAULTS = {
    "blip": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "train_images": 20000},
    "llava": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "train_images": 20000},
}


def default_out(model: str) -> Path:
    """Where the embedded tiny model of ``model`` lives (``semcom/models/tiny/<model>/``),
    the directory ``load_backend`` reads when no path is given."""
    from semcom.config.model import ModelRef, model_dir

    return model_dir(ModelRef(model))


def train_tinyworld(
    model: str,
    out: Path,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    n_train: int | None = None,
    seed: int = 0,
    aux_weight: float = 1.0,
    progress: bool = True,
    **options,
) -> dict:
    """Train the tiny ``model`` ("blip" or "llava"), save it into ``out`` and return its
    training record. None takes :data:`DEFAULTS`; ``options`` go to the model's step
    (LLaVA: ``template``, ``lm_init_std``, ``lookup_weight``, ``rope_theta``, see
    :class:`~semcom.train.tinyworld.llava.LlavaStep`)."""
    import torch

    d = DEFAULTS[model]
    steps = steps or d["steps"]
    bs = batch_size or d["batch_size"]
    lr = lr or d["lr"]
    n_train = n_train or d["train_images"]
    fn = train_blip if model == "blip" else train_llava
    t0, cpu0 = time.perf_counter(), time.process_time()
    info = fn(
        Path(out),
        steps=steps,
        batch_size=bs,
        lr=lr,
        n_train=n_train,
        seed=seed,
        progress=progress,
        aux_weight=aux_weight,
        **options,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "model": model,
        "seed": seed,
        "steps": steps,
        "batch_size": bs,
        "lr": lr,
        "train_images": n_train,
        "threads": torch.get_num_threads(),
        "aux_weight": aux_weight,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "train_s": round(info.pop("train_s"), 1),
        **info,
        "versions": versions(),
    }


def write_record(out: Path, model: str, record: dict) -> Path:
    """Write the training ``record`` beside the saved model (``train_metrics.json``), with
    the model id of what ``out`` now holds."""
    from semcom.models.base import TRAIN_METRICS, model_id

    record["model_id"] = model_id(model, [out])
    path = Path(out) / TRAIN_METRICS
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def versions() -> dict:
    import platform

    import tokenizers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
