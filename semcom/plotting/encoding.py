"""Who gets which colour, marker and line style in a figure; what a title says is fixed.

Two encodings (:class:`Encoding`), chosen from the channel conditions of the points:

- **by method** (the conditions differ in SNR or loss only, e.g. the demo): colour =
  method label (fixed per label, :class:`~semcom.plotting.style.ColorMap`), marker =
  channel condition, solid lines for proposed methods, dashed for anchors;
- **by setting** (the conditions differ in code rate or modulation, e.g. a code-rate x
  modulation or MCS sweep with 15+ settings): colour = code rate (a sequential scale,
  in order), marker = modulation (fixed per modulation), line style = method. One line
  per (method, setting) through its operating points; where every setting has a single
  point, one line per (method, modulation) through the code rates (the MCS ladder).

The legend is one block outside the axes, in sections. :func:`held_fixed` lists what
is the same in every plotted run (link, modulation, code rate, SNR, fading, dataset,
samples per run), for titles.
"""

from __future__ import annotations

from collections.abc import Sequence

from semcom.plotting.points import AUTO, Point, label_order, varying_fields
from semcom.plotting.style import MARKERS, ColorMap

MOD_MARKERS = {
    "bpsk": "v",
    "qpsk": "o",
    "16qam": "s",
    "64qam": "^",
    "256qam": "D",
    "1024qam": "P",
}
LINESTYLES = ("-", "--", "-.", ":")


def _mod_name(mod: str | None) -> str:
    if mod == AUTO:
        return "MCS auto (link adaptation)"
    return str(mod).upper().replace("QAM", "-QAM") if mod else "?"


def setting_name(modulation: str | None, code_rate: float | None) -> str:
    """``QPSK, R=0.5``, or the adaptive link's name when the MCS is chosen per TB."""
    if modulation == AUTO:
        return _mod_name(AUTO)
    return f"{_mod_name(modulation)}, R={code_rate:.4g}" if code_rate else _mod_name(modulation)


