"""Image-text retrieval over the whole evaluated set (BLIP's ITC + ITM evaluation).

Retrieval needs the whole gallery, so ``run_batch`` only embeds and keeps the received
tokens; ``finalize`` ranks (ITC over the gallery, then ITM re-ranks the top ``k_test``,
score = ITM match logit + ITC similarity, as BLIP's evaluation). In process the gallery
is the evaluated images' captions; the cloud daemon ranks with :meth:`RetrievalTask.rank`
against the gallery it holds (:mod:`cloud.gallery`), restricted to the same images, so
both give the same recalls.
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
        # references are checked in finalize: the cloud daemon's samples carry none (its
        # gallery holds the texts)
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

    def _itm(self, pairs: list[tuple[int, str]], tokens: list):
        """ITM match logits of (image index, text) pairs, in batches; ``tokens[i]``: the
        received tokens ``[n_i, D]`` of image i."""
        import numpy as np
        import torch

        out = []
        for b in range(0, len(pairs), self.batch_size):
            chunk = pairs[b : b + self.batch_size]
            toks = [tokens[i] for i, _ in chunk]
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

    def take(self) -> list[tuple]:
        """What ``run_batch`` kept since the last call, one ``(embedding [E], tokens [n, D],
        cls_received)`` per sample, and forget it (the cloud daemon keeps it per run)."""
        out = [(e, t, c) for e, (t, c) in zip(self._img, self._tokens)]
        self._img, self._tokens = [], []
        return out

    def finalize(self, rows: list[dict]) -> dict:
        """Rank over everything ``run_batch`` kept: the gallery is the rows' references."""
        if not rows:
            return {}
        for r in rows:
            if not r["references"]:
                raise ValueError(
                    f"task {self.name} needs samples with captions "
                    f"(sample {r['sample_id']} has none)"
                )
        texts, txt2img = gallery_of([r["references"] for r in rows])
        metrics, per = self.rank(self._img, [t for t, _ in self._tokens], texts, txt2img)
        for r, p in zip(rows, per):
            r.update(p)
        self._img, self._tokens = [], []
        return metrics

    def rank(self, img, tokens, texts, txt2img, text_features=None) -> tuple[dict, list[dict]]:
        """Rank images against texts and texts against images (ITC, then ITM re-ranks the
        top ``k_test``); ``(metrics, [per-image recalls])``.

        ``img``: one ITC embedding ``[E]`` per image; ``tokens``: the received tokens
        ``[n_i, D]`` of each image (for ITM); ``txt2img[t]``: the image of ``texts[t]``;
        ``text_features [T, E]``: the texts' ITC embeddings when already computed (the
        cloud daemon's gallery), else computed here in batches of ``batch_size``.
        """
        import numpy as np
        import torch

        from semcom.metrics import retrieval_metrics

        img = torch.stack(list(img)).numpy()
        if text_features is None:
            text_features = np.concatenate(
                [
                    self.backend.text_embed(texts[b : b + self.batch_size]).float().cpu().numpy()
                    for b in range(0, len(texts), self.batch_size)
                ]
            )
        txt = np.asarray(text_features, dtype=np.float32)
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
        itm = self._itm(pairs, list(tokens))
        for (kind, a, b), s in zip(where, itm):
            if kind == "i2t":
                i2t[a, b] = s + sim[a, b]
            else:
                t2i[a, b] = s + sim[b, a]
        metrics, recalls = retrieval_metrics(i2t, t2i, txt2img, seed=self.seed)
        first_text = {}
        for t, i in enumerate(txt2img):
            first_text.setdefault(i, t)
        per: list[dict] = [{} for _ in range(len(img))]
        for i, p in enumerate(per):
            for key, v in recalls.items():
                if key.startswith("txt_"):
                    p[key] = v[i]
                elif i in first_text:
                    p[key] = v[first_text[i]]
        return metrics, per


def gallery_of(references: list[list[str]]) -> tuple[list[str], list[int]]:
    """The gallery of a set of images: every caption of image i, in order, and
    ``txt2img`` (the image index of each text)."""
    texts, txt2img = [], []
    for i, caps in enumerate(references):
        for c in caps:
            texts.append(c)
            txt2img.append(i)
    return texts, txt2img
