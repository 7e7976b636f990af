"""Task runners on the cloud: tokens (+ mask) -> model outputs -> scores and metrics.

One class per task, all with the same two calls, so the runner (and ``semcom train
tinyworld --eval-only``) can stream batches through them:

>>> # task = make_task("caption", backend, beams=1, max_new_tokens=24)
>>> # rows = task.run_batch(tokens, mask, samples)     # one dict per sample
>>> # metrics = task.finalize(rows)                     # {metric: {value, ci95}}; rows updated

``rows`` are the per-sample records (``samples.jsonl``): ``sample_id``, ``image_id``, the
output (``caption`` or ``answer``), the references and the per-sample scores.
Retrieval needs the whole gallery, so its ``run_batch`` only embeds and keeps the
received tokens; ``finalize`` ranks (ITC over the gallery, then ITM re-ranks the top
``k_test``, score = ITM match logit + ITC similarity, as BLIP's evaluation).
"""

from __future__ import annotations

import numpy as np

TASKS = ("caption", "vqa", "retrieval")


class CaptionTask:
    name = "caption"

    def __init__(self, backend, *, beams: int = 1, max_new_tokens: int = 24, seed: int = 0):
        self.backend, self.beams, self.max_new_tokens, self.seed = backend, beams, max_new_tokens, seed

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        """``projected``: tokens are already LM embeddings (learned projectors, LLaVA)."""
        from semcom.metrics import exact_match

        kw = {"projected": True} if projected else {}
        caps = self.backend.caption(tokens, mask, beams=self.beams,
                                    max_new_tokens=self.max_new_tokens, **kw)
        return [{"sample_id": s.sample_id, "image_id": s.image_id, "caption": c,
                 "references": list(s.captions), "exact_match": 100.0 * exact_match(c, s.captions)}
                for s, c in zip(samples, caps)]

    def finalize(self, rows: list[dict]) -> dict:
        from semcom.metrics import caption_metrics

        if not rows:
            return {}
        metrics, per = caption_metrics([r["caption"] for r in rows],
                                       [r["references"] for r in rows], seed=self.seed)
        for i, r in enumerate(rows):
            r["cider_d"], r["rouge_l"] = per["cider_d"][i], per["rouge_l"][i]
        return metrics


class VQATask:
    name = "vqa"

    def __init__(self, backend, *, max_new_tokens: int = 8, beams: int = 1, seed: int = 0):
        self.backend, self.max_new_tokens, self.seed = backend, max_new_tokens, seed

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        """``projected``: tokens are already LM embeddings (learned projectors, LLaVA)."""
        from semcom.metrics import vqa_accuracy

        if any(s.question is None for s in samples):
            raise ValueError("task vqa needs samples with questions")
        kw = {"projected": True} if projected else {}
        answers = self.backend.answer(tokens, mask, [s.question for s in samples],
                                      max_new_tokens=self.max_new_tokens, **kw)
        return [{"sample_id": s.sample_id, "image_id": s.image_id, "question": s.question,
                 "answer": a, "answers": list(s.answers or []),
                 "qtype": s.meta.get("qtype"),
                 "accuracy": 100.0 * vqa_accuracy(a, list(s.answers or []))}
                for s, a in zip(samples, answers)]

    def finalize(self, rows: list[dict]) -> dict:
        from semcom.metrics import vqa_metrics

        if not rows:
            return {}
        types = [r.get("qtype") for r in rows]
        metrics, _ = vqa_metrics([r["answer"] for r in rows], [r["answers"] for r in rows],
                                 types=types if all(t is not None for t in types) else None,
                                 seed=self.seed)
        return metrics


