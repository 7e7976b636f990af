"""Learned projectors vs training-free selectors at equal token counts.

For each scale s the edge sends T = (12 / s)^2 tokens; the rows at that T:

- TokenPacker / VisualPrism (``edge.method: projector``, the trained files in
  ``semcom/assets/projectors/``): the real edge method (vision tower + compressor,
  quantiser, wire bytes) and cloud method (dequantise, projector MLP), answers from the
  projected embeddings through the frozen language model;
- training-free selectors (``edge.method: tokens``) at budget T: text-sim/topk (the
  language-guided default), text-sim/recoverable, cls-attn/topk, cls-attn/visionzip,
  grid/topk (uniform subsampling), through the real TokenEdge (encoder outputs cached
  once per sample, as ``experiments/tokens/eval.py`` does) / TokenCloud and
  ``cloud.tasks``; the best of them per task is the "best training-free selector";
- and once: all 144 tokens through LLaVA's own MLP projector.

Every row uses the same quantiser (``edge.quant``: scalar, 8 bits, per-description
range as float16 side info, by default) and one description, so the bits per image
compare directly (``bits_per_tx``: wire bits incl. envelope, headers, positions and the
quantiser range; ``payload_bits_per_tx``: token values only).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/projectors/eval.py \
        --task vqa --images 300 --out experiments/projectors/vqa.json
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

SELECTORS = [
    ("text-sim", "topk"),
    ("text-sim", "recoverable"),
    ("cls-attn", "topk"),
    ("cls-attn", "visionzip"),
    ("grid", "topk"),
]
PRIMARY = {"vqa": "accuracy", "caption": "cider_d"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Evaluator:
    """Samples, the backend and cached encoder contexts; ``run`` = one token-path config."""

    def __init__(
        self,
        task: str,
        images: int,
        *,
        seed: int = 0,
        batch: int = 50,
        model_path: str = "",
        contexts: bool = True,
    ):
        import torch

        from edge.methods.tokens import TokenEdge
        from semcom.config import load_config
        from semcom.config.model import ModelRef
        from semcom.data import load_samples
        from semcom.models import load_backend

        torch.set_num_threads(1)
        self.task, self.seed, self.batch = task, seed, batch
        self.base = [
            "edge.model.name=llava",
            "cloud.model.name=llava",
            f"cloud.tasks=[{task}]",
            f"run.seed={seed}",
            f"data.num_images={images}",
        ]
        if model_path:
            self.base += [f"edge.model.path={model_path}", f"cloud.model.path={model_path}"]
        if task == "vqa":
            self.base.append("data.questions_per_image=1")
        cfg = load_config(None, self.base)
        self.backend = load_backend(ModelRef("llava", model_path))
        self.samples = load_samples(cfg.data, task, seed=seed)
        t0 = time.perf_counter()
        edge = TokenEdge(cfg, self.backend)
        self.contexts = []
        if contexts:  # (the projector rows run their own encoder)
            for i in range(0, len(self.samples), batch):
                self.contexts += edge.contexts(self.samples[i : i + batch], task, full=True)
        log(
            f"{len(self.samples)} {task} samples, contexts in {time.perf_counter() - t0:.1f}s "
            f"({self.backend.model_id})"
        )

    def config(self, overrides):
        from semcom.config import load_config

        return load_config(None, self.base + list(overrides))

    def make_task(self, cfg, backend):
        from semcom.tasks import CaptionTask, VQATask

        if self.task == "vqa":
            return VQATask(backend, max_new_tokens=min(cfg.cloud.max_new_tokens, 8), seed=self.seed)
        return CaptionTask(
            backend, beams=cfg.cloud.beams, max_new_tokens=cfg.cloud.max_new_tokens, seed=self.seed
        )

    def finish(self, label, rows, rates, sent, task, t0, **extra) -> dict:
        from semcom.rate import aggregate

        metrics = task.finalize(rows)
        agg = aggregate(rates)
        out = {
            "label": label,
            "metrics": {k: v["value"] for k, v in metrics.items()},
            "ci95": {k: v["ci95"] for k, v in metrics.items()},
            "primary": metrics[PRIMARY[self.task]]["value"],
            "bpp_wire": agg["bpp_wire"],
            "bits_per_tx": agg["wire_bits_per_tx"],
            "payload_bits_per_tx": agg["payload_bits_per_tx"],
            "tokens_sent": float(np.mean(sent)),
            "n": len(rows),
            **extra,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        log(
            f"  {label:40s} {PRIMARY[self.task]} {out['primary']:7.3f}  sent "
            f"{out['tokens_sent']:6.1f}  bits/img {out['bits_per_tx']:.0f}  ({out['wall_s']:.0f}s)"
        )
        return out

    def run(self, overrides, label: str) -> dict:
        import torch

        from cloud.methods.tokens import TokenCloud
        from edge.methods.tokens import TokenEdge

        t0 = time.perf_counter()
        cfg = self.config(["edge.method=tokens", *overrides])
        edge, cloud = TokenEdge(cfg, self.backend), TokenCloud(cfg, self.backend)
        task = self.make_task(cfg, self.backend)
        rows, rates, sent = [], [], []
        for i in range(0, len(self.samples), self.batch):
            batch = self.samples[i : i + self.batch]
            items = []
            for s, ctx in zip(batch, self.contexts[i : i + self.batch]):
                items.append(cloud_item(s, edge.encode_context(s, ctx), rates, sent))
            mi = cloud.decode(items)
            with torch.no_grad():
                rows += task.run_batch(mi.tokens, mi.mask, batch)
        return self.finish(label, rows, rates, sent, task, t0, overrides=list(overrides))


def cloud_item(s, er, rates: list, sent: list):
    """Check one EdgeResult's ledgers against its bytes, record its rate and tokens sent
    (appended to ``rates`` / ``sent``) and return the checked CloudItem for it."""
    from cloud.pipeline import CloudItem, check_item
    from semcom.rate import SampleRate
    from semcom.types import RateLedger

    for d in er.descriptions:
        assert d.ledger.total() == 8 * len(d.data)
    led = RateLedger().merged(*(d.ledger for d in er.descriptions))
    rates.append(SampleRate.from_ledger(led, s.hw[0] * s.hw[1]))
    sent.append(er.info["tokens_sent"])
    item = CloudItem(s.sample_id, list(er.descriptions), s.hw, s.question)
    check_item(item)
    return item


class Projected:
    """A backend view whose answer / caption take already-projected embeddings."""

    def __init__(self, backend):
        self.backend = backend

    def answer(self, tokens, mask, questions, *, max_new_tokens=8, beams=1):
        from semcom.projectors import lm

        return lm.answer(
            self.backend, tokens, mask, questions, max_new_tokens=max_new_tokens, beams=beams
        )

    def caption(self, tokens, mask=None, *, prompt=None, beams=1, max_new_tokens=24):
        from semcom.projectors import lm

        return lm.caption(
            self.backend,
            tokens,
            mask,
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            beams=beams,
        )


def run_projector(ev, type_: str, scale: int, quant: list[str], weights: str = "") -> dict:
    import torch

    from cloud.methods.projector import ProjectorCloud
    from edge.methods.projector import ProjectorEdge

    t0 = time.perf_counter()
    ov = [
        "edge.method=projector",
        f"edge.projector.type={type_}",
        f"edge.projector.scale={scale}",
        *quant,
    ]
    if weights:
        ov.append(f"edge.projector.weights={weights}")
    cfg = ev.config(ov)
    edge, cloud = ProjectorEdge(cfg, ev.backend), ProjectorCloud(cfg, ev.backend)
    task = ev.make_task(cfg, Projected(ev.backend))
    rows, rates, sent = [], [], []
    for i in range(0, len(ev.samples), ev.batch):
        batch = ev.samples[i : i + ev.batch]
        items = []
        for s, er in zip(batch, edge.encode(batch, ev.task)):
            items.append(cloud_item(s, er, rates, sent))
        mi = cloud.decode(items)
        with torch.no_grad():
            rows += task.run_batch(mi.tokens, mi.mask, batch)
    return ev.finish(
        f"{type_} s={scale}",
        rows,
        rates,
        sent,
        task,
        t0,
        method=type_,
        scale=scale,
        projector_file=str(edge.proj.path),
        projector_id=edge.proj.id,
        train=edge.proj.meta.get("train", {}),
    )


def table(doc: dict) -> str:
    task = doc["task"]
    key = PRIMARY[task]
    name = {"accuracy": "VQA accuracy %", "cider_d": "CIDEr-D"}[key]
    lines = [
        f"| T = (12/s)^2 | method | tokens sent | {name} (95% CI) | bits / image (payload) |",
        "|---|---|---|---|---|",
    ]

    def row(t, label, r):
        lo, hi = r["ci95"][key]
        lines.append(
            f"| {t} | {label} | {r['tokens_sent']:.1f} | {r['primary']:.3f} "
            f"[{lo:.3f}, {hi:.3f}] | "
            f"{r['bits_per_tx']:.0f} ({r['payload_bits_per_tx']:.0f}) |"
        )

    row(144, "all tokens, LLaVA MLP projector", doc["full"])
    for block in doc["scales"]:
        t = block["tokens"]
        for r in block["projectors"]:
            row(t, f"**{r['method']}** (s={block['scale']})", r)
        if not block["selectors"]:
            continue
        best = max(block["selectors"], key=lambda r: r["primary"])
        for r in block["selectors"]:
            mark = " (best selector)" if r is best else ""
            row(t, f"{r['scorer']}/{r['reducer']}{mark}", r)
    return "\n".join(lines)


def summary(vqa: dict, cap: dict) -> str:
    """One table: per token count, the full-token MLP, each projector, the best selector
    (per task), VQA accuracy and CIDEr-D, bits per image."""

    def cell(r, key):
        lo, hi = r["ci95"][key]
        return (
            f"{r['primary']:.1f} [{lo:.1f}, {hi:.1f}]"
            if key == "accuracy"
            else f"{r['primary']:.2f} [{lo:.2f}, {hi:.2f}]"
        )

    lines = [
        "| tokens | method | VQA accuracy % | CIDEr-D | bits / image (payload) |",
        "|---|---|---|---|---|",
    ]
    lines.append(
        f"| 144 | all tokens, LLaVA MLP | {cell(vqa['full'], 'accuracy')} | "
        f"{cell(cap['full'], 'cider_d')} | {vqa['full']['bits_per_tx']:.0f} "
        f"({vqa['full']['payload_bits_per_tx']:.0f}) |"
    )
    cblocks = {b["scale"]: b for b in cap["scales"]}
    for vb in vqa["scales"]:
        cb = cblocks.get(vb["scale"], {"projectors": [], "selectors": []})
        cp = {r["method"]: r for r in cb["projectors"]}
        for r in vb["projectors"]:
            c = cp.get(r["method"])
            lines.append(
                f"| {vb['tokens']} | {r['method']} (s={vb['scale']}) | "
                f"{cell(r, 'accuracy')} | {cell(c, 'cider_d') if c else '-'} | "
                f"{r['bits_per_tx']:.0f} ({r['payload_bits_per_tx']:.0f}) |"
            )
        if vb["selectors"] and cb["selectors"]:
            bv = max(vb["selectors"], key=lambda r: r["primary"])
            bc = max(cb["selectors"], key=lambda r: r["primary"])
            lines.append(
                f"| {vb['tokens']} | best selector: {bv['scorer']}/{bv['reducer']} "
                f"(VQA), {bc['scorer']}/{bc['reducer']} (caption) | "
                f"{cell(bv, 'accuracy')} | {cell(bc, 'cider_d')} | "
                f"{bv['bits_per_tx']:.0f} ({bv['payload_bits_per_tx']:.0f}) |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("vqa", "caption"), default="vqa")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--scales", default="2,3,4")
    p.add_argument("--types", default="tokenpacker,visualprism")
    p.add_argument("--quant", default="scalar:8", help="none | scalar:BITS (all rows)")
    p.add_argument("--weights", default="", help="projector directory (default: the assets)")
    p.add_argument("--model-path", default="")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument(
        "--parts",
        choices=("all", "selectors", "projectors"),
        default="all",
        help="evaluate only the token-path rows or only the projector rows; a "
        "second call with the other part completes the same --out file",
    )
    p.add_argument("--out", help="JSON output")
    p.add_argument(
        "--summary",
        nargs=2,
        metavar=("VQA_JSON", "CAPTION_JSON"),
        help="print the combined table of two finished result files and exit",
    )
    args = p.parse_args(argv)
    if args.summary:
        print(summary(*(json.loads(Path(f).read_text()) for f in args.summary)))
        return 0
    import torch

    torch.set_num_threads(1)
    if args.quant == "none":
        quant = ["edge.quant.type=none"]
    else:
        bits = int(args.quant.split(":")[1])
        quant = ["edge.quant.type=scalar", f"edge.quant.bits={bits}"]
    t0 = time.perf_counter()
    scales = [int(x) for x in args.scales.split(",")]
    out = Path(args.out) if args.out else None
    doc = json.loads(out.read_text()) if (out and out.is_file() and args.parts != "all") else {}
    if doc and (doc.get("task"), doc.get("images"), doc.get("quant")) != (
        args.task,
        args.images,
        quant,
    ):
        raise SystemExit(f"{out} holds another task / size / quantiser; use another --out")
    ev = Evaluator(
        args.task,
        args.images,
        batch=args.batch,
        model_path=args.model_path,
        contexts=args.parts != "projectors",
    )
    cmd = "experiments/projectors/eval.py " + " ".join(argv or sys.argv[1:])
    doc.update(task=args.task, images=args.images, quant=quant, model_id=ev.backend.model_id)
    doc.setdefault("commands", []).append(cmd)
    if args.parts in ("all", "selectors"):
        doc["full"] = ev.run(quant, label="all tokens (LLaVA MLP)")
        doc["full"].update(scorer="-", reducer="-", budget="all")
    blocks = {b["scale"]: b for b in doc.get("scales", [])}
    for s in scales:
        T = (ev.backend.grid // s) ** 2
        block = blocks.setdefault(s, {"scale": s, "tokens": T, "projectors": [], "selectors": []})
        if args.parts in ("all", "projectors"):
            block["projectors"] = []
            for t in args.types.split(","):
                try:
                    block["projectors"].append(run_projector(ev, t, s, quant, args.weights))
                except Exception as exc:  # a projector not trained: say so, go on
                    log(f"  {t} s={s}: skipped ({type(exc).__name__}: {exc})")
        if args.parts in ("all", "selectors"):
            block["selectors"] = []
            for scorer, reducer in SELECTORS:
                r = ev.run(
                    [
                        f"edge.select.scorer={scorer}",
                        f"edge.select.reducer={reducer}",
                        f"edge.select.budget={T}",
                        *quant,
                    ],
                    label=f"{scorer}/{reducer} k={T}",
                )
                r.update(scorer=scorer, reducer=reducer, budget=T)
                block["selectors"].append(r)
    doc["scales"] = [blocks[k] for k in sorted(blocks, reverse=True)]
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    if "full" in doc and all(b["selectors"] for b in doc["scales"]):
        doc["table"] = table(doc)
        print(doc["table"])
    if out:
        out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
