"""``semcom demo``: the product's point in one run on the tiny world.

Runs configs/demo.yaml, a sweep of real runs through the real pipeline: the token
path (language-guided selection, VQ codebook, multiple descriptions) against JPEG
over the same 5G NR link and against full tokens (the upper bound), over a few SNRs
and rates. Then draws the figures, computes BD-rate against JPEG per SNR and writes
a short markdown summary. Everything goes to --out (default results/demo/, not tracked):

  runs/                 one folder per run (record.json, samples.jsonl, config.yaml)
  results.json / .csv   the aggregate of every run (what the figures are made from)
  figures/              PNG + PDF + sidecar JSON per figure, BD table (md/csv/json)
  summary.md            what was run, the numbers, the figures

Resumable: runs whose record exists are skipped, so an interrupted demo finishes only
the missing runs when started again (--overwrite redoes everything). --from RESULTS
runs nothing: it draws the figures and the summary again from a saved results.json
(`make readme-figures` does that for the copy the README shows, docs/results/demo/).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from semcom.cliargs import add_common_args, add_set_arg, parser, setup_logging

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
DEFAULT_WORKERS = 1
DEFAULT_OUT = "results/demo"


def build_parser():
    p = parser("demo", __doc__.split(":", 1)[1].strip())
    p.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        metavar="YAML",
        help="the demo sweep (default configs/demo.yaml)",
    )
    add_set_arg(
        p,
        "override a config value (repeatable), e.g. --set run.limit=50",
    )
    p.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})"
    )
    p.add_argument(
        "--from",
        dest="from_results",
        default=None,
        metavar="RESULTS_JSON",
        help="run nothing: copy this saved results.json (of a demo or a sweep) into "
        "--out and draw the figures and summary from it",
    )
    p.add_argument(
        "--workers",
        "-j",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"parallel runs (default {DEFAULT_WORKERS})",
    )
    p.add_argument("--overwrite", action="store_true", help="redo every run")
    p.add_argument(
        "--dpi",
        type=int,
        default=150,
        help="PNG resolution (default 150: small files for the README)",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=("png", "pdf", "svg"),
        dest="formats",
        help="figure formats (default png and pdf)",
    )
    p.add_argument("--run-fn", default=None, help=argparse.SUPPRESS)  # tests
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.from_results is not None:
        return replot(args)
    from semcom.commands.sweep.run import run_sweep, sigterm_as_interrupt
    from semcom.commands.sweep.spec import load_sweep
    from semcom.errors import SemcomError

    t0 = time.perf_counter()
    out = Path(args.out)
    workers = args.workers
    if workers < 1:
        raise SemcomError(f"--workers must be >= 1, got {workers}")
    overrides = [f"run.out_dir={out / 'runs'}", "run.progress=false", *args.overrides]
    sweep = load_sweep(args.config, overrides, name="demo")
    if args.run_fn is None:
        missing = missing_assets(sweep)
        if missing:
            raise SemcomError("the demo cannot run: missing " + "; ".join(missing))
    print(
        f"semcom demo: {len(sweep.points)} runs, {workers} worker(s); results in {out}/",
        file=sys.stderr,
    )
    with sigterm_as_interrupt():
        report = run_sweep(
            sweep,
            run_fn=args.run_fn,
            workers=workers,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    print(
        f"runs: {report.count('ok')} ok, {report.count('error')} failed, "
        f"{report.count('missing')} not run (ran {report.ran} now, {report.skipped} were "
        f"done); {report.wall_s:.1f} s",
        file=sys.stderr,
    )
    if report.interrupted:
        print("interrupted: run `semcom demo` again to finish the missing runs", file=sys.stderr)
        return 130
    shutil.copyfile(report.files["json"], out / "results.json")
    shutil.copyfile(report.files["csv"], out / "results.csv")
    if report.count("ok") == 0:
        first = next((o.record for o in report.outcomes if o.record), {}) or {}
        err = first.get("error") or {}
        raise SemcomError(f"every demo run failed, e.g. {err.get('type')}: {err.get('message')}")
    figures_and_summary(out, args, t0)
    return 0 if report.ok else 1


def replot(args) -> int:
    """``--from``: the figures and summary of a saved results.json, nothing run."""
    import json

    from semcom.errors import SemcomError

    t0 = time.perf_counter()
    src, out = Path(args.from_results), Path(args.out)
    if args.overrides or args.overwrite:
        raise SemcomError("--from runs nothing: --set and --overwrite do not apply")
    try:
        doc = json.loads(src.read_text())
    except (OSError, ValueError) as exc:
        raise SemcomError(f"--from {src}: cannot read it as JSON: {exc}") from None
    if (
        not isinstance(doc, dict)
        or "sweep" not in str(doc.get("schema", ""))
        or not isinstance(doc.get("records"), list)
    ):
        raise SemcomError(
            f"--from {src}: not the results.json of `semcom demo` or the "
            "aggregate.json of `semcom sweep`"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, suffix in (("results.json", ".json"), ("results.csv", ".csv")):
        f = src.with_suffix(suffix)
        if f.is_file() and f.resolve() != (out / name).resolve():
            shutil.copyfile(f, out / name)
    figures_and_summary(out, args, t0)
    return 0


def figures_and_summary(out: Path, args, t0: float) -> None:
    """Figures (and the BD table) from ``out/results.json``, then ``out/summary.md``."""
    import json

    from semcom.plotting import make_figures
    from semcom.results import atomic_write_text

    doc = json.loads((out / "results.json").read_text())
    anchor = (doc.get("plot") or {}).get("anchor", "JPEG")
    res = make_figures(
        [out / "results.json"],
        out / "figures",
        anchor=anchor,
        dpi=args.dpi,
        formats=tuple(args.formats or ("png", "pdf")),
    )
    recs = [r for r in doc.get("records", []) if r.get("status") == "ok"]
    summary = write_summary(out, doc, recs, res)
    atomic_write_text(out / "summary.md", summary)
    print(summary)
    print(
        f"wrote {out / 'summary.md'}, {len(res.figures)} figures in {out / 'figures'}; "
        f"total {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


# --------------------------------------------------------------------------- pre-flight


def missing_assets(sweep) -> list[str]:
    """Files the demo's runs need that are not there, each with how to make it.

    Checked before any run so that a fresh clone without the tiny models, the codebook or
    the BLER table gets one clear message instead of one failed record per run.
    """
    from semcom.config.model import model_dir
    from semcom.wire import codebook_path

    missing: dict[str, str] = {}
    for p in sweep.points:
        cfg = p.config
        for side, ref in (("edge.model", cfg.edge.model), ("cloud.model", cfg.cloud.model)):
            path = model_dir(ref)
            if not path.exists():
                missing.setdefault(
                    str(path),
                    f"{side} {ref.name} at {path} "
                    f"(make it with `semcom train tinyworld --model {ref.name}`)",
                )
        cb = codebook_path(cfg)
        if cb is not None and not Path(cb).is_file():
            missing.setdefault(
                str(cb),
                f"the codebook {cb} (make it with `semcom train "
                f"codebook --model {cfg.edge.model.name} --bits "
                f"{cfg.edge.quant.bits_for(cfg.edge.model.name)} --metric "
                f"{cfg.edge.quant.metric}`)",
            )
        if cfg.channel.link == "nr-table":
            from channel.tables import DEFAULT_TABLE

            table = Path(cfg.channel.table) if cfg.channel.table else DEFAULT_TABLE
            if not table.is_file():
                missing.setdefault(
                    str(table),
                    f"the BLER table {table} (make it with `semcom bler-table build --default`)",
                )
    return list(missing.values())


# --------------------------------------------------------------------------- summary


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}g}"


def write_summary(out: Path, doc: dict, recs: list[dict], res) -> str:
    """The markdown summary: setup, per-SNR table, BD table and figures.

    Everything comes from the aggregate ``doc`` (``results.json``: when and from which
    commit the runs were made, how many ran) and its ok ``recs``, so the summary drawn
    again from the same file (``--from``) is the same.
    """
    from semcom import plotting

    spec = res.metric
    points = plotting.spread_ideal_upper(plotting.collect_points(recs, res.x, spec))
    conds = sorted({p.cond for p in points}, key=lambda c: c.sort_key())
    varying = plotting.varying_fields(conds) or {"snr_db"}
    first = next(
        (r for r in recs if ((r.get("config") or {}).get("channel") or {}).get("link") != "ideal"),
        recs[0],
    )
    cfg = first.get("config") or {}
    ch, data = cfg.get("channel") or {}, cfg.get("data") or {}
    n = sorted({r.get("num_samples") for r in recs})
    git = doc.get("git") or {}
    labels = plotting.label_order(points)
    lines = [
        "# semcom demo: vision tokens versus JPEG over a 5G NR link (tiny world)",
        "",
        f"Runs made by `semcom demo` at {doc.get('utc', 'unknown')} from git "
        f"{(git.get('commit') or 'unknown')[:10]}{' (dirty tree)' if git.get('dirty') else ''}"
        f": {len(recs)} runs, {doc.get('ran', 0)} run then and {doc.get('resumed', 0)} "
        f"resumed, {doc.get('workers', 1)} worker(s), {doc.get('wall_s') or 0:.0f} s for the "
        "runs. Every number below is read from the run records in `results.json`; the "
        f"figures are drawn from the same file (`semcom plot {out.as_posix()}/results.json`).",
        "",
        *(
            [
                "**SYNTHETIC RECORDS** (a test run function, not the pipeline): these numbers "
                "mean nothing.",
                "",
            ]
            if any(r.get("synthetic") for r in recs)
            else []
        ),
        "## Setup",
        "",
        f"- **Data**: tiny world ({data.get('dataset')}, {data.get('split')} split), "
        f"{', '.join(map(str, n))} samples per run; task `{spec.task}`, metric "
        f"`{spec.name}` with bootstrap 95% CIs.",
        f"- **Link**: `{ch.get('link')}` ({ch.get('fading', 'awgn')}), "
        f"{str(ch.get('modulation')).upper()}, LDPC code rate {ch.get('code_rate')}, "
        f"{plotting.snr_symbol(ch.get('snr_type', 'esno'), tex=False)} in "
        f"{{{', '.join(_fmt(c.snr_db) for c in conds)}}} dB; a description is delivered only if "
        "every transport block passes its CRC.",
        "- **Methods** (operating points = rates):",
    ]
    for lab in labels:
        lab_recs = [p for p in points if p.label == lab]
        xs = sorted({round(p.x, 6) for p in lab_recs})
        e = (lab_recs[0].rec.get("config") or {}).get("edge") or {}
        if lab_recs[0].upper:
            what = (
                "every patch token, float16, one description"
                + (", over an ideal link" if lab_recs[0].ideal_ref else "")
                + ": the accuracy ceiling"
            )
        elif e.get("method") == "tokens":
            sel, q, m = e.get("select") or {}, e.get("quant") or {}, e.get("mdc") or {}
            budgets = sorted(
                {
                    ((p.rec.get("config") or {}).get("edge") or {}).get("select", {}).get("budget")
                    for p in lab_recs
                },
                key=lambda b: b or 0,
            )
            what = (
                f"`{sel.get('scorer')}` selection + `{sel.get('reducer')}`, budgets "
                f"{budgets} tokens, {q.get('type')} {q.get('bits')} bits, "
                f"{m.get('descriptions')} descriptions"
            )
        else:
            qs = sorted(
                {
                    ((p.rec.get("config") or {}).get("edge") or {}).get("image", {}).get("quality")
                    for p in lab_recs
                }
            )
            what = f"`{e.get('method')}` qualities {qs}, one description"
        lines.append(f"  - **{lab}**: {what}; {res.x} {', '.join(_fmt(x) for x in xs)} bpp.")
    lines += [
        "",
        f"## {spec.ylabel()} per channel condition",
        "",
        f"Each cell: {spec.name} [95% CI] at {res.x} (bpp).",
        "",
    ]
    head = ["method", res.x] + [
        c.describe(varying).replace("$", "").replace("_", "").replace("{", "").replace("}", "")
        for c in conds
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    by_op: dict = {}
    for p in points:
        by_op.setdefault((p.label, p.op), {})[p.cond] = p
    for lab in labels:
        ops = sorted(
            [k for k in by_op if k[0] == lab], key=lambda k: min(p.x for p in by_op[k].values())
        )
        for key in ops:
            cells = by_op[key]
            x = min(p.x for p in cells.values())
            row = [lab, _fmt(x)]
            for c in conds:
                p = cells.get(c)
                if p is None:
                    row.append("-")
                elif spec.percent:
                    row.append(
                        f"{p.y:.1f} [{p.lo:.1f}, {p.hi:.1f}]" if p.lo is not None else f"{p.y:.1f}"
                    )
                else:
                    row.append(f"{p.y:.3g} [{_fmt(p.lo)}, {_fmt(p.hi)}]")
            lines.append("| " + " | ".join(row) + " |")
    if res.paired_files.get("md"):
        lines += [
            "",
            f"## Paired differences against {res.anchor}",
            "",
            res.paired_files["md"].read_text().strip(),
        ]
    if res.bd_rows is not None:
        lines += [
            "",
            f"## BD-rate and BD-{plotting.METRIC_NAMES.get(spec.name, spec.name)} "
            f"against {res.anchor}",
            "",
            (res.bd_files["md"].read_text().strip() if res.bd_files.get("md") else ""),
        ]
    lines += ["", "## Figures", ""]
    for f in res.figures:
        png = next((p for p in f.files if p.suffix == ".png"), f.files[0])
        lines.append(f"![{f.name}](figures/{png.name})")
        lines.append("")
    lines += [
        "## Caveats",
        "",
        f"- {', '.join(map(str, n))} samples per run: read differences against the CIs "
        "(error bars) and the paired tests; where a curve's accuracy does not rise with "
        "rate, BD uses its monotone (isotonic) fit and says so, instead of interpolating "
        "through the noise.",
        "- The link is the BLER-table abstraction of the NR LDPC link (`nr-table`): "
        "code-block errors are drawn from BLER-vs-SNR tables simulated with the exact "
        "link (`semcom bler-table`); `--set channel.link=nr` runs the exact link "
        "(much slower).",
        "- Tiny world, tiny models: the point is the shape of the trade-off, not "
        "absolute numbers for a real VLM.",
        "",
    ]
    return "\n".join(lines)
