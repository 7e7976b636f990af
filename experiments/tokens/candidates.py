"""The candidate quantisers of the token study's ``quantisers`` experiment
(``experiments/tokens/eval.py --exp quantisers``): a label and the config overrides of
each. The candidates' codebooks are trained by ``run_all.sh candidates`` into
``experiments/scratch/codebooks/``; the defaults are the shipped codebooks."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = REPO / "experiments" / "scratch" / "codebooks"


def quantiser_candidates(model: str) -> list[tuple[str, list[str]]]:
    """(label, overrides) of the candidates of :func:`exp_quantisers`."""
    c = CANDIDATES / model
    nofill = ["cloud.conceal.fill=none"]

    def cb(variant, bits, name=None):
        name = name or f"{model}-k{bits}-l2"
        return [
            "edge.quant.type=codebook",
            f"edge.quant.bits={bits}",
            f"edge.quant.codebook={c / variant / name}.npz",
            f"edge.quant.prior={c / variant / model}-prior.npz",
        ]

    fp16 = ["edge.quant.type=none"]
    if model == "blip":
        return [
            ("float16, no fill", fp16 + nofill),
            ("float16", fp16),
            (
                "plain k-means, all tokens, 2^8, no fill",
                cb("plain-all", 8, f"{model}-k8-l2-plain") + nofill,
            ),
            ("plain k-means, all tokens, 2^10", cb("plain-all", 10, f"{model}-k10-l2-plain")),
            ("position-residual, selected, 2^8", cb("residual-1", 8)),
            ("position-residual, selected, 4 x 2^8", cb("residual-4", 8)),
            (
                "position-residual, selected, 6 x 2^8 (default)",
                ["edge.quant.type=codebook", "edge.quant.bits=8"],
            ),
            (
                "position-residual, selected, 6 x 2^8, no fill",
                ["edge.quant.type=codebook", "edge.quant.bits=8"] + nofill,
            ),
        ]
    return [
        ("float16, no fill", fp16 + nofill),
        ("float16", fp16),
        (
            "plain k-means, all tokens, 2^8, no fill",
            cb("plain-all", 8, f"{model}-k8-l2-plain") + nofill,
        ),
        ("plain k-means, all tokens, 2^8", cb("plain-all", 8, f"{model}-k8-l2-plain")),
        ("plain k-means, selected tokens, 2^8", cb("plain-selected", 8, f"{model}-k8-l2-plain")),
        (
            "running mean (first seed paper), CLS-attention weights, 2^8",
            cb("running-mean", 8, f"{model}-k8-l2-plain-running-mean"),
        ),
        ("position-residual, all tokens, 2^8", cb("residual-all", 8)),
        ("position-residual, selected, 2^6 (default)", ["edge.quant.type=codebook"]),
        ("position-residual, selected, 2^8", ["edge.quant.type=codebook", "edge.quant.bits=8"]),
        (
            "position-residual, selected, 2^8, fixed width",
            ["edge.quant.type=codebook", "edge.quant.bits=8", "edge.quant.entropy=false"],
        ),
        ("position-residual, selected, 2^10", ["edge.quant.type=codebook", "edge.quant.bits=10"]),
        ("position-residual, selected, 2 x 2^6", cb("residual-2x6", 6)),
    ]
