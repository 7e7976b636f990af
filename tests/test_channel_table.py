"""BLER tables: the shipped table, lookups, out-of-grid errors, and the abstracted link
against the exact link."""

import dataclasses
import json
import math

import numpy as np
import pytest

from channel.link import build_link
from channel.table_link import NrTableLink
from channel.tables import DEFAULT_GRID, SCHEMA, BlerTable, build_table
from semcom.config.channel import ChannelConfig
from semcom.errors import ConfigError
from semcom.types import Description, Erasure


@pytest.fixture(scope="module")
def table():
    return BlerTable.load()


def descs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Description(f"i{j}", 0, 1, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), (96, 96))
        for j in range(n)
    ]


def test_shipped_table_covers_the_default_grid(table):
    d = table.data
    assert d["schema"] == SCHEMA and d["config"]["decoder"] == "fast"
    for rate in DEFAULT_GRID["code_rate"]:
        for mod in DEFAULT_GRID["modulation"]:
            for fading in DEFAULT_GRID["fading"]:
                ks = table.k_primes(rate, mod, fading)
                assert ks == [a + 24 for a in DEFAULT_GRID["payload_bits"]]
                cfg = ChannelConfig(
                    link="nr-table", code_rate=rate, modulation=mod, fading=fading, harq="ir"
                )
                table.check_covers(cfg)
    assert table.max_rounds("ir") == 4 and table.max_rounds("chase") == 4


def test_lookup_reproduces_grid_points_and_is_monotone(table):
    e = next(
        x
        for x in table.data["entries"]
        if x["payload_bits"] == 1024
        and x["modulation"] == "qpsk"
        and x["fading"] == "awgn"
        and x["code_rate"] == 0.5
    )
    bler = np.minimum.accumulate(np.asarray(e["fail"]["none"][0], float) / e["blocks"])
    for s, p in zip(e["esno_db"], bler):
        assert table.cb_fail_prob(e["k_prime"], 0.5, "qpsk", "awgn", s) == pytest.approx(p)
    grid = np.arange(e["esno_db"][0], e["esno_db"][-1] + 3, 0.05)
    for mode, rounds in (("none", 1), ("ir", 4), ("chase", 4)):
        prev = [1.0] * rounds
        for s in grid:
            p = [
                table.cb_fail_prob(e["k_prime"], 0.5, "qpsk", "awgn", s, mode, r)
                for r in range(1, rounds + 1)
            ]
            assert all(a <= b + 1e-12 for a, b in zip(p, prev))  # down in SNR
            assert all(a >= b - 1e-12 for a, b in zip(p, p[1:]))  # down in rounds
            prev = p


def test_block_size_interpolation_lies_between_neighbours(table):
    ks = table.k_primes(0.5, "qpsk", "awgn")
    lo, hi = ks[1], ks[2]
    mid = int(math.sqrt(lo * hi))
    for s in np.arange(-1, 4, 0.25):
        a = table.cb_fail_prob(lo, 0.5, "qpsk", "awgn", s)
        b = table.cb_fail_prob(hi, 0.5, "qpsk", "awgn", s)
        m = table.cb_fail_prob(mid, 0.5, "qpsk", "awgn", s)
        assert min(a, b) - 1e-12 <= m <= max(a, b) + 1e-12


def test_out_of_grid_requests_are_clear_errors(table):
    with pytest.raises(ConfigError) as e:
        build_link(ChannelConfig(link="nr-table", code_rate=0.6))
    assert "code_rate=0.6" in str(e.value) and "0.5" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_link(ChannelConfig(link="nr-table", modulation="256qam"))
    assert "256qam" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_link(ChannelConfig(link="nr-table", tb_bits=8000))
    assert e.value.key == "tb_bits"  # section-relative, as every check of the section
    with pytest.raises(ConfigError) as e:
        build_link(ChannelConfig(link="nr-table", iterations=50))
    assert e.value.key == "iterations" and "20" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_link(ChannelConfig(link="nr-table", harq="ir", harq_max_rounds=6))
    assert e.value.key == "harq_max_rounds"
    # far below the shipped curves: their first points fail (almost) always, so the
    # lookup holds that value (every round of every mode)
    link = build_link(ChannelConfig(link="nr-table", snr_db=-40, harq="ir"))
    assert link.fail_probs(1048)[-1] >= 0.98
    # a curve whose first point is not (almost) certain failure cannot be extended down
    small = {
        "schema": SCHEMA,
        "config": {},
        "entries": [
            {
                "payload_bits": 1024,
                "k_prime": 1048,
                "code_rate": 0.5,
                "modulation": "qpsk",
                "fading": "awgn",
                "esno_db": [0.0, 1.0],
                "blocks": [100, 100],
                "fail": {"none": [[50, 10]]},
            }
        ],
    }
    t = BlerTable(small, "small.json")
    assert t.cb_fail_prob(1048, 0.5, "qpsk", "awgn", 0.5) == pytest.approx(math.sqrt(0.5 * 0.1))
    with pytest.raises(ConfigError) as e:
        t.cb_fail_prob(1048, 0.5, "qpsk", "awgn", -0.5)
    assert e.value.key == "channel.snr_db" and "nearest grid points" in str(e.value)


