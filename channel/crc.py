"""Cyclic redundancy checks of TS 38.212 Sec. 5.1 (numpy, vectorised over blocks).

The CRC of a bit sequence is linear in the bits, so for a fixed length it is a matrix
product over GF(2): ``parity = bits @ G mod 2`` with ``G`` of shape ``[n, L]``, row ``i``
the remainder of ``x^(L + n - 1 - i)`` modulo the generator. It is evaluated a byte at a
time: the bits packed into bytes, each byte's share of the parity read from a table of
the 256 values per byte position (built once per polynomial and length, and cached), the
shares XORed. Parity bits are appended most significant first, the register starts at
zero and there is no final inversion, as in 38.212.

>>> import numpy as np
>>> bits = np.unpackbits(np.frombuffer(b"semcom", np.uint8))[None]
>>> coded = crc_attach(bits, "CRC24A")
>>> coded.shape, bool(crc_check(coded, "CRC24A")[0])
((1, 72), True)
>>> coded[0, 3] ^= 1
>>> bool(crc_check(coded, "CRC24A")[0])
False
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Generator polynomials of TS 38.212 Sec. 5.1, without the leading x^L term.
POLYNOMIALS: dict[str, tuple[int, int]] = {
    # name: (degree L, polynomial bits below x^L)
    "CRC24A": (24, 0x864CFB),  # D^24+D^23+D^18+D^17+D^14+D^11+D^10+D^7+D^6+D^5+D^4+D^3+D+1
    "CRC24B": (24, 0x800063),  # D^24+D^23+D^6+D^5+D+1
    "CRC24C": (24, 0xB2B117),  # D^24+D^23+D^21+D^20+D^17+D^15+D^13+D^12+D^8+D^4+D^2+D+1
    "CRC16": (16, 0x1021),  # D^16+D^12+D^5+1
    "CRC11": (11, 0x621),  # D^11+D^10+D^9+D^5+1
    "CRC6": (6, 0x21),  # D^6+D^5+1
}


def crc_length(name: str) -> int:
    return _poly(name)[0]


def _poly(name: str) -> tuple[int, int]:
    try:
        return POLYNOMIALS[name]
    except KeyError:
        raise ValueError(f"unknown CRC {name!r}; known: {', '.join(POLYNOMIALS)}") from None


def _remainders(name: str, n: int) -> np.ndarray:
    """[n] int64: the parity of bit ``i`` alone, as an integer (most significant first)."""
    L, poly = _poly(name)
    mask = (1 << L) - 1
    out = np.zeros(n, np.int64)
    r = poly  # x^L mod g(x): the remainder contributed by the last message bit
    for i in range(n - 1, -1, -1):
        out[i] = r
        r = ((r << 1) & mask) ^ (poly if r >> (L - 1) & 1 else 0)  # times x, mod g
    return out


@lru_cache(maxsize=256)
def _byte_table(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(table, offsets)``: ``table[offsets[j] + v]`` (uint32) is the parity contributed
    by byte ``j`` of the message packed most significant bit first (``np.packbits``; the
    pad bits of the last byte are zeros and contribute nothing) when it holds ``v``."""
    m = -(-n // 8)
    rem = np.zeros(8 * m, np.uint32)
    rem[:n] = _remainders(name, n)
    rem = rem.reshape(m, 8)
    v = np.arange(256)
    table = np.zeros((m, 256), np.uint32)
    for k in range(8):  # bit k of a byte is its (7 - k)-th least significant
        table[:, ((v >> (7 - k)) & 1).astype(bool)] ^= rem[:, k : k + 1]
    return table.ravel(), np.arange(m, dtype=np.intp) * 256


def crc_parity(bits: np.ndarray, name: str) -> np.ndarray:
    """CRC parity bits.

    :input bits: [..., n], uint8 (0/1).
    :output parity: [..., L], uint8: the CRC of each row, most significant bit first.
    """
    bits = np.asarray(bits)
    n, L = bits.shape[-1], crc_length(name)
    table, offsets = _byte_table(name, n)
    idx = np.packbits(bits.reshape(-1, n), axis=1).astype(np.intp)
    idx += offsets
    par = np.bitwise_xor.reduce(table.take(idx), axis=1)
    out = np.unpackbits(par.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    return out[:, 32 - L :].reshape(*bits.shape[:-1], L)


def crc_attach(bits: np.ndarray, name: str) -> np.ndarray:
    """:input bits: [..., n] uint8. :output: [..., n + L] uint8, the bits then their CRC."""
    bits = np.asarray(bits, dtype=np.uint8)
    return np.concatenate([bits, crc_parity(bits, name)], axis=-1)


def crc_check(coded: np.ndarray, name: str) -> np.ndarray:
    """:input coded: [..., n + L] uint8. :output ok: [...] bool, True where the CRC holds."""
    coded = np.asarray(coded, dtype=np.uint8)
    L = crc_length(name)
    return np.all(crc_parity(coded[..., :-L], name) == coded[..., -L:], axis=-1)
