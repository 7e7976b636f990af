"""The load benchmark's own accounting on a short run (`slow`: it starts a cloud process)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.mark.slow
def test_short_load_benchmark_accounts_for_every_request():
    from benchmarks.bench_grpc import run

    r = run(seconds=2, clients=4)
    assert r["clients"] == 4 and 2 <= r["seconds"] < 10
    assert r["ok"] > 0 and r["sent"] == r["ok"] == r["cloud"]["computed"]
    assert (r["lost"], r["duplicated"], r["unexpected"], r["mismatched"]) == (0, 0, 0, 0)
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    with pytest.raises(ValueError, match="seconds must be > 0"):
        run(seconds=0)


@pytest.mark.slow
def test_serving_benchmark_on_the_tiny_llava_accounts_for_every_request():
    from benchmarks.bench_serve import throughput

    r = throughput(seconds=3, clients=4, ref_seconds=1)
    d = r["daemons"]
    assert d["ok"] > 0 and (r["lost"], r["duplicated"], r["mismatched"]) == (0, 0, 0)
    assert r["in_process"]["samples_per_s"] > 0 and r["ratio"] > 0
    assert 0 < d["transport_ms"]["p50"] <= d["latency_ms"]["p50"]
    assert r["one_client"]["requests"] > 0 and d["batch_mean"] >= 1


@pytest.mark.slow
def test_memory_benchmark_stays_within_the_in_flight_cap_and_returns_to_idle():
    from benchmarks.bench_serve import memory

    r = memory(streams=4, mib=60, cap_mib=128, rounds=2)
    for rnd in r["rounds"]:
        assert rnd["codes"] == ["INVALID_ARGUMENT"] * 4  # received whole, then refused
    assert r["within_bound"], r["summary"]
    assert r["back_to_idle_s"] is not None and r["back_to_idle_s"] <= 5, r["summary"]
