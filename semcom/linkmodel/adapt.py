"""Link adaptation: the MCS from the SNR for a target BLER (CQI-style, on a BLER table),
corrected by an outer loop on HARQ feedback (OLLA).

The inner loop is what a CQI report and the scheduler's table do: for the reported SNR,
take the MCS of the highest spectral efficiency whose first-transmission TB error rate
(from the BLER table, for the TB's code blocks) is at most ``bler_target``; if none is,
the lowest. The outer loop corrects the table's optimism or pessimism for the channel
actually seen (fading, channel estimation, a table built on another channel): the SNR
used for the choice is the reported one minus ``offset_db``, which rises by ``step`` after
a NACK and falls by ``step * t / (1 - t)`` after an ACK, so that in steady state the
first-transmission BLER is the target ``t``.

>>> import math
>>> olla = Olla(step_db=0.5, bler_target=0.1)
>>> olla.update(False); olla.offset_db
0.5
>>> olla.update(True); round(olla.offset_db, 4)
0.4444
"""

from __future__ import annotations

from dataclasses import dataclass

from semcom.errors import ConfigError
from semcom.linkmodel.mcs import Mcs, mcs_list
from semcom.linkmodel.segmentation import segment

OFFSET_LIMIT_DB = 20.0


@dataclass
class Olla:
    """Outer-loop link adaptation state (one per link user, here: per transmit call)."""

    step_db: float = 0.5
    bler_target: float = 0.1
    offset_db: float = 0.0

    def update(self, ack: bool) -> None:
        if ack:
            self.offset_db -= self.step_db * self.bler_target / (1 - self.bler_target)
        else:
            self.offset_db += self.step_db
        self.offset_db = max(-OFFSET_LIMIT_DB, min(OFFSET_LIMIT_DB, self.offset_db))


class McsSelector:
    """Inner loop: the MCS of ``candidates`` for a TB of ``payload_bits`` at an SNR.

    :param table: a :class:`semcom.linkmodel.bler.BlerTable`.
    :param cfg: the channel config (fading, tb_crc, bler_target, mcs_table).
    :param candidates: the MCS to choose from (default: those of ``cfg.mcs_table`` the
        table has).
    """

    def __init__(self, table, cfg, candidates: list[Mcs] | None = None):
        self.table, self.cfg = table, cfg
        if candidates is None:
            have = set(cfg.adaptation_settings(table) or [])
            candidates = [m for m in mcs_list(cfg.mcs_table) if (m.code_rate, m.modulation) in have]
        self.candidates = sorted(candidates, key=lambda m: (m.spectral_efficiency, m.index))
        self._memo: dict[tuple[int, float], Mcs] = {}

    def tb_bler(self, m: Mcs, payload_bits: int, esno_db: float) -> float:
        """First-transmission error rate of a TB of ``payload_bits`` at ``m``."""
        s = segment(payload_bits, m.code_rate, self.cfg.tb_crc)
        p = self.table.fail_probs(
            s.k_prime, m.code_rate, m.modulation, self.cfg.fading_key, esno_db, "none", 1
        )[0]
        return 1.0 - (1.0 - p) ** s.num_cbs

    def choose(self, payload_bits: int, esno_db: float) -> Mcs:
        key = (payload_bits, round(esno_db, 3))
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        best = self.candidates[0]
        for m in self.candidates:
            try:
                p = self.tb_bler(m, payload_bits, key[1])
            except ConfigError:  # below the curve's range: this MCS fails there
                continue
            if p <= self.cfg.bler_target:
                best = m
        if len(self._memo) > 50_000:
            self._memo.clear()
        self._memo[key] = best
        return best
