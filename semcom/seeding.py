"""One seed feeds every RNG.

Two tools:
- :func:`seed_everything` seeds Python, NumPy, torch and Sionna globally (for training
  and for libraries that draw from global state);
- :func:`rng` derives an independent, reproducible :class:`numpy.random.Generator` from
  the run seed and a few keys (e.g. ``rng(seed, "link", image_id, index)``). Drawing per
  sample from derived streams makes results independent of order, batching, worker
  count and process: the in-process run, a sweep on N workers and the daemons see the
  same random numbers for the same sample.
"""

from __future__ import annotations

import hashlib
import random
import sys

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and keys, stable across processes and platforms."""
    text = "\x1f".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))


def seed_everything(seed: int) -> None:
    """Seed the global RNGs of Python, NumPy, and of torch/Sionna if they are importable."""
    random.seed(seed)
    np.random.seed(derive_seed(seed, "numpy") % (2**32))
    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.manual_seed(derive_seed(seed, "torch"))
    if "sionna" in sys.modules:
        try:
            from sionna.phy import config as sionna_config

            sionna_config.seed = derive_seed(seed, "sionna") % (2**31)
        except Exception:  # pragma: no cover - sionna API drift must not break seeding
            pass


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