# (modulation, fading, Es/N0, harq, description bytes): grid block sizes, in the waterfall
# (BLER after the last round ~0.05..0.9). IR with 4 rounds at rate 1/2 reaches the mother
# code's rate 1/5 with 4x the energy: its waterfall lies ~6 dB below round 1's.
POINTS = [
    ("qpsk", "awgn", 0.75, "none", 128),
    ("qpsk", "awgn", 1.0, "none", 128),
    ("16qam", "awgn", 5.5, "none", 32),
    ("qpsk", "rayleigh-block", 6.0, "none", 128),
    ("qpsk", "awgn", -6.0, "ir", 128),
]


@pytest.mark.parametrize("mod,fading,snr,harq,size", POINTS)
def test_table_link_matches_exact_link(table, mod, fading, snr, harq, size):
    """Erasure rate of the exact link vs the table's prediction, within binomial
    confidence (3.5 sigma of the exact run plus 3 sigma of the table's own estimate)."""
    cfg = ChannelConfig(
        link="nr",
        snr_db=snr,
        snr_type="esno",
        modulation=mod,
        fading=fading,
        code_rate=0.5,
        harq=harq,
    )
    n = 300
    d = descs(n, size, seed=11)
    exact = build_link(cfg).transmit(d, np.random.default_rng(3))
    lost = sum(isinstance(r, Erasure) for r in exact.received)
    tlink = NrTableLink(dataclasses.replace(cfg, link="nr-table"), table)
    k_prime = tlink.plan(8 * size).k_prime
    p = tlink.fail_probs(k_prime)[-1]
    e = next(
        x
        for x in table.data["entries"]
        if x["k_prime"] == k_prime
        and x["modulation"] == mod
        and x["fading"] == fading
        and x["code_rate"] == 0.5
    )
    i = int(np.argmin(np.abs(np.asarray(e["esno_db"]) - snr)))
    tol = 3.5 * math.sqrt(n * p * (1 - p)) + 3 * n * math.sqrt(p * (1 - p) / e["blocks"][i]) + 1
    assert 0.03 < p < 0.97, p  # a point in the waterfall, where the test has power
    assert abs(lost - n * p) <= tol, (lost, n * p, tol)
    # the abstracted link draws at that rate, with the same ledger
    many = descs(3000, size, seed=12)
    res = tlink.transmit(many, np.random.default_rng(4))
    drawn = sum(isinstance(r, Erasure) for r in res.received) / 3000
    assert abs(drawn - p) <= 4 * math.sqrt(p * (1 - p) / 3000)
    if harq == "none":
        assert [s.coded_bits for s in res.stats[:n]] == [s.coded_bits for s in exact.stats]


def test_build_small_table_and_reload(tmp_path):
    grid = {
        "payload_bits": [64],
        "code_rate": [0.5],
        "modulation": ["qpsk"],
        "fading": ["awgn"],
        "harq": ["none"],
    }
    out = tmp_path / "t.json"
    built = build_table(grid, out=out, max_blocks=300, target_block_errors=30, snr_step=0.5)
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA and data["grid"]["payload_bits"] == [64]
    assert data["config"]["max_blocks"] == 300 and built["build_s"] >= 0
    t = BlerTable.load(out)
    e = data["entries"][0]
    assert e["k_prime"] == 88 and e["fail"]["none"][0][0] / e["blocks"][0] >= 0.98
    assert t.cb_fail_prob(88, 0.5, "qpsk", "awgn", e["esno_db"][-1] + 5) == 0.0
    cfg = ChannelConfig(link="nr-table", table=str(out), tb_bits=64, snr_db=e["esno_db"][0])
    res = build_link(cfg).transmit(descs(50, 8), np.random.default_rng(0))
    assert sum(isinstance(r, Erasure) for r in res.received) > 40
    with pytest.raises(ConfigError):
        build_link(dataclasses.replace(cfg, harq="ir"))  # no IR curves in this table
    # --append adds only the missing curves, with the same settings
    more = build_table(
        {**grid, "code_rate": [0.5, 0.75]},
        out=out,
        max_blocks=300,
        target_block_errors=30,
        snr_step=0.5,
        append=True,
    )
    assert [x["code_rate"] for x in more["entries"]] == [0.5, 0.75]
    assert more["entries"][0] == e and more["grid"]["code_rate"] == [0.5, 0.75]
    assert BlerTable.load(out).keys() == [(0.5, "qpsk", "awgn"), (0.75, "qpsk", "awgn")]
    with pytest.raises(ConfigError, match="append"):
        build_table(
            grid, out=out, max_blocks=200, target_block_errors=30, snr_step=0.5, append=True
        )
