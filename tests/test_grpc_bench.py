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
