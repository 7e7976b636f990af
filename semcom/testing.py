"""Fakes for tests, benchmarks and plugin authors: a link and (re-exported) a backend.

:class:`FakeLink` stands in for ``channel.build_link(cfg)``: it carries descriptions
bit-exact or erases them, with no PHY. :class:`~semcom.models.fake.FakeBackend` stands
in for a VLM. Both are deterministic and need no weights, so a run through the real
runner, cloud session and daemons takes milliseconds:

>>> link = FakeLink(loss=0.25)          # each description lost with probability 0.25
>>> link = FakeLink(drop_every=3)       # the 3rd, 6th, ... description sent is lost

Only :mod:`semcom.types` is needed (the core does not import ``channel``).
"""

from __future__ import annotations

import types

from semcom.models.fake import FakeBackend

__all__ = ["FakeBackend", "FakeLink"]


class FakeLink:
    """The Link interface (``transmit(descriptions, rng) -> result`` with ``received``
    and ``stats``, one per description) without a channel.

    A description is erased with probability ``loss``, drawn from the ``rng`` the caller
    passes (the runner's per-sample ``rng(seed, "link", sample_id)``, so losses do not
    depend on batching), and also when it is the ``drop_every``-th sent (counted in
    :attr:`n` over the link's life). Stats: one channel use per bit, rate 1/2 coding,
    ``airtime_per_bit_s`` of airtime per bit, one block per description.
    """

    snr_report = None

    def __init__(self, loss: float = 0.0, drop_every: int = 0, airtime_per_bit_s: float = 1e-6):
        if not 0.0 <= loss <= 1.0 or drop_every < 0:
            raise ValueError(
                f"loss must be in [0, 1] and drop_every >= 0, got {loss}, {drop_every}"
            )
        self.loss, self.drop_every, self.airtime_per_bit_s = loss, drop_every, airtime_per_bit_s
        self.n = 0

    def transmit(self, descriptions, rng):
        from semcom.types import erase

        out, stats = [], []
        for d in descriptions:
            self.n += 1
            lost = bool(self.loss > 0 and rng.random() < self.loss)
            lost = lost or bool(self.drop_every and self.n % self.drop_every == 0)
            out.append(erase(d) if lost else d)
            stats.append(
                types.SimpleNamespace(
                    info_bits=d.bits,
                    coded_bits=2 * d.bits,
                    channel_uses=d.bits,
                    airtime_s=d.bits * self.airtime_per_bit_s,
                    latency_s=d.bits * self.airtime_per_bit_s,
                    blocks=1,
                    block_errors=int(lost),
                    rounds=1,
                    delivered=not lost,
                )
            )
        return types.SimpleNamespace(received=out, stats=stats)
