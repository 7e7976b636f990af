"""Evaluation of a trained tiny model: it is loaded from its saved directory through
:func:`semcom.models.load_backend` (the same path as real weights) and runs the tasks on
eval scenes with full tokens, with zeroed tokens (chance check) and with oracle / random
token subsets (does choosing tokens matter?); plus the question-only VQA baseline and
the metrics' printout."""

from __future__ import annotations

import sys
from pathlib import Path


def _tokens_of(backend, samples, bs: int = 100):
    import torch

    out = []
    for b in range(0, len(samples), bs):
        pv = backend.preprocess([s.image for s in samples[b : b + bs]])
        out.append(backend.vision_tokens(pv).tokens.cpu())
    return torch.cat(out)


def _run(task, tokens, mask, samples, bs: int = 100):
    rows = []
    for b in range(0, len(samples), bs):
        rows += task.run_batch(tokens[b : b + bs], mask[b : b + bs], samples[b : b + bs])
    return task.finalize(rows), rows


def _subset_masks(
    samples,
    grid_patch: int,
    n_tokens: int,
    which: str,
    seed: int = 0,
    cls: bool = True,
    relevant_only: bool = False,
):
    """Oracle masks (object patches) and random masks with the same number of patches."""
    import numpy as np
    import torch

    from semcom.seeding import rng
    from semcom.world import patch_labels

    masks = torch.zeros(len(samples), n_tokens, dtype=torch.bool)
    masks[:, 0] = cls
    for k, s in enumerate(samples):
        pl = patch_labels(s.meta["labels"], grid_patch, 1)
        rel = s.meta.get("relevant") if relevant_only else None
        obj = np.isin(pl, rel) if rel else pl >= 0
        if which == "objects":
            sel = np.flatnonzero(obj)
        elif which == "background":
            bg = np.flatnonzero(~(pl >= 0))
            sel = rng(seed, "eval-bg", s.sample_id).choice(
                bg, size=min(len(bg), int(obj.sum())), replace=False
            )
        elif which == "random":
            sel = rng(seed, "eval-random", s.sample_id).choice(
                len(pl), size=int(obj.sum()), replace=False
            )
        elif which == "none":
            sel = np.zeros(0, np.int64)
        else:
            raise ValueError(which)
        masks[k, 1 + np.asarray(sel, np.int64)] = True
    return masks


def blind_vqa_baseline(eval_samples, n_train: int = 20000, world_seed: int = 0) -> float:
    """Accuracy (%) of the best question-only answerer: the most frequent train answer of
    each question (of its type if the question never occurs in train)."""
    from collections import Counter, defaultdict

    from semcom.metrics import vqa_accuracy
    from semcom.world import question_for, scenes

    by_q, by_t = defaultdict(Counter), defaultdict(Counter)
    for s in scenes(world_seed, "train", n_train):
        q = question_for(world_seed, s, 0)
        by_q[q["question"]][q["answer"]] += 1
        by_t[q["type"]][q["answer"]] += 1
    acc = []
    for s in eval_samples:
        c = by_q.get(s.question) or by_t[s.meta["qtype"]]
        acc.append(vqa_accuracy(c.most_common(1)[0][0], s.answers))
    return 100.0 * sum(acc) / len(acc)