def rate_colors(rates: Sequence[float]) -> dict[float, str]:
    """A sequential colour per code rate (low rate = dark), from viridis without its
    lightest end (yellow is unreadable on white)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    rs = sorted(set(rates))
    n = max(1, len(rs) - 1)
    return {r: to_hex(cmap(0.85 * i / n)) for i, r in enumerate(rs)}


class Encoding:
    """Colour, marker and line style of each point, and the legend entries."""

    def __init__(self, points: Sequence[Point], colors: ColorMap):
        self.colors = colors
        conds = sorted({p.cond for p in points if not p.ideal_ref}, key=lambda c: c.sort_key())
        self.varying = varying_fields(conds)
        self.by_setting = bool({"code_rate", "modulation"} & self.varying)
        self.labels = label_order(points)
        self.cond_markers = {c: MARKERS[i % len(MARKERS)] for i, c in enumerate(conds)}
        rates = [c.code_rate for c in conds if c.code_rate is not None]
        self.rate_color = rate_colors(rates) if self.by_setting and rates else {}
        mods = sorted({c.modulation for c in conds if c.modulation}, key=str)
        spare = [m for m in MARKERS if m not in MOD_MARKERS.values()]
        self.mod_marker = {
            m: MOD_MARKERS.get(str(m).lower(), spare[i % len(spare)]) for i, m in enumerate(mods)
        }
        anchors = {p.label for p in points if p.anchor}
        proposed = [lab for lab in self.labels if lab not in anchors]
        self.label_ls = {}
        for i, lab in enumerate(proposed):
            self.label_ls[lab] = LINESTYLES[(2 * i) % len(LINESTYLES)] if self.by_setting else "-"
        for i, lab in enumerate(lab for lab in self.labels if lab in anchors):
            self.label_ls[lab] = (
                LINESTYLES[(2 * i + 1) % len(LINESTYLES)] if self.by_setting else "--"
            )
        self.anchors = anchors

    # ------------------------------------------------------------------ per point
    def color(self, p: Point) -> str:
        if self.by_setting and p.cond.code_rate in self.rate_color:
            return self.rate_color[p.cond.code_rate]
        return self.colors(p.label)

    def marker(self, p: Point) -> str:
        if self.by_setting:
            return self.mod_marker.get(p.cond.modulation, "o")
        return self.cond_markers.get(p.cond, "o")

    def linestyle(self, label: str) -> str:
        return self.label_ls.get(label, "-")

    def filled(self, p: Point) -> bool:
        return not p.anchor

    def line_groups(self, points: Sequence[Point]) -> list[tuple[str, tuple, list[Point]]]:
        """``(label, key, points by x)`` per drawn line (upper bounds excluded)."""
        groups: dict[tuple, list[Point]] = {}
        for p in points:
            if not p.upper:
                groups.setdefault((p.label, p.cond), []).append(p)
        if self.by_setting and groups and all(len(v) == 1 for v in groups.values()):
            ladder: dict[tuple, list[Point]] = {}
            for (label, cond), pts in groups.items():
                key = (label, cond.link, cond.snr_db, cond.modulation)
                ladder.setdefault(key, []).extend(pts)
            items = [(k[0], k, v) for k, v in ladder.items()]
        else:
            items = [(k[0], k, v) for k, v in groups.items()]
        order = {lab: i for i, lab in enumerate(self.labels)}
        items.sort(key=lambda t: (order.get(t[0], 99), str(t[1])))
        return [(lab, key, sorted(pts, key=lambda p: p.x)) for lab, key, pts in items]

    # ------------------------------------------------------------------ legend
    def legend_entries(self, points: Sequence[Point], *, show_cond: bool = True) -> list:
        """Line2D handles in sections (a bold-less header entry before each)."""
        import statistics

        from matplotlib.lines import Line2D

        def header(text):
            h = Line2D([], [], ls="", marker="", label=text)
            h.is_header = True  # drawn in bold by place_legend
            return h

        out = [header("method" + (" (line style)" if self.by_setting else ""))]
        uppers: dict[str, list[Point]] = {}
        for p in points:
            if p.upper:
                uppers.setdefault(p.label, []).append(p)
        for lab in self.labels:
            if lab in uppers:
                ps = uppers[lab]
                rate = statistics.median(p.x for p in ps)
                if any(p.ideal_ref for p in ps):
                    text = f"{lab}: ceiling, ideal link ({rate:.3g} bpp; no channel)"
                else:
                    text = f"{lab} ({rate:.3g} bpp, upper bound)"
                out.append(Line2D([], [], color=self.colors(lab), ls=":", lw=1.4, label=text))
                continue
            color = "0.25" if self.by_setting else self.colors(lab)
            out.append(
                Line2D(
                    [],
                    [],
                    color=color,
                    ls=self.linestyle(lab),
                    lw=1.4,
                    label=lab,
                )
            )
        if self.by_setting:
            if self.rate_color:
                out.append(header("code rate (colour)"))
                for r, c in self.rate_color.items():
                    out.append(
                        Line2D([], [], color=c, ls="", marker="s", ms=6, label=f"R = {r:.4g}")
                    )
            if self.mod_marker:
                out.append(header("modulation (marker)"))
                for m, mk in self.mod_marker.items():
                    out.append(
                        Line2D([], [], color="0.3", ls="", marker=mk, ms=5, label=_mod_name(m))
                    )
        elif show_cond and len(self.cond_markers) > 1:
            out.append(header("channel (marker)"))
            for c, mk in self.cond_markers.items():
                out.append(
                    Line2D([], [], color="0.35", ls="", marker=mk, label=c.describe(self.varying))
                )
        return out


def place_legend(ax, entries: list, *, title: str | None = None, fig_legend=None):
    """One legend block right of ``ax`` (or of the figure), section headers in bold."""
    target = fig_legend if fig_legend is not None else ax
    kw = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if fig_legend is not None:
        kw = dict(loc="upper left", bbox_to_anchor=(0.99, 0.95))
    leg = target.legend(handles=entries, title=title, **kw)
    for text, h in zip(leg.get_texts(), entries):
        if getattr(h, "is_header", False):
            text.set_fontweight("bold")
    leg._legend_box.align = "left"
    return leg


def held_fixed(records: Sequence[dict], *, skip: Sequence[str] = ()) -> str:
    """What every plotted run (ideal-link reference runs aside) has in common, e.g.
    ``QPSK, R = 0.5, AWGN, nr-table link; tinyworld eval, 150 samples per run``."""
    linked = [
        r for r in records if ((r.get("config") or {}).get("channel") or {}).get("link") != "ideal"
    ] or list(records)

    def one(path: str):
        vals = set()
        for r in linked:
            v = r.get("config") or {}
            for k in path.split("."):
                v = (v or {}).get(k) if isinstance(v, dict) else None
            vals.add(v if not isinstance(v, (dict, list)) else str(v))
        return next(iter(vals)) if len(vals) == 1 else None

    parts = []
    link = one("channel.link")
    if link not in (None, "ideal"):
        mod, cr, snr = one("channel.modulation"), one("channel.code_rate"), one("channel.snr_db")
        fading = one("channel.fading")
        if "modulation" not in skip and mod:
            parts.append(_mod_name(mod))
        if "code_rate" not in skip and cr is not None:
            parts.append(f"R = {cr:g}")
        if "snr_db" not in skip and snr is not None:
            st = one("channel.snr_type") or "esno"
            parts.append(f"{'Eb/N0' if st == 'ebno' else 'Es/N0'} = {snr:g} dB")
        if fading:
            parts.append(str(fading).upper() if fading == "awgn" else str(fading))
        parts.append(f"{link} link")
    elif link == "ideal":
        parts.append("ideal link")
    data = []
    ds, split = one("data.dataset"), one("data.split")
    if ds:
        data.append(f"{ds}{' ' + split if split else ''}")
    ns = {r.get("num_samples") for r in records if r.get("num_samples")}
    if len(ns) == 1:
        data.append(f"{next(iter(ns))} samples per run")
    text = ", ".join(parts)
    if data:
        text += ("; " if text else "") + ", ".join(data)
    return text
