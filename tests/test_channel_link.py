"""The link interface: delivery, erasures, CRC fault injection, HARQ, accounting, errors."""

import dataclasses
import math

import numpy as np
import pytest

from channel.link import NrLink, build_link
from semcom.config import load_config
from semcom.config.channel import ChannelConfig
from semcom.errors import ConfigError
from semcom.seeding import rng as seeded
from semcom.types import Description, Erasure


def descs(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Description(
            "img", i, len(sizes), rng.integers(0, 256, n, dtype=np.uint8).tobytes(), (96, 96)
        )
        for i, n in enumerate(sizes)
    ]


SIZES = [1, 13, 64, 477, 1200]  # 1200 B = 3 TBs of 3200 bits with the default tb_bits


@pytest.mark.parametrize("fading", ["awgn", "rayleigh-block", "rician-fast"])
@pytest.mark.parametrize("modulation", ["bpsk", "16qam", "256qam"])
def test_zero_noise_link_delivers_everything_bit_exactly(fading, modulation):
    cfg = ChannelConfig(
        link="nr",
        snr_db=math.inf,
        fading=fading,
        modulation=modulation,
        code_rate=0.75 if modulation != "bpsk" else 0.4,
    )
    d = descs(SIZES)
    res = build_link(cfg).transmit(d, np.random.default_rng(0))
    assert [r.data for r in res.received] == [x.data for x in d]
    assert all(s.delivered and s.rounds == 1 and s.block_errors == 0 for s in res.stats)


def test_segmented_transport_blocks_round_trip():
    # 2000-byte TBs: CRC24A + 3 code blocks with CRC24B each (BG2 at R=1/3)
    cfg = ChannelConfig(link="nr", snr_db=30.0, tb_bits=16000, code_rate=1 / 3)
    link = build_link(cfg)
    d = descs([2000, 4001])
    assert link.plan(16000).num_cbs > 1
    res = link.transmit(d, np.random.default_rng(0))
    assert [r.data for r in res.received] == [x.data for x in d]
    assert res.stats[0].code_blocks == link.plan(16000).num_cbs


@pytest.mark.parametrize("tb_bits,cb_fault", [(3816, False), (16000, True)])
def test_crc_catches_every_corrupted_block(tb_bits, cb_fault):
    """Fault injection: decoder outputs are corrupted at random (single bits, bursts,
    dense garbage) before the CRC check. Every corrupted TB must become an erasure and
    every delivered description must be bit-exact."""
    frng = np.random.default_rng(42)
    hits = []

    def fault(bits, r):
        for i in range(bits.shape[0]):
            kind = frng.integers(0, 4)
            if kind == 0:
                continue
            if kind == 1:
                bits[i, frng.integers(bits.shape[1])] ^= 1
            elif kind == 2:
                s = frng.integers(bits.shape[1] - 30)
                bits[i, s : s + 30] ^= frng.integers(0, 2, 30, dtype=np.uint8) | (
                    np.arange(30) == 0
                ).astype(np.uint8)
            else:
                bits[i] = frng.integers(0, 2, bits.shape[1], dtype=np.uint8)
            hits.append(1)
        return bits

    cfg = ChannelConfig(link="nr", snr_db=math.inf, tb_bits=tb_bits, code_rate=0.5)
    link = NrLink(cfg, fault=fault)
    d = descs([100, 300, 2500, 4000, 9] * 8, seed=1)
    res = link.transmit(d, np.random.default_rng(0))
    assert len(hits) > 20
    erased = [isinstance(r, Erasure) for r in res.received]
    assert any(erased) and not all(erased)
    for r, x, s in zip(res.received, d, res.stats):
        if isinstance(r, Description):
            assert r.data == x.data
        assert s.undetected == 0
        assert s.delivered == (not isinstance(r, Erasure))
    if cb_fault:
        assert link.plan(tb_bits).num_cbs > 1


def test_bler_non_increasing_in_snr():
    d = descs([60] * 150, seed=3)
    rates = []
    for snr in (-1.0, 0.0, 1.0, 2.0, 3.0):
        cfg = ChannelConfig(link="nr", snr_db=snr, snr_type="esno", code_rate=0.5)
        res = build_link(cfg).transmit(d, np.random.default_rng(5))
        rates.append(res.totals["bler"])
    assert rates[0] > 0.5 and rates[-1] < 0.05
    assert all(a >= b for a, b in zip(rates, rates[1:])), rates


