"""Nearest-neighbour search at codebook sizes up to 2^20: numpy vs faiss, time and memory.

One image's worth of queries (577 tokens: BLIP ViT-B/16 at 384 px) against random
float16 codebooks of 2^16, 2^19 and 2^20 entries at D = 96 (the tiny models) and
D = 768 (ViT-B), exact top-1 under l2, one thread, each point in its own process (so
its peak RSS is its own): seconds per image and the memory above the codebook itself.
``python -m benchmarks.run nearest``; faiss is measured when faiss-cpu is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

QUERIES = 577
POINTS = [(16, 96), (16, 768), (19, 768), (20, 96), (20, 768)]


def _rss_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux)."""
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def one(bits: int, dim: int, engine: str) -> dict:
    import time
    from pathlib import Path

    import numpy as np

    from semcom.stages.nearest import NearestIndex

    r = np.random.default_rng(bits * 1000 + dim)
    k = 1 << bits
    cw = np.empty((k, dim), np.float16)
    for s in range(0, k, 65536):  # in blocks: no float32 copy of the whole codebook
        cw[s : s + 65536] = r.standard_normal((min(65536, k - s), dim), dtype=np.float32)
    x = r.standard_normal((QUERIES, dim), dtype=np.float32)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak: the search's own
    rss0 = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    idx = NearestIndex(cw, "l2", engine=engine, threads=1)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = idx.search(x)
    search = time.perf_counter() - t0
    rss1 = _rss_mb("VmHWM")
    return {
        "bits": bits,
        "entries": k,
        "dim": dim,
        "engine": engine,
        "codebook_mb": cw.nbytes / 2**20,
        "build_s": build,
        "search_s_per_image": search,
        "extra_peak_rss_mb": rss1 - rss0,
        "checksum": int(out.sum() % 1_000_003),
    }


def run() -> dict:
    from semcom.stages.nearest import faiss_available

    engines = ["numpy"] + (["faiss"] if faiss_available() else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for bits, dim in POINTS:
        for engine in engines:
            code = (
                "import json, sys; from benchmarks.bench_nearest import one; "
                f"print(json.dumps(one({bits}, {dim}, {engine!r})))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [f"nearest neighbour, {QUERIES} queries (one image), l2, 1 thread:"]
    for bits, dim in POINTS:
        pts = {r["engine"]: r for r in rows if (r["bits"], r["dim"]) == (bits, dim)}
        cells = ", ".join(
            f"{e} {p['search_s_per_image']:.2f} s (+{p['extra_peak_rss_mb']:.0f} MB)"
            for e, p in pts.items()
        )
        same = len({p["checksum"] for p in pts.values()}) == 1
        lines.append(
            f"  2^{bits} x {dim} ({pts['numpy']['codebook_mb']:.0f} MB float16): {cells}"
            + ("" if same else "  [engines disagree]")
        )
    if "faiss" not in engines:
        lines.append("  (faiss-cpu not installed: numpy only)")
    return {"points": rows, "engines": engines, "queries": QUERIES, "summary": "\n".join(lines)}


if __name__ == "__main__":
    print(run()["summary"])
