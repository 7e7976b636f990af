"""BD-rate / BD-accuracy: known values, preconditions, per-condition tables."""

from __future__ import annotations

import math

import pytest

from semcom.metrics.bd import (
    bd_accuracy,
    bd_rate,
    bd_table,
    check_curve,
    monotone_fit,
    table_markdown,
)

RATES = [0.05, 0.1, 0.2, 0.4, 0.8]
ACC = [0.30, 0.45, 0.58, 0.66, 0.70]


@pytest.mark.parametrize("method", ["pchip", "akima"])
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_bd_rate_of_a_rate_scaled_curve_is_the_scale(method, factor):
    # Same accuracies at factor x the rate: log-rate differs by log10(factor) everywhere,
    # whatever the interpolation, so BD-rate = (factor - 1) * 100 exactly.
    res = bd_rate(RATES, ACC, [r * factor for r in RATES], ACC, method=method)
    assert res.ok and res.value == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert res.overlap == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["pchip", "akima"])
@pytest.mark.parametrize("delta", [-0.1, 0.0, 0.03])
def test_bd_accuracy_of_a_shifted_curve_is_the_shift(method, delta):
    res = bd_accuracy(RATES, ACC, RATES, [a + delta for a in ACC], method=method)
    assert res.ok and res.value == pytest.approx(delta, abs=1e-12)


def test_bd_on_straight_lines_matches_the_hand_computed_integral():
    # Anchor: log10 R = -2 + 2 a; test: log10 R = -1.8 + 1.5 a (both exactly linear in a,
    # which PCHIP reproduces). Overlap in a: both curves span a in [0.2, 0.8]. Mean of the
    # difference 0.2 - 0.5 a over [0.2, 0.8] = 0.2 - 0.5 * 0.5 = -0.05 -> BD-rate
    # 10**-0.05 - 1.
    acc = [0.2, 0.4, 0.6, 0.8]
    ra = [10 ** (-2 + 2 * a) for a in acc]
    rt = [10 ** (-1.8 + 1.5 * a) for a in acc]
    res = bd_rate(ra, acc, rt, acc)
    assert res.value == pytest.approx((10**-0.05 - 1) * 100, rel=1e-9)
    # BD-accuracy on the same lines: a_anchor = (L + 2)/2, a_test = (L + 1.8)/1.5 over the
    # overlap of log-rates [max(-1.6, -1.5), min(-0.4, -0.6)] = [-1.5, -0.6]; the mean of
    # (L + 1.8)/1.5 - (L + 2)/2 = L/6 + 0.2 over it is (-1.05)/6 + 0.2 = 0.025.
    res = bd_accuracy(ra, acc, rt, acc)
    assert res.value == pytest.approx(0.025, rel=1e-9)
    assert res.overlap == pytest.approx(0.9 / 1.2)


def test_bd_matches_the_reference_package_when_installed():
    bj = pytest.importorskip("bjontegaard")
    # The FAU-LMS README example (x265 presets, rates in kbps, PSNR in dB).
    r1 = [9487.76, 4593.60, 2486.44, 1358.24]
    p1 = [40.037, 38.615, 36.845, 34.851]
    r2 = [9787.80, 4469.00, 2451.52, 1356.24]
    p2 = [40.121, 38.651, 36.970, 34.987]
    for method in ("pchip", "akima"):
        ours = bd_rate(r1, p1, r2, p2, method=method).value
        ref = bj.bd_rate(r1, p1, r2, p2, method=method, require_matching_points=False)
        assert ours == pytest.approx(ref, abs=1e-9)
        ours = bd_accuracy(r1, p1, r2, p2, method=method).value
        ref = bj.bd_psnr(r1, p1, r2, p2, method=method, require_matching_points=False)
        assert ours == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize(
    "rates,acc,reason",
    [
        ([0.1, 0.2, 0.4, 0.8], [0.6, 0.6, 0.6, 0.6], "flat (monotone fit leaves 1 point)"),
        ([0.1, 0.2, 0.4], [0.5, 0.6, 0.7], "3 points < 4"),
        ([0.1, 0.2, 0.2, 0.8], [0.5, 0.6, 0.65, 0.7], "repeated rates"),
        ([0.0, 0.2, 0.4, 0.8], [0.5, 0.6, 0.65, 0.7], "rates must be > 0"),
        ([0.1, 0.2, 0.4, 0.8], [0.5, 0.6, float("nan"), 0.7], "missing values"),
    ],
)
def test_bad_curves_give_na_with_the_reason(rates, acc, reason):
    for fn in (bd_rate, bd_accuracy):
        res = fn(RATES[:4], ACC[:4], rates, acc)
        assert res.value is None and reason in res.reason and res.reason.startswith("test")
        assert res.text().startswith("n/a (")
    res = bd_rate(rates, acc, RATES[:4], ACC[:4])
    assert res.value is None and res.reason.startswith("anchor")


