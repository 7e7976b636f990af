"""The markdown tables of the token-path evaluations (``experiments/tokens/eval.py``):
one writer per experiment, from the saved result document alone, so ``eval.py
--retable`` redraws a table without running anything."""

from __future__ import annotations

PRIMARY = {"vqa": "accuracy", "caption": "cider_d", "retrieval": "r_mean"}
METHOD_NAMES = {
    ("text-sim", "topk"): "language-guided top-k (text-sim)",
    ("text-sim", "recoverable"): "recoverable (text recovery)",
    ("cls-attn", "topk"): "CLS attention top-k",
    ("cls-attn", "visionzip"): "VisionZip",
    ("cls-attn", "tome"): "ToMe",
    ("cls-attn", "prumerge"): "PruMerge",
    ("text-sim", "prumerge"): "PruMerge, language-guided (text-sim)",
    ("text-sim", "visionzip"): "VisionZip, language-guided (text-sim)",
    ("attn-received", "topk"): "attention received top-k",
    ("l2-norm", "topk"): "L2 norm top-k",
    ("random", "topk"): "random",
    ("grid", "topk"): "uniform grid",
}


DIGITS = {"caption": 2}  # CIDEr-D is on a 0-10 scale


def _fmt(v, task=""):
    return "-" if v is None else f"{v:.{DIGITS.get(task, 1)}f}"


