"""Token-path evaluations on the tiny world: the tables of docs/tokens.md.

The vision encoder runs once per sample (contexts with attentions, keys and text
similarities cached: :meth:`edge.methods.tokens.TokenEdge.contexts` with ``full=True``),
then every configuration goes through the same classes as ``semcom run``:

- the real edge method (``TokenEdge.encode_context``: selection, quantisation, MDC,
  wire bytes, ledgers checked against the bytes);
- the experiment's description losses (explicit erasures instead of the link: the
  link is error-free here, and MDC losses are chosen per description);
- the runner's cloud side: ``cloud.session.InProcessTransport(cfg, backend).open(tasks,
  samples)`` -> ``session.process(items, samples)`` (``CloudPipeline`` -> ``TokenCloud``
  -> ``cloud.tasks``) -> ``session.finalize()``; per-sample tasks scored with
  ``semcom.commands.runner.score_task`` as the runner does.

So the numbers are those of ``semcom run`` with ``channel.link: ideal`` (checked for
headline points: ``bash experiments/tokens/run_all.sh runner-check``), without
re-running the encoder per point.
BLIP evaluates caption and retrieval on the same transmissions (one per image), as the
runner does; LLaVA evaluates VQA (one transmission per question).

Experiments (``--exp``):

- ``budgets``: methods x budgets (8, 16, 32, 64, all), float16 tokens, one description;
- ``quant``:   one method at one budget, quantisers (float16, scalar, codebooks 2^6..2^12,
  with and without entropy coding), bits per token and bpp;
- ``mdc``:     D descriptions; lossless, every single loss for D = 4, and random
  description losses with probability p for D = 1, 2, 4, 8 (per-sample seeded);
- ``quantisers``: the candidate quantisers of the default codebook path side by side
  (plain and importance-weighted k-means, the first seed paper's running mean,
  position-residual codebooks, residual stages; with and without the prior's fill) at
  each of ``--budgets``, one description; the candidates' codebooks are trained by
  ``run_all.sh candidates`` into ``experiments/scratch/codebooks/``.

Results: ``experiments/tokens/results/<exp>-<model>.json`` and a markdown table next to
it (``.md``). Example::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/tokens/eval.py \\
        --model llava --images 200 --exp budgets
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from experiments.tokens.candidates import quantiser_candidates  # noqa: E402
from experiments.tokens.tables import PRIMARY, TABLES  # noqa: E402

METHODS = [
    ("text-sim", "topk"),
    ("text-sim", "recoverable"),
    ("cls-attn", "topk"),
    ("cls-attn", "visionzip"),
    ("cls-attn", "tome"),
    ("cls-attn", "prumerge"),
    ("attn-received", "topk"),
    ("l2-norm", "topk"),
    ("random", "topk"),
    ("grid", "topk"),
]
TASKS = {"llava": ["vqa"], "blip": ["caption", "retrieval"]}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Evaluator:
    """Cached encoder outputs of one model's eval samples + the runner's cloud side."""

    def __init__(
        self,
        model: str,
        images: int,
        seed: int = 0,
        batch: int = 32,
        model_path: str = "",
        questions: int | None = None,
        tasks=None,
        world_seed: int = 0,
    ):
        import torch

        from edge.methods.tokens import TokenEdge
        from semcom.commands.runner import load_samples
        from semcom.config import load_config
        from semcom.config.model import ModelRef
        from semcom.models import load_backend

        torch.set_num_threads(1)
        self.tasks = list(tasks or TASKS[model])
        self.seed, self.batch, self.model = seed, batch, model
        self.base = [
            "edge.method=tokens",
            f"edge.model.name={model}",
            f"cloud.model.name={model}",
            f"cloud.tasks=[{','.join(self.tasks)}]",
            f"run.seed={seed}",
            f"data.num_images={images}",
            f"data.world_seed={world_seed}",
            "channel.link=ideal",
        ]
        if model_path:
            self.base += [f"edge.model.path={model_path}", f"cloud.model.path={model_path}"]
        if questions:
            self.base.append(f"data.questions_per_image={questions}")
        cfg = load_config(None, self.base)
        self.backend = load_backend(ModelRef(model, model_path))
        self.samples = load_samples(cfg, self.tasks[0])
        t0 = time.perf_counter()
        edge = TokenEdge(cfg, self.backend)
        self.contexts = []
        for i in range(0, len(self.samples), batch):
            self.contexts += edge.contexts(self.samples[i : i + batch], self.tasks[0], full=True)
        log(
            f"{len(self.samples)} samples ({'+'.join(self.tasks)}), contexts in "
            f"{time.perf_counter() - t0:.1f}s ({self.backend.model_id})"
        )

    def config(self, overrides):
        from semcom.config import load_config

        return load_config(None, self.base + list(overrides))

    def run(self, overrides, *, lose=None, label: str = "") -> dict:
        """One configuration. ``lose(sample_id, D) -> set of lost description indices``."""
        import torch

        from cloud.pipeline import CloudItem
        from cloud.session import InProcessTransport
        from edge.methods.tokens import TokenEdge
        from semcom.commands.runner import score_task
        from semcom.rate import SampleRate, aggregate
        from semcom.types import Description, RateLedger, erase

        t0 = time.perf_counter()
        cfg = self.config(overrides)
        edge = TokenEdge(cfg, self.backend)
        setup = edge.setup(self.samples)
        session = InProcessTransport(cfg, self.backend).open(self.tasks, self.samples, setup)
        outputs = {t: [] for t in self.tasks}
        rates, sent, to_model, recv, bpt, cls_sent = [], [], [], [], [], []
        for i in range(0, len(self.samples), self.batch):
            batch = self.samples[i : i + self.batch]
            items = []
            for s, ctx in zip(batch, self.contexts[i : i + self.batch]):
                er = edge.encode_context(s, ctx)
                for d in er.descriptions:
                    if d.ledger.total() != 8 * len(d.data):
                        raise AssertionError(
                            f"{s.sample_id}: ledger {d.ledger.total()} bits, "
                            f"description {8 * len(d.data)} bits"
                        )
                D = len(er.descriptions)
                lost = lose(s.sample_id, D) if lose else set()
                got = [erase(d) if d.index in lost else d for d in er.descriptions]
                led = RateLedger().merged(*(d.ledger for d in er.descriptions))
                rates.append(SampleRate.from_ledger(led, s.hw[0] * s.hw[1]))
                sent.append(er.info["tokens_sent"])
                cls_sent.append(er.info.get("cls_sent", 0))
                bpt.append(er.info["bits_per_token"])
                recv.append(sum(isinstance(r, Description) for r in got))
                items.append(CloudItem(s.sample_id, got, s.hw, s.question))
            with torch.no_grad():
                replies = session.process(items, batch)
            for rep in replies:
                to_model.append(rep["info"]["tokens_to_model"])
                for t in self.tasks:
                    outputs[t].append(rep["outputs"][t])
        final = session.finalize()
        scored = session.scores() if hasattr(session, "scores") else {}
        metrics = {}
        for t in self.tasks:
            if t in scored:
                metrics[t] = scored[t][1]
            else:
                if t in final:
                    outputs[t] = final[t]
                metrics[t] = score_task(t, self.samples, outputs[t], seed=self.seed)[1]
        agg = aggregate(rates, 8 * len(setup))
        out = {
            "label": label,
            "overrides": list(overrides),
            "metrics": {t: {k: v["value"] for k, v in m.items()} for t, m in metrics.items()},
            "ci95": {t: {k: v["ci95"] for k, v in m.items()} for t, m in metrics.items()},
            "primary": {t: metrics[t][PRIMARY[t]]["value"] for t in self.tasks},
            "bpp_wire": agg["bpp_wire"],
            "bpp_payload": agg["bpp_payload"],
            "bpp_setup": agg["bpp_setup"],
            "overhead": 1 - agg["bpp_payload"] / agg["bpp_wire"],
            "bits_per_token": float(np.mean(bpt)),
            "tokens_sent": float(np.mean(sent)),
            "cls_sent": float(np.mean(cls_sent)),
            "tokens_to_model": float(np.mean(to_model)),
            "descriptions_received": float(np.mean(recv)),
            "n": len(self.samples),
            "wall_s": time.perf_counter() - t0,
        }
        prim = "  ".join(f"{t} {v:6.2f}" for t, v in out["primary"].items())
        log(
            f"  {label:42s} {prim}  sent {out['tokens_sent']:5.1f}  to_model "
            f"{out['tokens_to_model']:5.1f}  bpp_wire {out['bpp_wire']:.4f}  "
            f"({out['wall_s']:.0f}s)"
        )
        return out


def sel(scorer, reducer, budget):
    return [
        f"edge.select.scorer={scorer}",
        f"edge.select.reducer={reducer}",
        f"edge.select.budget={budget}",
    ]


def exp_budgets(ev: Evaluator, budgets, methods) -> list[dict]:
    res = [ev.run(["edge.quant.type=none"], label="all tokens")]
    res[-1].update(scorer="-", reducer="-", budget="all")
    for b in budgets:
        for scorer, reducer in methods:
            r = ev.run(
                sel(scorer, reducer, b) + ["edge.quant.type=none"],
                label=f"{scorer}/{reducer} k={b}",
            )
            r.update(scorer=scorer, reducer=reducer, budget=b)
            res.append(r)
    return res


def exp_quant(
    ev: Evaluator, budget: int, scorer: str, reducer: str, bits_list, scalar_bits=(8, 6, 4)
) -> list[dict]:
    s = sel(scorer, reducer, budget)
    res = []
    full = ev.run(["edge.quant.type=none"], label="all tokens fp16")
    full.update(quant="all tokens, float16", bits=16)
    res.append(full)
    for q, label in [(["edge.quant.type=none"], "float16")] + [
        (["edge.quant.type=scalar", f"edge.quant.bits={b}"], f"scalar {b}-bit") for b in scalar_bits
    ]:
        r = ev.run(s + q, label=label)
        r.update(quant=label, bits=int(q[-1].split("=")[1]) if "scalar" in label else 16)
        res.append(r)
    for b in (4, 2):
        label = f"scalar {b}-bit calibrated"
        r = ev.run(
            s
            + [
                "edge.quant.type=scalar",
                f"edge.quant.bits={b}",
                "edge.quant.scalar_range=calibrated",
            ],
            label=label,
        )
        r.update(quant=label, bits=b)
        res.append(r)
    for b in bits_list:
        for ent in (False, True):
            label = f"codebook 2^{b}" + (" + AC" if ent else "")
            try:
                r = ev.run(
                    s
                    + [
                        "edge.quant.type=codebook",
                        f"edge.quant.bits={b}",
                        f"edge.quant.entropy={str(ent).lower()}",
                    ],
                    label=label,
                )
            except Exception as exc:  # a missing codebook file: report and go on
                log(f"  {label}: skipped ({type(exc).__name__}: {exc})")
                continue
            r.update(quant=label, bits=b)
            res.append(r)
    return res


def exp_quantisers(
    ev: Evaluator, budgets, scorer: str, reducer: str, only: list[str] | None = None
) -> list[dict]:
    """Every candidate of :func:`quantiser_candidates` (or those whose label contains one
    of ``only``) at each budget, beside all tokens in float16."""
    cands = [
        (label, over)
        for label, over in quantiser_candidates(ev.model)
        if not only or any(o == label or (o != "float16" and o in label) for o in only)
    ]
    if only and not cands:
        raise SystemExit(f"--only {only} matches no candidate quantiser")
    res = []
    full = ev.run(["edge.quant.type=none"], label="all tokens, float16")
    full.update(quant="all tokens, float16", budget="all")
    res.append(full)
    for b in budgets:
        for label, over in cands:
            r = ev.run(sel(scorer, reducer, b) + over, label=f"{label} k={b}")
            r.update(quant=label, budget=b)
            res.append(r)
    return res


def exp_mdc(
    ev: Evaluator,
    budget: int,
    scorer: str,
    reducer: str,
    quant,
    probs,
    extra=(),
    Ds=(1, 2, 4, 8),
    variants=None,
) -> list[dict]:
    from semcom.seeding import rng

    s = sel(scorer, reducer, budget) + list(quant) + list(extra)
    res = []
    base = ev.run(s + ["edge.mdc.descriptions=1"], label="D=1 lossless")
    base.update(D=1, p=0.0, lost="none", variant="-")
    res.append(base)
    variants = variants or [
        # own positions per description (the default): what is lost is filled from the prior
        ["edge.mdc.positions=own"],
        # the image's kept set in every description: lost positions known
        ["edge.mdc.positions=union"],
        ["edge.mdc.positions=union", "cloud.conceal.mode=interp"],
        ["edge.mdc.positions=own", "edge.mdc.assignment=balanced", "edge.mdc.redundancy=2"],
    ]
    for variant in variants:
        name = " ".join(v.split("=", 1)[1] for v in variant)
        name = name.replace("own", "own positions").replace("union", "union positions")
        ov = s + ["edge.mdc.descriptions=4", *variant]
        r = ev.run(ov, label=f"D=4 {name} lossless")
        r.update(D=4, p=0.0, lost="none", variant=name)
        res.append(r)
        for j in range(4):
            r = ev.run(ov, lose=lambda sid, D, j=j: {j}, label=f"D=4 {name} lose #{j}")
            r.update(D=4, lost=str(j), variant=name)
            res.append(r)
    for D in Ds:
        for p in probs:

            def lose(sid, n, p=p):
                r = rng(ev.seed, "mdc-loss", sid, str(p))
                return {i for i in range(n) if r.random() < p}

            r = ev.run(
                s + [f"edge.mdc.descriptions={D}", "cloud.conceal.mode=interp"],
                lose=lose,
                label=f"D={D} p={p}",
            )
            r.update(D=D, p=p, lost="random", variant="interleave interp")
            res.append(r)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="blip", choices=["blip", "llava"])
    p.add_argument("--model-path", default="")
    p.add_argument(
        "--tasks", nargs="*", default=None, help="default: blip caption+retrieval, llava vqa"
    )
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--questions", type=int, default=None, help="VQA questions per image")
    p.add_argument("--exp", default="budgets", choices=["budgets", "quant", "mdc", "quantisers"])
    p.add_argument("--world-seed", type=int, default=0, help="tiny-world seed of the samples")
    p.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--methods", nargs="*", default=None, help="scorer/reducer pairs")
    p.add_argument("--budget", type=int, default=16, help="quant / mdc: the budget")
    p.add_argument("--method", default="text-sim/topk", help="quant / mdc: scorer/reducer")
    p.add_argument(
        "--quant", nargs="*", default=["edge.quant.type=none"], help="mdc: quantiser overrides"
    )
    p.add_argument("--extra", nargs="*", default=[], help="extra overrides (every point)")
    p.add_argument("--codebook-bits", type=int, nargs="+", default=[6, 8, 10, 12])
    p.add_argument("--scalar-bits", type=int, nargs="*", default=[8, 6, 4])
    p.add_argument("--probs", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    p.add_argument("--D", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="quantisers: only the candidates whose label contains one of these "
        "('float16' alone means float16 with the fill)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--out",
        default="",
        help="result json (default "
        "experiments/tokens/results/<exp>-<model>.json); the table goes to .md",
    )
    p.add_argument("--retable", default="", help="only rewrite the .md table of this result json")
    args = p.parse_args(argv)
    if args.retable:
        path = Path(args.retable)
        doc = json.loads(path.read_text())
        path.with_suffix(".md").write_text(
            f"<!-- {doc['command']} -->\n\n" + TABLES[doc["exp"]](doc)
        )
        return 0
    t0 = time.perf_counter()
    ev = Evaluator(
        args.model,
        args.images,
        args.seed,
        args.batch,
        args.model_path,
        args.questions,
        args.tasks,
        world_seed=args.world_seed,
    )
    if args.extra:
        ev.base += list(args.extra)
    scorer, reducer = args.method.split("/")
    if args.exp == "budgets":
        methods = [tuple(m.split("/")) for m in args.methods] if args.methods else METHODS
        res = exp_budgets(ev, args.budgets, methods)
    elif args.exp == "quantisers":
        res = exp_quantisers(ev, args.budgets, scorer, reducer, args.only)
    elif args.exp == "quant":
        res = exp_quant(ev, args.budget, scorer, reducer, args.codebook_bits, args.scalar_bits)
    else:
        res = exp_mdc(ev, args.budget, scorer, reducer, args.quant, args.probs, Ds=args.D)
    out = Path(
        args.out or REPO / "experiments" / "tokens" / "results" / f"{args.exp}-{args.model}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/tokens/eval.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "model_id": ev.backend.model_id,
        "tasks": ev.tasks,
        "samples": len(ev.samples),
        "pixels": int(np.mean([s.hw[0] * s.hw[1] for s in ev.samples])),
        "primary": {t: PRIMARY[t] for t in ev.tasks},
        "exp": args.exp,
        "method": args.method,
        "budget": args.budget,
        "world_seed": args.world_seed,
        "results": res,
        "wall_s": time.perf_counter() - t0,
    }
    out.write_text(json.dumps(doc, indent=1, default=float))
    out.with_suffix(".md").write_text(f"<!-- {doc['command']} -->\n\n" + TABLES[args.exp](doc))
    log(f"-> {out} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