def test_no_overlap_is_na():
    hi_acc = [0.80, 0.85, 0.90, 0.95]
    assert bd_rate(RATES[:4], ACC[:4], RATES[:4], hi_acc).reason == "no accuracy overlap"
    far = [r * 1000 for r in RATES[:4]]
    assert bd_accuracy(RATES[:4], ACC[:4], far, ACC[:4]).reason == "no rate overlap"


def test_unsorted_input_is_fine_and_min_points_is_configurable():
    order = [3, 0, 2, 1]
    r, a = [RATES[i] for i in order], [ACC[i] for i in order]
    assert bd_rate(r, a, [x * 0.5 for x in r], a).value == pytest.approx(-50.0)
    assert bd_rate(RATES[:2], ACC[:2], RATES[:2], ACC[:2], min_points=2).value == pytest.approx(0.0)
    assert check_curve(RATES, ACC) == ""


def test_bd_table_is_per_condition_and_never_pooled():
    curves = {
        "SNR 5 dB": {"JPEG": (RATES, ACC), "ours": ([r * 0.5 for r in RATES], ACC)},
        "SNR 10 dB": {
            "JPEG": (RATES, ACC),
            "ours": ([r * 2.0 for r in RATES], ACC),
            "dip": (RATES, [0.3, 0.5, 0.45, 0.6, 0.7]),
        },
        "SNR 0 dB": {"ours": (RATES, ACC)},
    }
    rows = bd_table(curves, "JPEG", scale=100)
    by = {(r["condition"], r["test"]): r for r in rows}
    assert by[("SNR 5 dB", "ours")]["bd_rate_pct"] == pytest.approx(-50.0)
    assert by[("SNR 10 dB", "ours")]["bd_rate_pct"] == pytest.approx(100.0)
    dip = by[("SNR 10 dB", "dip")]  # a dip: the monotone rule, reported as such
    assert dip["fit"] == "monotone" and "monotone fit, 5 -> 4 points" in dip["note"]
    assert dip["bd_rate"].endswith("(monotone fit)")
    assert "no points" in by[("SNR 0 dB", "ours")]["note"]
    md = table_markdown(rows, units="pp")
    assert md.count("\n") == len(rows) + 1 and "-50.0 %" in md and "+100.0 %" in md
    assert math.isclose(
        by[("SNR 5 dB", "ours")]["bd_accuracy"],
        100 * bd_accuracy(RATES, ACC, [r * 0.5 for r in RATES], ACC).value,
    )


def test_a_dipping_curve_gets_the_monotone_rule_reported_as_such():
    rates, acc = [0.1, 0.2, 0.4, 0.8], [0.5, 0.6, 0.55, 0.7]
    fr, fa = monotone_fit(rates, acc)
    # the dip (0.6, 0.55) is pooled: its mean accuracy at the geometric-mean rate
    assert fr == pytest.approx([0.1, math.sqrt(0.2 * 0.4), 0.8])
    assert fa == pytest.approx([0.5, 0.575, 0.7])
    res = bd_rate(RATES[:4], ACC[:4], rates, acc)
    assert res.ok and res.fit == "monotone" and res.caveat == "test: monotone fit, 4 -> 3 points"
    assert res.value == pytest.approx(bd_rate(RATES[:4], ACC[:4], fr, fa, min_points=3).value)
    assert res.text().endswith("(monotone fit)")
    # ties are pooled too; an increasing curve is left alone
    assert monotone_fit([0.1, 0.2, 0.4, 0.8], [0.5, 0.6, 0.6, 0.7])[1] == pytest.approx(
        [0.5, 0.6, 0.7]
    )
    assert monotone_fit(RATES, ACC) == (pytest.approx(RATES), pytest.approx(ACC))
    assert bd_rate(RATES, ACC, RATES, ACC).fit == "raw"


def test_the_monotone_rule_is_conservative_it_never_raises_a_curve():
    # pooling replaces points by their mean: the fitted curve stays inside the data's range
    # and never above the best point measured up to that rate
    import numpy as np

    g = np.random.default_rng(3)
    for _ in range(50):
        rates = sorted(g.uniform(0.05, 2.0, 6))
        acc = list(g.uniform(0.3, 0.9, 6))
        fr, fa = monotone_fit(rates, acc)
        assert all(b > a for a, b in zip(fa, fa[1:])) and all(b > a for a, b in zip(fr, fr[1:]))
        for r, a in zip(fr, fa):
            assert a <= max(x for q, x in zip(rates, acc) if q <= r * (1 + 1e-12)) + 1e-12
