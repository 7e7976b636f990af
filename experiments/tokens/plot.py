"""Figures of the token-path results (reads experiments/tokens/results/*.json).

- ``budgets-<model>.png``: primary metric vs token budget, one line per method;
- ``mdc-<model>.png``: primary metric vs description-loss probability, one line per D.

    .venv/bin/python experiments/tokens/plot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parents[1]))


def plot_budgets(doc, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.tokens.tables import METHOD_NAMES, PRIMARY

    tasks = doc["tasks"]
    res = doc["results"]
    full = next(r for r in res if r["budget"] == "all")
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        keys = []
        for r in res:
            k = (r["scorer"], r["reducer"])
            if r["budget"] != "all" and k not in keys:
                keys.append(k)
        for k in keys:
            pts = sorted(
                (r["budget"], r["primary"][t])
                for r in res
                if (r["scorer"], r["reducer"]) == k and r["budget"] != "all"
            )
            style = "-o" if k[0] == "text-sim" else ("--x" if k[0] in ("random", "grid") else "-.")
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                style,
                ms=4,
                label=METHOD_NAMES.get(tuple(k), "/".join(k)),
            )
        ax.axhline(full["primary"][t], color="k", lw=1, ls=":", label="all 144 tokens")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("patch tokens sent (budget)")
        ax.set_ylabel(f"{t} {PRIMARY[t]}")
        ax.set_title(f"{doc['model_id']}: {t} ({doc['samples']} samples)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_mdc(doc, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.tokens.tables import PRIMARY

    tasks = doc["tasks"]
    res = [r for r in doc["results"] if r["lost"] == "random"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for D in sorted({r["D"] for r in res}):
            pts = sorted((r["p"], r["primary"][t]) for r in res if r["D"] == D)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, label=f"D = {D}")
        ax.set_xlabel("description-loss probability p")
        ax.set_ylabel(f"{t} {PRIMARY[t]}")
        ax.set_title(f"{t}: {doc['method']} k={doc['budget']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    done = []
    for path in sorted(RESULTS.glob("*.json")):
        doc = json.loads(path.read_text())
        exp = doc.get("exp")
        if exp == "budgets":
            plot_budgets(doc, path.with_suffix(".png"))
        elif exp == "mdc":
            plot_mdc(doc, path.with_suffix(".png"))
        else:
            continue
        done.append(path.with_suffix(".png").name)
    print("wrote", ", ".join(done) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
