"""Token-path evaluations on the tiny world: the tables of docs/tokens.md.

The vision encoder runs once per sample (contexts with attentions, keys and text
similarities cached), then every configuration goes through the real edge method
(:class:`edge.methods.tokens.TokenEdge`: selection, quantisation, MDC, wire bytes), the
description losses of the experiment, the real cloud method
(:class:`cloud.methods.tokens.TokenCloud`) and the task runners of ``cloud.tasks``, so
the numbers are those of ``semcom run`` without re-running the encoder per point.

Experiments (``--exp``):

- ``budgets``: methods x budgets (8, 16, 32, 64, all), float16 tokens, one description;
- ``quant``:   one method at one budget, quantisers (float16, scalar, codebooks 2^6..2^12,
  with and without entropy coding), bits per token and bpp;
- ``mdc``:     D descriptions; lossless, every single loss for D = 4, and random
  description losses with probability p for D = 1, 2, 4, 8 (per-sample seeded).

Example (what docs/tokens.md ran)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/tokens/eval.py \
        --model llava --task vqa --images 200 --exp budgets
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

METHODS = [("text-sim", "topk"), ("text-sim", "recoverable"), ("cls-attn", "topk"),
           ("cls-attn", "visionzip"), ("cls-attn", "tome"), ("cls-attn", "prumerge"),
           ("attn-received", "topk"), ("l2-norm", "topk"), ("random", "topk"),
           ("grid", "topk")]
PRIMARY = {"vqa": "accuracy", "caption": "cider_d", "retrieval": "r_mean"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Evaluator:
    def __init__(self, model: str, task: str, images: int, seed: int = 0, batch: int = 32,
                 model_path: str = "", questions: int | None = None):
        import torch

        from semcom.config import load_config
        from semcom.data import load_samples
        from semcom.models import load_backend
        from semcom.config.model import ModelRef

        torch.set_num_threads(1)
        self.task, self.seed, self.batch, self.model = task, seed, batch, model
        self.base = [f"edge.model.name={model}", f"cloud.model.name={model}",
                     f"cloud.tasks=[{task}]", f"run.seed={seed}", f"data.num_images={images}"]
        if model_path:
            self.base += [f"edge.model.path={model_path}", f"cloud.model.path={model_path}"]
        if questions:
            self.base.append(f"data.questions_per_image={questions}")
        cfg = load_config(None, self.base)
        self.backend = load_backend(ModelRef(model, model_path))
        self.samples = load_samples(cfg.data, task, seed=seed)
        t0 = time.perf_counter()
        from edge.methods.tokens import TokenEdge

        edge = TokenEdge(cfg, self.backend)
        self.contexts = []
        for i in range(0, len(self.samples), batch):
            self.contexts += edge.contexts(self.samples[i:i + batch], task, full=True)
        log(f"{len(self.samples)} {task} samples, contexts in {time.perf_counter() - t0:.1f}s "
            f"({self.backend.model_id})")

    def config(self, overrides):
        from semcom.config import load_config

        return load_config(None, self.base + list(overrides))

    def run(self, overrides, *, lose=None, label: str = "") -> dict:
        """One configuration. ``lose(sample_id, D) -> set of lost description indices``."""
        import torch

        from cloud.methods.tokens import TokenCloud
        from cloud.pipeline import CloudItem, check_item
        from cloud.tasks import make_task
        from edge.methods.tokens import TokenEdge
        from semcom.rate import SampleRate, aggregate
        from semcom.types import Description, RateLedger, erase

        t0 = time.perf_counter()
        cfg = self.config(overrides)
        edge, cloud = TokenEdge(cfg, self.backend), TokenCloud(cfg, self.backend)
        task = make_task(self.task, self.backend, beams=cfg.cloud.beams,
                         max_new_tokens=cfg.cloud.max_new_tokens, seed=self.seed)
        rows, rates, sent, to_model, recv = [], [], [], [], []
        for i in range(0, len(self.samples), self.batch):
            batch = self.samples[i:i + self.batch]
            items = []
            for s, ctx in zip(batch, self.contexts[i:i + self.batch]):
                er = edge.encode_context(s, ctx)
                for d in er.descriptions:
                    assert d.ledger.total() == 8 * len(d.data)
                D = len(er.descriptions)
                lost = lose(s.sample_id, D) if lose else set()
                got = [erase(d) if d.index in lost else d for d in er.descriptions]
                led = RateLedger().merged(*(d.ledger for d in er.descriptions))
                rates.append(SampleRate.from_ledger(led, s.hw[0] * s.hw[1]))
                sent.append(er.info["tokens_sent"])
                recv.append(sum(isinstance(r, Description) for r in got))
                item = CloudItem(s.sample_id, got, s.hw, s.question)
                check_item(item)
                items.append(item)
            mi = cloud.decode(items)
            to_model += [inf["tokens_to_model"] for inf in mi.info]
            with torch.no_grad():
                rows += task.run_batch(mi.tokens, mi.mask, batch)
        metrics = task.finalize(rows)
        agg = aggregate(rates)
        out = {"label": label, "overrides": list(overrides),
               "metrics": {k: v["value"] for k, v in metrics.items()},
               "ci95": {k: v["ci95"] for k, v in metrics.items()},
               "primary": metrics[PRIMARY[self.task]]["value"],
               "bpp_wire": agg["bpp_wire"], "bpp_payload": agg["bpp_payload"],
               "bits_per_tx": agg["wire_bits_per_tx"],
               "payload_bits_per_tx": agg["payload_bits_per_tx"],
               "tokens_sent": float(np.mean(sent)), "tokens_to_model": float(np.mean(to_model)),
               "descriptions_received": float(np.mean(recv)), "n": len(rows),
               "wall_s": time.perf_counter() - t0}
        log(f"  {label:40s} {PRIMARY[self.task]} {out['primary']:7.3f}  sent {out['tokens_sent']:6.1f}"
            f"  to_model {out['tokens_to_model']:6.1f}  bpp_wire {out['bpp_wire']:.4f}"
            f"  ({out['wall_s']:.0f}s)")
        return out


def exp_budgets(ev: Evaluator, budgets, methods) -> list[dict]:
    res = [ev.run(["edge.quant.type=none"], label="all tokens")]
    res[-1].update(scorer="-", reducer="-", budget="all")
    for b in budgets:
        for scorer, reducer in methods:
            r = ev.run([f"edge.select.scorer={scorer}", f"edge.select.reducer={reducer}",
                        f"edge.select.budget={b}", "edge.quant.type=none"],
                       label=f"{scorer}/{reducer} k={b}")
            r.update(scorer=scorer, reducer=reducer, budget=b)
            res.append(r)
    return res


def exp_quant(ev: Evaluator, budget: int, scorer: str, reducer: str, bits_list) -> list[dict]:
    sel = [f"edge.select.scorer={scorer}", f"edge.select.reducer={reducer}",
           f"edge.select.budget={budget}"]
    res = []
    full = ev.run(["edge.quant.type=none"], label="all tokens fp16")
    full.update(quant="all tokens, float16", bits=16)
    res.append(full)
    for q, label, bpt in [(["edge.quant.type=none"], "float16", 16)] + [
            ([f"edge.quant.type=scalar", f"edge.quant.bits={b}"], f"scalar {b}-bit", b)
            for b in (8, 6, 4)]:
        r = ev.run(sel + q, label=label)
        r.update(quant=label, bits=bpt)
        res.append(r)
    for b in bits_list:
        for ent in (False, True):
            label = f"codebook 2^{b}" + (" + AC" if ent else "")
            try:
                r = ev.run(sel + ["edge.quant.type=codebook", f"edge.quant.bits={b}",
                                  f"edge.quant.entropy={str(ent).lower()}"], label=label)
            except Exception as exc:  # a missing codebook file: report and go on
                log(f"  {label}: skipped ({exc})")
                continue
            r.update(quant=label, bits=b)
            res.append(r)
    return res


def exp_mdc(ev: Evaluator, budget: int, scorer: str, reducer: str, quant, probs,
            extra=()) -> list[dict]:
    from semcom.seeding import rng

    sel = [f"edge.select.scorer={scorer}", f"edge.select.reducer={reducer}",
           f"edge.select.budget={budget}", *quant, *extra]
    res = []
    base = ev.run(sel + ["edge.mdc.descriptions=1"], label="D=1 lossless")
    base.update(D=1, p=0.0, lost="none")
    res.append(base)
    for variant in (["edge.mdc.assignment=interleave"],
                    ["edge.mdc.assignment=balanced", "edge.mdc.redundancy=2"],
                    ["edge.mdc.assignment=interleave", "cloud.conceal.mode=interp"]):
        name = " ".join(v.split("=", 1)[1] for v in variant)
        ov = sel + ["edge.mdc.descriptions=4", *variant]
        r = ev.run(ov, label=f"D=4 {name} lossless")
        r.update(D=4, p=0.0, lost="none", variant=name)
        res.append(r)
        for j in range(4):
            r = ev.run(ov, lose=lambda sid, D, j=j: {j}, label=f"D=4 {name} lose #{j}")
            r.update(D=4, lost=str(j), variant=name)
            res.append(r)
    for D in (1, 2, 4, 8):
        for p in probs:
            def lose(sid, n, p=p):
                r = rng(ev.seed, "mdc-loss", sid, p)
                return {i for i in range(n) if r.random() < p}
            r = ev.run(sel + [f"edge.mdc.descriptions={D}"], lose=lose, label=f"D={D} p={p}")
            r.update(D=D, p=p, lost="random", variant="interleave")
            res.append(r)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="blip")
    p.add_argument("--model-path", default="")
    p.add_argument("--task", default="caption", choices=["caption", "retrieval", "vqa"])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--questions", type=int, default=None, help="VQA questions per image")
    p.add_argument("--exp", default="budgets", choices=["budgets", "quant", "mdc"])
    p.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--methods", nargs="*", default=None, help="scorer/reducer pairs")
    p.add_argument("--budget", type=int, default=16, help="quant / mdc: the budget")
    p.add_argument("--method", default="text-sim/topk", help="quant / mdc: scorer/reducer")
    p.add_argument("--quant", nargs="*", default=["edge.quant.type=none"],
                   help="mdc: quantiser overrides")
    p.add_argument("--extra", nargs="*", default=[], help="extra overrides for mdc")
    p.add_argument("--codebook-bits", type=int, nargs="+", default=[6, 8, 10, 12])
    p.add_argument("--probs", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ev = Evaluator(args.model, args.task, args.images, args.seed, args.batch, args.model_path,
                   args.questions)
    scorer, reducer = args.method.split("/")
    if args.exp == "budgets":
        methods = [tuple(m.split("/")) for m in args.methods] if args.methods else METHODS
        res = exp_budgets(ev, args.budgets, methods)
    elif args.exp == "quant":
        res = exp_quant(ev, args.budget, scorer, reducer, args.codebook_bits)
    else:
        res = exp_mdc(ev, args.budget, scorer, reducer, args.quant, args.probs, args.extra)
    out = Path(args.out or REPO / "experiments" / "tokens" / "results" /
               f"{args.exp}-{args.model}-{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "model_id": ev.backend.model_id,
                               "task": args.task, "samples": len(ev.samples),
                               "primary": PRIMARY[args.task], "results": res,
                               "wall_s": time.perf_counter() - t0}, indent=1, default=float))
    log(f"-> {out} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
