"""The edge half of the pipeline: samples -> descriptions, by the configured method.

>>> # EdgePipeline(cfg).encode(samples, task="vqa") -> list[EdgeResult]

The method (``edge.method``) is looked up in the ``edge-method`` registry (see
``edge/methods/__init__.py``); a user's own method can be named as
``package.module:Class``. Methods that need the vision model get the backend of
``edge.model`` (loaded once, or passed in so an in-process run shares it with the cloud).
"""

from __future__ import annotations

import time

import edge.methods  # noqa: F401  (declares the built-in methods)
from semcom import registry
from semcom.types import EdgeResult, Sample


class EdgePipeline:
    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        cls = registry.get("edge-method", cfg.edge.method)
        if getattr(cls, "needs_backend", True) and backend is None:
            from semcom.models import load_backend

            backend = load_backend(cfg.edge.model, device=cfg.run.torch_device())
        self.backend = backend
        self.method = cls(cfg, backend)

    @property
    def model_id(self) -> str | None:
        return getattr(self.backend, "model_id", None)

    def setup(self, samples=()) -> bytes:
        """The stream setup: what this method agrees with the cloud once per stream
        (connection) instead of repeating it in every description; ``b""`` when none.
        ``samples``: those the stream will carry (e.g. their usual image size goes in).
        The cloud method gets it through :meth:`cloud.pipeline.CloudPipeline.open`."""
        make = getattr(self.method, "setup", None)
        data = make(list(samples)) if callable(make) else b""
        if not isinstance(data, bytes):
            raise TypeError(f"edge method {self.cfg.edge.method}: setup() must return bytes")
        return data

    def encode(self, samples: list[Sample], task: str) -> list[EdgeResult]:
        """Encode a batch; adds ``edge_s`` (wall seconds per sample) to each info."""
        t0 = time.perf_counter()
        results = self.method.encode(samples, task)
        per = (time.perf_counter() - t0) / max(1, len(samples))
        if len(results) != len(samples):
            raise RuntimeError(
                f"edge method returned {len(results)} results for {len(samples)} samples"
            )
        for r in results:
            r.info.setdefault("edge_s", per)
        return results
