"""``semcom plot``: figures (and BD tables) from saved results only.

RESULTS are run folders, record.json files, folders of runs, or a sweep's
aggregate.json. Writes, as PNG + PDF with a sidecar JSON each (inputs, run ids, git
commit, plotted numbers): rate-accuracy (all conditions, and one panel per SNR),
accuracy versus SNR at a fixed rate, BLER versus SNR and the latency breakdown. With
--anchor (or a sweep's `plot: {anchor: ...}`), BD-rate and BD-accuracy per SNR against
that label go to bd_*.{md,csv,json}.

examples:
  semcom plot experiments/runs/sweeps/compare/aggregate.json -o experiments/figures/compare
  semcom plot experiments/runs -o figs --metric vqa.accuracy --x cpp --anchor JPEG
"""

from __future__ import annotations

import sys

from semcom.cliargs import add_common_args, parser, setup_logging

KINDS = ("rate", "snr", "bler", "latency", "deadline")


def build_parser():
    p = parser("plot", __doc__.split(":", 1)[1].strip())
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="run folders, record.json files, result roots or aggregate.json files",
    )
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the figures")
    p.add_argument(
        "--x",
        default=None,
        choices=("bpp_wire", "bpp_payload", "bpp_channel", "cpp", "bpp_est", "bpp_wire_mean"),
        help="rate on the x axis (default bpp_wire)",
    )
    p.add_argument(
        "--metric",
        metavar="TASK.METRIC",
        help="task metric on the y axis, e.g. vqa.accuracy (default: the first task's main metric)",
    )
    p.add_argument("--anchor", metavar="LABEL", help="method label for BD-rate / BD-accuracy")
    p.add_argument(
        "--bd-method",
        choices=("pchip", "akima"),
        default="pchip",
        help="BD interpolation (default pchip, as the JVET/JCT-VC sheets)",
    )
    p.add_argument("--min-points", type=int, default=4, help="points per curve for BD (4)")
    p.add_argument(
        "--rate",
        type=float,
        metavar="BPP",
        help="fixed rate for accuracy-vs-SNR and latency (default: where the "
        "methods' operating points are closest)",
    )
    p.add_argument(
        "--upper-bound",
        action="append",
        default=[],
        metavar="LABEL",
        help="label(s) drawn as the upper-bound line (default: full tokens)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=KINDS,
        metavar="KIND",
        help=f"make only these figures ({', '.join(KINDS)}); repeatable",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=("png", "pdf", "svg"),
        dest="formats",
        help="file formats (default png and pdf)",
    )
    p.add_argument("--dpi", type=int, default=300, help="PNG resolution (default 300)")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from semcom.plotting import make_figures

    res = make_figures(
        args.results,
        args.out,
        x=args.x,
        metric=args.metric,
        anchor=args.anchor,
        rate=args.rate,
        upper_bound=args.upper_bound,
        formats=tuple(args.formats or ("png", "pdf")),
        bd_method=args.bd_method,
        min_points=args.min_points,
        kinds=tuple(args.only or KINDS),
        dpi=args.dpi,
    )
    skipped = f" ({len(res.skipped_errors)} failed runs not plotted)" if res.skipped_errors else ""
    print(
        f"{res.records} records{skipped}; y = {res.metric.task}.{res.metric.name}, x = {res.x}",
        file=sys.stderr,
    )
    for f in res.figures:
        print(f"{f.files[0].parent}/{f.name}.{{{','.join(p.suffix[1:] for p in f.files)}}}")
    if res.bd_rows is not None:
        print(res.bd_files["md"].read_text())
    if res.paired_files.get("md"):
        print(res.paired_files["md"].read_text())
    elif not res.anchor:
        print("(no BD table: name an anchor with --anchor LABEL)", file=sys.stderr)
    return 0
