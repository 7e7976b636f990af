"""Image-text retrieval over the whole evaluated set (BLIP's ITC + ITM evaluation).

Retrieval needs the whole gallery, so ``run_batch`` only embeds and keeps the received
tokens; ``finalize`` ranks (ITC over the gallery, then ITM re-ranks the top ``k_test``,
score = ITM match logit + ITC similarity, as BLIP's evaluation).
"""

from __future__ import annotations

from semcom.tasks.base import Task, TaskSpec


class RetrievalTask(Task):
    spec = TaskSpec(
        name="retrieval",
        title="Retrieval",
        help="image-text retrieval over the whole set (ITC, ITM re-ranks the top k_test); "
        "R@1/5/10 both ways and their mean",
        output=None,
        metrics=(
            "r_mean",
            "txt_r1",
            "txt_r5",
            "txt_r10",
            "img_r1",
            "img_r5",
            "img_r10",
            "txt_r_mean",
            "img_r_mean",
        ),
        main_metric="r_mean",
        references=("captions",),
        required=("captions",),
        scope="set",
        options={"k_test": 16, "batch_size": 256},
        capability="retrieval",
    )

    def __init__(self, backend, **kw):
        super().__init__(backend, **kw)
        self.k_test = int(self.options["k_test"])
        self.batch_size = int(self.options["batch_size"])
        self._img: list = []  # image embeddings [E] per sample
        self._tokens: list = []  # the received tokens [n_i, D] per sample (for ITM)

    def run_batch(self, tokens, mask, samples, *, projected: bool = False) -> list[dict]:
        import torch

        if projected:
            from semcom.errors import ConfigError

            raise ConfigError(
                "cloud.tasks",
                "retrieval needs vision tokens; this method "
                "sends projected language-model embeddings (caption, vqa only)",
            )
        self.check_samples(samples)
        tokens = torch.as_tensor(tokens, dtype=torch.float32)
        mask = torch.as_tensor(mask, dtype=torch.bool)
        emb = self.backend.image_embed(tokens, mask).cpu()
        for i in range(len(samples)):
            self._img.append(emb[i])
            # keep CLS position: token 0 stays first when it was received
            self._tokens.append((tokens[i][mask[i]].cpu(), bool(mask[i, 0])))
        return [
            {"sample_id": s.sample_id, "image_id": s.image_id, "references": list(s.captions)}
            for s in samples
        ]

    def _itm(self, pairs: list[tuple[int, str]]):
        """ITM match logits of (image index, text) pairs, in batches."""
        import numpy as np
        import torch

        out = []
        for b in range(0, len(pairs), self.batch_size):
            chunk = pairs[b : b + self.batch_size]
            toks = [self._tokens[i][0] for i, _ in chunk]
            n = max(1, max(t.shape[0] for t in toks))
            d = toks[0].shape[1]
            x = torch.zeros(len(chunk), n, d)
            m = torch.zeros(len(chunk), n, dtype=torch.bool)
            for j, t in enumerate(toks):
                x[j, : t.shape[0]] = t
                m[j, : t.shape[0]] = True
            m[:, 0] = True  # a sample with no token at all attends to one zero vector
            out.append(self.backend.itm_scores(x, m, [t for _, t in chunk]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def finalize(self, rows: list[dict]) -> dict:
        import numpy as np
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
        txt = np.concatenate(
            [
                self.backend.text_embed(texts[b : b + self.batch_size]).float().cpu().numpy()
                for b in range(0, len(texts), self.batch_size)
            ]
        )
        sim = img @ txt.T  # [I, T] ITC cosine similarities
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
