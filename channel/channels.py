"""Flat channels with perfect-CSI equalisation (numpy).

``y = h x + w``, ``w ~ CN(0, N0)``, ``E|x|^2 = 1`` so ``Es/N0 = 1/N0`` (average, with
``E|h|^2 = 1``). The receiver knows ``h`` and equalises, ``z = y / h``, leaving noise of
variance ``N0 / |h|^2`` per symbol, which the demapper uses.

- ``awgn``: ``h = 1``.
- ``rayleigh-block`` / ``rayleigh-fast``: ``h ~ CN(0, 1)``, one value per row of ``x``
  (a code block's transmission) or one per symbol.
- ``rician-block`` / ``rician-fast``: ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1)``.

:func:`awgn_llrs` is the AWGN fast path of the exact link: bits straight to LLRs in
float32 over the real dimensions (no complex symbols), the same distribution as
``demodulate(transmit(modulate(bits)))`` (tests/test_channel_link.py compares them).
"""

from __future__ import annotations

import numpy as np

FADINGS = ("awgn", "rayleigh-block", "rayleigh-fast", "rician-block", "rician-fast")
_NV_FLOOR = 1e-30  # noise variance floor (noiseless links)


def _cn(rng: np.random.Generator, shape) -> np.ndarray:
    g = rng.standard_normal((*shape, 2))
    return (g[..., 0] + 1j * g[..., 1]) * np.sqrt(0.5)


def transmit(
    x: np.ndarray, n0: float, fading: str, rng: np.random.Generator, *, rician_k_db: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pass symbols through the channel and equalise.

    :input x: [B, S] complex symbols (row = one code block's transmission).
    :input n0: noise power spectral density (``1 / (Es/N0)``), 0 for no noise.
    :input fading: one of :data:`FADINGS`.
    :input rng: the random generator (fading first, then noise, drawn in that order).
    :output z: [B, S] complex128 equalised symbols.
    :output noise_var: [B, S] float64 noise variance of each equalised symbol.
    """
    if fading not in FADINGS:
        raise ValueError(f"unknown fading {fading!r}; use one of {', '.join(FADINGS)}")
    x = np.asarray(x)
    if fading == "awgn":
        h = None
    else:
        shape = (x.shape[0], 1) if fading.endswith("-block") else x.shape
        h = _cn(rng, shape)
        if fading.startswith("rician"):
            k = 10 ** (rician_k_db / 10)
            h = np.sqrt(k / (k + 1)) + np.sqrt(1 / (k + 1)) * h
    w = _cn(rng, x.shape) * np.sqrt(n0) if n0 > 0 else 0.0
    if h is None:
        return x + w, np.full(x.shape, max(n0, _NV_FLOOR))
    y = h * x + w
    g = np.abs(h) ** 2
    return y / h, np.broadcast_to(np.maximum(n0 / g, _NV_FLOOR), x.shape)


def awgn_llrs(bits: np.ndarray, qm: int, n0: float, rng: np.random.Generator) -> np.ndarray:
    """[B, E] bits -> [B, E] float32 exact LLRs after AWGN of ``N0 = n0`` (``Es = 1``).

    BPSK and QPSK: ``LLR = 4 a^2 (1 - 2b) / N0 + 4 a sqrt(N0 / 2) n / N0`` with
    ``n ~ N(0, 1)`` per bit (``a = 1``, ``1/sqrt(2)``); higher orders: Gray PAM per real
    dimension plus noise of variance ``N0 / 2``, exact APP demapping per dimension.
    """
    from channel.modulation import _pam_llr, _scale, pam_levels

    bits = np.asarray(bits, np.uint8)
    if n0 <= 0:
        return np.where(bits == 0, np.float32(1e4), np.float32(-1e4))
    if qm <= 2:
        a = 1.0 if qm == 1 else _scale(2)
        c1, c2 = np.float32(4 * a * a / n0), np.float32(4 * a * np.sqrt(n0 / 2) / n0)
        n = rng.standard_normal(bits.shape, dtype=np.float32)
        n *= c2  # in place: the same values as c1 * (1 - 2 b) + c2 * n, fewer passes
        s = bits.astype(np.float32)
        s *= -2 * c1
        s += c1
        n += s
        return n
    m, sc = qm // 2, _scale(qm)
    b = bits.reshape(*bits.shape[:-1], -1, qm)  # [B, S, qm]: I bits at 0::2, Q at 1::2
    amp, _ = pam_levels(m)
    weights = 1 << np.arange(m - 1, -1, -1)
    out = np.empty(b.shape, np.float32)
    for part in (0, 1):  # the I and the Q dimension, as modulation.modulate maps them
        y = amp[(b[..., part::2].astype(np.int64) * weights).sum(-1)] * sc
        y += rng.standard_normal(y.shape) * np.sqrt(n0 / 2)
        out[..., part::2] = _pam_llr(y, np.full(y.shape, n0 / 2), m, sc)
    return out.reshape(bits.shape)
