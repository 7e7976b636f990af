"""LDPC decoder throughput and error-rate gap: fast (layered normalised min-sum, C kernel)
vs Sionna's sum-product, in one process, on the same blocks.

Code: 5G NR LDPC, k = 1024 information bits, n = 2048 (rate 1/2, BG2, Z = 104), QPSK,
AWGN, 20 iterations. Throughput = information bits decoded per second (decoder call only;
LLRs prepared beforehand). Sionna runs its own ``LDPC5GDecoder`` (flooding, boxplus-phi,
pruned graph, no early stop: its native mode) with torch's default threads; the fast
decoder runs single-threaded, with and without early stopping.

The gap: BLER of both decoders on identical LLRs at Eb/N0 points around 1e-2, and the
Eb/N0 at which each crosses BLER 1e-2 (log-linear interpolation). For the BLER sweep the
Sionna side uses semcom's early-stopping wrapper of Sionna's decoder, which returns the
same decisions as the uninterrupted decoder (tests/test_channel_decoders.py) in less time.

The fixed-point decoder (``decoder: fixed``: 8-bit layered normalised min-sum, 32 frames
per AVX2 vector): information bits per CPU-second at 10 iterations without early stop on
the same code, beside the float kernel and Sionna's ``LDPC5GDecoder`` at 10 iterations in
the same run; and its loss at BLER 1e-2 against the float kernel at 10 iterations, on
identical LLRs (20,000 blocks per point).

The links: information bits per second of the exact ``nr`` link (``NrLink.transmit``: CRC,
LDPC, QAM, channel, demapping, decoding, CRC, ledger) and descriptions per second of the
abstracted ``nr-table`` link, both for the default channel config (QPSK, rate 1/2, AWGN,
TBs of 3816 bits, fast decoder) at Es/N0 = 3 dB (error-free region) and 1.25 dB (in the
waterfall of the 3816-bit blocks), on descriptions of 1000 bytes (3 TBs each).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

K, N, QM, ITER = 1024, 2048, 2, 20


def _blocks(code, idx, ebno_db, batch, seed):
    from channel.channels import transmit
    from channel.decoders import LLR_CLIP
    from channel.modulation import demodulate, modulate

    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2, (batch, K), dtype=np.uint8)
    x = modulate(code.encode(u)[:, idx], QM)
    esno = ebno_db + 10 * math.log10(K / N * QM)
    z, nv = transmit(x, 10 ** (-esno / 10), "awgn", rng)
    llr_rx = np.clip(demodulate(z, nv, QM), -LLR_CLIP, LLR_CLIP)
    L = np.zeros((batch, code.n), np.float32)
    L[:, code.k_prime : code.k] = LLR_CLIP
    L[:, idx] += llr_rx
    return u, llr_rx, L


def _timed(fn, reps=1):
    best = math.inf
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _timed_cpu(fn):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU
    time of a single-threaded call is the better measure of its cost."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _fmt(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def _crossing(snrs, bler, target=1e-2):
    for i in range(1, len(snrs)):
        a, b = bler[i - 1], bler[i]
        if a >= target > b:
            lb = math.log10(max(b, 1e-9))
            w = (math.log10(a) - math.log10(target)) / (math.log10(a) - lb)
            return snrs[i - 1] + w * (snrs[i] - snrs[i - 1])
    return None


def link_throughput(
    descriptions: int = 60, table_descriptions: int = 5000, size: int = 1000, esno_db=(3.0, 1.25)
) -> dict:
    """Exact link: info Mbit/s; table link: descriptions/s (same descriptions, one process).

    :output: ``{esno_db: {exact_mbps, exact_desc_per_s, exact_loss, table_desc_per_s,
        table_loss, ...}}`` plus the config used.
    """
    from channel.link import build_link
    from semcom.config.channel import ChannelConfig
    from semcom.types import Description

    rng = np.random.default_rng(0)
    descs = [
        Description(f"i{j}", 0, 1, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), (96, 96))
        for j in range(max(descriptions, table_descriptions))
    ]
    out = {}
    for snr in esno_db:
        cfg = ChannelConfig(link="nr", snr_db=snr, snr_type="esno")
        exact = build_link(cfg)
        exact.transmit(descs[:2], np.random.default_rng(1))  # warm-up (kernel, codes)
        res, t_exact, c_exact = _timed_cpu(
            lambda: exact.transmit(descs[:descriptions], np.random.default_rng(2))
        )
        table = build_link(ChannelConfig(link="nr-table", snr_db=snr, snr_type="esno"))
        table.transmit(descs[:2], np.random.default_rng(1))
        tres, t_table, c_table = _timed_cpu(
            lambda: table.transmit(descs[:table_descriptions], np.random.default_rng(3))
        )
        tot, ttot = res.totals, tres.totals
        out[str(snr)] = {
            "exact_descriptions": descriptions,
            "exact_s": t_exact,
            "exact_cpu_s": c_exact,
            "exact_mbps": tot["info_bits"] / t_exact / 1e6,
            "exact_mbps_cpu": tot["info_bits"] / c_exact / 1e6,
            "exact_desc_per_s": descriptions / t_exact,
            "exact_loss": tot["erasures"] / descriptions,
            "exact_bler": tot["bler"],
            "table_descriptions": table_descriptions,
            "table_s": t_table,
            "table_cpu_s": c_table,
            "table_desc_per_s": table_descriptions / t_table,
            "table_desc_per_cpu_s": table_descriptions / c_table,
            "table_mbps": ttot["info_bits"] / t_table / 1e6,
            "table_loss": ttot["erasures"] / table_descriptions,
            "table_bler": ttot["bler"],
        }
    return {
        "config": {
            "modulation": "qpsk",
            "code_rate": 0.5,
            "fading": "awgn",
            "tb_bits": 3816,
            "decoder": "fast",
            "iterations": 20,
            "description_bytes": size,
        },
        "by_esno_db": out,
        "loadavg_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }


class _TimedDecoder:
    """Wraps a decoder backend and sums the CPU time of its calls."""

    def __init__(self, dec):
        self.dec, self.cpu_s, self.name = dec, 0.0, dec.name

    def __call__(self, code, llr, rows, **kw):
        t = time.process_time()
        out = self.dec(code, llr, rows, **kw)
        self.cpu_s += time.process_time() - t
        return out


def exact_link_vs_decoder(ebno_db: float = 1.5, descriptions: int = 400, reps: int = 3) -> dict:
    """The exact link's information rate against its own decoder's, in the same run: TBs
    of 1000 bits (K' = 1024 with CRC24A), rate 1/2 (n = 2048), QPSK, AWGN at Eb/N0
    ``ebno_db`` (the decoder benchmark's code and point); the decoder's CPU time is summed
    inside ``NrLink.transmit``. ``ratio`` = link rate / decoder rate (target >= 0.7)."""
    from channel.link import build_link
    from semcom.config.channel import ChannelConfig
    from semcom.types import Description

    rng = np.random.default_rng(0)
    descs = [
        Description(f"i{j}", 0, 1, rng.integers(0, 256, 125, dtype=np.uint8).tobytes(), (96, 96))
        for j in range(descriptions)
    ]
    cfg = ChannelConfig(link="nr", snr_db=ebno_db, snr_type="ebno", tb_bits=1000)
    link = build_link(cfg)
    link.transmit(descs[:4], np.random.default_rng(1))  # warm-up
    best = None
    for r in range(reps):
        timed = _TimedDecoder(link.phy.decoder)
        link.phy.decoder = timed
        t = time.process_time()
        res = link.transmit(descs, np.random.default_rng(2 + r))
        total = time.process_time() - t
        link.phy.decoder = timed.dec
        row = (total, timed.cpu_s, res.totals)
        best = row if best is None or total < best[0] else best
    total, dec_s, tot = best
    bits = tot["info_bits"]
    return {
        "ebno_db": ebno_db,
        "descriptions": descriptions,
        "tb_bits": 1000,
        "link_mbps_cpu": bits / total / 1e6,
        "decoder_mbps_cpu": bits / dec_s / 1e6,
        "outside_decoder_share": 1 - dec_s / total,
        "ratio": dec_s / total,
        "bler": tot["bler"],
    }


def fixed_point(speed_blocks: int = 640, bler_blocks: int = 20000, ebno=(1.5, 1.75, 2.0, 2.25)):
    """The fixed-point decoder against the float kernel (and Sionna for speed) at 10
    iterations, k=1024, R=1/2, QPSK, AWGN. Speed: one thread, CPU time, no early stop
    (every frame runs all 10 iterations), best of 3; the loss: Eb/N0 at BLER 1e-2
    (log-linear interpolation) of fixed minus float, on the same LLRs."""
    import torch
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    from channel.decoders import FastDecoder, FixedDecoder, fixed_kernel_info
    from channel.ldpc import LdpcCode

    it = 10
    code = LdpcCode.for_block(K, K / N)
    idx = code.rm_indices(N, 0, QM)
    rows = code.active_rows(code.covered_cols(idx))
    fixed, fast = FixedDecoder(it, early_stop=False), FastDecoder(it, early_stop=False)
    sionna = LDPC5GDecoder(LDPC5GEncoder(K, N, num_bits_per_symbol=QM), num_iter=it)
    u, llr_rx, L = _blocks(code, idx, 1.5, speed_blocks, seed=11)
    logits = torch.from_numpy(-llr_rx)
    fixed(code, L[:8], rows), fast(code, L[:8], rows), sionna(logits[:8])  # warm-up

    def cpu_best(fn, reps=3):
        return min(_timed_cpu(fn)[2] for _ in range(reps))

    bits = speed_blocks * K
    t_fixed = cpu_best(lambda: fixed(code, L, rows))
    t_fast = cpu_best(lambda: fast(code, L, rows))
    t_sionna = cpu_best(lambda: sionna(logits), reps=1)
    t_es = cpu_best(lambda: FixedDecoder(it, early_stop=True)(code, L, rows))
    rows_bler = []
    for j, e in enumerate(ebno):
        errs = {"fast": 0, "fixed": 0}
        for c in range(0, bler_blocks, 2000):
            n = min(2000, bler_blocks - c)
            uu, _, LL = _blocks(code, idx, e, n, seed=500 + 31 * j + c)
            errs["fast"] += int((fast(code, LL, rows).bits != uu).any(1).sum())
            errs["fixed"] += int((fixed(code, LL, rows).bits != uu).any(1).sum())
        rows_bler.append({"ebno_db": e, "blocks": bler_blocks, "errors": errs})
    snrs = [r["ebno_db"] for r in rows_bler]
    x = {
        k: _crossing(snrs, [r["errors"][k] / r["blocks"] for r in rows_bler])
        for k in ("fast", "fixed")
    }
    loss = None if None in x.values() else x["fixed"] - x["fast"]
    return {
        "iterations": it,
        "kernel": fixed_kernel_info(),
        "blocks": speed_blocks,
        "mbps_cpu": {
            "fixed": bits / t_fixed / 1e6,
            "fixed_early_stop": bits / t_es / 1e6,
            "fast": bits / t_fast / 1e6,
            "sionna": bits / t_sionna / 1e6,
        },
        "fixed_vs_fast": t_fast / t_fixed,
        "fixed_vs_sionna": t_sionna / t_fixed,
        "sionna_torch_threads": torch.get_num_threads(),
        "bler": rows_bler,
        "ebno_at_bler_1e-2": x,
        "loss_db": loss,
    }


def table_link_speed(descriptions: int = 20000, size: int = 3000, esno_db: float = 1.25) -> dict:
    """Code blocks per second of the ``nr-table`` link, vectorised (``outcomes``: arrays,
    no per-description objects) and through ``transmit`` (LinkStats and Erasures per
    description): QPSK, rate 1/2, AWGN, descriptions of ``size`` bytes (TBs of 3816 bits)."""
    from channel.link import build_link
    from semcom.config.channel import ChannelConfig
    from semcom.types import Description

    link = build_link(ChannelConfig(link="nr-table", snr_db=esno_db))
    sizes = np.full(descriptions, size)
    link.outcomes(sizes[:10], np.random.default_rng(0))
    o, t_arr, c_arr = _timed_cpu(lambda: link.outcomes(sizes, np.random.default_rng(1)))
    cbs = int(o.code_blocks.sum())
    blob = bytes(size)
    descs = [Description(f"i{j}", 0, 1, blob, (96, 96)) for j in range(descriptions // 4)]
    res, t_tx, c_tx = _timed_cpu(lambda: link.transmit(descs, np.random.default_rng(2)))
    cbs_tx = sum(s.code_blocks for s in res.stats)
    return {
        "descriptions": descriptions,
        "description_bytes": size,
        "code_blocks": cbs,
        "outcomes_cb_per_s": cbs / t_arr,
        "outcomes_cb_per_cpu_s": cbs / c_arr,
        "outcomes_desc_per_s": descriptions / t_arr,
        "transmit_cb_per_s": cbs_tx / t_tx,
        "transmit_desc_per_s": len(descs) / t_tx,
        "loss": float(1 - o.delivered.mean()),
    }


def pusch_vs_nr(
    mcs_list=(4, 13, 20), n_prb: int = 8, pusch_tbs: int = 400, nr_tbs: int = 1000
) -> dict:
    """BLER of PUSCH (Sionna's OFDM transmitter and receiver, AWGN, perfect CSI, fast
    decoder) against the single-carrier ``nr`` link with the same TB: the same TB size,
    code blocks and coded bits per code block, at Es/N0 points 0.25 dB apart around the
    waterfall; the Es/N0 where each crosses BLER 10 % (log-linear interpolation)."""
    import dataclasses

    import torch

    from channel.phy import NrPhy
    from channel.pusch import PuschLink
    from semcom.config.channel import ChannelConfig

    torch.set_num_threads(1)
    rows = []
    for mcs in mcs_list:
        cfg = ChannelConfig(link="pusch", mcs=mcs, pusch_prb=n_prb, bandwidth_mhz=20)
        link = PuschLink(cfg)
        ch = link.chain(mcs)
        enc = ch.tx._tb_encoder
        e = int(enc.cw_lengths[0])
        k_prime = int(enc.ldpc_encoder.k)
        nr_cfg = dataclasses.replace(
            cfg, link="nr", tb_bits=ch.tbs, tb_crc="38.212", code_rate=k_prime / e, mcs=None
        )
        plan = NrPhy(nr_cfg).plan(ch.tbs)
        same = plan.e == e and plan.num_cbs == enc.num_cbs and plan.k_prime == k_prime

        def nr_bler(esno, n, seed):
            phy = NrPhy(dataclasses.replace(nr_cfg, snr_db=esno))
            r = np.random.default_rng(seed)
            u = r.integers(0, 2, (n, ch.tbs), dtype=np.uint8)
            return float(1 - phy.run(u, r).tb_ok.mean())

        def pusch_bler(esno, n, seed):
            link.n0 = 10 ** (-esno / 10)
            r = np.random.default_rng(seed)
            u = r.integers(0, 2, (n, ch.tbs), dtype=np.uint8)
            return float(1 - link._send(ch, u, seed)[1].mean())

        # coarse scan on the nr link for the 10 % point, then a fine grid around it
        s0 = -6.0
        while nr_bler(s0, 200, 1) > 0.5 and s0 < 30:
            s0 += 0.5
        grid = [round(s0 - 1.0 + 0.25 * i, 2) for i in range(9)]
        t0 = time.perf_counter()
        b_nr = [nr_bler(x, nr_tbs, 100 + i) for i, x in enumerate(grid)]
        b_pu = [pusch_bler(x, pusch_tbs, 200 + i) for i, x in enumerate(grid)]
        x_nr = _crossing(grid, b_nr, 0.1)
        x_pu = _crossing(grid, b_pu, 0.1)
        rows.append(
            {
                "mcs": mcs,
                "modulation": cfg.modulation,
                "code_rate": cfg.code_rate,
                "tbs": ch.tbs,
                "code_blocks": int(enc.num_cbs),
                "e": e,
                "same_code": bool(same),
                "esno_db": grid,
                "bler_nr": b_nr,
                "bler_pusch": b_pu,
                "esno_at_10pct": {"nr": x_nr, "pusch": x_pu},
                "gap_db": None if x_nr is None or x_pu is None else x_pu - x_nr,
                "blocks": {"nr": nr_tbs, "pusch": pusch_tbs},
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
    return {"n_prb": n_prb, "rows": rows}


def run(speed_blocks: int = 200, gap_blocks: int = 4000, gap_ebno=(1.25, 1.5, 1.75, 2.0)) -> dict:
    import torch
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    from channel.decoders import FastDecoder, SionnaDecoder, kernel_info
    from channel.ldpc import LdpcCode

    code = LdpcCode.for_block(K, K / N)
    idx = code.rm_indices(N, 0, QM)
    rows = code.active_rows(code.covered_cols(idx))
    enc = LDPC5GEncoder(K, N, num_bits_per_symbol=QM)
    sionna = LDPC5GDecoder(enc, num_iter=ITER)
    fast_es = FastDecoder(ITER, early_stop=True)
    fast_full = FastDecoder(ITER, early_stop=False)
    speed = {}
    for ebno in (1.5, 2.5):
        u, llr_rx, L = _blocks(code, idx, ebno, speed_blocks, seed=1)
        logits = torch.from_numpy(-llr_rx)  # Sionna: log P(1)/P(0)
        sionna(logits[:8])  # build/warm up
        fast_es(code, L[:8], rows)
        s_out, s_t = _timed(lambda: sionna(logits).numpy().astype(np.uint8))
        f_out, f_t = _timed(lambda: fast_es(code, L, rows), reps=3)
        g_out, g_t = _timed(lambda: fast_full(code, L, rows), reps=3)
        _, _, s_c = _timed_cpu(lambda: sionna(logits))
        _, _, f_c = _timed_cpu(lambda: fast_es(code, L, rows))
        bits = speed_blocks * K
        speed[ebno] = {
            "blocks": speed_blocks,
            "sionna_bps_cpu": bits / s_c,
            "fast_bps_cpu": bits / f_c,
            "ratio_cpu": s_c / f_c,
            "sionna_bps": bits / s_t,
            "fast_bps": bits / f_t,
            "fast_no_early_stop_bps": bits / g_t,
            "ratio": s_t / f_t,
            "ratio_no_early_stop": s_t / g_t,
            "fast_mean_iterations": float(f_out.iterations.mean()),
            "block_errors": {
                "sionna": int((s_out != u).any(1).sum()),
                "fast": int((f_out.bits != u).any(1).sum()),
            },
        }
    # BLER on identical LLRs around 1e-2
    sion_es = SionnaDecoder(ITER, early_stop=True)
    gap_rows, t_gap = [], time.perf_counter()
    for j, ebno in enumerate(gap_ebno):
        errs = {"fast": 0, "sionna": 0}
        done = 0
        while done < gap_blocks:
            n = min(1000, gap_blocks - done)
            u, _, L = _blocks(code, idx, ebno, n, seed=100 + 17 * j + done)
            errs["fast"] += int((fast_es(code, L, rows).bits != u).any(1).sum())
            errs["sionna"] += int((sion_es(code, L, rows).bits != u).any(1).sum())
            done += n
        gap_rows.append(
            {
                "ebno_db": ebno,
                "blocks": gap_blocks,
                **{f"bler_{k}": v / gap_blocks for k, v in errs.items()},
                "errors": errs,
            }
        )
    snrs = [r["ebno_db"] for r in gap_rows]
    x_fast = _crossing(snrs, [r["bler_fast"] for r in gap_rows])
    x_sion = _crossing(snrs, [r["bler_sionna"] for r in gap_rows])
    gap = None if x_fast is None or x_sion is None else x_fast - x_sion
    wp = speed[1.5]
    links = link_throughput()
    exact = exact_link_vs_decoder()
    tspeed = table_link_speed()
    fx = fixed_point()
    fm = fx["mbps_cpu"]
    summary = "\n".join(
        [
            f"LDPC k={K} n={N} (BG2, Z={code.z}), QPSK, AWGN, {ITER} iterations; fast kernel: "
            f"{kernel_info()}, 1 thread; Sionna: torch threads={torch.get_num_threads()}",
            *(
                f"  Eb/N0 {e} dB, {v['blocks']} blocks: Sionna {v['sionna_bps'] / 1e6:.3f} Mbit/s | "
                f"fast {v['fast_bps'] / 1e6:.2f} Mbit/s (x{v['ratio']:.0f}, "
                f"{v['fast_mean_iterations']:.1f} it.) | fast, all {ITER} it. "
                f"{v['fast_no_early_stop_bps'] / 1e6:.2f} Mbit/s (x{v['ratio_no_early_stop']:.0f}); "
                f"per CPU-second: Sionna {v['sionna_bps_cpu'] / 1e6:.3f}, fast "
                f"{v['fast_bps_cpu'] / 1e6:.2f} Mbit/s (x{v['ratio_cpu']:.0f})"
                for e, v in speed.items()
            ),
            "  BLER on identical LLRs ("
            + f"{gap_blocks} blocks/point): "
            + "; ".join(
                f"{r['ebno_db']} dB fast {r['bler_fast']:.2e} / sionna {r['bler_sionna']:.2e}"
                for r in gap_rows
            ),
            f"  Eb/N0 at BLER 1e-2: fast {x_fast if x_fast is None else round(x_fast, 3)} dB, "
            f"sionna {x_sion if x_sion is None else round(x_sion, 3)} dB, gap "
            f"{'n/a' if gap is None else f'{gap:+.3f} dB'} (fast minus Sionna)",
            "Links (QPSK, R=1/2, AWGN, 1000-byte descriptions = 3 TBs of 3816 bits, fast decoder):",
            *(
                f"  Es/N0 {e} dB: exact nr link {v['exact_mbps']:.2f} Mbit/s of information "
                f"({v['exact_mbps_cpu']:.2f} per CPU-second; {v['exact_desc_per_s']:.1f} "
                f"descriptions/s, loss {v['exact_loss']:.3f}) | nr-table link "
                f"{v['table_desc_per_s']:.0f} descriptions/s ({v['table_desc_per_cpu_s']:.0f} per "
                f"CPU-second, loss {v['table_loss']:.3f})"
                for e, v in links["by_esno_db"].items()
            ),
            f"  (load average {links['loadavg_1min']:.1f} on {links['cpu_count']} CPUs)",
            f"Exact link vs its decoder (k=1024 R=1/2 QPSK AWGN, Eb/N0 {exact['ebno_db']} dB, "
            f"{exact['descriptions']} TBs, CPU time): link {exact['link_mbps_cpu']:.2f} Mbit/s, "
            f"decoder {exact['decoder_mbps_cpu']:.2f} Mbit/s, ratio {exact['ratio']:.2f} "
            f"(target >= 0.7; {100 * exact['outside_decoder_share']:.0f}% outside the decoder)",
            f"Fixed-point decoder ({fx['kernel']}; k={K} R=1/2, {fx['iterations']} iterations, "
            f"no early stop, {fx['blocks']} blocks, per CPU-second, 1 thread): fixed "
            f"{fm['fixed']:.1f} Mbit/s | float {fm['fast']:.2f} Mbit/s (fixed x"
            f"{fx['fixed_vs_fast']:.1f}) | Sionna {fm['sionna']:.3f} Mbit/s (x"
            f"{fx['fixed_vs_sionna']:.0f}, {fx['sionna_torch_threads']} threads) | fixed with "
            f"early stop {fm['fixed_early_stop']:.1f} Mbit/s; target >= 20 Mbit/s",
            "  BLER at 10 iterations ("
            + f"{fx['bler'][0]['blocks']} blocks/point): "
            + "; ".join(
                f"{r['ebno_db']} dB float {r['errors']['fast']} / fixed {r['errors']['fixed']}"
                for r in fx["bler"]
            )
            + f"; Eb/N0 at BLER 1e-2: float {_fmt(fx['ebno_at_bler_1e-2']['fast'])}, fixed "
            f"{_fmt(fx['ebno_at_bler_1e-2']['fixed'])} dB, loss "
            f"{'n/a' if fx['loss_db'] is None else format(fx['loss_db'], '+.3f') + ' dB'} "
            "(target <= 0.1 dB)",
            f"Table link ({tspeed['descriptions']} descriptions of {tspeed['description_bytes']} "
            f"bytes): vectorised {tspeed['outcomes_cb_per_s']:.3g} code blocks/s "
            f"({tspeed['outcomes_desc_per_s']:.3g} descriptions/s; target >= 1e6 CB/s) | "
            f"transmit() {tspeed['transmit_cb_per_s']:.3g} code blocks/s "
            f"({tspeed['transmit_desc_per_s']:.3g} descriptions/s)",
        ]
    )
    return {
        "code": {
            "k": K,
            "n": N,
            "bg": code.bg,
            "z": code.z,
            "modulation": "qpsk",
            "iterations": ITER,
        },
        "kernel": kernel_info(),
        "torch_threads": torch.get_num_threads(),
        "speed": {str(k): v for k, v in speed.items()},
        "info_bits_per_s": {
            "sionna": wp["sionna_bps"],
            "fast": wp["fast_bps"],
            "fast_no_early_stop": wp["fast_no_early_stop_bps"],
        },
        "ratio": wp["ratio"],
        "ratio_no_early_stop": wp["ratio_no_early_stop"],
        "bler": gap_rows,
        "ebno_at_bler_1e-2": {"fast": x_fast, "sionna": x_sion},
        "gap_db": gap,
        "gap_wall_s": round(time.perf_counter() - t_gap, 1),
        "links": links,
        "exact_vs_decoder": exact,
        "table_link": tspeed,
        "fixed_point": fx,
        "summary": summary,
    }


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links-only", action="store_true", help="only the link throughputs")
    ap.add_argument("--gap-blocks", type=int, default=4000, help="blocks per BLER point")
    ap.add_argument("--speed-only", action="store_true", help="exact vs decoder, table link")
    ap.add_argument("--pusch-vs-nr", action="store_true", help="PUSCH vs the nr link, AWGN")
    ap.add_argument("--fixed", action="store_true", help="the fixed-point decoder only")
    a = ap.parse_args()
    if a.fixed:
        print(json.dumps(fixed_point(), indent=2))
    elif a.pusch_vs_nr:
        res = pusch_vs_nr()
        for r in res["rows"]:
            print(
                f"MCS {r['mcs']} ({r['modulation']}, R={r['code_rate']:.3f}, TBS {r['tbs']}, "
                f"{r['code_blocks']} CB, E={r['e']}, same code: {r['same_code']}): Es/N0 at "
                f"BLER 10 %: nr {r['esno_at_10pct']['nr']:.2f} dB, PUSCH "
                f"{r['esno_at_10pct']['pusch']:.2f} dB, gap {r['gap_db']:+.2f} dB"
            )
        print(json.dumps(res))
    elif a.speed_only:
        print(json.dumps({"exact": exact_link_vs_decoder(), "table": table_link_speed()}, indent=2))
    elif a.links_only:
        print(json.dumps(link_throughput(), indent=2))
    else:
        print(run(gap_blocks=a.gap_blocks)["summary"])
