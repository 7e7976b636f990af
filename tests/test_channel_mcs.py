"""MCS tables of TS 38.214 against Sionna, code rates in the config (fractions, MCS,
nearest table rate), and every link setting checked against its table when it loads."""

import numpy as np
import pytest

from semcom.config import load_config
from semcom.config.channel import ChannelConfig
from semcom.errors import ConfigError
from semcom.linkmodel.bler import RATE_TOL
from semcom.linkmodel.mcs import TABLES, all_settings, mcs_entry
from semcom.linkmodel.segmentation import segment


def test_mcs_tables_equal_sionnas_decode_mcs_index():
    from sionna.phy.nr.utils import decode_mcs_index

    for t, rows in TABLES.items():
        for i, (qm, r) in enumerate(rows):
            q, rate = decode_mcs_index(i, t, is_pusch=True)
            assert int(q) == qm and float(rate) * 1024 == pytest.approx(r, abs=1e-3), (t, i)
    assert len(all_settings()) == 37  # table 1's 29 and table 2's eight 256-QAM entries
    with pytest.raises(ValueError):
        mcs_entry(1, 29)


def test_segmentation_equals_the_links_plan():
    from channel.framing import plan_tb

    rng = np.random.default_rng(0)
    for a in [*rng.integers(8, 30000, 200), 3816, 3824, 3825, 8424, 292]:
        for r in (0.2, 0.5, 0.67, 0.9):
            s, p = segment(int(a), r, "38.212"), plan_tb(int(a), r, 2, "38.212")
            assert (s.bg, s.num_cbs, s.k_prime, s.pad_bits, s.tb_crc) == (
                p.bg,
                p.num_cbs,
                p.k_prime,
                p.pad_bits,
                p.tb_crc,
            )


def test_code_rate_takes_fractions_and_the_mcs_sets_rate_and_modulation():
    assert ChannelConfig(code_rate="1/3").code_rate == pytest.approx(1 / 3)
    c = load_config(None, ["channel.code_rate=2/3"]).channel
    assert c.code_rate == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="fraction"):
        ChannelConfig(code_rate="one half")
    c = ChannelConfig(mcs=27, mcs_table=2)
    assert (c.modulation, c.code_rate) == ("256qam", 948 / 1024)
    c = load_config(None, ["channel.mcs=4", "channel.code_rate=0.9"]).channel
    assert (c.modulation, c.code_rate) == ("qpsk", 308 / 1024)  # the MCS wins
    with pytest.raises(ConfigError) as e:
        load_config(None, ["channel.mcs=29"])
    assert e.value.key == "channel.mcs" and "0..28" in str(e.value)
    with pytest.raises(ConfigError):
        load_config(None, ["channel.mcs=best"])
    with pytest.raises(ConfigError, match="esno"):
        ChannelConfig(link="nr-table", mcs="auto", snr_type="ebno")


def test_table_settings_are_checked_when_the_config_loads():
    # a rate near a table rate matches it; one between the rates names what there is
    near = 0.5 + RATE_TOL / 2
    assert load_config(None, ["channel.link=nr-table", f"channel.code_rate={near}"])
    with pytest.raises(ConfigError) as e:
        load_config(None, ["channel.link=nr-table", "channel.code_rate=0.33"])
    assert e.value.key == "channel.code_rate" and "it has code rates" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["channel.link=nr-table", "channel.tb_bits=8000"])
    assert e.value.key == "channel.tb_bits"
    with pytest.raises(ConfigError) as e:
        load_config(None, ["channel.link=nr-table", "channel.harq=ir", "channel.harq_max_rounds=6"])
    assert e.value.key == "channel.harq_max_rounds"
    # the default settings work on the shipped tables
    assert load_config(None, ["channel.link=nr-table"]).channel.tb_bits == 3816


def test_every_mcs_is_served_by_the_shipped_tables():
    from semcom.config.channel import PUSCH_RATE_MIN
    from semcom.linkmodel.mcs import mcs_list

    for table in (1, 2):
        for m in mcs_list(table):
            for snr in (-10.0, 5.0, 30.0):
                ChannelConfig(link="nr-table", mcs=m.index, mcs_table=table, snr_db=snr)
            if m.code_rate < PUSCH_RATE_MIN:
                continue
            for fading in ("tdl-a", "tdl-c"):
                for speed in (3.0, 60.0):
                    c = ChannelConfig(
                        link="nr-table",
                        mcs=m.index,
                        mcs_table=table,
                        fading=fading,
                        speed_kmh=speed,
                        snr_db=20.0,
                    )
                    assert c.fading_key == f"{fading}/100ns/{speed:g}kmh"
    with pytest.raises(ConfigError, match="30kmh"):
        ChannelConfig(link="nr-table", mcs=9, fading="tdl-a", speed_kmh=30.0)
