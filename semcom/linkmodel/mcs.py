"""MCS index tables of TS 38.214 (PUSCH without transform precoding, Sec. 6.1.4.1, which
uses the PDSCH Tables 5.1.3.1-1 and 5.1.3.1-2).

Written out here (not read from Sionna) so that the config can resolve ``channel.mcs``
without importing torch; ``tests/test_channel_mcs.py`` checks every entry against
Sionna's ``sionna.phy.nr.utils.decode_mcs_index``.

>>> mcs_entry(1, 9)
Mcs(table=1, index=9, qm=2, rate_x1024=679.0)
>>> mcs_entry(2, 27).modulation, round(mcs_entry(2, 27).code_rate, 4)
('256qam', 0.9258)
"""

from __future__ import annotations

from dataclasses import dataclass

QM_NAME = {1: "bpsk", 2: "qpsk", 4: "16qam", 6: "64qam", 8: "256qam"}

# (Q_m, target code rate x 1024) per MCS index
TABLES: dict[int, tuple[tuple[int, float], ...]] = {
    1: (
        (2, 120),
        (2, 157),
        (2, 193),
        (2, 251),
        (2, 308),
        (2, 379),
        (2, 449),
        (2, 526),
        (2, 602),
        (2, 679),
        (4, 340),
        (4, 378),
        (4, 434),
        (4, 490),
        (4, 553),
        (4, 616),
        (4, 658),
        (6, 438),
        (6, 466),
        (6, 517),
        (6, 567),
        (6, 616),
        (6, 666),
        (6, 719),
        (6, 772),
        (6, 822),
        (6, 873),
        (6, 910),
        (6, 948),
    ),  # fmt: skip
    2: (
        (2, 120),
        (2, 193),
        (2, 308),
        (2, 449),
        (2, 602),
        (4, 378),
        (4, 434),
        (4, 490),
        (4, 553),
        (4, 616),
        (4, 658),
        (6, 466),
        (6, 517),
        (6, 567),
        (6, 616),
        (6, 666),
        (6, 719),
        (6, 772),
        (6, 822),
        (6, 873),
        (8, 682.5),
        (8, 711),
        (8, 754),
        (8, 797),
        (8, 841),
        (8, 885),
        (8, 916.5),
        (8, 948),
    ),  # fmt: skip
}


@dataclass(frozen=True)
class Mcs:
    table: int
    index: int
    qm: int
    rate_x1024: float

    @property
    def code_rate(self) -> float:
        return self.rate_x1024 / 1024

    @property
    def modulation(self) -> str:
        return QM_NAME[self.qm]

    @property
    def spectral_efficiency(self) -> float:
        """Information bits per channel use, ``R * Q_m``."""
        return self.code_rate * self.qm


def mcs_entry(table: int, index: int) -> Mcs:
    """The MCS ``index`` of 38.214 table ``table`` (1: up to 64-QAM, 2: up to 256-QAM)."""
    if table not in TABLES:
        raise ValueError(f"MCS table {table!r}: use 1 or 2 (TS 38.214 Table 5.1.3.1-1/-2)")
    rows = TABLES[table]
    if not 0 <= index < len(rows):
        raise ValueError(f"MCS index {index} not in table {table} (0..{len(rows) - 1})")
    qm, r = rows[index]
    return Mcs(table, index, qm, float(r))


def mcs_list(table: int) -> list[Mcs]:
    """Every MCS of ``table``, in index order (non-decreasing spectral efficiency)."""
    return [mcs_entry(table, i) for i in range(len(TABLES[table]))]


def all_settings(tables=(1, 2)) -> list[tuple[float, str]]:
    """The distinct ``(code_rate, modulation)`` pairs of the given tables, sorted."""
    out = {(m.code_rate, m.qm) for t in tables for m in mcs_list(t)}
    return [(r, QM_NAME[q]) for r, q in sorted(out, key=lambda x: (x[0] * x[1], x[1]))]
