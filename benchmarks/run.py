"""Run the benchmarks, print their results and write them to bench-results/.

``python -m benchmarks.run [NAME ...]`` runs the named ``benchmarks/bench_NAME.py``
modules (all by default). Each module has ``run() -> dict`` returning measured numbers
and a ``summary`` string; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bench-results"


def discover() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {discover()})")
    args = p.parse_args(argv)
    names = args.names or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {discover()}")
    from semcom.provenance import provenance

    OUT.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = importlib.import_module(f"benchmarks.bench_{name}").run()
            status = "ok"
        except Exception:
            result, status = {"error": traceback.format_exc()}, "error"
            failed += 1
        result = {
            "benchmark": name,
            "status": status,
            "wall_s": time.perf_counter() - t0,
            **result,
            "provenance": provenance(),
        }
        print(result.get("summary") or json.dumps(result, indent=2, default=str), flush=True)
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"-> {OUT / (name + '.json')}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
