"""Link adaptation (MCS from the SNR, outer loop), deadlines, and the channel-aware
planner, on the shipped BLER tables."""

import dataclasses

import numpy as np
import pytest

from channel import build_link
from semcom.config.channel import ChannelConfig
from semcom.linkmodel.adapt import McsSelector, Olla
from semcom.linkmodel.bler import BlerTable
from semcom.linkmodel.mcs import mcs_entry
from semcom.linkmodel.planner import Calibration, Choice, best_plan, evaluate
from semcom.types import Description, Erasure


@pytest.fixture(scope="module")
def table():
    return BlerTable.load()


def descs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Description(
            f"i{j}", j % 4, 4, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), (96, 96)
        )
        for j in range(n)
    ]


def test_inner_loop_meets_the_target_with_the_highest_efficiency(table):
    cfg = ChannelConfig(link="nr-table", mcs="auto", snr_db=0.0)
    sel = McsSelector(table, cfg)
    prev = 0.0
    for snr in np.arange(-6, 24, 1.0):
        m = sel.choose(1000, float(snr))
        assert m.spectral_efficiency >= prev  # never less efficient at a higher SNR
        prev = m.spectral_efficiency
        if m.index > 0:
            assert sel.tb_bler(m, 1000, float(snr)) <= cfg.bler_target
        better = [c for c in sel.candidates if c.spectral_efficiency > m.spectral_efficiency]
        assert all(sel.tb_bler(c, 1000, float(snr)) > cfg.bler_target for c in better[:1])


def test_auto_link_delivers_near_the_target_and_records_the_mcs(table):
    cfg = ChannelConfig(link="nr-table", mcs="auto", snr_db=8.0, olla_step_db=0.0)
    res = build_link(cfg).transmit(descs(3000, 100), np.random.default_rng(0))
    lost = sum(isinstance(r, Erasure) for r in res.received) / 3000
    assert 0.0 < lost <= cfg.bler_target + 0.03
    mcs = {s.mcs for s in res.stats}
    assert len(mcs) == 1 and mcs_entry(1, mcs.pop()).qm >= 4  # 16-QAM or more at 8 dB
    # the same stream, the same outcome
    a = build_link(cfg).transmit(descs(50, 100), np.random.default_rng(3)).stats
    b = build_link(cfg).transmit(descs(50, 100), np.random.default_rng(3)).stats
    assert a == b


def test_outer_loop_converges_to_the_target_on_a_mismatched_channel(table):
    """The table believes the SNR is 4 dB better than it is: the inner loop alone loses
    far more than the target, the outer loop brings the first-transmission BLER back."""
    cfg = ChannelConfig(link="nr-table", mcs="auto", snr_db=10.0)
    sel = McsSelector(table, cfg)
    rng = np.random.default_rng(1)
    for step, expect in ((0.0, (0.5, 1.0)), (0.5, (0.05, 0.2))):
        olla, nacks = Olla(step, cfg.bler_target), []
        for _ in range(3000):
            m = sel.choose(1000, cfg.esno_db - olla.offset_db)
            true_bler = sel.tb_bler(m, 1000, cfg.esno_db - 4.0)  # the real channel
            ack = rng.random() >= true_bler
            olla.update(ack)
            nacks.append(not ack)
        rate = np.mean(nacks[1000:])
        assert expect[0] <= rate <= expect[1], (step, rate)
    assert 2.0 < olla.offset_db < 6.0


def test_deadline_loses_late_descriptions_and_keeps_the_ledger():
    base = ChannelConfig(link="nr-table", snr_db=10.0, bandwidth_mhz=5)
    d = descs(4, 300, seed=2)
    free = build_link(base).transmit(d, np.random.default_rng(0))
    per = free.stats[0].airtime_s
    cfg = dataclasses.replace(base, deadline_ms=2.5 * per * 1e3)
    res = build_link(cfg).transmit(d, np.random.default_rng(0))
    assert [s.deadline_missed for s in res.stats] == [False, False, True, True]
    assert [isinstance(r, Erasure) for r in res.received] == [False, False, True, True]
    assert res.received[2].reason == "deadline" and res.totals["deadline_misses"] == 2
    assert [s.coded_bits for s in res.stats] == [s.coded_bits for s in free.stats]
    lat = dataclasses.replace(cfg, deadline_kind="latency", deadline_ms=100.0, load=0.5)
    assert not any(
        s.deadline_missed for s in build_link(lat).transmit(d, np.random.default_rng(0)).stats
    )


def test_planner_trades_mcs_and_budget_against_the_deadline(table):
    cal = Calibration([(t, 8, min(0.9, 0.2 + 0.05 * t)) for t in (1, 2, 4, 8, 16)])
    size = lambda c: 4 + c.budget * c.quant // 8 // c.descriptions  # noqa: E731
    choices = [Choice(b, 8, 4, mcs_entry(1, m)) for b in (4, 8, 16) for m in (2, 9, 15, 20, 27)]
    cfg = ChannelConfig(link="nr-table", snr_db=16.0, bandwidth_mhz=5, deadline_ms=0.05)
    plans = best_plan(cfg, table, choices, size, cal)
    top = plans[0]
    assert top.expected_accuracy == max(p.expected_accuracy for p in plans)
    # at 16 dB under a tight deadline the planner takes a high MCS, not the slowest one
    assert top.choice.mcs.index >= 15
    low = dataclasses.replace(cfg, snr_db=-2.0)
    top_low = best_plan(low, table, choices, size, cal)[0]
    assert top_low.choice.mcs.index < top.choice.mcs.index
    # without a deadline every description is sent: the most robust MCS and the largest
    # budget win
    free = dataclasses.replace(cfg, deadline_ms=0.0)
    p = evaluate(free, table, Choice(16, 8, 4, mcs_entry(1, 2)), size, cal)
    assert p.k_fit == 4 and p.expected_accuracy == pytest.approx(0.9, abs=0.01)
