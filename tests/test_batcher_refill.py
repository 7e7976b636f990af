"""The batcher's refill: a batch that waited for a busy model keeps gathering after the
model frees, so closed-loop callers (one request in flight each) are not split into two
alternating half batches."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloud.batcher import Batcher, Job
from cloud.limits import Limits
from cloud.metrics import Metrics

MODEL_S = 0.03  # one model call
TRAVEL_S = 0.002  # a reply reaching its caller, and the next request coming back


async def _closed_loop(limits: Limits, callers: int = 8, rounds: int = 6) -> list[int]:
    """``callers`` callers, one request in flight each; the second half starts while the
    first half's batch runs. Returns the batch sizes in order."""
    sizes: list[int] = []

    def compute(group, items):
        sizes.append(len(items))
        time.sleep(MODEL_S)
        return list(items)

    with ThreadPoolExecutor(1) as pool:
        b = Batcher(limits=limits, executor=pool, compute=compute, metrics=Metrics())
        loop = asyncio.get_running_loop()

        async def caller(c: int) -> None:
            if c >= callers // 2:
                await asyncio.sleep(MODEL_S / 3)  # arrives while the first batch runs
            for r in range(rounds):
                job = Job(f"{c}/{r}", "d", (c, r), ("vqa",), loop.create_future())
                b.put(job)
                assert await job.future == (c, r)
                await asyncio.sleep(TRAVEL_S)

        await asyncio.gather(*(caller(c) for c in range(callers)))
    return sizes


def test_without_refill_closed_loop_callers_split_into_half_batches():
    sizes = asyncio.run(_closed_loop(Limits(max_batch=8, max_wait_ms=1)))
    assert sum(sizes) == 8 * 6
    assert max(sizes[2:]) <= 4, sizes  # two halves of 4, alternating


def test_refill_gathers_the_callers_of_the_batch_that_ended():
    sizes = asyncio.run(_closed_loop(Limits(max_batch=8, max_wait_ms=1, refill_ms=200)))
    assert sum(sizes) == 8 * 6
    # the second batch waited for the model and took the first half's next requests:
    # from then on every batch is full (a full batch ends the refill at once) until the
    # second half's last requests, which have no first half left to join
    assert sizes == [4] + [8] * 5 + [4], sizes


def test_refill_ms_must_not_be_negative():
    with pytest.raises(ValueError, match="refill_ms"):
        Limits(refill_ms=-1)