def table_budgets(doc: dict) -> str:
    res, tasks = doc["results"], doc["tasks"]
    budgets = sorted({r["budget"] for r in res if r["budget"] != "all"})
    full = next(r for r in res if r["budget"] == "all")
    lines = []
    for t in tasks:
        m = PRIMARY[t]
        lines += [
            f"**{t}** ({m}, {doc['samples']} samples; all {full['tokens_sent']:.0f} "
            f"tokens: {_fmt(full['primary'][t], t)})",
            "",
            "| method | " + " | ".join(f"k={b}" for b in budgets) + " | all |",
            "|---|" + "---:|" * (len(budgets) + 1),
        ]
        methods = []
        for r in res:
            key = (r["scorer"], r["reducer"])
            if r["budget"] != "all" and key not in methods:
                methods.append(key)
        for key in methods:
            vals = []
            for b in budgets:
                r = next(
                    (x for x in res if (x["scorer"], x["reducer"]) == key and x["budget"] == b),
                    None,
                )
                vals.append(_fmt(r["primary"][t], t) if r else "-")
            name = METHOD_NAMES.get(tuple(key), "/".join(key))
            lines.append(f"| {name} | " + " | ".join(vals) + f" | {_fmt(full['primary'][t], t)} |")
        lines.append("")
    lines += [
        "Tokens sent (mean, CLS excluded) / bpp_wire at each budget, float16 tokens:",
        "",
        "| method | " + " | ".join(f"k={b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    seen = []
    for r in res:
        key = (r["scorer"], r["reducer"])
        if r["budget"] == "all" or key in seen:
            continue
        seen.append(key)
        vals = []
        for b in budgets:
            x = next(
                (x for x in res if (x["scorer"], x["reducer"]) == key and x["budget"] == b), None
            )
            vals.append(f"{x['tokens_sent']:.1f} / {x['bpp_wire']:.3f}" if x else "-")
        lines.append(f"| {METHOD_NAMES.get(key, '/'.join(key))} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def table_quant(doc: dict) -> str:
    tasks = doc["tasks"]
    lines = [
        f"{doc['samples']} samples, {doc.get('method', '')} at k={doc.get('budget', '')}; "
        "coded payload bits/token = payload bits / tokens carried (patch tokens + CLS)",
        "",
        "| quantiser | bits/token (nominal) | payload bits/token (coded) | "
        + " | ".join(f"{t} ({PRIMARY[t]})" for t in tasks)
        + " | bpp_payload | bpp_wire |",
        "|---|---:|---:|" + "---:|" * (len(tasks) + 2),
    ]
    for r in doc["results"]:
        # coded payload per token: payload bits / (patch tokens + CLS copies sent)
        per_tx = r["bpp_payload"] * doc.get("pixels", 96 * 96)
        coded = per_tx / max(r["tokens_sent"] + r.get("cls_sent", 0.0), 1e-9)
        lines.append(
            f"| {r['quant']} | {r['bits_per_token']:.0f} | {coded:.1f} | "
            + " | ".join(_fmt(r["primary"][t], t) for t in tasks)
            + f" | {r['bpp_payload']:.4f} | {r['bpp_wire']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def table_quantisers(doc: dict) -> str:
    tasks = doc["tasks"]
    cols = []
    for t in tasks:
        cols.append((t, PRIMARY[t]))
        if t == "vqa":
            cols.append((t, "accuracy/position"))
        if t == "caption":
            cols.append((t, "exact_match"))
        if t == "retrieval":
            cols += [(t, "txt_r1"), (t, "img_r1")]
    head = " | ".join(f"{t} {m}" for t, m in cols)
    lines = [
        f"{doc['samples']} samples (world seed {doc.get('world_seed', 0)}), "
        f"{doc.get('method', '')}, one description, ideal link. Overhead = (header + side "
        "info + setup) / bpp_wire.",
        "",
        f"| quantiser | k | {head} | payload bits/token | bpp_wire | overhead |",
        "|---|---:|" + "---:|" * len(cols) + "---:|---:|---:|",
    ]
    for r in doc["results"]:
        per_tx = r["bpp_payload"] * doc.get("pixels", 96 * 96)
        coded = per_tx / max(r["tokens_sent"] + r.get("cls_sent", 0.0), 1e-9)
        vals = " | ".join(_fmt(r["metrics"][t].get(m), t) for t, m in cols)
        lines.append(
            f"| {r['quant']} | {r['budget']} | {vals} | {coded:.1f} | {r['bpp_wire']:.4f} | "
            f"{100 * r.get('overhead', 0):.0f}% |"
        )
    return "\n".join(lines) + "\n"


def table_mdc(doc: dict) -> str:
    tasks = doc["tasks"]
    res = doc["results"]
    lines = [
        f"{doc['samples']} samples, {doc.get('method', '')} at k={doc.get('budget', '')}",
        "",
        "| D | variant | lost | "
        + " | ".join(f"{t}" for t in tasks)
        + " | received | tokens to model | bpp_wire |",
        "|---:|---|---|" + "---:|" * (len(tasks) + 3),
    ]
    for r in res:
        if r["lost"] == "random":
            continue
        lines.append(
            f"| {r['D']} | {r['variant']} | {r['lost']} | "
            + " | ".join(_fmt(r["primary"][t], t) for t in tasks)
            + f" | {r['descriptions_received']:.2f} | {r['tokens_to_model']:.1f} | "
            f"{r['bpp_wire']:.4f} |"
        )
    probs = sorted({r["p"] for r in res if r["lost"] == "random"})
    Ds = sorted({r["D"] for r in res if r["lost"] == "random"})
    for t in tasks:
        lines += [
            "",
            f"{t} vs description-loss probability p (random i.i.d. losses, "
            "interleave + interp concealment):",
            "",
            "| D | " + " | ".join(f"p={p}" for p in probs) + " |",
            "|---:|" + "---:|" * len(probs),
        ]
        for D in Ds:
            vals = [
                next(
                    (
                        _fmt(r["primary"][t], t)
                        for r in res
                        if r["lost"] == "random" and r["D"] == D and r["p"] == p
                    ),
                    "-",
                )
                for p in probs
            ]
            lines.append(f"| {D} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


TABLES = {
    "budgets": table_budgets,
    "quant": table_quant,
    "mdc": table_mdc,
    "quantisers": table_quantisers,
}