def test_harq_rounds_and_accounting():
    d = descs([120] * 60, seed=4)
    base = dict(link="nr", snr_db=-0.5, snr_type="esno", code_rate=0.5)
    none = build_link(ChannelConfig(**base)).transmit(d, np.random.default_rng(1))
    for mode in ("ir", "chase"):
        res = build_link(ChannelConfig(**base, harq=mode, harq_max_rounds=3)).transmit(
            d, np.random.default_rng(1)
        )
        assert res.totals["delivered"] > none.totals["delivered"]
        assert max(s.rounds for s in res.stats) > 1 and max(s.rounds for s in res.stats) <= 3
        link = build_link(ChannelConfig(**base, harq=mode))
        for s, x in zip(res.stats, d):
            p = link.plan(8 * len(x.data))
            assert s.coded_bits == p.coded_bits * s.blocks
            assert s.channel_uses == s.coded_bits // 2
            assert s.block_errors == s.blocks - (1 if s.delivered else 0)
    # IR sends new parity, Chase repeats: IR should deliver at least as much
    ir = build_link(ChannelConfig(**base, harq="ir", harq_max_rounds=2)).transmit(
        d, np.random.default_rng(2)
    )
    ch = build_link(ChannelConfig(**base, harq="chase", harq_max_rounds=2)).transmit(
        d, np.random.default_rng(2)
    )
    assert ir.totals["delivered"] >= ch.totals["delivered"] - 3


def test_stats_airtime_and_snr_reporting():
    cfg = load_config(
        None,
        [
            "channel.link=ideal",
            "channel.snr_db=4",
            "channel.snr_type=ebno",
            "channel.modulation=16qam",
            "channel.code_rate=0.5",
            "channel.bandwidth_mhz=20",
            "channel.scs_khz=30",
            "channel.symbols_per_slot=12",
        ],
    ).channel
    res = build_link(cfg).transmit(descs([1000]), np.random.default_rng(0))
    s = res.stats[0]
    assert res.ebno_db == pytest.approx(4.0)
    assert res.esno_db == pytest.approx(4.0 + 10 * math.log10(0.5 * 4))
    assert s.info_bits == 8000 and s.tbs == 3
    assert s.channel_uses * 4 == s.coded_bits
    re_per_slot = 51 * 12 * 12
    assert s.airtime_s == pytest.approx(s.channel_uses / re_per_slot * 0.5e-3)
    assert s.latency_s == pytest.approx(math.ceil(s.channel_uses / re_per_slot) * 0.5e-3)
    tot = res.totals
    assert tot["coded_bits"] == s.coded_bits and tot["esno_db"] == res.esno_db


def test_all_link_types_account_the_same():
    d = descs(SIZES)
    ledgers = []
    for link in ("ideal", "erasure", "nr", "nr-table"):
        cfg = ChannelConfig(link=link, snr_db=40.0, loss_prob=0.0)
        res = build_link(cfg).transmit(d, np.random.default_rng(0))
        ledgers.append([(s.coded_bits, s.channel_uses, s.tbs, s.airtime_s) for s in res.stats])
        assert all(s.delivered for s in res.stats)
    assert all(x == ledgers[0] for x in ledgers)


def test_erasure_link_rate_and_determinism():
    d = descs([10] * 2000)
    cfg = ChannelConfig(link="erasure", loss_prob=0.3)
    a = build_link(cfg).transmit(d, seeded(7, "link", "s1"))
    b = build_link(cfg).transmit(d, seeded(7, "link", "s1"))
    lost = sum(isinstance(r, Erasure) for r in a.received)
    assert abs(lost / 2000 - 0.3) < 3 * math.sqrt(0.3 * 0.7 / 2000)
    assert [isinstance(r, Erasure) for r in a.received] == [
        isinstance(r, Erasure) for r in b.received
    ]
    assert all(r.reason == "erasure" for r in a.received if isinstance(r, Erasure))


def test_exact_link_is_reproducible_per_sample_stream():
    cfg = ChannelConfig(link="nr", snr_db=0.5, snr_type="esno")
    d = descs([40, 41, 300])
    a = build_link(cfg).transmit(d, seeded(1, "link", "x"))
    b = build_link(cfg).transmit(d, seeded(1, "link", "x"))
    assert [type(r) for r in a.received] == [type(r) for r in b.received]
    assert [s.to_dict() for s in a.stats] == [s.to_dict() for s in b.stats]


