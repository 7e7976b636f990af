"""The cloud side of one run, in process: decode what arrived, run the tasks.

A :class:`CloudSession` is what a *transport* opens on the cloud for a group of tasks
that share transmissions (caption + retrieval share one per image; VQA has one per
question). The in-process runner calls it directly; the cloud daemon calls the same
class for each request, so both produce the same outputs.

The session starts with the edge's *stream setup* (``setup``: what the edge method
agreed once for the stream instead of repeating it per description; see
:meth:`edge.pipeline.EdgePipeline.setup`).

``process(items, samples)`` returns one reply per item:
``{"outputs": {task: output}, "info": {tokens_to_model, descriptions_received, cloud_s}}``
(the row value under the task's ``spec.output``: caption: the caption string; vqa: the
answer string; whole-set tasks (``spec.scope == "set"``, retrieval): ``None`` until
:meth:`finalize`, because ranking needs the whole gallery).
``finalize()`` returns ``{task: [per-sample output]}`` for whole-set tasks (retrieval:
the per-sample recalls), and :meth:`scores` what the session scored itself
(``{task: (per_sample_scores, metrics)}``); per-sample tasks are scored by the caller
with :func:`semcom.metrics.score_task`, so the edge can score what a remote cloud said.
"""

from __future__ import annotations

import time

from cloud.pipeline import CloudItem, CloudPipeline


class CloudSession:
    def __init__(
        self,
        cfg,
        backend,
        tasks: list[str],
        gallery_texts: list[str] | None = None,
        *,
        setup: bytes = b"",
    ):
        from semcom.tasks import make_task

        self.cfg = cfg
        self.pipeline = CloudPipeline(cfg, backend=backend)
        self.pipeline.open(setup)
        self.tasks = list(tasks)
        self.runners = {
            t: make_task(
                t,
                backend,
                beams=cfg.cloud.beams,
                max_new_tokens=cfg.cloud.max_new_tokens,
                k_test=cfg.cloud.k_test,
                seed=cfg.run.seed,
            )
            for t in self.tasks
        }
        # whole-set tasks keep their rows until finalize
        self._rows: dict[str, list[dict]] = {
            t: [] for t, r in self.runners.items() if not r.spec.per_sample
        }
        self._scores: dict[str, tuple[list[dict], dict]] = {}

    def process(self, items: list[CloudItem], samples) -> list[dict]:
        t0 = time.perf_counter()
        model_input = self.pipeline.decode(items)
        outs: dict[str, list] = {}
        for t, runner in self.runners.items():
            kw = {"projected": True} if getattr(model_input, "projected", False) else {}
            rows = runner.run_batch(model_input.tokens, model_input.mask, samples, **kw)
            if t in self._rows:
                self._rows[t].extend(rows)
                outs[t] = [None] * len(items)
            else:
                outs[t] = [r[runner.spec.output] for r in rows]
        per = (time.perf_counter() - t0) / max(1, len(items))
        replies = []
        for i, info in enumerate(model_input.info):
            info = dict(info)
            info["cloud_s"] = per
            replies.append({"outputs": {t: outs[t][i] for t in self.tasks}, "info": info})
        return replies

    @property
    def set_tasks(self) -> list[str]:
        """The whole-set tasks (retrieval): outputs only after :meth:`finalize`."""
        return list(self._rows)

    def take(self, task: str) -> list[tuple]:
        """What a whole-set task kept for the samples processed since the last call (one
        entry per sample, in order; retrieval: ``(embedding, tokens, cls_received)``), and
        forget it: the cloud daemon keeps these per run (:class:`cloud.gallery.Queries`)
        and ranks when the edge asks, instead of this session's ``finalize``."""
        self._rows[task] = []
        return self.runners[task].take()

    def finalize(self) -> dict[str, list]:
        """Rank gallery tasks over everything processed; ``{task: [per-sample output]}``."""
        out = {}
        for t, rows in self._rows.items():
            metrics = self.runners[t].finalize(rows)
            per = [
                {k: v for k, v in r.items() if k not in ("sample_id", "image_id", "references")}
                for r in rows
            ]
            out[t] = per
            self._scores[t] = (per, metrics)
        return out

    def scores(self) -> dict[str, tuple[list[dict], dict]]:
        """``{task: (per_sample_scores, metrics)}`` of the tasks scored here (after finalize)."""
        return dict(self._scores)


class InProcessTransport:
    """Opens cloud sessions in this process (the default transport of ``semcom run``)."""

    def __init__(self, cfg, backend):
        self.cfg, self.backend = cfg, backend

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def open(self, tasks: list[str], samples, setup: bytes = b"") -> CloudSession:
        """A session for ``tasks``; ``setup``: the edge's stream setup (once per stream)."""
        return CloudSession(self.cfg, self.backend, tasks, setup=setup)
