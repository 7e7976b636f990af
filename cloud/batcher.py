"""Dynamic batching: concurrent requests gathered into one model call.

Requests that share a *group* (tasks, seed, stream setup: what one
:class:`cloud.session.CloudSession` serves) wait in that group's queue. The first
request of a batch waits at most ``max_wait`` for others; as soon as ``max_batch`` are
there, or the wait is over, the batch waits for a free worker (``workers`` model calls
at once) and takes up to ``max_batch`` queued requests, so a busy cloud runs larger
batches. ``compute(group, items)`` runs on the worker pool and returns one reply or
exception per item. A request every caller gave up on before its batch started is
dropped (its future gets :class:`Abandoned`).

The outputs equal the unbatched ones when the model is batch-invariant (as
``semcom run``'s batches are; a test checks it for the shipped models). Measured in
:class:`cloud.metrics.Metrics`: queue depth, batch sizes, queue wait, model time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class Abandoned(Exception):
    """Every caller gave up before its batch started: nothing was computed."""


@dataclass(eq=False)
class Job:
    key: str
    digest: str
    item: Any  # the wire item (dropped once computed: its bytes are released)
    group: tuple
    future: asyncio.Future
    waiters: int = 1
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, *, limits, executor, compute, metrics):
        self.limits = limits
        self._executor = executor
        self._compute = compute  # (group, [items]) -> [reply | Exception], on a worker
        self._metrics = metrics
        self._queues: dict[tuple, deque[Job]] = {}
        self._wake: dict[tuple, asyncio.Event] = {}
        self._collectors: dict[tuple, asyncio.Task] = {}
        self._workers: asyncio.Semaphore | None = None
        self.depth = 0
        self.running = 0

    def put(self, job: Job) -> None:
        """Queue ``job``; its future gets the reply (or the exception)."""
        if self._workers is None:
            self._workers = asyncio.Semaphore(self.limits.workers)
        g = job.group
        self._queues.setdefault(g, deque()).append(job)
        self._set_depth(+1)
        ev = self._wake.get(g)
        if ev is not None:
            ev.set()
        if g not in self._collectors:
            self._collectors[g] = asyncio.get_running_loop().create_task(self._collect(g))

    def _set_depth(self, delta: int) -> None:
        self.depth += delta
        self._metrics.queue_depth.set(self.depth)

    async def _collect(self, g: tuple) -> None:
        q = self._queues[g]
        try:
            while q:
                max_batch, max_wait = self.limits.batching(g[0])
                await self._gather(g, q, max_batch, q[0].enqueued + max_wait)
                busy = self._workers.locked()  # every model call taken: this batch waits
                await self._workers.acquire()
                refill = self.limits.refill_ms / 1e3
                if busy and refill > 0 and len(q) < max_batch:
                    # the batch that just ended is answering its callers, who send their
                    # next requests now: take them into this batch rather than leave them
                    # for a half-full next one
                    await self._gather(g, q, max_batch, time.perf_counter() + refill)
                batch: list[Job] = []
                while q and len(batch) < max_batch:
                    job = q.popleft()
                    self._set_depth(-1)
                    if job.waiters <= 0 or job.future.done():
                        if not job.future.done():
                            job.future.set_exception(Abandoned())
                        job.item = None
                        continue
                    batch.append(job)
                if not batch:
                    self._workers.release()
                    continue
                asyncio.get_running_loop().create_task(self._run(g, batch))
        finally:
            self._collectors.pop(g, None)
            if not q:
                self._queues.pop(g, None)

    async def _gather(self, g: tuple, q: deque, max_batch: int, until: float) -> None:
        """Wait until ``q`` holds ``max_batch`` jobs or the clock reaches ``until``."""
        while len(q) < max_batch:
            left = until - time.perf_counter()
            if left <= 0:
                return
            ev = self._wake[g] = asyncio.Event()
            try:
                await asyncio.wait_for(ev.wait(), left)
            except TimeoutError:
                return
            finally:
                self._wake.pop(g, None)

    async def _run(self, g: tuple, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        m = self._metrics
        for job in batch:
            m.queue_wait.observe(start - job.enqueued)
        m.batch_size.observe(len(batch))
        self.running += 1
        m.running.set(self.running)
        items = [job.item for job in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._compute, g, items)
        except BaseException as exc:  # the pool shut down, or cancelled
            results = [exc] * len(batch)
        finally:
            del items
            self.running -= 1
            m.running.set(self.running)
            m.model_time.observe(time.perf_counter() - start)
            self._workers.release()
        for job, res in zip(batch, results):
            job.item = None
            if job.future.done():
                continue
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    job.future.cancel()
                else:
                    job.future.set_exception(res)
            else:
                job.future.set_result(res)
