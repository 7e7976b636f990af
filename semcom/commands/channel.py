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
    p.add_argument(
        "--decoder", choices=("fast", "fixed", "sionna"), help="default: channel.decoder"
    )
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

    from channel.decoders import fixed_kernel_info, kernel_info, make_decoder
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
            "minsum_scale": cfg.minsum_scale if cfg.decoder != "sionna" else None,
            "kernel": {"fast": kernel_info, "fixed": fixed_kernel_info}.get(
                cfg.decoder, lambda: "sionna"
            )(),
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


# ---- semcom bler-table (semcom/commands/bler_table.py) ---------------------------------
def bler_table_parser():
    from semcom.commands.bler_table import bler_table_parser as p

    return p()


def bler_table_main(argv=None) -> int:
    from semcom.commands.bler_table import bler_table_main as m

    return m(argv)