def evaluate(path: Path, model: str, n_eval: int = 1000, progress: bool = True) -> dict:
    import torch

    from semcom.config.data import DataConfig
    from semcom.config.model import ModelRef
    from semcom.data import load_samples
    from semcom.models import load_backend
    from semcom.tasks import make_task

    backend = load_backend(ModelRef(model, str(path)))
    out: dict = {"model_id": backend.model_id, "eval_images": n_eval}
    task_name = "caption" if model == "blip" else "vqa"
    samples = load_samples(DataConfig(num_images=n_eval), task_name, seed=0)
    tokens = _tokens_of(backend, samples)
    full = torch.ones(tokens.shape[:2], dtype=torch.bool)
    zeros = torch.zeros_like(tokens)
    n_tok = tokens.shape[1]
    p = backend.patch_size

    def m(task, toks, mask, ss=samples):
        metrics, _ = _run(task, toks, mask, ss)
        return {k: v for k, v in metrics.items()}

    def say(msg):
        if progress:
            print(f"  eval: {msg}", file=sys.stderr)

    if model == "blip":
        cap = make_task("caption", backend, max_new_tokens=24)
        ret = make_task("retrieval", backend)
        say("caption, full tokens")
        out["caption"] = m(cap, tokens, full)
        say("retrieval, full tokens")
        out["retrieval"] = m(ret, tokens, full)
        say("zero tokens")
        out["caption_zero_tokens"] = m(cap, zeros, full)
        out["retrieval_zero_tokens"] = m(ret, zeros, full)
        sel = {}
        for name, which, cls in (
            ("objects+cls", "objects", True),
            ("objects", "objects", False),
            ("random+cls", "random", True),
            ("background+cls", "background", True),
            ("cls_only", "none", True),
        ):
            mask = _subset_masks(samples, p, n_tok, which, cls=cls)
            say(f"token subset {name}")
            sel[name] = {
                "tokens_mean": float(mask[:, 1:].sum(1).float().mean()),
                "caption_exact_match": m(cap, tokens, mask)["exact_match"]["value"],
                "retrieval_r_mean": m(ret, tokens, mask)["r_mean"]["value"],
            }
        out["token_subsets"] = sel
    else:
        vqa = make_task("vqa", backend)
        say("vqa, full tokens")
        out["vqa"] = m(vqa, tokens, full)
        say("zero tokens")
        out["vqa_zero_tokens"] = m(vqa, zeros, full)
        out["vqa_blind_prior"] = {"accuracy": blind_vqa_baseline(samples)}
        sel = {}
        for name, which, rel in (
            ("relevant_objects", "objects", True),
            ("all_objects", "objects", False),
            ("random", "random", False),
            ("background", "background", False),
        ):
            mask = _subset_masks(samples, p, n_tok, which, cls=False, relevant_only=rel)
            say(f"token subset {name}")
            sel[name] = {
                "tokens_mean": float(mask[:, 1:].sum(1).float().mean()),
                "vqa_accuracy": m(vqa, tokens, mask)["accuracy"]["value"],
            }
        out["token_subsets"] = sel
        n_cap = min(n_eval, 300)
        cap_samples = load_samples(DataConfig(num_images=n_cap), "caption", seed=0)
        say(f"caption ({n_cap} images), full tokens")
        out["caption"] = m(
            make_task("caption", backend, max_new_tokens=24),
            tokens[:n_cap],
            full[:n_cap],
            cap_samples,
        )
    return out


def print_metrics(model: str, metrics: dict) -> None:
    def v(d, k):
        x = d.get(k, {})
        return x.get("value") if isinstance(x, dict) else x

    lines = [f"model {metrics.get('model_id')} on {metrics.get('eval_images')} eval scenes"]
    if model == "blip":
        c, r = metrics["caption"], metrics["retrieval"]
        cz, rz = metrics["caption_zero_tokens"], metrics["retrieval_zero_tokens"]
        lines += [
            f"caption  exact_match {v(c, 'exact_match'):.1f}%  CIDEr-D {v(c, 'cider_d'):.3f}  "
            f"BLEU-4 {v(c, 'bleu_4'):.3f}  ROUGE-L {v(c, 'rouge_l'):.3f}",
            f"retrieval img->txt R@1 {v(r, 'txt_r1'):.1f}  R@5 {v(r, 'txt_r5'):.1f}  "
            f"R@10 {v(r, 'txt_r10'):.1f} | txt->img R@1 {v(r, 'img_r1'):.1f}  "
            f"R@5 {v(r, 'img_r5'):.1f}  R@10 {v(r, 'img_r10'):.1f} | r_mean {v(r, 'r_mean'):.1f}",
            f"zero tokens: caption exact_match {v(cz, 'exact_match'):.1f}%  CIDEr-D "
            f"{v(cz, 'cider_d'):.3f}; retrieval R@1 {v(rz, 'txt_r1'):.2f} / {v(rz, 'img_r1'):.2f}",
        ]
        for name, s in metrics["token_subsets"].items():
            lines.append(
                f"  tokens {name:<15} {s['tokens_mean']:6.1f} patches: caption EM "
                f"{s['caption_exact_match']:.1f}%  retrieval r_mean {s['retrieval_r_mean']:.1f}"
            )
    else:
        q, qz = metrics["vqa"], metrics["vqa_zero_tokens"]
        per = "  ".join(f"{k.split('/')[1]} {x['value']:.1f}" for k, x in q.items() if "/" in k)
        lines += [
            f"vqa accuracy {v(q, 'accuracy'):.1f}%  ({per})",
            f"zero tokens: vqa accuracy {v(qz, 'accuracy'):.1f}% (question-only prior "
            f"{metrics['vqa_blind_prior']['accuracy']:.1f}%)",
            f"caption exact_match {v(metrics['caption'], 'exact_match'):.1f}%  CIDEr-D "
            f"{v(metrics['caption'], 'cider_d'):.3f}",
        ]
        for name, s in metrics["token_subsets"].items():
            lines.append(
                f"  tokens {name:<17} {s['tokens_mean']:6.1f} patches: vqa {s['vqa_accuracy']:.1f}%"
            )
    print("\n".join(lines))
