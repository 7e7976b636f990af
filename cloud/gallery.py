"""Retrieval over the daemons: the gallery the cloud holds and the query images it keeps.

In process, retrieval ranks the evaluated images against their own captions
(:class:`semcom.tasks.retrieval.RetrievalTask`). Over the daemons the texts live on the
cloud:

- :class:`Gallery`: image id -> captions, and every caption's ITC feature, computed once
  when the daemon loads (``semcom cloud serve --gallery FILE``, JSON lines
  ``{"image_id": "...", "captions": ["...", ...]}``; without the flag, the captions of
  the config's data set);
- :class:`Queries`: each Submit naming ``retrieval`` leaves its query image's ITC
  embedding and received tokens here, under the run id, within a byte budget (the
  oldest run is dropped first);
- ``Rank`` (:meth:`cloud.service.CloudService.Rank`): once the edge has sent its last
  image it names the run's sample ids in order; the cloud restricts the gallery to those
  images' captions, in that order, and ranks with the same code as in process (ITC, then
  ITM re-ranks the top ``k_test``), so R@K equals ``semcom run``'s. An image the cloud
  no longer holds (it restarted, or the budget dropped its run) is named in the reply,
  and the edge sends it again.

Shapes: embeddings ``[E]`` float32, tokens ``[n_i, D]`` float32 (CPU tensors), gallery
features ``[T, E]`` float32 (numpy).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from semcom.errors import SemcomError


class GalleryError(SemcomError):
    """A gallery file that cannot be read, or a query image the gallery does not hold."""


class Gallery:
    """Image id -> captions (insertion order kept), with the captions' ITC features."""

    def __init__(self, captions: dict[str, list[str]], source: str):
        if not captions:
            raise GalleryError(f"the gallery from {source} has no images")
        self.captions = {str(k): [str(c) for c in v] for k, v in captions.items()}
        self.source = source
        self.texts: list[str] = []
        self._span: dict[str, tuple[int, int]] = {}
        for image_id, caps in self.captions.items():
            self._span[image_id] = (len(self.texts), len(caps))
            self.texts.extend(caps)
        if not self.texts:
            raise GalleryError(f"the gallery from {source} has no captions")
        self.features = None  # [T, E] float32 once embedded

    @property
    def n_images(self) -> int:
        return len(self.captions)

    @property
    def n_texts(self) -> int:
        return len(self.texts)

    @classmethod
    def from_samples(cls, samples, source: str) -> Gallery:
        """The captions of ``samples`` (one entry per image id, first occurrence)."""
        caps: dict[str, list[str]] = {}
        for s in samples:
            if s.image_id not in caps and s.captions:
                caps[s.image_id] = list(s.captions)
        return cls(caps, source)

    @classmethod
    def read(cls, path: str | Path) -> Gallery:
        """A JSON-lines gallery file; errors name the line and what is wrong."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise GalleryError(f"cannot read the gallery {path}: {exc}") from None
        caps: dict[str, list[str]] = {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GalleryError(f"{path}:{n}: not JSON ({exc.msg})") from None
            image_id = row.get("image_id") if isinstance(row, dict) else None
            texts = row.get("captions") if isinstance(row, dict) else None
            if not isinstance(image_id, str) or not image_id:
                raise GalleryError(f'{path}:{n}: expected {{"image_id": str, "captions": [str]}}')
            if (
                not isinstance(texts, list)
                or not texts
                or not all(isinstance(t, str) for t in texts)
            ):
                raise GalleryError(f"{path}:{n}: 'captions' of {image_id!r} must be strings")
            if image_id in caps:
                raise GalleryError(f"{path}:{n}: image id {image_id!r} twice")
            caps[image_id] = texts
        return cls(caps, str(path))

    def embed(self, backend, batch_size: int = 256) -> None:
        """Every caption's ITC feature, in batches of ``batch_size`` in gallery order (as
        :meth:`semcom.tasks.retrieval.RetrievalTask.rank` would for these texts)."""
        import numpy as np

        self.features = np.concatenate(
            [
                backend.text_embed(self.texts[b : b + batch_size]).float().cpu().numpy()
                for b in range(0, len(self.texts), batch_size)
            ]
        ).astype(np.float32, copy=False)

    def select(self, image_ids: list[str]):
        """``(texts, txt2img, features)`` of ``image_ids``' captions in that order
        (``txt2img[t]``: the position in ``image_ids`` of text t's image)."""
        import numpy as np

        missing = [i for i in image_ids if i not in self._span]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise GalleryError(
                f"image(s) {', '.join(map(repr, missing[:5]))}{more} are not in the "
                f"cloud's gallery ({self.n_images} images from {self.source})"
            )
        rows, texts, txt2img = [], [], []
        for q, image_id in enumerate(image_ids):
            start, n = self._span[image_id]
            rows.extend(range(start, start + n))
            texts.extend(self.texts[start : start + n])
            txt2img.extend([q] * n)
        feats = None if self.features is None else self.features[np.asarray(rows, dtype=np.int64)]
        return texts, txt2img, feats


class Queries:
    """Query images per run: ``run_id -> {sample_id: (image_id, embedding, tokens)}``,
    at most ``max_bytes`` of tensors in all (the least recently used run goes first)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._runs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(emb, tokens) -> int:
        return int(emb.numel() * emb.element_size() + tokens.numel() * tokens.element_size())

    def put(self, run_id: str, sample_id: str, image_id: str, emb, tokens) -> None:
        emb = emb.detach().clone()  # not a view that keeps its whole batch alive
        size = self._size(emb, tokens)
        with self._lock:
            run = self._runs.setdefault(run_id, {})
            old = run.pop(sample_id, None)
            if old is not None:
                self.nbytes -= self._size(old[1], old[2])
            run[sample_id] = (image_id, emb, tokens)
            self.nbytes += size
            self._runs.move_to_end(run_id)
            while self.nbytes > self.max_bytes and len(self._runs) > 1:
                _, dropped = self._runs.popitem(last=False)
                self.nbytes -= sum(self._size(e, t) for _, e, t in dropped.values())

    def get(self, run_id: str, sample_ids: list[str]) -> tuple[list[tuple], list[str]]:
        """``(entries, missing)``: the held ``(image_id, emb, tokens)`` of ``sample_ids`` in
        order (empty when any is missing) and the sample ids not held."""
        with self._lock:
            run = self._runs.get(run_id, {})
            missing = [s for s in sample_ids if s not in run]
            if missing:
                return [], missing
            self._runs.move_to_end(run_id)
            return [run[s] for s in sample_ids], []

    def drop(self, run_id: str) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None) or {}
            self.nbytes -= sum(self._size(e, t) for _, e, t in run.values())

    def __len__(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._runs.values())
