"""Token-path settings: ``edge.select``, ``edge.quant``, ``edge.mdc``, ``cloud.conceal``.

See ``docs/tokens.md`` for what each scorer, reducer, quantiser and MDC option does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from semcom.config.core import check, option

# the per-stage bits of each tiny model's shipped default codebook
# (semcom/assets/codebooks/<model>-k<bits>-l2.npz; docs/tokens.md says why)
DEFAULT_CODEBOOK_BITS = {"llava": 6, "blip": 8}

SCORERS = ("cls-attn", "attn-received", "l2-norm", "text-sim", "random", "grid")
REDUCERS = ("topk", "recoverable", "visionzip", "tome", "prumerge")


@dataclass(frozen=True)
class SelectConfig:
    scorer: Literal["cls-attn", "attn-received", "l2-norm", "text-sim", "random", "grid"] = option(
        "text-sim",
        help="importance score per vision token (text-sim: cosine between the "
        "guidance text and each patch through the model's own text encoder and projections); "
        "or your own as package.module:function",
        plugin="scorer",
    )
    reducer: Literal["topk", "recoverable", "visionzip", "tome", "prumerge"] = option(
        "topk",
        help="how tokens are reduced to the budget (or package.module:function)",
        plugin="reducer",
    )
    budget: int | None = option(None, help="patch tokens kept (fixed k); null: all tokens")
    ratio: float | None = option(None, help="fraction of patch tokens kept (instead of budget)")
    adaptive: bool = option(
        False,
        help="outlier-based budget per image (recoverable: LOF, "
        "others: IQR of the score); budget / ratio, if set, cap it",
    )
    layer: int = option(
        -1,
        help="encoder layer whose attentions / keys the attention scorers "
        "and the merging reducers use (negative: from the end)",
    )
    heads: Literal["sum", "full"] = option(
        "sum",
        help="cls-attn: attention summed over heads, or one full-width head "
        "(softmax of the CLS query against all keys with all heads as one, as in PruMerge)",
    )
    merge: Literal["mean", "sum"] = option(
        "mean",
        help="merging reducers: weighted mean (stays in the token distribution) or "
        "the released codes' weighted sum added to the kept token",
    )
    knn: int = option(32, help="recoverable / prumerge: neighbours merged into each kept token")
    text_weight: float = option(
        50.0, help="recoverable: weight of the text score in the KNN merge neighbour ranking"
    )
    lof_neighbors: int = option(20, help="recoverable: neighbours of the local outlier factor")
    contextual: float = option(
        10 / 64, help="visionzip: fraction of the budget given to contextual (merged) tokens"
    )
    extra_token: bool = option(
        True, help="recoverable / prumerge: append one global token merging everything not kept"
    )
    keep_cls: bool = option(
        True, help="send the CLS token when the model has one (counted apart from the patch budget)"
    )

    def __post_init__(self):
        check(self.budget is None or self.budget >= 1, "budget", self.budget, "must be >= 1")
        check(
            self.ratio is None or 0.0 < self.ratio <= 1.0, "ratio", self.ratio, "must be in (0, 1]"
        )
        check(
            self.budget is None or self.ratio is None,
            "ratio",
            self.ratio,
            "cannot be set together with budget",
        )
        check(self.knn >= 1, "knn", self.knn, "must be >= 1")
        check(self.text_weight >= 0, "text_weight", self.text_weight, "must be >= 0")
        check(
            2 <= self.lof_neighbors <= 256,
            "lof_neighbors",
            self.lof_neighbors,
            "must be in [2, 256]",
        )
        check(0.0 <= self.contextual < 1.0, "contextual", self.contextual, "must be in [0, 1)")
        check(-64 <= self.layer < 64, "layer", self.layer, "must be in [-64, 63]")


@dataclass(frozen=True)
class QuantConfig:
    type: Literal["none", "scalar", "codebook"] = option(
        "none", help="none (float16 values), scalar (per-channel, bits each) or codebook (VQ)"
    )
    bits: int | None = option(
        None,
        help="scalar: bits per value (null: 8); codebook: log2 of the codebook size per "
        "stage (null: the model's shipped default codebook, 2^6 for the tiny LLaVA, 6 "
        "stages of 2^8 for the tiny BLIP; 8 for other models)",
    )
    codebook: str = option(
        "",
        help="codebook file (.npz, `semcom train codebook`); empty: "
        "semcom/assets/codebooks/<edge.model.name>-k<bits>-<metric>.npz, the model's "
        "position-residual codebook (scalar with the calibrated range: the k8 file)",
    )
    prior: str = option(
        "auto",
        help="token prior file (.npz, `semcom train codebook` writes it): per-position mean "
        "tokens (the residual codebooks' base, the cloud's fill) and the context model that "
        "entropy-codes kept positions; auto: the shipped prior of edge.model.name when it "
        "was trained on this model; none: no prior (positions combinatorial, nothing "
        "filled)",
    )
    metric: Literal["l2", "cosine", "ip"] = option(
        "l2",
        help="codebook nearest-neighbour rule: l2, cosine, or raw inner product "
        "(the first seed's search)",
    )
    entropy: bool | None = option(
        None,
        help="entropy-code the values in the description's arithmetic code (codebook: "
        "each stage's learned usage counts; scalar: an adaptive model); null: on for "
        "codebooks, off otherwise",
    )
    scalar_range: Literal["image", "calibrated"] = option(
        "image",
        help="scalar: per-channel range of this description's tokens (sent as float16 "
        "side info) or the calibrated range stored in the codebook file (no side info)",
    )

    def __post_init__(self):
        if self.bits is None:
            pass
        elif self.type == "codebook":
            check(
                2 <= self.bits <= 20,
                "bits",
                self.bits,
                "must be in [2, 20] for a codebook (2^2 to 2^20 entries per stage)",
            )
        else:
            check(1 <= self.bits <= 16, "bits", self.bits, "must be in [1, 16]")
        check(
            not (self.type == "none" and self.entropy),
            "entropy",
            self.entropy,
            "float16 tokens (type none) are not entropy-coded; use scalar or codebook",
        )

    def bits_for(self, model_name: str) -> int:
        """``bits``, resolved for the model of ``edge.model.name``."""
        if self.bits is not None:
            return int(self.bits)
        return DEFAULT_CODEBOOK_BITS.get(model_name, 8) if self.type == "codebook" else 8

    @property
    def entropy_coded(self) -> bool:
        """``entropy``, resolved: null means on for codebooks, off otherwise."""
        return self.type == "codebook" if self.entropy is None else bool(self.entropy)


@dataclass(frozen=True)
class MDCConfig:
    descriptions: int = option(1, help="number of descriptions D (1..8)")
    assignment: Literal["interleave", "balanced"] = option(
        "interleave",
        help="interleave (kept tokens in raster order dealt round-robin) or "
        "balanced (by importance, snake order, so each description gets an equal share)",
    )
    redundancy: int = option(0, help="most important tokens repeated in every description")
    positions: Literal["union", "own"] = option(
        "own",
        help="side info per description: only its own positions (cheapest; a lost "
        "description's tokens are simply absent and the cloud fills their positions from "
        "the prior) or the kept set of all descriptions plus its share (union: the cloud "
        "knows where lost tokens were and can conceal them from received neighbours)",
    )
    cls: Literal["every", "first"] = option(
        "every", help="CLS in every description or only in the first"
    )

    def __post_init__(self):
        check(1 <= self.descriptions <= 8, "descriptions", self.descriptions, "must be in [1, 8]")
        check(self.redundancy >= 0, "redundancy", self.redundancy, "must be >= 0")


@dataclass(frozen=True)
class ConcealConfig:
    mode: Literal["drop", "zero", "mean", "interp"] = option(
        "drop",
        help="what the cloud does with tokens of lost descriptions: drop them, zero "
        "vectors, the token mean (codebook file), or the mean of received grid neighbours",
    )
    neighbours: Literal[4, 8] = option(8, help="interp: 4- or 8-neighbourhood on the patch grid")
    empty: Literal["mean", "zero"] = option(
        "mean",
        help="all descriptions lost: the model gets one token (in the CLS slot), the "
        "token mean of the codebook file (zero when there is none) or a zero vector",
    )
    stats: str = option(
        "",
        help="codebook file whose token mean the cloud uses for 'mean' "
        "concealment; empty: the edge codebook when one is used, else the "
        "mean of the received tokens",
    )
    fill: Literal["prior", "none"] = option(
        "prior",
        help="patch positions that hold no token (not sent, or lost and not concealed): "
        "prior gives the model every position, empty ones holding the token prior's mean "
        "token of that position (edge.quant.prior); none hands over only what arrived",
    )
