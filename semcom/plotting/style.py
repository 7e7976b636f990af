"""How figures look: palette, fixed colours, markers, axis and metric labels, log axes.

Colour encodes the method label (:class:`ColorMap`: known labels such as ``JPEG`` or
``Full tokens`` always get the same colour, the others the Okabe-Ito palette in order),
the marker encodes the channel condition (:func:`marker_map`). :data:`STYLE` is the
matplotlib rc every figure is drawn under. matplotlib is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semcom.plotting.points import Condition, Point

# Okabe-Ito (colour-blind safe), without yellow (too light on white).
PALETTE = (
    "#0072B2",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#E69F00",
    "#D55E00",
    "#000000",
    "#882255",
    "#44AA99",
    "#999933",
    "#332288",
    "#AA4499",
)
FIXED_COLORS = {
    "JPEG": "#D55E00",
    "WebP": "#E69F00",
    "Full tokens": "#000000",
    "full tokens": "#000000",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
RATE_LABELS = {
    "bpp_wire": "Wire rate [bpp]",
    "bpp_payload": "Payload rate [bpp]",
    "bpp_channel": "Channel rate [coded bits/pixel]",
    "cpp": "Channel uses per pixel [cpp]",
    "bpp_est": "Estimated rate [bpp]",
    "bpp_wire_mean": "Wire rate, per-image mean [bpp]",
}
TASK_NAMES = {"vqa": "VQA", "caption": "Captioning", "retrieval": "Retrieval"}
METRIC_NAMES = {
    "accuracy": "accuracy",
    "exact_match": "exact match",
    "cider_d": "CIDEr-D",
    "bleu_4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "r_mean": "mean recall",
    "txt_r1": "image-to-text R@1",
    "txt_r5": "image-to-text R@5",
    "txt_r10": "image-to-text R@10",
    "img_r1": "text-to-image R@1",
    "img_r5": "text-to-image R@5",
    "img_r10": "text-to-image R@10",
    "txt_r_mean": "image-to-text mean recall",
    "img_r_mean": "text-to-image mean recall",
}

STYLE = {
    "font.size": 9,
    "axes.labelsize": 9,
    "axes.titlesize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.4,
    "lines.markersize": 5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": True,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "0.85",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.04,
}


def snr_symbol(snr_type: str, tex: bool = True) -> str:
    """The SNR's symbol (``Es/N0`` or ``Eb/N0``), as TeX for axes and legends or plain text."""
    if tex:
        return "$E_b/N_0$" if snr_type == "ebno" else "$E_s/N_0$"
    return "Eb/N0" if snr_type == "ebno" else "Es/N0"


class ColorMap:
    """Fixed colours per method label: known labels first, then the palette in order."""

    def __init__(self, labels: Iterable[str]):
        self.colors: dict[str, str] = {}
        used = set()
        for lab in labels:
            if lab in FIXED_COLORS:
                self.colors[lab] = FIXED_COLORS[lab]
                used.add(FIXED_COLORS[lab])
        free = [c for c in PALETTE if c not in used and c not in FIXED_COLORS.values()]
        free += [c for c in PALETTE if c not in free and c not in used]
        i = 0
        for lab in labels:
            if lab not in self.colors:
                self.colors[lab] = free[i % len(free)]
                i += 1

    def __call__(self, label: str) -> str:
        return self.colors.get(label, "#777777")


def needs_log(values: Iterable[float]) -> bool:
    """Whether the positive ``values`` span more than a decade (then the axis is log-scaled)."""
    vals = [v for v in values if v and v > 0]
    return bool(vals) and max(vals) / min(vals) > 10.0


def log_axis(ax, axis: str = "x", values: Iterable[float] | None = None) -> None:
    """Log scale with readable labels: 0.05, 0.1, 0.2... over up to two decades,
    powers of ten beyond that."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator

    getattr(ax, f"set_{axis}scale")("log")
    a = ax.xaxis if axis == "x" else ax.yaxis
    vals = [v for v in (values or []) if v and v > 0]
    wide = bool(vals) and max(vals) / min(vals) > 100.0
    if wide:
        a.set_major_locator(LogLocator(base=10))
        a.set_major_formatter(LogFormatterSciNotation())
    else:
        a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    a.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def marker_map(points: Sequence[Point]) -> dict[Condition, str]:
    """One marker per channel condition of ``points``, in the conditions' sort order."""
    conds = sorted({p.cond for p in points}, key=lambda c: c.sort_key())
    return {c: MARKERS[i % len(MARKERS)] for i, c in enumerate(conds)}


LINESTYLES_BY_KIND = {"proposed": "-", "anchor": "--", "upper": ":"}
