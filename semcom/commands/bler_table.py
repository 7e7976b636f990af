"""``semcom bler-table``: build, inspect and plan with BLER tables (the data of the
``nr-table`` link). Only argparse at import time."""

from __future__ import annotations

import json
import sys

from semcom.cliargs import add_config_args, parser, setup_logging
from semcom.commands.channel import FADINGS, MODULATIONS, parse_rate


# ---- semcom bler-table -----------------------------------------------------------------
def bler_table_parser():
    p = parser(
        "bler-table",
        "Build or inspect BLER tables of the exact NR link (the data of "
        "the nr-table link).\n\nexamples:\n  semcom bler-table show\n  nice -n 10 "
        "semcom bler-table build --out my_table.json --modulations 64qam "
        "--code-rates 3/4 --fadings awgn",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="{build,show,plan}")
    b = sub.add_parser("build", help="simulate the grid and write a table")
    b.add_argument("--out", metavar="FILE", help="output file (required unless --default)")
    b.add_argument(
        "--default",
        action="store_true",
        help="write the package's shipped default table (maintainers)",
    )
    b.add_argument(
        "--append",
        "--resume",
        action="store_true",
        help="resume an interrupted build / add the grid's missing curves to the existing output table (same "
        "build settings) instead of starting a new one",
    )
    b.add_argument(
        "--payload-bits",
        metavar="LIST",
        help="TB payload sizes A of the grid, e.g. 40,128,512,1024,3816 (multiples of 8)",
    )
    b.add_argument("--code-rates", metavar="LIST", help="e.g. 1/3,1/2,2/3,3/4")
    b.add_argument("--modulations", metavar="LIST", help="e.g. qpsk,16qam")
    b.add_argument(
        "--mcs-tables",
        metavar="LIST",
        help="every (code rate, modulation) of these TS 38.214 MCS tables, e.g. 1,2 "
        "(instead of --code-rates x --modulations)",
    )
    b.add_argument("--fadings", metavar="LIST", help="e.g. awgn,rayleigh-block (pusch: tdl-a,...)")
    b.add_argument(
        "--link",
        choices=("nr", "pusch"),
        default="nr",
        help="nr: the exact single-carrier link (default); pusch: Sionna's PUSCH, for the "
        "38.901 channels (every MCS of --mcs-tables, HARQ none; GPU when present)",
    )
    b.add_argument("--speeds", metavar="LIST", default="3,60", help="pusch: km/h (default 3,60)")
    b.add_argument("--delay-spread-ns", type=float, default=100.0, help="pusch: RMS delay spread")
    b.add_argument(
        "--channel-estimation", choices=("perfect", "ls"), default="perfect", help="pusch"
    )
    b.add_argument("--blocks", type=int, default=60, help="pusch: TBs per SNR point")
    b.add_argument("--harq", metavar="LIST", help="modes to tabulate: none,ir,chase")
    b.add_argument("--rounds", type=int, default=4, help="HARQ transmissions tabulated")
    b.add_argument("--decoder", choices=("fast", "fixed", "sionna"), default="fast")
    b.add_argument("--iterations", type=int, default=20)
    b.add_argument("--minsum-scale", type=float, default=0.7)
    b.add_argument("--target-block-errors", type=int, default=100)
    b.add_argument(
        "--max-blocks",
        type=int,
        help="code blocks per point at most (default "
        "per fading: 2000 awgn/fast, 1500 block fading)",
    )
    b.add_argument(
        "--min-bler",
        type=float,
        help="a curve ends after its first point below "
        "this BLER (default 3e-3 awgn/fast, 1e-2 block fading)",
    )
    b.add_argument("--snr-step", type=float, help="SNR step in dB (default per fading)")
    b.add_argument("--rician-k-db", type=float, default=6.0)
    b.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("show", help="summarise a table")
    s.add_argument("file", nargs="?", help="table file (default: the shipped table)")
    s.add_argument("--json", action="store_true", help="print the table's grid and config")
    s.add_argument(
        "--by-mcs",
        type=int,
        metavar="K",
        help="per MCS of tables 1 and 2: Es/N0 at BLER 1e-1 for a code block of K bits, "
        "one column per channel",
    )
    pl = sub.add_parser(
        "plan",
        help="channel-aware budget: the token budget, quantiser, descriptions and MCS of "
        "the best expected accuracy for an SNR and a deadline",
    )
    pl.add_argument(
        "--calibration",
        required=True,
        metavar="DIR",
        help="results folder of an ideal-link token sweep (e.g. of configs/sweeps/plan.yaml): "
        "accuracy and description size per budget, quantiser and descriptions",
    )
    pl.add_argument("--snr-db", metavar="LIST", default="0,4,8,12,16,20", help="Es/N0 points")
    pl.add_argument("--deadline-ms", metavar="LIST", default="0.15", help="deadlines (ms)")
    pl.add_argument("--mcs", metavar="LIST", help="MCS indices to consider (default: all)")
    pl.add_argument(
        "--floor",
        type=float,
        help="accuracy (%%) with nothing received (default: the mean of the calibration "
        "folder's runs that lost every description, else 0)",
    )
    pl.add_argument(
        "--partial",
        action="store_true",
        help="let choices whose descriptions do not all fit the deadline compete (their "
        "expected accuracy is optimistic for multiple descriptions)",
    )
    pl.add_argument("--json", action="store_true", help="print JSON")
    add_config_args(pl)
    for q in (b, s, pl):
        q.add_argument("-v", "--verbose", action="count", default=0)
    return p