@pytest.mark.parametrize(
    "override,key,value",
    [
        ("channel.code_rate=0.97", "channel.code_rate", "0.97"),
        ("channel.code_rate=0.01", "channel.code_rate", "0.01"),
        ("channel.tb_bits=1001", "channel.tb_bits", "1001"),
        ("channel.bandwidth_mhz=7", "channel.bandwidth_mhz", "7"),
        ("channel.iterations=0", "channel.iterations", "0"),
        ("channel.harq=incremental", "channel.harq", "incremental"),
        ("channel.fading=rayleigh", "channel.fading", "rayleigh"),
    ],
)
def test_config_errors_name_key_and_value(override, key, value):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert exc.value.key == key and value in str(exc.value)


def test_sionna_decoder_is_selectable():
    pytest.importorskip("torch")
    cfg = ChannelConfig(link="nr", snr_db=30.0, decoder="sionna", iterations=5)
    d = descs([20, 30])
    res = build_link(cfg).transmit(d, np.random.default_rng(0))
    assert [r.data for r in res.received] == [x.data for x in d]
    assert dataclasses.replace(cfg, decoder="fast").decoder == "fast"


@pytest.mark.parametrize("qm", [1, 2, 4, 6, 8])
def test_awgn_fast_path_has_the_general_paths_llr_distribution(qm):
    """The exact link's AWGN fast path (float32, real dimensions) against modulate ->
    channel -> APP demapper: the same LLR mean and spread per transmitted bit value."""
    from channel.channels import awgn_llrs, transmit
    from channel.modulation import demodulate, modulate

    n0 = 10 ** (-(3.0 * qm / 2) / 10)
    bits = np.random.default_rng(0).integers(0, 2, (100, 2400), dtype=np.uint8)
    fast = awgn_llrs(bits, qm, n0, np.random.default_rng(1))
    z, nv = transmit(modulate(bits, qm), n0, "awgn", np.random.default_rng(2))
    ref = demodulate(z, nv, qm)
    assert fast.dtype == np.float32 and fast.shape == ref.shape
    for pos in range(qm):  # per bit position of the symbol: strong and weak bits differ
        fb, rb, bb = fast[:, pos::qm], ref[:, pos::qm], bits[:, pos::qm]
        for b in (0, 1):
            f, r = fb[bb == b], rb[bb == b]
            assert abs(np.mean(f) - np.mean(r)) <= 0.05 * np.std(r) + 0.03 * abs(np.mean(r))
            assert np.std(f) == pytest.approx(np.std(r), rel=0.06)
            assert np.mean(np.sign(f) != (1 - 2 * b)) == pytest.approx(
                np.mean(np.sign(r) != (1 - 2 * b)), abs=0.015
            )


def test_llr_combining_by_slices_equals_fancy_indexing():
    """HARQ combining adds a round's LLRs at the rate-matching map's columns; by slices
    over each interleaver lane's contiguous runs (filler gaps included) it gives exactly
    the fancy-index sums, for every modulation order, and falls back beyond 4 runs a lane."""
    from channel.phy import _add_cols, _lane_runs

    rng = np.random.default_rng(0)
    for qm in (1, 2, 4, 6, 8):
        for _ in range(10):
            e = int(rng.integers(2, 200)) * qm
            start = int(rng.integers(0, 500))
            cols = np.arange(start, start + e + 12)
            cols = np.delete(cols, rng.choice(cols.size, 12, replace=False))
            idx = cols.reshape(qm, -1).T.ravel()  # lane q holds cols[q * e/qm : ...]
            acc = rng.standard_normal((3, start + e + 20)).astype(np.float32)
            vals = rng.standard_normal((3, e)).astype(np.float32)
            want = acc.copy()
            want[:, idx] += vals
            _add_cols(acc, idx, vals, qm)
            assert np.array_equal(acc, want), qm
    scattered = np.arange(0, 400, 3)  # 134 runs: the plain scatter
    assert _lane_runs(scattered.astype(np.int64).tobytes(), 1) is None


def test_fixed_point_decoder_on_the_exact_link():
    """`decoder: fixed` in the link: in the waterfall it loses about as many TBs as the
    float kernel on the same noise, and whatever it delivers is exact."""
    d = descs([1000] * 40, seed=3)
    lost = {}
    for dec in ("fast", "fixed"):
        cfg = ChannelConfig(link="nr", snr_db=1.1, decoder=dec)
        res = build_link(cfg).transmit(d, np.random.default_rng(4))
        for r, x in zip(res.received, d):
            assert isinstance(r, Erasure) or r.data == x.data
        lost[dec] = sum(isinstance(r, Erasure) for r in res.received)
    assert 0 < lost["fast"] < 40 and abs(lost["fixed"] - lost["fast"]) <= 6, lost
