"""Codec path evaluation: rate-accuracy of JPEG, WebP, neural codec + decode-then-VLM and
the transform-neck (d1/d2/d3), on tiny-world captioning (tiny BLIP) and VQA (tiny LLaVA).

Every point is a normal ``semcom.commands.runner.run`` (same images, same link, same metrics,
records under ``experiments/runs/codec/``; resumable: finished runs are skipped).

    .venv/bin/python experiments/codec/evaluate.py run --task caption --images 200
    .venv/bin/python experiments/codec/evaluate.py run --task vqa --images 200
    .venv/bin/python experiments/codec/evaluate.py report        # tables, BD, figures

``report`` writes ``experiments/codec/results_<task>.{csv,md}``, ``bd_<task>.md``,
``summary.md`` and ``rate_accuracy_<task>.{png,pdf}`` (+ a sidecar ``.json`` naming the
records and the git revision).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT_DIR = REPO / "experiments" / "runs" / "codec"
sys.path.insert(0, str(REPO))

TASKS = {
    "caption": {
        "model": "blip",
        "metric": ("caption", "cider_d"),
        "extra": ("caption", "exact_match"),
    },
    "vqa": {"model": "llava", "metric": ("vqa", "accuracy"), "extra": None},
}

JPEG_Q = (1, 5, 10, 25, 50)
WEBP_Q = (1, 10, 30, 60, 80)
RATE_POINTS = (1, 2, 3, 4)
ARCHS = ("mean-scale", "factorized", "hyperprior", "elic")
NECK_CODEC = "mean-scale"
TOKEN_SELECT = [
    "edge.select.budget=16",
    "edge.select.scorer=text-sim",
    "edge.quant.type=codebook",
    "edge.quant.bits=12",
]
TOKENS_K = "Tokens k=16, VQ 12 bit"


def points(
    task: str, methods: set[str] | None = None, codecs: set[str] | None = None
) -> list[tuple[str, list[str]]]:
    """(label, overrides) of every operating point of ``task`` (``codecs``: only these
    architectures' decode-then-VLM points)."""
    pts: list[tuple[str, list[str]]] = []
    for q in JPEG_Q:
        pts.append(("JPEG", ["edge.method=jpeg", f"edge.image.quality={q}"]))
    for q in WEBP_Q:
        pts.append(("WebP", ["edge.method=webp", f"edge.image.quality={q}"]))
    from semcom.neck import read_manifest as neck_manifest
    from semcom.stages.codec.weights import read_manifest as codec_manifest

    trained = {e["arch"] for e in codec_manifest()["codecs"] if e["variant"] == "base"}
    necks = {
        e["setting"]
        for e in neck_manifest()["necks"]
        if e["family"] == TASKS[task]["model"] and e["codec"] == NECK_CODEC
    }
    for arch in [a for a in ARCHS if a in trained and (not codecs or a in codecs)]:
        for rp in RATE_POINTS:
            pts.append(
                (
                    f"Codec {arch} + decode",
                    [
                        "edge.method=codec",
                        f"edge.image.codec={arch}",
                        f"edge.image.rate_point={rp}",
                    ],
                )
            )
    for s in [s for s in ("d1", "d2", "d3") if s in necks]:
        for rp in RATE_POINTS:
            pts.append(
                (
                    f"Neck {s}",
                    [
                        "edge.method=neck",
                        f"edge.image.codec={NECK_CODEC}",
                        f"edge.image.neck_setting={s}",
                        f"edge.image.rate_point={rp}",
                    ],
                )
            )
    pts.append(("Full tokens", ["edge.method=tokens"]))
    # the neck's tokens on the token path (edge.source neck): the edge codes the image,
    # runs the neck and sends TOKEN_SELECT tokens; the codec bits are not sent
    pts.append((TOKENS_K, ["edge.method=tokens", *TOKEN_SELECT]))
    for s in [s for s in ("d3",) if s in necks]:
        for rp in RATE_POINTS:
            pts.append(
                (
                    f"Neck {s} -> {TOKENS_K}",
                    [
                        "edge.method=tokens",
                        "edge.source=neck",
                        f"edge.image.codec={NECK_CODEC}",
                        f"edge.image.neck_setting={s}",
                        f"edge.image.rate_point={rp}",
                        *TOKEN_SELECT,
                    ],
                )
            )
    if methods:
        pts = [p for p in pts if kind(p[1]) in methods]
    return pts


def kind(overrides: list[str]) -> str:
    """The ``--methods`` name of a point: its edge method, or ``neck-tokens``."""
    return "neck-tokens" if "edge.source=neck" in overrides else overrides[0].split("=")[1]


def base_overrides(task: str, images: int) -> list[str]:
    model = TASKS[task]["model"]
    return [
        f"data.num_images={images}",
        "data.split=eval",
        f"edge.model.name={model}",
        f"cloud.model.name={model}",
        f"cloud.tasks=[{task}]",
        "channel.link=ideal",
        f"run.out_dir={OUT_DIR}",
        "run.progress=false",
        "run.batch_size=32",
    ]


def cmd_run(args) -> int:
    import torch

    from semcom.commands import runner
    from semcom.config import load_config

    torch.set_num_threads(args.threads)
    methods = set(args.methods.split(",")) if args.methods else None
    codecs = set(args.codecs.split(",")) if args.codecs else None
    pts = points(args.task, methods, codecs)
    t_all = time.perf_counter()
    for i, (label, ov) in enumerate(pts):
        cfg = load_config(
            None, base_overrides(args.task, args.images) + ov + [f"run.label={label}"]
        )
        t0 = time.perf_counter()
        res = runner.run(cfg, overwrite=args.overwrite)
        rec = res.record
        m = TASKS[args.task]["metric"]
        val = (rec.get("metrics") or {}).get(m[0], {}).get(m[1], {}).get("value")
        rate = (rec.get("rate") or {}).get("bpp_wire")
        state = "skip" if res.skipped else rec.get("status")
        print(
            f"[{i + 1}/{len(pts)}] {label:<28} {' '.join(ov[1:]):<60} {state:<5} "
            f"{m[1]} {val if val is None else round(val, 4)}  bpp_wire "
            f"{rate if rate is None else round(rate, 4)}  {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        if rec.get("status") != "ok":
            print("   ", (rec.get("error") or {}).get("message"), flush=True)
    print(f"done in {time.perf_counter() - t_all:.0f}s")
    return 0


# ------------------------------------------------------------------------------ report


def load_records(task: str, images: int | None = None) -> list[dict]:
    recs = []
    for p in sorted(OUT_DIR.glob("*/record.json")):
        rec = json.loads(p.read_text())
        if rec.get("status") != "ok" or rec.get("tasks") != [task]:
            continue
        if images is not None and rec["config"]["data"]["num_images"] != images:
            continue
        if rec["config"]["cloud"]["model"]["name"] != TASKS[task]["model"]:
            continue
        rec["_path"] = str(p.relative_to(REPO))
        recs.append(rec)
    return recs


def _op(rec: dict) -> str:
    e = rec["config"]["edge"]
    if e["method"] in ("jpeg", "webp"):
        return f"q={e['image']['quality']}"
    if e["method"] in ("codec", "neck") or e.get("source") == "neck":
        return f"rp={e['image']['rate_point']}"
    return "-"


def rows_of(task: str, recs: list[dict]) -> list[dict]:
    m, extra = TASKS[task]["metric"], TASKS[task]["extra"]
    rows = []
    for r in recs:
        met = r["metrics"][m[0]][m[1]]
        rate = r["rate"]
        row = {
            "method": r["label"],
            "op": _op(r),
            "n": r["num_samples"],
            "bpp_wire": rate["bpp_wire"],
            "bpp_payload": rate["bpp_payload"],
            "bpp_est": rate.get("bpp_est"),
            m[1]: met["value"],
            f"{m[1]}_lo": met["ci95"][0],
            f"{m[1]}_hi": met["ci95"][1],
            "edge_s": (r.get("latency") or {}).get("edge_s_mean"),
            "cloud_s": (r.get("latency") or {}).get("cloud_s_mean"),
            "record": r["_path"],
        }
        if extra:
            row[extra[1]] = r["metrics"][extra[0]][extra[1]]["value"]
        rows.append(row)
    order = {lbl: i for i, lbl in enumerate(dict.fromkeys(p[0] for p in points(task)))}
    rows.sort(key=lambda x: (order.get(x["method"], 99), x["bpp_wire"]))
    return rows


def pareto(rates, accs):
    """Monotone refit: keep the points that beat every lower-rate point (the upper-left
    frontier); ties and dips are dropped, never interpolated through."""
    keep_r, keep_a, best = [], [], -math.inf
    for r, a in sorted(zip(rates, accs)):
        if a > best:
            keep_r.append(r)
            keep_a.append(a)
            best = a
    return keep_r, keep_a


def curves(rows: list[dict], metric: str, x: str = "bpp_wire") -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        if r["method"] == "Full tokens":
            continue
        out.setdefault(r["method"], ([], []))
        out[r["method"]][0].append(r[x])
        out[r["method"]][1].append(r[metric])
    return out


def bd_rows(cv: dict, anchor: str, min_points: int = 4) -> list[dict]:
    from semcom.metrics.bd import bd_accuracy, bd_rate

    res = []
    if anchor not in cv:
        return res
    ar, aa = cv[anchor]
    par, paa = pareto(ar, aa)
    for name, (r, a) in cv.items():
        if name == anchor:
            continue
        raw = bd_rate(ar, aa, r, a, min_points=min_points)
        pr, pa = pareto(r, a)
        fit = bd_rate(par, paa, pr, pa, min_points=3)
        acc = bd_accuracy(par, paa, pr, pa, min_points=3)
        res.append(
            {
                "method": name,
                "anchor": anchor,
                "bd_rate_raw": raw.text(),
                "bd_rate_pareto": fit.text(),
                "bd_acc_pareto": acc.text("{:+.4f}"),
                "pareto_points": f"{len(pr)}/{len(r)} vs {len(par)}/{len(ar)}",
                "overlap": None if fit.overlap is None else round(fit.overlap, 2),
            }
        )
    return res


def savings_at_equal_accuracy(cv: dict, test: str, anchor: str, levels: int = 5) -> list[dict]:
    """Rate ratio test/anchor at equal accuracy (log-rate interpolated on each curve's
    Pareto frontier) at accuracy levels spread over the common range."""
    import numpy as np

    if test not in cv or anchor not in cv:
        return []
    tr, ta = pareto(*cv[test])
    ar, aa = pareto(*cv[anchor])
    if len(tr) < 2 or len(ar) < 2:
        return []
    lo, hi = max(min(ta), min(aa)), min(max(ta), max(aa))
    if min(ta) >= max(aa):
        # the test's lowest-rate point is already at least as accurate as the anchor's
        # best: at the anchor's best accuracy the test needs at most its lowest rate
        return [
            {
                "accuracy": float(max(aa)),
                f"bpp_{test}": float(tr[0]),
                f"bpp_{anchor}": float(ar[-1]),
                "ratio": float(tr[0] / ar[-1]),
                "bound": True,
            }
        ]
    if hi <= lo:
        return []
    out = []
    for acc in np.linspace(lo, hi, levels):
        rt = 10 ** np.interp(acc, ta, np.log10(tr))
        ra = 10 ** np.interp(acc, aa, np.log10(ar))
        out.append(
            {
                "accuracy": float(acc),
                f"bpp_{test}": float(rt),
                f"bpp_{anchor}": float(ra),
                "ratio": float(rt / ra),
            }
        )
    return out


def fmt(v, nd=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_table(task: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0].keys())
    with open(HERE / f"results_{task}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    show = [k for k in keys if not k.endswith(("_lo", "_hi")) and k not in ("record",)]
    m = TASKS[task]["metric"][1]
    lines = [f"| {' | '.join(show)} | 95% CI |", "|" + "---|" * (len(show) + 1)]
    for r in rows:
        ci = f"[{r[m + '_lo']:.3f}, {r[m + '_hi']:.3f}]"
        lines.append("| " + " | ".join(fmt(r[k]) for k in show) + f" | {ci} |")
    (HERE / f"results_{task}.md").write_text("\n".join(lines) + "\n")


def plot(task: str, rows: list[dict], recs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semcom.plotting import FIXED_COLORS, PALETTE

    m = TASKS[task]["metric"][1]
    cv = curves(rows, m)
    cis: dict[str, list] = {}
    for r in rows:
        cis.setdefault(r["method"], []).append((r["bpp_wire"], r[m + "_lo"], r[m + "_hi"]))
    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    free = [c for c in PALETTE if c not in FIXED_COLORS.values()]
    k = 0
    for name, (rs, accs) in cv.items():
        pts = sorted(zip(rs, accs))
        anchor = name in ("JPEG", "WebP") or "decode" in name
        color = FIXED_COLORS.get(name) or free[k % len(free)]
        k += 0 if name in FIXED_COLORS else 1
        style = "--" if anchor else "-"
        if "decode" in name and NECK_CODEC not in name:
            style, alpha = ":", 0.6
        else:
            alpha = 1.0
        if len({p[0] for p in pts}) == 1 and len(pts) > 1:
            style = "none"  # one rate, several operating points (neck -> tokens: codec rp)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            style,
            marker="s" if anchor else "o",
            color=color,
            label=name,
            alpha=alpha,
            ms=4,
        )
        ci = sorted(cis[name])
        ax.fill_between(
            [c[0] for c in ci], [c[1] for c in ci], [c[2] for c in ci], color=color, alpha=0.08
        )
    full = [r for r in rows if r["method"] == "Full tokens"]
    if full:
        ax.axhline(full[0][m], color="k", ls=":", lw=1, label="uncompressed (full tokens)")
    ax.set_xscale("log")
    ax.set_xlabel("Wire rate [bpp]")
    ax.set_ylabel({"cider_d": "Captioning CIDEr-D", "accuracy": "VQA accuracy [%]"}[m])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    ax.set_title(f"tiny world, {task} ({TASKS[task]['model']}), ideal link", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(HERE / f"rate_accuracy_{task}.{ext}", dpi=300 if ext == "png" else None)
    plt.close(fig)
    from semcom.provenance import provenance

    (HERE / f"rate_accuracy_{task}.json").write_text(
        json.dumps(
            {
                "inputs": [r["_path"] for r in recs],
                "x": "bpp_wire",
                "metric": m,
                "provenance": provenance(),
            },
            indent=2,
        )
        + "\n"
    )


def cmd_report(args) -> int:
    summary = ["# Codec path: rate-accuracy summary", ""]
    for task in TASKS:
        recs = load_records(task, args.images)
        if not recs:
            continue
        rows = rows_of(task, recs)
        write_table(task, rows)
        plot(task, rows, recs)
        m = TASKS[task]["metric"][1]
        cv = curves(rows, m)
        bd = bd_rows(cv, "JPEG")
        sav = {
            f"Neck {s}": savings_at_equal_accuracy(cv, f"Neck {s}", f"Codec {NECK_CODEC} + decode")
            for s in ("d1", "d2", "d3")
        }
        bd_neck = [
            b for b in bd_rows(cv, f"Codec {NECK_CODEC} + decode") if b["method"].startswith("Neck")
        ]
        lines = [
            f"## {task} ({TASKS[task]['model']}, {m}, {rows[0]['n']} samples)",
            "",
            "BD-rate vs JPEG (x = bpp_wire; PCHIP; negative = fewer bits). raw: all "
            "points, n/a unless accuracy rises strictly with rate; pareto: monotone "
            "refit (points that beat every lower-rate point).",
            "",
            "| method | BD-rate raw [%] | BD-rate pareto [%] | BD-accuracy pareto | "
            "points (test vs anchor) | overlap |",
            "|---|---|---|---|---|---|",
        ]
        for b in bd:
            lines.append(
                f"| {b['method']} | {b['bd_rate_raw']} | {b['bd_rate_pareto']} | "
                f"{b['bd_acc_pareto']} | {b['pareto_points']} | {b['overlap']} |"
            )
        lines += [
            "",
            f"Neck vs decode-then-VLM with the same codec ({NECK_CODEC}):",
            "",
            "| method | BD-rate raw [%] | BD-rate pareto [%] | BD-accuracy pareto |",
            "|---|---|---|---|",
        ]
        for b in bd_neck:
            lines.append(
                f"| {b['method']} | {b['bd_rate_raw']} | {b['bd_rate_pareto']} | "
                f"{b['bd_acc_pareto']} |"
            )
        lines += [
            "",
            "Rate ratio neck / decode at equal accuracy (Pareto frontiers, "
            "log-rate interpolation):",
            "",
            f"| method | {m} | bpp neck | bpp decode | ratio |",
            "|---|---|---|---|---|",
        ]
        for name, pts in sav.items():
            for p in pts:
                bound = p.get("bound")
                lines.append(
                    f"| {name} | {p['accuracy']:.4f} | "
                    f"{'<= ' if bound else ''}{p[f'bpp_{name}']:.4f} | "
                    f"{p[f'bpp_Codec {NECK_CODEC} + decode']:.4f} | "
                    f"{'<= ' if bound else ''}{p['ratio']:.3f}"
                    f"{' (the neck at its lowest rate beats decode at its best)' if bound else ''} |"
                )
            if not pts:
                lines.append(f"| {name} | no common accuracy range | | | |")
        (HERE / f"bd_{task}.md").write_text("\n".join(lines) + "\n")
        summary += lines + [
            "",
            f"Table: `experiments/codec/results_{task}.md`; figure: "
            f"`experiments/codec/rate_accuracy_{task}.png`",
            "",
        ]
        print("\n".join(lines))
    (HERE / "summary.md").write_text("\n".join(summary) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--task", choices=list(TASKS), required=True)
    r.add_argument("--images", type=int, default=150)
    r.add_argument(
        "--methods", default="", help="comma list of edge methods, or neck-tokens (default all)"
    )
    r.add_argument(
        "--codecs",
        default="",
        help="comma list of codec architectures for "
        "the decode-then-VLM points (default: every trained one)",
    )
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--overwrite", action="store_true")
    s = sub.add_parser("report")
    s.add_argument("--images", type=int, default=None)
    args = p.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    raise SystemExit(main())