def load_calibration(folder: str, floor_pct: float | None = None):
    """(Calibration, {(budget, quant, D): description bytes}) from the records of an
    ideal-link token sweep under ``folder``; the accuracy with nothing received is the
    mean of the folder's runs that lost every description (0 without such runs)."""
    from pathlib import Path

    from semcom.errors import ConfigError
    from semcom.linkmodel.planner import Calibration

    points, sizes, floor = [], {}, []
    for rec in sorted(Path(folder).glob("*/record.json")):
        r = json.loads(rec.read_text())
        c = r.get("config", {})
        if r.get("status") == "ok" and (r.get("link") or {}).get("description_loss_rate") == 1.0:
            floor.append(r["metrics"]["vqa"]["accuracy"]["value"])  # nothing arrived
        if r.get("status") != "ok" or c.get("channel", {}).get("link") != "ideal":
            continue
        if c.get("edge", {}).get("method") != "tokens":
            continue
        q = c["edge"]["quant"]
        quant = q["type"] if q["type"] == "codebook" else f"{q['type']}{q.get('bits') or 8}"
        budget, D = int(c["edge"]["select"]["budget"]), int(c["edge"]["mdc"]["descriptions"])
        acc = r["metrics"]["vqa"]["accuracy"]["value"]
        wire = r["rate"]["wire_bits_per_tx"]
        if D == 1:
            points.append((budget, quant, acc))
        sizes[(budget, quant, D)] = max(1, round(wire / 8 / D))
    if not points:
        raise ConfigError("", f"--calibration {folder}: no ideal-link token runs with D=1 there")
    if floor_pct is None:
        floor_pct = sum(floor) / len(floor) if floor else 0.0
    return Calibration(points, floor=floor_pct), sizes


def plan_main(args) -> int:
    import dataclasses

    from semcom.config import load_config
    from semcom.linkmodel.bler import BlerTable
    from semcom.linkmodel.mcs import mcs_list
    from semcom.linkmodel.planner import Choice, best_plan

    cal, sizes = load_calibration(args.calibration, args.floor)
    base = load_config(args.config, args.overrides).channel
    if base.link != "nr-table":
        base = dataclasses.replace(base, link="nr-table")
    table = BlerTable.load(base.table or None)
    want = None if not args.mcs else {int(x) for x in args.mcs.split(",")}
    mcs = [
        m
        for m in mcs_list(base.mcs_table)
        if (want is None or m.index in want)
        and table.has(m.code_rate, m.modulation, base.fading_key)
    ]
    choices = [Choice(b, q, D, m) for (b, q, D) in sorted(sizes, key=str) for m in mcs]
    rows = []
    for dl in (float(x) for x in args.deadline_ms.split(",")):
        for snr in (float(x) for x in args.snr_db.split(",")):
            cfg = dataclasses.replace(base, snr_db=snr, snr_type="esno", deadline_ms=dl, mcs=None)
            top = best_plan(
                cfg, table, choices, lambda c: sizes[(c.budget, c.quant, c.descriptions)], cal
            )[0]
            c = top.choice
            rows.append(
                {
                    "deadline_ms": dl,
                    "esno_db": snr,
                    "budget": c.budget,
                    "quant": c.quant,
                    "descriptions": c.descriptions,
                    "mcs": c.mcs.index,
                    "expected_accuracy": round(top.expected_accuracy, 2),
                    "p_description": round(top.p_description, 4),
                    "descriptions_in_time": top.k_fit,
                    "deadline_miss_fraction": round(top.miss_fraction, 3),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'deadline ms':>11} {'Es/N0':>6} {'budget':>6} {'quant':>9} {'D':>2} {'MCS':>3} "
        f"{'E[acc]':>7} {'P(desc)':>7} {'in time':>7}"
    )
    for r in rows:
        print(
            f"{r['deadline_ms']:>11g} {r['esno_db']:>6g} {r['budget']:>6} {r['quant']:>9} "
            f"{r['descriptions']:>2} {r['mcs']:>3} {r['expected_accuracy']:>7.1f} "
            f"{r['p_description']:>7.3f} {r['descriptions_in_time']:>3}/{r['descriptions']}"
        )
    return 0


