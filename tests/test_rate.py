import pytest

from semcom.rate import SampleRate, aggregate
from semcom.types import Description, RateLedger


def test_two_image_example_by_hand():
    # Image A: 64x48 = 3072 px; 1000 payload bits, 200 side-info bits, 72 header bits,
    #          coded 2544 bits -> 1272 QPSK channel uses.
    # Image B: 32x32 = 1024 px; 500 payload bits, 100 side info, 60 header bits,
    #          coded 1320 bits -> 660 channel uses.
    a = SampleRate(
        pixels=64 * 48,
        payload_bits=1000,
        side_info_bits=200,
        header_bits=72,
        coded_bits=2544,
        channel_uses=1272,
    )
    b = SampleRate(
        pixels=32 * 32,
        payload_bits=500,
        side_info_bits=100,
        header_bits=60,
        coded_bits=1320,
        channel_uses=660,
    )
    assert a.bpp_wire == pytest.approx(1272 / 3072)
    agg = aggregate([a, b])
    # pooled: sums over sums
    assert agg["bpp_payload"] == pytest.approx(1500 / 4096)
    assert agg["bpp_wire"] == pytest.approx((1272 + 660) / 4096)
    assert agg["bpp_channel"] == pytest.approx(3864 / 4096)
    assert agg["cpp"] == pytest.approx(1932 / 4096)
    # per-image means: mean of ratios
    assert agg["bpp_payload_mean"] == pytest.approx((1000 / 3072 + 500 / 1024) / 2)
    assert agg["bpp_wire_mean"] == pytest.approx((1272 / 3072 + 660 / 1024) / 2)
    assert agg["cpp_mean"] == pytest.approx((1272 / 3072 + 660 / 1024) / 2)
    assert agg["bpp_payload"] <= agg["bpp_wire"]
    assert agg["bpp_est"] is None


def test_from_ledger_splits_categories_and_excludes_fec_from_wire():
    led = RateLedger().add("quant", "payload", 800).add("positions", "side_info", 144)
    led.add("mdc", "header", 48).add("link", "fec", 1000)
    r = SampleRate.from_ledger(led, pixels=96 * 96)
    assert (r.payload_bits, r.side_info_bits, r.header_bits) == (800, 144, 48)
    assert r.wire_bits == 992


def test_rate_rejects_nonpositive_pixels():
    with pytest.raises(ValueError):
        SampleRate(pixels=0)


def test_ledger_roundtrip_and_description_index_check():
    led = RateLedger().add("a", "payload", 3).add("a", "payload", 5).add("b", "header", 8)
    assert led.total() == 16 and led.by_stage() == {"a": 8, "b": 8}
    assert RateLedger.from_dict(led.to_dict()).entries == led.entries
    with pytest.raises(ValueError):
        led.add("a", "bogus", 1)
    with pytest.raises(ValueError):
        Description("img", index=2, count=2, data=b"", original_hw=(4, 4))
