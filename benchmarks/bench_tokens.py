"""Token path throughput: edge encode / cloud decode per image, and chunked NN search.

Measured on synthetic tokens (145 x 96, like the tiny models), so the numbers are those
of the token path itself (selection, quantisation, MDC, wire format, concealment), not of
the vision encoder. ``python -m benchmarks.run tokens``.
"""

from __future__ import annotations

import time

import numpy as np

DIM, GRID, HEADS = 96, 12, 4


class _Stub:
    """Backend attributes the token methods read (no model runs in this benchmark)."""

    family = "blip"
    model_id = "bench-synthetic"
    has_cls = True
    token_dim = DIM
    grid = GRID
    num_patches = GRID * GRID
    num_layers = 4
    device = "cpu"


def _contexts(n: int, seed: int = 0):
    from edge.selection.context import TokenContext
    from semcom.seeding import rng

    r = np.random.default_rng(seed)
    out = []
    P = GRID * GRID
    for i in range(n):
        tok = r.normal(size=(1 + P, DIM)).astype(np.float32)
        logits = r.normal(size=(HEADS, 1 + P, 1 + P)) * 2
        att = np.exp(logits - logits.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        out.append(
            TokenContext(
                tok,
                (GRID, GRID),
                True,
                att.astype(np.float32),
                r.normal(size=(1 + P, DIM)).astype(np.float32),
                r.normal(size=P).astype(np.float32),
                rng(0, "select", i),
                str(i),
            )
        )
    return out


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _path(overrides: list[str], codebook_path=None, n: int = 20) -> dict:
    from cloud.methods.tokens import TokenCloud
    from cloud.pipeline import CloudItem
    from edge.methods.tokens import TokenEdge
    from semcom.config import load_config
    from semcom.types import Sample

    if codebook_path:
        overrides = overrides + [f"edge.quant.codebook={codebook_path}"]
    cfg = load_config(None, overrides)
    stub = _Stub()
    edge, cloud = TokenEdge(cfg, stub), TokenCloud(cfg, stub)
    ctxs = _contexts(n)
    samples = [Sample(str(i), str(i), np.zeros((96, 96, 3), np.uint8)) for i in range(n)]
    results = []

    def enc():
        results[:] = [edge.encode_context(s, c) for s, c in zip(samples, ctxs)]

    t_enc = _time(enc, 3) / n
    items = [CloudItem(s.sample_id, r.descriptions, (96, 96)) for s, r in zip(samples, results)]
    t_dec = _time(lambda: cloud.decode(items), 3) / n
    nbytes = np.mean([sum(len(d.data) for d in r.descriptions) for r in results])
    return {
        "encode_ms": 1e3 * t_enc,
        "decode_ms": 1e3 * t_dec,
        "encode_img_s": 1 / t_enc,
        "decode_img_s": 1 / t_dec,
        "bytes": float(nbytes),
    }


def run() -> dict:
    import tempfile

    from semcom.stages import entropy as ec
    from semcom.stages.codebook import Codebook

    r = np.random.default_rng(0)
    out: dict = {}
    # chunked nearest-neighbour search, 2^16 x DIM codebook
    cb16 = Codebook(r.normal(size=(2**16, DIM)).astype(np.float32), meta={"metric": "l2"})
    q = r.normal(size=(145, DIM)).astype(np.float32)
    for chunk in (4096, 16384, 65536):
        t = _time(lambda: cb16.search(q, chunk=chunk), 3)
        out[f"nn_2^16_chunk{chunk}_ms"] = 1e3 * t
        out[f"nn_2^16_chunk{chunk}_tokens_s"] = 145 / t
    # entropy coder
    cb12 = Codebook(
        r.normal(size=(2**12, DIM)).astype(np.float32),
        counts=r.integers(1, 100, 2**12),
        meta={"metric": "l2"},
    )
    model = ec.StaticModel.from_counts(cb12.counts + 0.5)
    syms = r.integers(0, 2**12, 145)
    bits = ec.encode(syms, model)
    out["ac_encode_145_ms"] = 1e3 * _time(lambda: ec.encode(syms, model), 5)
    out["ac_decode_145_ms"] = 1e3 * _time(lambda: ec.decode(bits, 145, model), 5)
    # whole token path per image
    with tempfile.TemporaryDirectory() as tmp:
        path = cb12.save(f"{tmp}/cb.npz")
        cases = {
            "topk16 fp16 D=1": ["edge.select.budget=16", "edge.select.scorer=text-sim"],
            "recoverable16 scalar8 D=4": [
                "edge.select.budget=16",
                "edge.select.reducer=recoverable",
                "edge.quant.type=scalar",
                "edge.quant.bits=8",
                "edge.mdc.descriptions=4",
            ],
            "tome16 vq12+ac D=4": [
                "edge.select.budget=16",
                "edge.select.reducer=tome",
                "edge.quant.type=codebook",
                "edge.quant.bits=12",
                "edge.quant.entropy=true",
                "edge.mdc.descriptions=4",
            ],
            "all144 vq12 D=1": ["edge.quant.type=codebook", "edge.quant.bits=12"],
        }
        paths = {name: _path(ov, path) for name, ov in cases.items()}
    out["paths"] = paths
    lines = [
        f"chunked NN search, 145 queries x 2^16 x {DIM} codebook: "
        + ", ".join(
            f"chunk {c}: {out[f'nn_2^16_chunk{c}_ms']:.1f} ms" for c in (4096, 16384, 65536)
        ),
        f"arithmetic coder, 145 indices of 2^12: encode {out['ac_encode_145_ms']:.2f} ms, "
        f"decode {out['ac_decode_145_ms']:.2f} ms",
        f"{'token path (per image)':28s} {'encode ms':>10s} {'decode ms':>10s} {'bytes':>8s}",
    ]
    for name, p in paths.items():
        lines.append(f"{name:28s} {p['encode_ms']:10.2f} {p['decode_ms']:10.2f} {p['bytes']:8.0f}")
    out["summary"] = "\n".join(lines)
    return out
