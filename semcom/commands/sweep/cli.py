"""``semcom sweep``: expand a YAML grid into runs; resumable, parallel or on Ray.

Every point of the ``sweep:`` block becomes one run with its own record under
``<run.out_dir>/<run_id>/``. Points whose record is complete are skipped, so an
interrupted sweep resumes where it stopped; a failing run is recorded with its error
and the sweep goes on (it is redone next time). At the end the aggregate table is
written to ``<run.out_dir>/sweeps/<name>/aggregate.{csv,json}``.

examples:
  semcom sweep configs/sweeps/snr.yaml
  semcom sweep configs/sweeps/budget.yaml --set run.limit=50 --workers 2
  semcom sweep configs/sweeps/compare.yaml --executor ray --ray-address auto
  semcom sweep configs/sweeps/snr.yaml --set sweep.channel.snr_db=[0,2,4] --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys

from semcom.cliargs import add_common_args, add_set_arg, parser, setup_logging


def build_parser():
    p = parser("sweep", __doc__.split(":", 1)[1].strip())
    p.add_argument(
        "config", metavar="SWEEP.yaml", help="sweep config (a config with a sweep: block)"
    )
    add_set_arg(
        p,
        "override a config value for every point, or a sweep axis with "
        "sweep.KEY=[...] (repeatable)",
    )
    p.add_argument("--name", help="sweep name (default: the file's `name:` or its stem)")
    p.add_argument("--out", metavar="DIR", help="results root (overrides run.out_dir)")
    p.add_argument("--limit", type=int, metavar="N", help="samples per run (run.limit)")
    p.add_argument(
        "--workers",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="parallel runs: a local process pool (or the CPUs of a local Ray); "
        "torch threads per worker = cores / N (default 1: in this process)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="torch/OpenMP threads per worker (default: cores / workers; serial: torch's)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (serial or process pool) or ray (Ray tasks; needs the [ray] extra)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join (e.g. auto or ray://host:10001); default: start a local Ray",
    )
    p.add_argument("--overwrite", action="store_true", help="redo runs whose record exists")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the points, their run ids and whether they are done; run nothing",
    )
    p.add_argument("--json", action="store_true", help="print the aggregate as JSON on stdout")
    p.add_argument("--run-fn", default=None, help=argparse.SUPPRESS)  # module:function (tests)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from semcom.errors import SemcomError

    if args.workers < 1:
        raise SemcomError(f"--workers must be >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise SemcomError(f"--threads must be >= 1, got {args.threads}")
    from semcom.commands.sweep.aggregate import format_table
    from semcom.commands.sweep.run import run_sweep, sigterm_as_interrupt
    from semcom.commands.sweep.spec import load_sweep

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.limit is not None:
        overrides.append(f"run.limit={args.limit}")
    overrides.append("run.progress=false")  # one sweep-level bar instead of one per run
    sweep = load_sweep(args.config, overrides, name=args.name)
    if args.dry_run:
        return _dry_run(sweep)
    note = f" ({sweep.duplicates} duplicate points dropped)" if sweep.duplicates else ""
    print(
        f"sweep {sweep.name}: {len(sweep.points)} runs{note}, executor "
        f"{args.executor}, workers {args.workers}",
        file=sys.stderr,
    )
    with sigterm_as_interrupt():
        report = run_sweep(
            sweep,
            run_fn=args.run_fn,
            executor=args.executor,
            workers=args.workers,
            address=args.ray_address,
            threads=args.threads,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    if args.json:
        print(report.files["json"].read_text())
    else:
        print(format_table(report))
        print()
    n_err, n_missing = report.count("error"), report.count("missing")
    print(
        f"{report.count('ok')} ok, {n_err} failed, {n_missing} not run; ran {report.ran}, "
        f"resumed {report.skipped}; {report.wall_s:.1f} s",
        file=sys.stderr,
    )
    print(f"aggregate: {report.files['csv']} and {report.files['json'].name}", file=sys.stderr)
    if report.interrupted:
        print(
            "interrupted: rerun the same command to finish the missing runs"
            if n_missing
            else "interrupted after the last run finished",
            file=sys.stderr,
        )
        return 130
    return 0 if report.ok else 1


def _dry_run(sweep) -> int:
    from pathlib import Path

    from semcom.results import RunPaths

    rows = []
    for p in sweep.points:
        done = RunPaths(Path(p.config.run.out_dir), p.run_id).done()
        rows.append({"run_id": p.run_id, "done": done, "settings": p.settings})
    print(
        json.dumps(
            {
                "name": sweep.name,
                "runs": len(rows),
                "done": sum(r["done"] for r in rows),
                "points": rows,
            },
            indent=2,
            default=str,
        )
    )
    return 0
