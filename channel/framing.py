"""How a description becomes transport blocks, code blocks and channel uses (no torch).

Every link type uses this accounting, so rates are comparable: ``ideal`` and ``erasure``
count the coded bits and channel uses the NR link would spend, ``nr`` and ``nr-table``
spend them.

1. A description of ``D`` bytes is split into ``ceil(8 D / tb_bits)`` transport blocks of
   near-equal whole bytes (payload ``A`` bits each).
2. TB CRC (CRC24A, or per 38.212 CRC16 for ``A <= 3824``), base graph from ``A`` and the
   code rate (38.212 Sec. 7.2.2), code-block segmentation (Sec. 5.2.2: ``C`` blocks of
   ``K'`` bits, CRC24B per block when ``C > 1``; where ``A + L + 24 C`` is not divisible by
   ``C`` the TB is padded with up to ``C - 1`` zero bits, counted as ``pad_bits``).
3. Each code block is rate-matched to ``E = Q_m * ceil(K' / (R * Q_m))`` coded bits (the
   configured rate ``R = K'/E``, rounded to whole symbols), ``E / Q_m`` channel uses.
4. Airtime from the numerology: ``symbols / (N_RB * 12 * symbols_per_slot)`` slots of
   ``1 ms / 2^mu``; latency counts whole slots per HARQ round plus the HARQ RTT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from channel.crc import crc_length
from channel.ldpc import LdpcCode
from semcom.linkmodel.segmentation import segment, split_bytes

__all__ = ["Numerology", "TbPlan", "plan_tb", "rate_matched_length", "split_bytes"]


@dataclass(frozen=True)
class TbPlan:
    """The coding plan of one transport block (all fields derived by :func:`plan_tb`)."""

    payload_bits: int  # A: description bits in this TB
    pad_bits: int  # zero bits appended to A so that the CBs have equal size
    tb_crc: str  # "CRC24A" or "CRC16"
    bg: int  # base graph 1 or 2
    num_cbs: int  # C
    k_prime: int  # K': bits per code block incl. its CRC
    e: int  # coded bits per code block per transmission
    qm: int  # bits per symbol
    code_rate: float  # the configured (nominal) rate

    @property
    def cb_crc(self) -> str | None:
        return "CRC24B" if self.num_cbs > 1 else None

    @property
    def tb_crc_bits(self) -> int:
        return crc_length(self.tb_crc)

    @property
    def coded_bits(self) -> int:
        """Coded bits of one transmission of the TB."""
        return self.num_cbs * self.e

    @property
    def symbols(self) -> int:
        """Channel uses of one transmission of the TB."""
        return self.coded_bits // self.qm

    @property
    def code(self) -> LdpcCode:
        b = self.payload_bits + self.pad_bits + self.tb_crc_bits
        return LdpcCode.build(self.bg, self.k_prime, b)


def rate_matched_length(k_prime: int, code_rate: float, qm: int) -> int:
    """``E = Q_m * ceil(K' / (R * Q_m))``."""
    return qm * math.ceil(round(k_prime / (code_rate * qm), 9))


@lru_cache(maxsize=4096)
def plan_tb(payload_bits: int, code_rate: float, qm: int, tb_crc: str = "crc24a") -> TbPlan:
    """Plan a TB of ``payload_bits`` (``A``) at rate ``code_rate`` with ``qm`` bits/symbol
    (segmentation arithmetic: :func:`semcom.linkmodel.segmentation.segment`).

    >>> p = plan_tb(1000, 0.5, 2)
    >>> (p.tb_crc, p.bg, p.num_cbs, p.k_prime, p.e, p.symbols, p.code.z)
    ('CRC24A', 2, 1, 1024, 2048, 1024, 104)
    >>> p = plan_tb(20000, 0.5, 4)
    >>> (p.bg, p.num_cbs, p.k_prime, p.pad_bits)
    (1, 3, 6699, 1)
    """
    s = segment(int(payload_bits), code_rate, tb_crc)
    e = rate_matched_length(s.k_prime, code_rate, qm)
    return TbPlan(
        int(payload_bits), s.pad_bits, s.tb_crc, s.bg, s.num_cbs, s.k_prime, e, qm, float(code_rate)
    )


@dataclass(frozen=True)
class Numerology:
    """NR numerology: ``mu`` from the subcarrier spacing, slots of ``1 ms / 2^mu``."""

    scs_khz: int
    n_rb: int
    symbols_per_slot: int

    @property
    def slot_s(self) -> float:
        return 1e-3 * 15 / self.scs_khz

    @property
    def re_per_slot(self) -> int:
        """Data resource elements (channel uses) per slot over the whole carrier."""
        return self.n_rb * 12 * self.symbols_per_slot

    def airtime_s(self, symbols: int) -> float:
        """Time on air of ``symbols`` channel uses with the whole carrier."""
        return symbols / self.re_per_slot * self.slot_s

    def slots(self, symbols: int) -> int:
        return -(-symbols // self.re_per_slot)

    @classmethod
    def from_config(cls, cfg) -> Numerology:
        return cls(cfg.scs_khz, cfg.n_rb, cfg.symbols_per_slot)
