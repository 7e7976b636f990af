"""Concealment of tokens lost with their descriptions.

The cloud knows which slots were kept (union-mode side info) and which arrived; the
difference was lost. Modes:

- ``drop``   - the lost tokens are left out (the model sees fewer tokens);
- ``zero``   - each lost token becomes a zero vector;
- ``mean``   - each lost token becomes the token mean (of the codebook file; without
  one, the mean of the tokens received for this sample);
- ``interp`` - a lost patch token becomes the mean of the received patch tokens nearest
  to it on the grid (its received 4- or 8-neighbours when it has any; else the received
  tokens at the smallest Manhattan (4) or Chebyshev (8) distance, ties averaged). Kept
  tokens are sparse at low budgets, so the nearest ring is often further out. Without
  any received patch token, the mean is used. Lost position-less tokens (extras) have
  no neighbours and are dropped.

Output order is slot order: patches in raster order, then extras.

>>> import numpy as np
>>> s, t, n = conceal_tokens(np.array([0, 1, 2]), np.array([0, 2]), np.array([[0.], [2.]]),
...                          grid=(1, 3), mode="interp")
>>> s.tolist(), t.ravel().tolist(), n
([0, 1, 2], [0.0, 1.0, 2.0], 1)
"""

from __future__ import annotations

import numpy as np

MODES = ("drop", "zero", "mean", "interp")


def conceal_tokens(
    kept_slots: np.ndarray,
    got_slots: np.ndarray,
    got_tokens: np.ndarray,
    *,
    grid: tuple[int, int],
    mode: str = "drop",
    mean: np.ndarray | None = None,
    neighbours: int = 8,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fill the lost slots of ``kept_slots`` (sorted) given what arrived.

    ``got_slots int64 [n]`` (sorted, a subset of ``kept_slots``), ``got_tokens float32
    [n, D]``. Returns ``(slots int64 [m], tokens float32 [m, D], concealed)``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown conceal mode {mode!r}; use one of {MODES}")
    got_slots = np.asarray(got_slots, np.int64)
    lost = np.setdiff1d(np.asarray(kept_slots, np.int64), got_slots)
    dim = got_tokens.shape[1]
    if mode == "drop" or len(lost) == 0:
        return got_slots, got_tokens, 0
    P = grid[0] * grid[1]
    if mean is None:
        mean = got_tokens.mean(0) if len(got_tokens) else np.zeros(dim, np.float32)
    mean = np.asarray(mean, np.float32)
    if mode == "zero":
        fill = np.zeros((len(lost), dim), np.float32)
    elif mode == "mean":
        fill = np.repeat(mean[None, :], len(lost), 0)
    else:
        lost = lost[lost < P]
        fill = _interpolate(got_slots, got_tokens, lost, grid, mean, neighbours)
    slots = np.concatenate([got_slots, lost])
    tokens = np.concatenate([got_tokens, fill], 0).astype(np.float32)
    order = np.argsort(slots, kind="stable")
    return slots[order], tokens[order], len(lost)


def _interpolate(got_slots, got_tokens, lost, grid, mean, neighbours) -> np.ndarray:
    """Each lost patch: the mean of the received patches nearest to it on the grid."""
    gh, gw = grid
    P = gh * gw
    dim = got_tokens.shape[1]
    patch = got_slots < P
    src, vals = got_slots[patch], got_tokens[patch]
    if len(lost) == 0:
        return np.zeros((0, dim), np.float32)
    if len(src) == 0:
        return np.repeat(np.asarray(mean, np.float32)[None, :], len(lost), 0)
    ly, lx = np.divmod(np.asarray(lost, np.int64), gw)
    sy, sx = np.divmod(src, gw)
    dy = np.abs(ly[:, None] - sy[None, :])
    dx = np.abs(lx[:, None] - sx[None, :])
    dist = dy + dx if neighbours == 4 else np.maximum(dy, dx)  # [lost, received]
    near = dist == dist.min(1, keepdims=True)
    return ((near[:, :, None] * vals[None]).sum(1) / near.sum(1, keepdims=True)).astype(np.float32)