def _list(text, conv, default):
    return default if text is None else [conv(x) for x in text.split(",") if x.strip()]


def bler_table_main(argv=None) -> int:
    args = bler_table_parser().parse_args(argv)
    setup_logging(args.verbose)
    from channel import tables
    from semcom.errors import ConfigError

    if args.action == "plan":
        return plan_main(args)
    if args.action == "show":
        table = tables.BlerTable.load(args.file)
        if args.by_mcs:
            print(by_mcs(table, args.by_mcs))
            return 0
        if args.json:
            print(
                json.dumps(
                    {
                        k: table.data[k]
                        for k in ("schema", "created", "config", "grid", "build_s")
                        if k in table.data
                    },
                    indent=2,
                )
            )
            return 0
        print(summarise(table))
        return 0
    if not args.out and not args.default:
        raise ConfigError("", "bler-table build needs --out FILE (or --default)")
    if args.link == "pusch":
        return _build_pusch(args)
    grid = dict(tables.DEFAULT_GRID)
    grid["payload_bits"] = _list(args.payload_bits, int, grid["payload_bits"])
    grid["code_rate"] = _list(args.code_rates, parse_rate, grid["code_rate"])
    grid["modulation"] = _list(args.modulations, str, grid["modulation"])
    grid["fading"] = _list(args.fadings, str, grid["fading"])
    grid["harq"] = _list(args.harq, str, grid["harq"])
    if args.mcs_tables:
        from semcom.linkmodel.mcs import all_settings

        try:
            mcs_tables = tuple(int(t) for t in args.mcs_tables.split(","))
            grid["settings"] = [list(x) for x in all_settings(mcs_tables)]
        except (ValueError, KeyError):
            raise ConfigError("", f"--mcs-tables {args.mcs_tables!r}: use 1, 2 or 1,2") from None
        grid["code_rate"] = sorted({r for r, _ in grid["settings"]})
        grid["modulation"] = sorted({m for _, m in grid["settings"]})
    for a in grid["payload_bits"]:
        if a % 8 or not 8 <= a <= 8424:
            raise ConfigError(
                "", f"--payload-bits {a}: use multiples of 8 in [8, 8424] (one code block)"
            )
    for m in grid["modulation"]:
        if m not in MODULATIONS:
            raise ConfigError("", f"unknown modulation {m!r}; use {', '.join(MODULATIONS)}")
    for f in grid["fading"]:
        if f not in FADINGS:
            raise ConfigError("", f"unknown fading {f!r}; use {', '.join(FADINGS)}")
    for h in grid["harq"]:
        if h not in tables.MODES:
            raise ConfigError("", f"unknown HARQ mode {h!r}; use none, ir, chase")
    from semcom.config.channel import CODE_RATE_MAX, CODE_RATE_MIN

    for r in grid["code_rate"]:
        if not CODE_RATE_MIN <= r <= CODE_RATE_MAX:
            raise ConfigError("", f"code rate {r:g} outside [30/1024, 948/1024]")
    out = tables.DEFAULT_TABLE if args.default else args.out
    table = tables.build_table(
        grid,
        out=out,
        workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(),
        rounds=args.rounds,
        decoder=args.decoder,
        iterations=args.iterations,
        minsum_scale=args.minsum_scale,
        target_block_errors=args.target_block_errors,
        max_blocks=args.max_blocks,
        min_bler=args.min_bler,
        snr_step=args.snr_step,
        rician_k_db=args.rician_k_db,
        seed=args.seed,
        append=args.append,
    )
    print(f"wrote {out}: {len(table['entries'])} curves, built in {table['build_s']} s in all")
    return 0


