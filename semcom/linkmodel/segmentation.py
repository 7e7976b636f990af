"""Transport-block segmentation arithmetic of TS 38.212 (Sec. 5.2.2, 6.2.2 / 7.2.2): the
base graph from the payload and the code rate, the number of code blocks and their size
``K'``. Plain integers, used by the link (``channel.framing``) and by the config checks.

>>> segment(1000, 0.5)
Segmentation(tb_crc='CRC24A', bg=2, num_cbs=1, k_prime=1024, pad_bits=0)
>>> segment(20000, 0.5)
Segmentation(tb_crc='CRC24A', bg=1, num_cbs=3, k_prime=6699, pad_bits=1)
"""

from __future__ import annotations

import math
from typing import NamedTuple

K_CB = {1: 8448, 2: 3840}  # maximum code block size (5.2.2)
K_MIN = 12  # smallest K' with K_b = 6, Z = 2
CRC_BITS = {"CRC24A": 24, "CRC16": 16}


def select_base_graph(payload_bits: int, code_rate: float) -> int:
    """Base graph of 38.212 Sec. 7.2.2 from the transport block size ``A`` and rate ``R``.

    >>> select_base_graph(1000, 0.5), select_base_graph(1000, 0.75), select_base_graph(200, 0.9)
    (2, 1, 2)
    """
    A, R = payload_bits, code_rate
    if A <= 292 or (A <= 3824 and R <= 0.67) or R <= 0.25:
        return 2
    return 1


def tb_crc_name(payload_bits: int, tb_crc: str = "crc24a") -> str:
    if tb_crc == "crc24a":
        return "CRC24A"
    if tb_crc == "38.212":
        return "CRC16" if payload_bits <= 3824 else "CRC24A"
    raise ValueError(f"tb_crc must be 'crc24a' or '38.212', got {tb_crc!r}")


class Segmentation(NamedTuple):
    tb_crc: str
    bg: int
    num_cbs: int
    k_prime: int
    pad_bits: int


def segment(payload_bits: int, code_rate: float, tb_crc: str = "crc24a") -> Segmentation:
    """TB CRC, base graph, ``C`` code blocks of ``K'`` bits (CRC24B included when
    ``C > 1``) and the zero padding that makes the blocks equal (up to ``C - 1`` bits)."""
    A = int(payload_bits)
    if A < 0:
        raise ValueError(f"payload_bits must be >= 0, got {A}")
    crc = tb_crc_name(A, tb_crc)
    bg = select_base_graph(A, code_rate)
    k_cb = K_CB[bg]
    B = A + CRC_BITS[crc]
    pad = 0
    if B <= k_cb:
        C, k_prime = 1, B
        if k_prime < K_MIN:  # tiny TB: pad to the smallest code block
            pad = K_MIN - k_prime
            k_prime = K_MIN
    else:
        C = math.ceil(B / (k_cb - 24))
        pad = (-(B + 24 * C)) % C
        k_prime = (B + pad + 24 * C) // C
    return Segmentation(crc, bg, C, k_prime, pad)


def split_bytes(n_bytes: int, tb_bits: int) -> list[int]:
    """Bytes per transport block: ``ceil(8 n / tb_bits)`` near-equal parts (none if empty).

    >>> split_bytes(1000, 3816), split_bytes(10, 3816), split_bytes(0, 3816)
    ([334, 333, 333], [10], [])
    """
    if n_bytes <= 0:
        return []
    per = tb_bits // 8
    n_tb = -(-n_bytes // per)
    base, extra = divmod(n_bytes, n_tb)
    return [base + (1 if i < extra else 0) for i in range(n_tb)]
