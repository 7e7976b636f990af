"""``channel:`` section: the link between edge and cloud (see docs/channel.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from semcom.config.core import check, option

MODULATIONS = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}
FLAT_FADINGS = ("awgn", "rayleigh-block", "rayleigh-fast", "rician-block", "rician-fast")
# 38.901 tapped-delay-line and clustered-delay-line models (link: pusch, or tables of it)
NR_CHANNELS = tuple(f"{k}-{m}" for k in ("tdl", "cdl") for m in "abcde")
TABLE_LINKS = ("nr-table",)
PUSCH_RATE_MIN = 0.2  # Sionna's LDPC5GEncoder: no repetition below the mother code rate

# TS 38.214 Tables 5.1.3.1-1..3: target code rates span 30/1024 .. 948/1024
CODE_RATE_MIN = 30 / 1024
CODE_RATE_MAX = 948 / 1024

# Maximum transmission bandwidth configuration N_RB: TS 38.101-1 Table 5.3.2-1 (FR1: 15,
# 30, 60 kHz) and TS 38.101-2 Table 5.3.2-1 (FR2: 120 kHz).
# {subcarrier spacing kHz: {channel bandwidth MHz: N_RB}}
N_RB = {
    15: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 40: 216, 50: 270},
    30: {
        5: 11,
        10: 24,
        15: 38,
        20: 51,
        25: 65,
        30: 78,
        40: 106,
        50: 133,
        60: 162,
        70: 189,
        80: 217,
        90: 245,
        100: 273,
    },
    60: {
        10: 11,
        15: 18,
        20: 24,
        25: 31,
        30: 38,
        40: 51,
        50: 65,
        60: 79,
        70: 93,
        80: 107,
        90: 121,
        100: 135,
    },
    120: {50: 32, 100: 66, 200: 132, 400: 264},  # FR2
}


@dataclass(frozen=True)
class ChannelConfig:
    link: Literal["ideal", "erasure", "nr", "nr-table", "pusch"] = option(
        "ideal",
        help="ideal (lossless), erasure (each description lost with loss_prob), "
        "nr (exact single-carrier 5G NR link), nr-table (BLER-table abstraction of it) "
        "or pusch (5G NR PUSCH on Sionna: OFDM, DMRS, channel estimation, 38.901 channels)",
    )
    snr_db: float = option(
        10.0,
        help="SNR in dB, of the kind given by snr_type "
        "(average SNR under fading; .inf for no noise)",
    )
    snr_type: Literal["esno", "ebno"] = option(
        "esno",
        help="what snr_db means: Es/N0 (per channel use) or Eb/N0 (per information "
        "bit: Eb/N0 = Es/N0 - 10 log10(code_rate * bits_per_symbol))",
    )
    code_rate: float | str = option(
        0.5,
        help="LDPC code rate K'/E per code block after rate "
        "matching (TS 38.214 range 30/1024 .. 948/1024); a number or a fraction such as "
        "'1/3'. Set from the MCS when mcs is given",
    )
    modulation: Literal["bpsk", "qpsk", "16qam", "64qam", "256qam"] = option(
        "qpsk", help="Gray QAM of TS 38.211 Sec. 5.1. Set from the MCS when mcs is given"
    )
    mcs: int | Literal["auto"] | None = option(
        None,
        help="MCS index of TS 38.214 table mcs_table (sets code_rate and modulation), "
        "'auto' (link adaptation: the MCS from the SNR for bler_target, with an outer "
        "loop on HARQ feedback) or null (code_rate and modulation as given)",
    )
    mcs_table: int = option(
        1, help="TS 38.214 MCS table: 1 (Table 5.1.3.1-1, up to 64-QAM) or 2 (up to 256-QAM)"
    )
    bler_target: float = option(
        0.1, help="mcs: auto: target first-transmission TB error rate of the MCS choice"
    )
    olla_step_db: float = option(
        0.5,
        help="mcs: auto: outer-loop step in dB after a NACK (after an ACK it moves back "
        "by step * bler_target / (1 - bler_target)); 0 turns the outer loop off",
    )
    loss_prob: float = option(0.0, help="erasure link: probability that a description is lost")
    # --- the NR link (nr, nr-table); ideal and erasure use it for rate accounting -------
    fading: Literal[
        "awgn",
        "rayleigh-block",
        "rayleigh-fast",
        "rician-block",
        "rician-fast",
        "tdl-a",
        "tdl-b",
        "tdl-c",
        "tdl-d",
        "tdl-e",
        "cdl-a",
        "cdl-b",
        "cdl-c",
        "cdl-d",
        "cdl-e",
    ] = option(
        "awgn",
        help="channel: AWGN; flat Rayleigh/Rician fading constant per code block and "
        "transmission (-block) or independent per symbol (-fast), perfect CSI (nr, "
        "nr-table); or a 38.901 TDL/CDL model with delay_spread_ns and speed_kmh (pusch, "
        "and nr-table with a table built on pusch)",
    )
    delay_spread_ns: float = option(100.0, help="TDL/CDL: RMS delay spread in ns")
    speed_kmh: float = option(3.0, help="TDL/CDL: UE speed in km/h (Doppler)")
    carrier_ghz: float = option(3.5, help="pusch: carrier frequency in GHz (Doppler)")
    channel_estimation: Literal["perfect", "ls"] = option(
        "perfect",
        help="pusch: perfect CSI, or LS estimates on the DMRS with linear interpolation "
        "(detection is LMMSE either way)",
    )
    pusch_prb: int = option(
        0, help="pusch: PRBs per slot for the PUSCH (0: the whole carrier, n_rb)"
    )
    rician_k_db: float = option(6.0, help="Rician K factor in dB (rician-* fading)")
    tb_bits: int = option(
        3816,
        help="largest transport block payload in bits (multiple of "
        "8); a description is split into near-equal TBs no larger than "
        "this. 3816 + CRC24A fills one base-graph-2 code block",
    )
    tb_crc: Literal["crc24a", "38.212"] = option(
        "crc24a",
        help="transport block CRC: crc24a always, or 38.212 (CRC16 for TBs of at "
        "most 3824 bits, else CRC24A). Code blocks of a segmented TB get CRC24B",
    )
    decoder: Literal["fast", "fixed", "sionna"] = option(
        "fast",
        help="LDPC decoder: fast (layered normalised min-sum, C kernel), fixed (the same "
        "in 8-bit fixed point, SIMD across 32 frames; about 6x faster) or sionna "
        "(Sionna's flooding sum-product)",
    )
    iterations: int = option(20, help="maximum LDPC decoder iterations")
    early_stop: bool = option(True, help="stop decoding a block once all parity checks hold")
    minsum_scale: float = option(
        0.7, help="fast and fixed decoders: normalisation of min-sum messages"
    )
    harq: Literal["none", "ir", "chase"] = option(
        "none",
        help="retransmissions of failed TBs: none, ir (incremental redundancy, "
        "RV 0,2,3,1) or chase (RV 0 again, LLRs added)",
    )
    harq_max_rounds: int = option(4, help="transmissions per TB at most, the first included")
    harq_rtt_slots: int = option(
        4, help="slots from the end of a transmission to its retransmission (latency only)"
    )
    bandwidth_mhz: int = option(20, help="carrier bandwidth in MHz (TS 38.101 tables)")
    scs_khz: int = option(30, help="subcarrier spacing in kHz: 15, 30, 60 or 120")
    symbols_per_slot: int = option(
        14, help="OFDM symbols per slot that carry data (14 = every symbol of a normal-CP slot)"
    )
    deadline_ms: float = option(
        0.0,
        help="per image: a description that completes after this many ms (counted as "
        "deadline_kind says, in send order) is lost as missed; 0 = no deadline",
    )
    deadline_kind: Literal["airtime", "latency"] = option(
        "airtime",
        help="airtime: cumulative time on air of the image's descriptions (retransmissions "
        "included); latency: cumulative slot latency with HARQ round trips, plus the mean "
        "M/D/1 queueing delay at the given load",
    )
    load: float = option(
        0.0,
        help="deadline_kind latency: utilisation of the uplink by other traffic, in [0, 0.95) "
        "(mean M/D/1 wait load * S / (2 (1 - load)) before the image's S of airtime)",
    )
    table: str = option(
        "", help="nr-table: BLER table file (empty: the table shipped in channel/tables/)"
    )

    def __post_init__(self):
        check(not math.isnan(self.snr_db), "snr_db", self.snr_db, "must be a number")
        object.__setattr__(self, "code_rate", _rate(self.code_rate))
        check(self.mcs_table in (1, 2), "mcs_table", self.mcs_table, "must be 1 or 2")
        if isinstance(self.mcs, int):
            from semcom.linkmodel.mcs import TABLES, mcs_entry

            n = len(TABLES[self.mcs_table])
            check(
                0 <= self.mcs < n,
                "mcs",
                self.mcs,
                f"must be in 0..{n - 1} (table {self.mcs_table}) or 'auto'",
            )
            m = mcs_entry(self.mcs_table, self.mcs)
            object.__setattr__(self, "code_rate", m.code_rate)
            object.__setattr__(self, "modulation", m.modulation)
        if self.mcs == "auto":
            check(
                self.snr_type == "esno",
                "snr_type",
                self.snr_type,
                "must be 'esno' with mcs: auto (Eb/N0 depends on the MCS chosen)",
            )
            check(
                self.link in ("nr", "nr-table", "pusch"),
                "mcs",
                self.mcs,
                "'auto' needs an NR link (nr, nr-table or pusch)",
            )
        check(0.0 < self.bler_target < 1.0, "bler_target", self.bler_target, "must be in (0, 1)")
        check(
            0.0 <= self.olla_step_db <= 10.0,
            "olla_step_db",
            self.olla_step_db,
            "must be in [0, 10]",
        )
        check(self.deadline_ms >= 0, "deadline_ms", self.deadline_ms, "must be >= 0 (0: none)")
        check(0.0 <= self.load < 0.95, "load", self.load, "must be in [0, 0.95)")
        check(self.delay_spread_ns >= 0, "delay_spread_ns", self.delay_spread_ns, "must be >= 0")
        check(0 <= self.speed_kmh <= 1000, "speed_kmh", self.speed_kmh, "must be in [0, 1000]")
        check(
            0.4 <= self.carrier_ghz <= 100, "carrier_ghz", self.carrier_ghz, "must be in [0.4, 100]"
        )
        check(
            self.link not in ("nr",) or self.fading in FLAT_FADINGS,
            "fading",
            self.fading,
            f"the single-carrier nr link has {', '.join(FLAT_FADINGS)}; TDL/CDL need link: pusch",
        )
        check(
            self.link != "pusch" or self.fading == "awgn" or self.fading in NR_CHANNELS,
            "fading",
            self.fading,
            f"link: pusch takes awgn or a 38.901 model ({', '.join(NR_CHANNELS)})",
        )
        check(
            self.link != "pusch" or self.harq != "ir",
            "harq",
            self.harq,
            "link: pusch retransmits with Chase combining (Sionna's TB encoder sends "
            "redundancy version 0 only): use none or chase",
        )
        if self.link == "pusch" and self.mcs is None:
            from semcom.linkmodel.mcs import mcs_list

            check(
                any(
                    m.modulation == self.modulation and abs(m.code_rate - self.code_rate) <= 0.005
                    for m in mcs_list(self.mcs_table)
                ),
                "mcs",
                self.mcs,
                f"link: pusch needs an MCS: set channel.mcs (or a modulation and code_rate "
                f"of an MCS of table {self.mcs_table}; {self.modulation} at "
                f"{self.code_rate:.4f} is none)",
            )
        check(
            self.link != "pusch" or self.mcs == "auto" or self.code_rate >= PUSCH_RATE_MIN,
            "mcs",
            self.mcs,
            f"link: pusch needs code rates >= 1/5 (Sionna's LDPC encoder has no repetition "
            f"beyond the mother code; rate {self.code_rate:.4f}); the nr link has them",
        )
        check(
            self.link != "pusch" or self.modulation != "bpsk",
            "modulation",
            self.modulation,
            "PUSCH (without transform precoding) uses qpsk .. 256qam",
        )
        check(
            CODE_RATE_MIN <= self.code_rate <= CODE_RATE_MAX,
            "code_rate",
            self.code_rate,
            f"must be in [30/1024, 948/1024] = [{CODE_RATE_MIN:.4f}, {CODE_RATE_MAX:.4f}] "
            "(TS 38.214)",
        )
        check(0.0 <= self.loss_prob <= 1.0, "loss_prob", self.loss_prob, "must be in [0, 1]")
        check(
            -50.0 <= self.rician_k_db <= 50.0,
            "rician_k_db",
            self.rician_k_db,
            "must be in [-50, 50] dB",
        )
        check(
            8 <= self.tb_bits <= 1_277_992 and self.tb_bits % 8 == 0,
            "tb_bits",
            self.tb_bits,
            "must be a multiple of 8 in [8, 1277992]",
        )
        check(1 <= self.iterations <= 1000, "iterations", self.iterations, "must be in [1, 1000]")
        check(
            0.0 < self.minsum_scale <= 1.0, "minsum_scale", self.minsum_scale, "must be in (0, 1]"
        )
        check(
            1 <= self.harq_max_rounds <= 16,
            "harq_max_rounds",
            self.harq_max_rounds,
            "must be in [1, 16]",
        )
        check(
            0 <= self.harq_rtt_slots <= 1000,
            "harq_rtt_slots",
            self.harq_rtt_slots,
            "must be in [0, 1000]",
        )
        check(self.scs_khz in N_RB, "scs_khz", self.scs_khz, f"must be one of {sorted(N_RB)}")
        allowed = sorted(N_RB[self.scs_khz])
        check(
            self.bandwidth_mhz in allowed,
            "bandwidth_mhz",
            self.bandwidth_mhz,
            f"must be one of {allowed} MHz at {self.scs_khz} kHz (TS 38.101)",
        )
        check(
            1 <= self.symbols_per_slot <= 14,
            "symbols_per_slot",
            self.symbols_per_slot,
            "must be in [1, 14]",
        )
        check(
            0 <= self.pusch_prb <= self.n_rb,
            "pusch_prb",
            self.pusch_prb,
            f"must be in [0, {self.n_rb}] (0: the whole carrier of {self.n_rb} PRBs)",
        )
        if self.link in TABLE_LINKS:  # the table must serve this link: checked on load
            from semcom.errors import ConfigError
            from semcom.linkmodel.bler import BlerTable

            try:
                table = BlerTable.load(self.table or None)
                table.check_covers(self, settings=self.adaptation_settings(table))
            except ConfigError as exc:  # keys relative to this section, as check() gives
                key = exc.key.removeprefix("channel").removeprefix(".") or "table"
                raise ConfigError(key, exc.message) from None

    def adaptation_settings(self, table=None) -> list[tuple[float, str]] | None:
        """mcs: auto: the ``(code_rate, modulation)`` of every MCS of ``mcs_table`` the
        table has (all of them without a table); ``None`` for a fixed setting."""
        if self.mcs != "auto":
            return None
        from semcom.errors import ConfigError
        from semcom.linkmodel.mcs import mcs_list

        out = [
            (m.code_rate, m.modulation)
            for m in mcs_list(self.mcs_table)
            if table is None or table.has(m.code_rate, m.modulation, self.fading_key)
        ]
        if not out:
            raise ConfigError(
                "channel.mcs",
                f"'auto': the BLER table {table.path} has no MCS of table {self.mcs_table} "
                f"for fading {self.fading_key}",
            )
        return out

    @property
    def fading_key(self) -> str:
        """The channel as BLER tables name it: the fading, with delay spread and speed
        for the 38.901 models (e.g. ``tdl-a/100ns/3kmh``)."""
        if self.fading in NR_CHANNELS:
            return f"{self.fading}/{self.delay_spread_ns:g}ns/{self.speed_kmh:g}kmh"
        return self.fading

    @property
    def bits_per_symbol(self) -> int:
        return MODULATIONS[self.modulation]

    @property
    def n_rb(self) -> int:
        """Resource blocks of the carrier (TS 38.101 maximum transmission bandwidth)."""
        return N_RB[self.scs_khz][self.bandwidth_mhz]

    @property
    def rounds(self) -> int:
        """Transmissions per TB at most (1 without HARQ)."""
        return 1 if self.harq == "none" else self.harq_max_rounds

    @property
    def esno_db(self) -> float:
        """Es/N0 in dB (per channel use)."""
        if self.snr_type == "esno":
            return self.snr_db
        return self.snr_db + 10 * math.log10(self.code_rate * self.bits_per_symbol)

    @property
    def ebno_db(self) -> float:
        """Eb/N0 in dB, Eb per information bit: Es/N0 - 10 log10(R * bits_per_symbol)."""
        if self.snr_type == "ebno":
            return self.snr_db
        return self.snr_db - 10 * math.log10(self.code_rate * self.bits_per_symbol)


def _rate(value) -> float:
    """A code rate from a number or a fraction such as ``'1/3'``."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            check(False, "code_rate", value, "must be a number or a fraction such as '1/3'")
    return float(value)