class RetrievalTask:
    name = "retrieval"

    def __init__(self, backend, *, k_test: int = 16, batch_size: int = 256, seed: int = 0):
        self.backend, self.k_test, self.batch_size, self.seed = backend, k_test, batch_size, seed
        self._img: list = []      # image embeddings [E] per sample
        self._tokens: list = []   # the received tokens [n_i, D] per sample (for ITM)

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        import torch

        if projected:
            from semcom.errors import ConfigError

            raise ConfigError("cloud.tasks", "retrieval needs vision tokens; this method "
                              "sends projected language-model embeddings (caption, vqa only)")
        tokens = torch.as_tensor(tokens, dtype=torch.float32)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        emb = self.backend.image_embed(tokens, mask).cpu()
        for i, s in enumerate(samples):
            if not s.captions:
                raise ValueError(f"task retrieval needs captions (sample {s.sample_id})")
            self._img.append(emb[i])
            # keep CLS position: token 0 stays first when it was received
            self._tokens.append((tokens[i][mask[i]].cpu(), bool(mask[i, 0])))
        return [{"sample_id": s.sample_id, "image_id": s.image_id,
                 "references": list(s.captions)} for s in samples]

    def _itm(self, pairs: list[tuple[int, str]]) -> np.ndarray:
        """ITM match logits of (image index, text) pairs, in batches."""
        import torch

        out = []
        for b in range(0, len(pairs), self.batch_size):
            chunk = pairs[b:b + self.batch_size]
            toks = [self._tokens[i][0] for i, _ in chunk]
            n = max(1, max(t.shape[0] for t in toks))
            d = toks[0].shape[1]
            x = torch.zeros(len(chunk), n, d)
            m = torch.zeros(len(chunk), n, dtype=torch.bool)
            for j, t in enumerate(toks):
                x[j, :t.shape[0]] = t
                m[j, :t.shape[0]] = True
            m[:, 0] = True  # a sample with no token at all attends to one zero vector
            out.append(self.backend.itm_scores(x, m, [t for _, t in chunk]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def finalize(self, rows: list[dict]) -> dict:
        import torch

        from semcom.metrics import retrieval_metrics

        if not rows:
            return {}
        texts, txt2img = [], []
        for i, r in enumerate(rows):
            for c in r["references"]:
                texts.append(c)
                txt2img.append(i)
        img = torch.stack(self._img).numpy()
        txt = np.concatenate([self.backend.text_embed(texts[b:b + self.batch_size]).float().cpu().numpy()
                              for b in range(0, len(texts), self.batch_size)])
        sim = img @ txt.T                                   # [I, T] ITC cosine similarities
        k = min(self.k_test, sim.shape[0], sim.shape[1])
        i2t = np.full(sim.shape, -100.0)
        t2i = np.full(sim.T.shape, -100.0)
        pairs, where = [], []
        for i in range(sim.shape[0]):
            for t in np.argsort(-sim[i], kind="stable")[:k]:
                pairs.append((i, texts[t]))
                where.append(("i2t", i, t))
        for t in range(sim.shape[1]):
            for i in np.argsort(-sim[:, t], kind="stable")[:k]:
                pairs.append((i, texts[t]))
                where.append(("t2i", t, i))
        itm = self._itm(pairs)
        for (kind, a, b), s in zip(where, itm):
            if kind == "i2t":
                i2t[a, b] = s + sim[a, b]
            else:
                t2i[a, b] = s + sim[b, a]
        metrics, per = retrieval_metrics(i2t, t2i, txt2img, seed=self.seed)
        first_text = {}
        for t, i in enumerate(txt2img):
            first_text.setdefault(i, t)
        for i, r in enumerate(rows):
            for key, v in per.items():
                if key.startswith("txt_"):
                    r[key] = v[i]
                elif i in first_text:
                    r[key] = v[first_text[i]]
        self._img, self._tokens = [], []
        return metrics


def make_task(name: str, backend, *, beams: int = 1, max_new_tokens: int = 24,
              k_test: int = 16, seed: int = 0):
    """The runner of task ``name`` for ``backend`` (checks that the backend supports it)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; use one of {TASKS}")
    if name not in backend.tasks:
        from semcom.errors import ConfigError

        raise ConfigError("cloud.tasks", f"task '{name}' is not supported by the "
                          f"{backend.family} model at {backend.path} (it supports "
                          f"{', '.join(sorted(backend.tasks))})")
    if name == "caption":
        return CaptionTask(backend, beams=beams, max_new_tokens=max_new_tokens, seed=seed)
    if name == "vqa":
        return VQATask(backend, max_new_tokens=min(max_new_tokens, 8), seed=seed)
    return RetrievalTask(backend, k_test=k_test, seed=seed)
