"""Training data from any dataset: the ``--data`` arguments of the train commands, and
iterators over training images / samples (decoded batch by batch, unreadable files
skipped with a warning).

    p = argparse.ArgumentParser(); add_data_args(p)          # --data, --data-set, --split
    cfg = data_config(args, num_images=1000)                  # a checked DataConfig
    for images in training_images(cfg, batch=32):            # lists of uint8 [H, W, 3]
        ...
    samples = training_samples(cfg, "vqa")                   # lazy Samples (+ references)

``--data`` is a dataset name (``tinyworld``, ``folder``, ``coco``, ``coco-mini``,
``karpathy``, ``vqav2``, ``gqa``) or a directory (a folder of images); ``--data-set
KEY=VALUE`` sets any other ``data.*`` key (``annotations=...``, ``images=...``,
``questions=...``, ``path=...``); ``--split`` defaults to ``train``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


def add_data_args(p, *, default: str = "tinyworld", split: str = "train") -> None:
    """``--data NAME|DIR``, ``--data-set KEY=VALUE`` (repeatable) and ``--split``."""
    g = p.add_argument_group("training data (any dataset semcom reads)")
    g.add_argument(
        "--data",
        default=default,
        metavar="NAME|DIR",
        help=f"dataset (tinyworld, folder, coco, coco-mini, karpathy, vqav2, gqa) or a "
        f"folder of images (default {default})",
    )
    g.add_argument(
        "--data-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any data.* key, e.g. annotations=ann/captions_train2017.json images=train2017 "
        "(repeatable; see docs/config.md)",
    )
    g.add_argument(
        "--split", default=split, help=f"dataset split (default {split}; tiny world: train|eval)"
    )


def data_config(args, *, num_images: int | None = None, **fixed):
    """The :class:`~semcom.config.data.DataConfig` the ``--data`` arguments name
    (``num_images`` and ``fixed`` keys set unless ``--data-set`` sets them); a
    :class:`~semcom.errors.ConfigError` naming a wrong key or value."""
    from pathlib import Path

    from semcom.config.core import from_dict, parse_override
    from semcom.config.data import DataConfig
    from semcom.errors import ConfigError

    raw: dict = {"split": args.split, **fixed}
    name = str(args.data)
    if name in _dataset_names():
        raw["dataset"] = name
    elif Path(name).expanduser().is_dir():
        raw["dataset"], raw["path"] = "folder", str(Path(name).expanduser().resolve())
    else:
        raise ConfigError(
            "data.dataset",
            f"--data {name!r} is neither a dataset ({', '.join(_dataset_names())}) nor a folder",
        )
    if num_images is not None:
        raw["num_images"] = num_images
    for item in args.data_set or []:
        key, value = parse_override(item if "=" in item else f"{item}=")
        raw[key.removeprefix("data.")] = value
    if raw.get("dataset") == "tinyworld" and raw.get("split") not in ("train", "eval"):
        raw["split"] = "train"
    return from_dict(DataConfig, raw, "data")


def _dataset_names() -> list[str]:
    from semcom.data import DATASETS

    return list(DATASETS)


def describe(cfg) -> dict:
    """What a trained asset records about its data: the data section and its content id."""
    from semcom.config.core import to_dict
    from semcom.data import fingerprint

    out = {k: v for k, v in to_dict(cfg).items() if v not in ("", None) or k == "num_images"}
    out["fingerprint"] = fingerprint(cfg, ["caption"]) or f"tinyworld-{cfg.world_seed}"
    return out


def training_samples(cfg, task: str = "caption", *, limit: int | None = None) -> list:
    """Samples of ``cfg`` for ``task`` (lazy images; references as the dataset has them)."""
    from semcom.data import load_samples

    samples = load_samples(cfg, task)
    return samples[:limit] if limit else samples


def training_images(
    cfg, *, batch: int = 64, limit: int | None = None, task: str = "caption"
) -> Iterator[list]:
    """Batches (lists) of ``uint8 [H, W, 3]`` training images of ``cfg``: at most
    ``limit`` images, each decoded once and dropped after its batch; unreadable files are
    skipped with a warning naming them."""
    from semcom.data.images import read_batch, release

    samples = training_samples(cfg, task, limit=limit)
    skipped = 0
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        ok, failed = read_batch(chunk)
        for _, err in failed:
            skipped += 1
            log.warning("training data: skipping %s", err)
        if ok:
            yield [s.image for s in ok]
        release(chunk)
    if skipped:
        log.warning("training data: %d unreadable image(s) skipped", skipped)


def image_array(cfg, n: int, size: int | None = None, *, skip: int = 0):
    """``uint8 [n, S, S, 3]``: the first ``n`` readable images of ``cfg`` (after the first
    ``skip``), square-resized to ``size`` (bicubic; ``None``: the tiny world's 96 x 96 as
    rendered, other datasets need a size). The tiny world renders its scenes directly."""
    import numpy as np

    if cfg.dataset == "tinyworld":
        from semcom.world import scenes

        imgs = [s.render()[0] for s in scenes(cfg.world_seed, cfg.split, skip + n)[skip:]]
        if size not in (None, 96):
            imgs = [_square(im, size) for im in imgs]
        return np.stack(imgs)
    if size is None:
        raise ValueError(f"dataset {cfg.dataset}: give the training image size")
    from dataclasses import replace

    out = []
    # ask for more than n: unreadable files are skipped
    want = replace(cfg, num_images=None)
    for batch in training_images(want, batch=32, limit=None):
        for im in batch:
            if skip:
                skip -= 1
                continue
            out.append(_square(im, size))
            if len(out) == n:
                return np.stack(out)
    if not out:
        raise ValueError(f"no readable image in {cfg.dataset} {cfg.path}")
    log.warning("training data: %d images asked, %d available", n, len(out))
    return np.stack(out)


def _square(im, size: int):
    import numpy as np
    from PIL import Image

    if im.shape[0] == im.shape[1] == size:
        return im
    return np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def has_splits(cfg) -> bool:
    """Whether ``cfg`` has a separate eval split (tiny world, coco-mini, Karpathy's file)."""
    return cfg.dataset in ("tinyworld", "coco-mini", "karpathy")


def train_eval_arrays(cfg, n_train: int, n_eval: int, size: int | None = None):
    """(train, eval) image arrays of ``cfg``: the eval images come from its eval split
    when it has one (:func:`has_splits`), else they are held out after the training
    images of the same listing, so the two never overlap."""
    from dataclasses import replace

    if has_splits(cfg):
        train_cfg = replace(cfg, split="train")
        return image_array(train_cfg, n_train, size), image_array(
            replace(cfg, split="eval"), n_eval, size
        )
    return image_array(cfg, n_train, size), image_array(cfg, n_eval, size, skip=n_train)
