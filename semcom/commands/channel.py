"""``semcom ber`` and ``semcom bler-table``: link-level simulations from the command line.

Only argparse at import time: ``semcom ber --help`` imports neither numpy's heavy users
nor torch; the simulation modules load when a command runs.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction

from semcom.cliargs import add_config_args, parser, setup_logging

FADINGS = ("awgn", "rayleigh-block", "rayleigh-fast", "rician-block", "rician-fast")
MODULATIONS = ("bpsk", "qpsk", "16qam", "64qam", "256qam")


def parse_range(text: str) -> list[float]:
    """``START:STOP:STEP`` (STOP included) or ``a,b,c``.

    >>> parse_range("0:1:0.25"), parse_range("1,2.5")
    ([0.0, 0.25, 0.5, 0.75, 1.0], [1.0, 2.5])
    """
    from semcom.errors import ConfigError

    try:
        if ":" in text:
            a, b, s = (float(x) for x in text.split(":"))
            if s <= 0 or b < a:
                raise ValueError
            n = int(round((b - a) / s + 1e-9)) + 1
            return [round(a + i * s, 10) for i in range(n)]
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            "", f"SNR range {text!r}: use START:STOP:STEP (e.g. 0:2.75:0.25) or a comma list"
        ) from None


def parse_rate(text: str) -> float:
    return float(Fraction(text.strip()))


# ---- semcom ber ------------------------------------------------------------------------
def ber_parser():
    p = parser(
        "ber",
        "BER/BLER versus SNR of a 5G NR LDPC link (Monte-Carlo).\n\n"
        "Code-block mode (default): k information bits -> LDPC (base graph and lifting "
        "by TS 38.212) rate-matched to n bits -> QAM -> channel -> APP demapper -> "
        "decoder; a block error is any wrong information bit, as in Sionna's "
        "tutorials.\nTransport-block mode (--tb): k is the TB payload; CRC, "
        "segmentation, rate matching to --rate and HARQ as in the link; a block "
        "error is a TB lost after all rounds.\n\nexample:\n  semcom ber --k 512 "
        "--n 1024 --modulation bpsk --channel awgn --ebno 0:2.75:0.25 --iterations 20 "
        "--target-block-errors 100",
    )
    add_config_args(p)
    p.add_argument(
        "--k",
        type=int,
        help="information bits per block (default: 1024, or channel.tb_bits with --tb)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--n", type=int, help="coded bits per block (code-block mode)")
    g.add_argument(
        "--rate", type=parse_rate, help="code rate, e.g. 1/2 (default: k/n, or channel.code_rate)"
    )
    p.add_argument("--tb", action="store_true", help="transport-block mode (see above)")
    p.add_argument("--modulation", choices=MODULATIONS, help="default: channel.modulation")
    p.add_argument("--channel", choices=FADINGS, help="default: channel.fading")
    p.add_argument("--rician-k-db", type=float, help="Rician K factor (dB)")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--ebno", metavar="RANGE", help="Eb/N0 points in dB, START:STOP:STEP or a,b")
    s.add_argument("--esno", metavar="RANGE", help="Es/N0 points in dB")
    p.add_argument("--decoder", choices=("fast", "sionna"), help="default: channel.decoder")
    p.add_argument(
        "--iterations", type=int, help="decoder iterations (default: channel.iterations)"
    )
    p.add_argument("--minsum-scale", type=float, help="fast decoder normalisation")
    p.add_argument("--no-decoder-early-stop", action="store_true", help="always run all iterations")
    p.add_argument("--harq", choices=("none", "ir", "chase"), help="--tb: HARQ mode")
    p.add_argument("--harq-max-rounds", type=int, help="--tb: transmissions per TB")
    p.add_argument(
        "--target-block-errors",
        type=int,
        default=100,
        help="next SNR point after this many block errors (default 100)",
    )
    p.add_argument(
        "--max-blocks",
        type=int,
        default=100_000,
        help="blocks per SNR point at most (default 100000)",
    )
    p.add_argument("--batch-size", type=int, default=500, help="blocks per batch")
    p.add_argument("--target-bler", type=float, help="stop after the first point below it")
    p.add_argument(
        "--no-early-stop", action="store_true", help="keep going after an error-free point"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the results as JSON on stdout (instead of the table)",
    )
    p.add_argument("--out", metavar="FILE", help="also write the JSON results to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def ber_main(argv=None) -> int:
    args = ber_parser().parse_args(argv)
    setup_logging(args.verbose)
    import dataclasses
    import math
    import time

    import numpy as np

    from semcom.config import load_config
    from semcom.errors import ConfigError

    cfg = load_config(args.config, list(args.overrides)).channel
    changes = {}
    for opt, key in (
        ("modulation", "modulation"),
        ("channel", "fading"),
        ("rician_k_db", "rician_k_db"),
        ("decoder", "decoder"),
        ("iterations", "iterations"),
        ("minsum_scale", "minsum_scale"),
        ("harq", "harq"),
        ("harq_max_rounds", "harq_max_rounds"),
    ):
        if getattr(args, opt) is not None:
            changes[key] = getattr(args, opt)
    if args.no_decoder_early_stop:
        changes["early_stop"] = False
    k = args.k if args.k is not None else (cfg.tb_bits if args.tb else 1024)
    if args.tb:
        if args.n is not None:
            raise ConfigError("", "--n is for code-block mode; use --rate with --tb")
        rate = args.rate if args.rate is not None else cfg.code_rate
        changes.update(code_rate=rate, tb_bits=max(8, -(-k // 8) * 8))
        if k % 8:
            raise ConfigError("", f"--k {k}: a TB payload must be whole bytes (multiple of 8)")
    else:
        from channel.ldpc import K_CB, K_MIN

        if not K_MIN <= k <= K_CB[1]:
            raise ConfigError(
                "", f"--k {k} is out of range: a 5G NR code block carries {K_MIN}..{K_CB[1]} bits"
            )
        if args.n is not None:
            n = args.n
        elif args.rate is not None:
            n = round(k / args.rate)
        else:
            n = 2 * k
        rate = k / n
        if not (1 / 5 <= rate <= 0.95):
            raise ConfigError(
                "",
                f"code rate k/n = {k}/{n} = {rate:.4f} is not supported: a "
                "5G NR LDPC code block needs 1/5 <= k/n <= 0.95",
            )
    try:
        cfg = dataclasses.replace(cfg, **changes)
    except ConfigError as exc:
        raise ConfigError(f"channel.{exc.key}" if exc.key else "", exc.message) from None
    qm = cfg.bits_per_symbol
    if not args.tb and n % qm:
        raise ConfigError(
            "", f"--n {n} must be a multiple of the bits per symbol ({qm} for {cfg.modulation})"
        )
    snr_text = args.ebno or args.esno or "0:3:0.5"
    snrs = parse_range(snr_text)
    snr_type = "esno" if args.esno else "ebno"
    offset = 10 * math.log10(rate * qm)  # Es/N0 = Eb/N0 + offset
    esnos = [s + offset if snr_type == "ebno" else s for s in snrs]
    ebnos = [s - offset for s in esnos]

    from channel.decoders import kernel_info, make_decoder
    from channel.montecarlo import format_table, sim_bler

    decoder = make_decoder(
        cfg.decoder, cfg.iterations, alpha=cfg.minsum_scale, early_stop=cfg.early_stop
    )
    if args.tb:
        from channel.phy import NrPhy

        phys: dict[float, NrPhy] = {}

        def mc_fun(batch, snr, rng):
            esno = snr + offset if snr_type == "ebno" else snr
            if esno not in phys:
                phys[esno] = NrPhy(dataclasses.replace(cfg, snr_db=esno, snr_type="esno"), decoder)
            u = rng.integers(0, 2, (batch, k), dtype=np.uint8)
            b = phys[esno].run(u, rng)
            err = b.decoded_payload() != u
            return {
                "blocks": batch,
                "block_errors": int((~b.tb_ok).sum()),
                "bits": batch * k,
                "bit_errors": int(err.sum()),
                "transmissions": int(b.rounds.sum()),
                "iterations": int(b.iterations.sum()),
            }

        plan = NrPhy(cfg, decoder).plan(k)
        code_info = {
            "mode": "transport-block",
            "payload_bits": k,
            "tb_crc": plan.tb_crc,
            "code_blocks": plan.num_cbs,
            "k_prime": plan.k_prime,
            "e": plan.e,
            "bg": plan.bg,
            "z": plan.code.z,
            "code_rate": rate,
            "harq": cfg.harq,
            "harq_max_rounds": cfg.rounds,
        }
    else:
        from channel.phy import CodeBlockSim

        sim = CodeBlockSim(k, n, qm, cfg.fading, decoder, rician_k_db=cfg.rician_k_db)

        def mc_fun(batch, snr, rng):
            return sim(batch, snr + offset if snr_type == "ebno" else snr, rng)

        code_info = {
            "mode": "code-block",
            "k": k,
            "n": n,
            "code_rate": rate,
            "bg": sim.code.bg,
            "z": sim.code.z,
            "k_ldpc": sim.code.k,
            "n_ldpc": sim.code.n,
            "filler": sim.code.filler,
        }
    t0 = time.perf_counter()
    results = sim_bler(
        mc_fun,
        snrs,
        batch_size=args.batch_size,
        max_blocks=args.max_blocks,
        target_block_errors=args.target_block_errors,
        target_bler=args.target_bler,
        early_stop=not args.no_early_stop,
        seed=args.seed,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    wall = time.perf_counter() - t0
    label = "EbNo [dB]" if snr_type == "ebno" else "EsNo [dB]"
    other = esnos if snr_type == "ebno" else ebnos
    other_label = "EsNo [dB]" if snr_type == "ebno" else "EbNo [dB]"
    doc = {
        "schema": "semcom.ber/1",
        "code": code_info,
        "modulation": cfg.modulation,
        "bits_per_symbol": qm,
        "channel": cfg.fading,
        "rician_k_db": cfg.rician_k_db if cfg.fading.startswith("rician") else None,
        "decoder": {
            "name": cfg.decoder,
            "iterations": cfg.iterations,
            "early_stop": cfg.early_stop,
            "minsum_scale": cfg.minsum_scale if cfg.decoder == "fast" else None,
            "kernel": kernel_info() if cfg.decoder == "fast" else "sionna",
        },
        "snr_type": snr_type,
        "stopping": {
            "target_block_errors": args.target_block_errors,
            "max_blocks": args.max_blocks,
            "target_bler": args.target_bler,
            "early_stop": not args.no_early_stop,
            "batch_size": args.batch_size,
            "seed": args.seed,
        },
        "points": [
            {**r.to_dict(), "ebno_db": round(eb, 4), "esno_db": round(es, 4)}
            for r, eb, es in zip(results, ebnos, esnos)
        ],
        "wall_s": round(wall, 2),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        head = (
            f"{code_info['mode']}: "
            + ", ".join(
                f"{key}={val}"
                for key, val in code_info.items()
                if key != "mode" and not isinstance(val, float)
            )
            + f", rate={rate:.4f}, {cfg.modulation}, "
            f"{cfg.fading}, decoder={cfg.decoder} ({doc['decoder']['kernel']}), "
            f"iterations={cfg.iterations}"
        )
        print(head)
        print(format_table(results, snr_label=label, other=other, other_label=other_label))
        print(f"wall {wall:.1f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    return 0


# ---- semcom bler-table -----------------------------------------------------------------
def bler_table_parser():
    p = parser(
        "bler-table",
        "Build or inspect BLER tables of the exact NR link (the data of "
        "the nr-table link).\n\nexamples:\n  semcom bler-table show\n  nice -n 10 "
        "semcom bler-table build --out my_table.json --modulations 64qam "
        "--code-rates 3/4 --fadings awgn",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="{build,show}")
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
    b.add_argument("--decoder", choices=("fast", "sionna"), default="fast")
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
    for q in (b, s):
        q.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _list(text, conv, default):
    return default if text is None else [conv(x) for x in text.split(",") if x.strip()]


def bler_table_main(argv=None) -> int:
    args = bler_table_parser().parse_args(argv)
    setup_logging(args.verbose)
    from channel import tables
    from semcom.errors import ConfigError

    if args.action == "show":
        table = tables.BlerTable.load(args.file)
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