def _build_pusch(args) -> int:
    from channel.tables.pusch_build import build_pusch_table
    from semcom.config.channel import NR_CHANNELS, ChannelConfig
    from semcom.errors import ConfigError

    fadings = _list(args.fadings, str, ["tdl-a", "tdl-c"])
    for f in fadings:
        if f != "awgn" and f not in NR_CHANNELS:
            raise ConfigError(
                "", f"--fadings {f!r}: pusch tables take awgn, {', '.join(NR_CHANNELS)}"
            )
    speeds = _list(args.speeds, float, [3.0, 60.0])
    base = ChannelConfig(
        link="pusch",
        mcs=9,
        bandwidth_mhz=40,
        decoder=args.decoder,
        iterations=args.iterations,
        minsum_scale=args.minsum_scale,
        channel_estimation=args.channel_estimation,
    )
    chans = [
        dict(fading=f, delay_spread_ns=args.delay_spread_ns, speed_kmh=v)
        for f in fadings
        for v in (speeds if f != "awgn" else [0.0])
    ]
    tables = tuple(int(t) for t in (args.mcs_tables or "1,2").split(","))
    table = build_pusch_table(
        base,
        chans,
        out=args.out,
        mcs_tables=tables,
        progress=not args.quiet and sys.stderr.isatty(),
        blocks=args.blocks,
        step=args.snr_step or 2.0,
        min_bler=args.min_bler or 3e-2,
        seed=args.seed,
    )
    print(f"wrote {args.out}: {len(table['entries'])} curves, built in {table['build_s']} s in all")
    return 0


def summarise(table) -> str:
    """A human summary: config, grid, and for each curve the Es/N0 at BLER 1e-1 and 1e-2."""
    import numpy as np

    d = table.data
    lines = [
        f"{table.path}",
        f"  schema {d['schema']}, created {d.get('created')}, built in {d.get('build_s')} s",
        "  config: " + ", ".join(f"{k}={v}" for k, v in d.get("config", {}).items()),
    ]
    g = d.get("grid", {})
    lines.append("  grid: " + "; ".join(f"{k}={v}" for k, v in g.items()))
    lines.append(
        f"  {'A':>5} {'K_':>5} {'bg':>2} {'rate':>6} {'mod':>6} {'fading':>15} "
        f"{'Es/N0 range [dB]':>18} {'@1e-1':>7} {'@1e-2':>7}  (Es/N0 in dB, round 1)"
    )
    for e in d["entries"]:
        s = np.asarray(e["esno_db"], float)
        b = np.asarray(e["fail"][next(iter(e["fail"]))][0], float) / np.maximum(e["blocks"], 1)

        def at(target, b=b, s=s):
            idx = np.flatnonzero(b <= target)
            if not idx.size or idx[0] == 0:
                return "   -"
            i = idx[0]
            lo, hi = max(b[i - 1], 1e-12), max(b[i], 1e-12)
            w = (np.log10(lo) - np.log10(target)) / (np.log10(lo) - np.log10(hi))
            return f"{s[i - 1] + w * (s[i] - s[i - 1]):7.2f}"

        lines.append(
            f"  {e['payload_bits']:5d} {e['k_prime']:5d} {e['bg']:2d} "
            f"{e['code_rate']:6.3f} {e['modulation']:>6} {e['fading']:>15} "
            f"{s[0]:8.2f} .. {s[-1]:6.2f} {at(0.1):>7} {at(0.01):>7}"
        )
    return "\n".join(lines)


def by_mcs(table, k_prime: int, target: float = 0.1) -> str:
    """Es/N0 [dB] where the table's code-block error rate crosses ``target``, per MCS and
    channel (0.05 dB search on the interpolated curves; '-' where the table has none)."""
    import numpy as np

    from semcom.errors import ConfigError
    from semcom.linkmodel.mcs import mcs_list

    chans = sorted({k[2] for k in table.keys()}, key=lambda f: (f != "awgn", f))
    chans = [c for c in chans if c != "rayleigh-block"]
    lines = [
        f"Es/N0 [dB] at code-block error rate {target:g}, K'={k_prime} (nearest tabulated sizes "
        "interpolated); " + table.path,
        f"{'tab':>3} {'MCS':>3} {'mod':>6} {'R':>6} " + " ".join(f"{c:>18}" for c in chans),
    ]
    seen = set()
    for t in (1, 2):
        for m in mcs_list(t):
            if t == 2 and (m.code_rate, m.qm) in seen:
                continue
            seen.add((m.code_rate, m.qm))
            cells = []
            for c in chans:
                if not table.has(m.code_rate, m.modulation, c):
                    cells.append(f"{'-':>18}")
                    continue
                x = None
                for s in np.arange(-15, 50, 0.05):
                    try:
                        p = table.cb_fail_prob(k_prime, m.code_rate, m.modulation, c, float(s))
                    except ConfigError:
                        continue
                    if p <= target:
                        x = s
                        break
                cells.append(f"{'-' if x is None else f'{x:.2f}':>18}")
            lines.append(
                f"{t:>3} {m.index:>3} {m.modulation:>6} {m.code_rate:>6.3f} " + " ".join(cells)
            )
    return "\n".join(lines)
