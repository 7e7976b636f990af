"""Gray QAM of TS 38.211 Sec. 5.1 and exact (APP) demapping, in numpy.

Square QAM in 38.211 is separable: the even-indexed bits ``b0, b2, ...`` set the real
part and the odd-indexed bits ``b1, b3, ...`` the imaginary part, each a Gray-labelled
PAM with amplitude ``(1-2 b0)(2^(m-1) - (1-2 b2)(2^(m-2) - ...))``. Demapping is done per
real dimension, exactly: ``LLR_i = log sum_{a: bit_i=0} exp(-(y-a)^2 / (2 s2)) - log
sum_{a: bit_i=1} ...`` with the per-symbol noise variance ``s2`` of that dimension.

BPSK is real ``1 - 2b`` (38.211 puts it on the diagonal, ``(1+j)(1-2b)/sqrt(2)``: the same
constellation turned by 45 degrees, identical in error rate with circular noise).

All constellations have unit average energy (``Es = 1``). LLRs are ``log P(0)/P(1)``.

>>> import numpy as np
>>> bits = np.array([[0, 0, 1, 1, 0, 1, 1, 0]], np.uint8)
>>> x = modulate(bits, 4)
>>> np.round(x * np.sqrt(10), 6)
array([[ 1.+1.j, -3.+1.j]])
>>> llr = demodulate(x, np.full(x.shape, 1e-3), 4)
>>> (llr < 0).astype(int)
array([[0, 0, 1, 1, 0, 1, 1, 0]])
"""

from __future__ import annotations

from functools import cache

import numpy as np

BITS_PER_SYMBOL = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}


@cache
def pam_levels(m_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(amplitudes [2^m], labels [2^m, m])`` of the Gray PAM of one dimension, unnormalised.

    Label bit ``t`` of a point is the bit ``b_{2t}`` (real) or ``b_{2t+1}`` (imaginary).
    """
    labels = ((np.arange(2**m_dim)[:, None] >> np.arange(m_dim - 1, -1, -1)) & 1).astype(np.uint8)
    amp = np.empty(2**m_dim)
    for idx, lab in enumerate(labels):
        a = 1.0 - 2.0 * lab[m_dim - 1]  # innermost term
        for t in range(m_dim - 2, -1, -1):
            a = (1.0 - 2.0 * lab[t]) * (2 ** (m_dim - 1 - t) - a)
        amp[idx] = a
    return amp, labels


def _scale(qm: int) -> float:
    return {1: 1.0, 2: 1 / np.sqrt(2), 4: 1 / np.sqrt(10), 6: 1 / np.sqrt(42), 8: 1 / np.sqrt(170)}[
        qm
    ]


def modulate(bits: np.ndarray, qm: int) -> np.ndarray:
    """Map bits to symbols.

    :input bits: [..., n] uint8, ``n`` a multiple of ``qm``.
    :input qm: bits per symbol (1, 2, 4, 6, 8).
    :output x: [..., n / qm] complex128 (real for BPSK, stored as complex), ``E|x|^2 = 1``.
    """
    bits = np.asarray(bits, dtype=np.uint8)
    if qm == 1:
        return (1.0 - 2.0 * bits).astype(np.complex128)
    m = qm // 2
    b = bits.reshape(*bits.shape[:-1], -1, qm)
    amp, _ = pam_levels(m)
    weights = 1 << np.arange(m - 1, -1, -1)
    i_idx = (b[..., 0::2].astype(np.int64) * weights).sum(-1)
    q_idx = (b[..., 1::2].astype(np.int64) * weights).sum(-1)
    return (amp[i_idx] + 1j * amp[q_idx]) * _scale(qm)


def _pam_llr(y: np.ndarray, s2: np.ndarray, m: int, scale: float) -> np.ndarray:
    """[..., S] real samples, noise variance per sample -> [..., S, m] exact LLRs.

    ``-(y - a)^2 / (2 s2)`` up to the term in ``y^2`` (which cancels) is
    ``(a y - a^2 / 2) / s2``; each point's likelihood is computed once, relative to the
    best point, and summed per label value. Exponents are floored at -700, so LLR
    magnitudes saturate near 700 (they are clipped far below that downstream).
    """
    amp, labels = pam_levels(m)
    a = amp * scale
    metric = (y[..., None] * a - 0.5 * a * a) / s2[..., None]  # [..., S, P]
    metric -= metric.max(axis=-1, keepdims=True)
    ex = np.exp(np.maximum(metric, -700.0))
    out = np.empty(y.shape + (m,))
    for t in range(m):
        zero = labels[:, t] == 0
        out[..., t] = np.log(ex[..., zero].sum(axis=-1)) - np.log(ex[..., ~zero].sum(axis=-1))
    return out


def demodulate(y: np.ndarray, noise_var: np.ndarray, qm: int) -> np.ndarray:
    """Exact APP demapping of equalised symbols.

    :input y: [..., S] complex, equalised symbols ``x + w``.
    :input noise_var: [..., S] float, complex noise variance ``E|w|^2`` per symbol
        (``N0 / |h|^2`` after perfect-CSI equalisation).
    :input qm: bits per symbol.
    :output llr: [..., S * qm] float32, ``log P(b=0)/P(b=1)``, in the bit order of
        :func:`modulate`.
    """
    y = np.asarray(y)
    s2 = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), y.shape) / 2.0  # per dim
    if qm == 1:
        return (2.0 * y.real / s2).astype(np.float32)
    if qm == 2:  # exact and linear for QPSK
        sc = _scale(2)
        out = np.stack([2.0 * sc * y.real / s2, 2.0 * sc * y.imag / s2], axis=-1)
        return out.reshape(*y.shape[:-1], -1).astype(np.float32)
    m, sc = qm // 2, _scale(qm)
    li = _pam_llr(y.real, s2, m, sc)
    lq = _pam_llr(y.imag, s2, m, sc)
    out = np.empty(y.shape + (qm,))
    out[..., 0::2] = li
    out[..., 1::2] = lq
    return out.reshape(*y.shape[:-1], -1).astype(np.float32)
