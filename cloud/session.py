"""The cloud side of one run, in process: decode what arrived, run the tasks.

A :class:`CloudSession` is what a *transport* opens on the cloud for a group of tasks
that share transmissions (caption + retrieval share one per image; VQA has one per
question). The in-process runner calls it directly; the cloud daemon calls the same
class for each request, so both produce the same outputs.

``process(items, samples)`` returns one reply per item:
``{"outputs": {task: output}, "info": {tokens_to_model, descriptions_received, cloud_s}}``.
``finalize()`` returns gallery-level outputs that need every sample (retrieval ranks),
as ``{task: [per-sample output]}``; empty for per-sample tasks.
"""

from __future__ import annotations

import time

from cloud.pipeline import CloudItem, CloudPipeline


class CloudSession:
    def __init__(self, cfg, backend, tasks: list[str], gallery_texts: list[str] | None = None):
        from cloud.tasks import make_task

        self.cfg = cfg
        self.pipeline = CloudPipeline(cfg, backend=backend)
        self.tasks = list(tasks)
        self.runners = {t: make_task(t, backend, cfg) for t in self.tasks}
        if gallery_texts is not None:
            for runner in self.runners.values():
                if hasattr(runner, "set_gallery"):
                    runner.set_gallery(gallery_texts)

    def process(self, items: list[CloudItem], samples) -> list[dict]:
        t0 = time.perf_counter()
        model_input = self.pipeline.decode(items)
        outs = {t: self.runners[t].infer(model_input, samples) for t in self.tasks}
        per = (time.perf_counter() - t0) / max(1, len(items))
        replies = []
        for i, info in enumerate(model_input.info):
            info = dict(info)
            info["cloud_s"] = per
            replies.append({"outputs": {t: outs[t][i] for t in self.tasks}, "info": info})
        return replies

    def finalize(self) -> dict[str, list]:
        out = {}
        for t, runner in self.runners.items():
            if hasattr(runner, "finalize"):
                out[t] = runner.finalize()
        return out


class InProcessTransport:
    """Opens cloud sessions in this process (the default transport of ``semcom run``)."""

    def __init__(self, cfg, backend):
        self.cfg, self.backend = cfg, backend

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def open(self, tasks: list[str], samples) -> CloudSession:
        gallery = None
        if "retrieval" in tasks:
            gallery = [s.captions[0] if s.captions else "" for s in samples]
        return CloudSession(self.cfg, self.backend, tasks, gallery)
