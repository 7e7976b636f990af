"""``semcom frontier``: per method family, the lowest bpp_wire at 95% of full-token accuracy.

RESULTS are run folders, record.json files, folders of runs or a sweep's aggregate.json
(``semcom sweep configs/sweeps/frontier.yaml`` makes one). Runs are grouped into
families by their config (token streams by their number of descriptions, JPEG / WebP by
how they send headers, codecs, necks and projectors by kind; ``--by label`` groups by run
label instead); the reference is the full-token run (every token, float16; or
``--reference RUN_ID``). For each family the report gives the lowest ``bpp_wire`` among
its runs whose accuracy reaches ``--fraction`` of the reference's, with a paired
bootstrap 95% interval over the samples (:mod:`semcom.metrics.frontier`), the share of
header, side information and setup in that run's ``bpp_wire``, and how many times more
bits each family needs than each token family. Writes ``frontier.md`` and
``frontier.json`` into ``--out`` and prints the table.

examples:
  semcom frontier results/runs/sweeps/frontier/aggregate.json -o docs/results/frontier
  semcom frontier results/runs --metric vqa.accuracy --fraction 0.9
"""

from __future__ import annotations

import sys
from pathlib import Path

from semcom.cliargs import add_common_args, parser, setup_logging


def build_parser():
    p = parser("frontier", __doc__.split(":", 1)[1].strip())
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="records, run folders, result roots or aggregate.json files",
    )
    p.add_argument("-o", "--out", metavar="DIR", help="folder for frontier.md / .json")
    p.add_argument(
        "--metric",
        metavar="TASK.METRIC",
        help="default: the first task's main metric (vqa.accuracy for VQA)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.95,
        help="share of the reference's accuracy a family must reach (0.95)",
    )
    p.add_argument(
        "--reference", metavar="RUN_ID", help="reference run (default: the full-token run)"
    )
    p.add_argument(
        "--by",
        choices=("config", "label"),
        default="config",
        help="families from the run config (default) or the run labels",
    )
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates (2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.add_argument(
        "--runs",
        metavar="DIR",
        help="where the runs' samples.jsonl live (default: each record's run.out_dir)",
    )
    add_common_args(p)
    return p


def family_of(rec: dict) -> str:
    """A record's method family (what the frontier compares)."""
    cfg = rec.get("config") or {}
    e = cfg.get("edge") or {}
    m = e.get("method")
    if m == "tokens":
        d = (e.get("mdc") or {}).get("descriptions", 1)
        return f"tokens D={d}"
    im = e.get("image") or {}
    if m in ("jpeg", "webp"):
        return f"{'JPEG' if m == 'jpeg' else 'WebP'} ({im.get('headers', 'file')} headers)"
    if m == "codec":
        return f"codec {im.get('codec')}"
    if m == "neck":
        return f"neck {im.get('neck_setting')}"
    if m == "projector":
        pr = e.get("projector") or {}
        return f"projector {pr.get('type', '')}".strip()
    return str(m)


def is_full_tokens(rec: dict) -> bool:
    e = (rec.get("config") or {}).get("edge") or {}
    sel, q = e.get("select") or {}, e.get("quant") or {}
    return (
        e.get("method") == "tokens"
        and sel.get("budget") is None
        and sel.get("ratio") is None
        and not sel.get("adaptive")
        and q.get("type") == "none"
    )


def _rows(rec: dict, runs: str | None) -> list[dict]:
    from semcom.errors import DataError
    from semcom.results import read_jsonl

    if runs:
        run_dir = Path(runs) / rec["run_id"]
    elif rec.get("run_dir"):  # a sweep's aggregate says where each run is
        run_dir = Path(rec["run_dir"])
    else:  # records written before run_dir existed kept run.out_dir in their config
        run_dir = (
            Path(((rec.get("config") or {}).get("run") or {}).get("out_dir", ".")) / rec["run_id"]
        )
    path = run_dir / "samples.jsonl"
    if not path.is_file():
        raise DataError(f"run {rec['run_id']}: {path} not found (give --runs DIR)")
    return read_jsonl(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    import json

    import numpy as np

    from semcom.errors import DataError
    from semcom.metrics.frontier import FrontierRun, frontier
    from semcom.plotting.points import load_records, parse_metric
    from semcom.results import atomic_write_json, atomic_write_text

    if not 0 < args.fraction <= 1:
        raise DataError(f"--fraction must be in (0, 1], got {args.fraction}")
    recs, _ = load_records(args.results)
    if not recs:
        raise DataError("no ok records in the results")
    task, metric = parse_metric(args.metric, recs)
    links = {((r.get("config") or {}).get("channel") or {}).get("link") for r in recs}
    if len(links) > 1:
        print(
            f"semcom frontier: warning: runs over several links {sorted(links)}; the "
            "frontier compares the rates regardless",
            file=sys.stderr,
        )
    if args.reference:
        ref = [r for r in recs if r["run_id"] == args.reference]
    else:
        ref = [r for r in recs if is_full_tokens(r)]
    if len(ref) != 1:
        raise DataError(f"need exactly one reference run, found {len(ref)} (give --reference)")
    ref = ref[0]
    rows = {r["run_id"]: _rows(r, args.runs) for r in recs}

    def scored(rs):
        return {
            row["sample_id"]: row
            for row in rs
            if isinstance(((row.get("scores") or {}).get(task) or {}).get(metric), (int, float))
        }

    by_id = {rid: scored(rs) for rid, rs in rows.items()}
    common = sorted(set.intersection(*(set(v) for v in by_id.values())))
    if not common:
        raise DataError(f"the runs share no sample scored on {task}.{metric}")
    runs = []
    for r in recs:
        rr = by_id[r["run_id"]]
        fam = (r.get("label") or family_of(r)) if args.by == "label" else family_of(r)
        rate = r.get("rate") or {}
        runs.append(
            FrontierRun(
                r["run_id"],
                fam,
                np.array([rr[s]["scores"][task][metric] for s in common], float),
                np.array([rr[s]["rate"]["wire_bits"] for s in common], float),
                np.array([rr[s]["rate"]["pixels"] for s in common], float),
                int(rate.get("bits_setup") or 0),
                r.get("label") or "",
            )
        )
    reference = next(x for x in runs if x.run_id == ref["run_id"])
    res = frontier(runs, reference, fraction=args.fraction, n_boot=args.boot, seed=args.seed)
    by_run = {r["run_id"]: r for r in recs}
    for v in res["families"].values():
        if v["run_id"]:
            rate = by_run[v["run_id"]].get("rate") or {}
            v["overhead"] = 1 - rate.get("bpp_payload", 0) / rate["bpp_wire"]
            v["accuracy"] = next(x.accuracy() for x in runs if x.run_id == v["run_id"])
            v["label"] = by_run[v["run_id"]].get("label")
    res.update(metric=f"{task}.{metric}", inputs=[str(p) for p in args.results])
    md = table(res)
    print(md)
    if args.out:
        out = Path(args.out)
        command = "semcom frontier " + " ".join(sys.argv[2:] if argv is None else argv)
        atomic_write_text(out / "frontier.md", f"<!-- {command} -->\n\n{md}")
        atomic_write_json(out / "frontier.json", json.loads(json.dumps(res, default=float)))
        print(f"wrote {out / 'frontier.md'} and frontier.json", file=sys.stderr)
    return 0


def _ci(c) -> str:
    lo, hi = c
    return f"[{lo:.4g}, {'open' if hi is None else f'{hi:.4g}'}]"


def table(res: dict) -> str:
    """The frontier as markdown."""
    fams = res["families"]
    tok = [f for f in fams if f.startswith("tokens")]
    head = [
        "family",
        "lowest bpp_wire",
        "95% CI",
        "reaches",
        "accuracy",
        "run",
        "header + side + setup",
    ] + [f"x {t}" for t in tok]
    lines = [
        f"Lowest `bpp_wire` at >= {100 * res['fraction']:.0f}% of the reference "
        f"({res['metric']} {res['reference']['accuracy']:.1f}, run "
        f"{res['reference']['run_id']}; threshold {res['threshold']:.1f}) on "
        f"{res['samples']} samples; paired bootstrap, {res['n_boot']} replicates.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * 4 + "---|---:|" + "---:|" * len(tok),
    ]
    order = sorted(fams, key=lambda f: (fams[f]["bpp"] is None, fams[f]["bpp"] or 0))
    for f in order:
        v = fams[f]
        if v["bpp"] is None:
            cells = [f, "never", "-", f"{100 * v['reach']:.0f}%", "-", "-", "-"]
        else:
            cells = [
                f,
                f"{v['bpp']:.4g}",
                _ci(v["ci95"]),
                f"{100 * v['reach']:.0f}%",
                f"{v['accuracy']:.1f}",
                f"{v['run_id']} ({v.get('label') or ''})",
                f"{100 * v['overhead']:.0f}%",
            ]
        for t in tok:
            r = (res["ratios"].get(f) or {}).get(t)
            cells.append("-" if f == t or r is None else f"{r['value']:.1f} {_ci(r['ci95'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
