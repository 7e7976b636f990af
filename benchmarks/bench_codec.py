"""Neural codec throughput and rates: encode / entropy-decode / synthesis per image, and
real-bitstream bpp beside the likelihood estimate, per architecture and rate point.

Uses the committed codecs (``semcom/assets/codecs``) on tiny-world eval images; falls
back to randomly initialised codecs (then the rates mean nothing) if none are committed.
Timed with one torch thread (the entropy-coding path always runs on one thread).
``python -m benchmarks.run codec``.
"""

from __future__ import annotations

import time

import numpy as np

N_IMAGES = 16


def run() -> dict:
    import torch

    from semcom.stages.codec.arch import ARCH_CODES
    from semcom.stages.codec.gained import gained_codec
    from semcom.stages.codec.stage import NeuralCodec
    from semcom.stages.codec.weights import finalize, load_codec, read_manifest
    from semcom.world import scenes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = [s.render()[0] for s in scenes(0, "eval", N_IMAGES)]
        px = 96 * 96
        committed = {e["arch"]: e for e in read_manifest()["codecs"] if e["variant"] == "base"}
        rows = []
        for arch in ARCH_CODES:
            if arch in committed:
                points = range(1, len(committed[arch]["lambdas"]) + 1)
                codecs = [load_codec(arch, rp) for rp in points]
            else:
                torch.manual_seed(0)
                m = gained_codec(arch)
                finalize(m)
                codecs = [NeuralCodec(m, rp) for rp in range(1, m.K + 1)]
            for c in codecs:
                c.encode(images[0])  # warm-up (builds the float64 coding copy)
                enc, dec, syn, bits, est, side = [], [], [], [], [], []
                for im in images:
                    t0 = time.perf_counter()
                    p = c.encode(im)
                    t1 = time.perf_counter()
                    lat = c.decode_latent(p.data, (96, 96))
                    t2 = time.perf_counter()
                    c.synthesize(lat, (96, 96))
                    t3 = time.perf_counter()
                    enc.append(t1 - t0)
                    dec.append(t2 - t1)
                    syn.append(t3 - t2)
                    cats = p.ledger.by_category()
                    bits.append(cats["payload"])
                    side.append(cats["header"] + cats["side_info"])
                    est.append(p.meta["est_bits"])
                rows.append(
                    {
                        "arch": arch,
                        "rate_point": c.rate_point,
                        "trained": arch in committed,
                        "encode_ms": 1e3 * float(np.mean(enc)),
                        "entropy_decode_ms": 1e3 * float(np.mean(dec)),
                        "synthesis_ms": 1e3 * float(np.mean(syn)),
                        "bpp_payload": float(np.mean(bits)) / px,
                        "bpp_est": float(np.mean(est)) / px,
                        "bpp_header_side": float(np.mean(side)) / px,
                    }
                )
    finally:
        torch.set_num_threads(threads)
    lines = [
        f"{'arch':<11}{'rp':>3}{'enc ms':>9}{'dec ms':>9}{'g_s ms':>9}"
        f"{'bpp_payload':>13}{'bpp_est':>10}{'hdr+side':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['arch']:<11}{r['rate_point']:>3}{r['encode_ms']:>9.1f}"
            f"{r['entropy_decode_ms']:>9.1f}{r['synthesis_ms']:>9.1f}"
            f"{r['bpp_payload']:>13.4f}{r['bpp_est']:>10.4f}"
            f"{r['bpp_header_side']:>10.4f}" + ("" if r["trained"] else "  (untrained)")
        )
    return {"images": N_IMAGES, "rows": rows, "summary": "\n".join(lines)}


if __name__ == "__main__":
    print(run()["summary"])
