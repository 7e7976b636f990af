"""``channel:`` section: the link between edge and cloud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option

MODULATIONS = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}


@dataclass(frozen=True)
class ChannelConfig:
    link: Literal["ideal", "erasure", "nr", "nr-table"] = option(
        "ideal", help="ideal (lossless), erasure (each description lost with loss_prob), "
        "nr (exact 5G NR link) or nr-table (BLER-table abstraction of it)")
    snr_db: float = option(10.0, help="SNR in dB, of the kind given by snr_type")
    snr_type: Literal["esno", "ebno"] = option("esno", help="what snr_db means: Es/N0 or Eb/N0")
    code_rate: float = option(0.5, help="LDPC code rate after rate matching, in (0, 1)")
    modulation: Literal["bpsk", "qpsk", "16qam", "64qam", "256qam"] = option("qpsk")
    loss_prob: float = option(0.0, help="erasure link: probability that a description is lost")

    def __post_init__(self):
        check(0.0 < self.code_rate < 1.0, "code_rate", self.code_rate, "must be in (0, 1)")
        check(0.0 <= self.loss_prob <= 1.0, "loss_prob", self.loss_prob, "must be in [0, 1]")

    @property
    def bits_per_symbol(self) -> int:
        return MODULATIONS[self.modulation]
