"""The link: descriptions in, delivered descriptions or erasures out, plus a ledger.

``build_link(cfg)`` gives one of

- :class:`IdealLink` (``ideal``): delivers everything;
- :class:`ErasureLink` (``erasure``): loses each description with ``loss_prob``;
- :class:`NrLink` (``nr``): the exact 5G NR link (CRC, segmentation, LDPC, rate matching,
  QAM, channel, APP demapping, BP decoding, HARQ);
- :class:`channel.table_link.NrTableLink` (``nr-table``): the same transport blocks, code
  blocks, rounds and accounting, with each code block's success drawn from a BLER table;
- :class:`channel.pusch.PuschLink` (``pusch``): 5G NR PUSCH on Sionna (OFDM, DMRS,
  channel estimation, 38.901 TDL/CDL channels).

All four account the coded bits, channel uses and airtime the NR link spends (see
:mod:`channel.framing`), so rates are comparable across link types. Randomness comes only
from the ``rng`` given to :meth:`Link.transmit`, consumed in a fixed order, so a sample's
result depends on its own stream alone.

>>> import numpy as np
>>> from semcom.config.channel import ChannelConfig
>>> from semcom.types import Description
>>> link = build_link(ChannelConfig(link="ideal"))
>>> res = link.transmit([Description("img", 0, 1, b"hello", (96, 96))], np.random.default_rng(0))
>>> res.received[0].data, res.stats[0].coded_bits, res.stats[0].channel_uses
(b'hello', 128, 64)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from channel.framing import Numerology, TbPlan, plan_tb, split_bytes
from semcom.types import Description, erase

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    """What one description cost on the link and whether it arrived.

    ``blocks``/``block_errors`` count transport-block transmissions (retransmissions
    included) and those whose CRC failed; ``rounds`` is the largest number of
    transmissions any of its TBs needed; ``latency_s`` counts whole slots per round plus
    the HARQ round-trip between rounds; ``undetected`` counts TBs whose CRC passed with
    wrong bits (exact link only; such bytes are delivered, as a receiver would).
    """

    info_bits: int
    coded_bits: int
    channel_uses: int
    airtime_s: float
    blocks: int
    block_errors: int
    rounds: int
    delivered: bool
    latency_s: float = 0.0
    tbs: int = 0
    tbs_lost: int = 0
    code_blocks: int = 0
    pad_bits: int = 0
    undetected: int = 0
    mcs: int | None = None  # MCS index (of the first TB under link adaptation)
    deadline_missed: bool = False  # arrived (or not) after channel.deadline_ms

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TransmitResult:
    """:ivar received: one :class:`Description` (bit-exact bytes) or :class:`Erasure` per
        description sent, in order. :ivar stats: one :class:`LinkStats` per description.
    :ivar esno_db, ebno_db: the link's SNR both ways."""

    received: list
    stats: list[LinkStats]
    esno_db: float
    ebno_db: float

    @property
    def totals(self) -> dict:
        """Sums over the descriptions (per image when the list is one image's)."""
        s = self.stats
        blocks = sum(x.blocks for x in s)
        errs = sum(x.block_errors for x in s)
        tbs = sum(x.tbs for x in s)
        out = {
            "descriptions": len(s),
            "delivered": sum(x.delivered for x in s),
            "erasures": sum(not x.delivered for x in s),
            "info_bits": sum(x.info_bits for x in s),
            "coded_bits": sum(x.coded_bits for x in s),
            "channel_uses": sum(x.channel_uses for x in s),
            "airtime_s": sum(x.airtime_s for x in s),
            "latency_s": sum(x.latency_s for x in s),
            "blocks": blocks,
            "block_errors": errs,
            "bler": errs / blocks if blocks else 0.0,
            "tbs": tbs,
            "tbs_lost": sum(x.tbs_lost for x in s),
            "rounds_mean": (sum(x.rounds for x in s) / len(s)) if s else 0.0,
            "undetected": sum(x.undetected for x in s),
            "deadline_misses": sum(x.deadline_missed for x in s),
            "esno_db": self.esno_db,
            "ebno_db": self.ebno_db,
        }
        return out


class Link:
    """Base class: accounting shared by every link type.

    :param cfg: :class:`semcom.config.channel.ChannelConfig`.

    :input descriptions: list of :class:`semcom.types.Description`.
    :input rng: ``numpy.random.Generator`` (e.g. ``semcom.seeding.rng(seed, "link", id)``).
    :output: :class:`TransmitResult`.
    """

    name = "base"

    def __init__(self, cfg):
        self.cfg = cfg
        self.numerology = Numerology.from_config(cfg)
        self.qm = cfg.bits_per_symbol
        self._stats_memo: dict = {}  # _stats: fields by (size, plans, rounds, fate)
        self._split_memo: dict = {}  # _split: TB sizes and plans by description size

    @property
    def esno_db(self) -> float:
        return self.cfg.esno_db

    @property
    def ebno_db(self) -> float:
        return self.cfg.ebno_db

    def plan(self, payload_bits: int) -> TbPlan:
        return plan_tb(payload_bits, self.cfg.code_rate, self.qm, self.cfg.tb_crc)

    def tb_plans(self, desc: Description) -> list[TbPlan]:
        return list(self._split(len(desc.data))[1])

    def _split(self, n_bytes: int) -> tuple[tuple[int, ...], tuple[TbPlan, ...]]:
        """``(sizes, plans)``: the TBs (bytes each) of a description of ``n_bytes`` and
        their plans (memoised by size)."""
        memo = self._split_memo
        hit = memo.get(n_bytes)
        if hit is None:
            if len(memo) > 4096:
                memo.clear()
            sizes = tuple(split_bytes(n_bytes, self.cfg.tb_bits))
            hit = memo[n_bytes] = (sizes, tuple(self.plan(8 * n) for n in sizes))
        return hit

    def transmit(
        self, descriptions: Sequence[Description], rng: np.random.Generator
    ) -> TransmitResult:
        raise NotImplementedError

    # ---- shared ledger -----------------------------------------------------------------
    def _stats(
        self,
        desc: Description,
        plans: list[TbPlan],
        rounds: list[int],
        lost: list[bool],
        fails: list[int],
        undetected: int = 0,
    ) -> LinkStats:
        """Ledger of one description: ``rounds[i]`` transmissions of TB ``i``, of which
        ``fails[i]`` failed; ``lost[i]`` when it never passed. Descriptions of one size
        and fate share the arithmetic (memoised; each gets its own LinkStats)."""
        key = (len(desc.data), tuple(plans), tuple(rounds), tuple(lost), tuple(fails), undetected)
        memo = self._stats_memo
        fields = memo.get(key)
        if fields is None:
            if len(memo) > 4096:
                memo.clear()
            fields = memo[key] = self._stats_fields(desc, plans, rounds, lost, fails, undetected)
        return LinkStats(**fields)

    def _stats_fields(self, desc, plans, rounds, lost, fails, undetected) -> dict:
        coded = sum(p.coded_bits * r for p, r in zip(plans, rounds))
        uses = sum(p.symbols * r for p, r in zip(plans, rounds))
        max_r = max(rounds, default=0)
        num = self.numerology
        slots = sum(
            num.slots(sum(p.symbols for p, r in zip(plans, rounds) if r > k)) for k in range(max_r)
        )
        latency = (slots + max(max_r - 1, 0) * self.cfg.harq_rtt_slots) * num.slot_s
        return dict(
            info_bits=8 * len(desc.data),
            coded_bits=coded,
            channel_uses=uses,
            airtime_s=num.airtime_s(uses),
            blocks=sum(rounds),
            block_errors=sum(fails),
            rounds=max_r,
            delivered=not any(lost),
            latency_s=latency,
            tbs=len(plans),
            tbs_lost=sum(lost),
            code_blocks=sum(p.num_cbs for p in plans),
            pad_bits=sum(p.pad_bits for p in plans),
            undetected=undetected,
        )

    def _result(self, received, stats) -> TransmitResult:
        return TransmitResult(received, stats, self.esno_db, self.ebno_db)


class IdealLink(Link):
    """Delivers every description unchanged (one transmission per TB)."""

    name = "ideal"

    def transmit(self, descriptions, rng):
        received, stats = [], []
        for d in descriptions:
            plans = self.tb_plans(d)
            received.append(d)
            stats.append(
                self._stats(d, plans, [1] * len(plans), [False] * len(plans), [0] * len(plans))
            )
        return self._result(received, stats)


class ErasureLink(Link):
    """Loses each description independently with ``cfg.loss_prob`` (one uniform draw per
    description, in order); accounting as one transmission per TB."""

    name = "erasure"

    def transmit(self, descriptions, rng):
        received, stats = [], []
        u = rng.random(len(descriptions))
        for d, x in zip(descriptions, u):
            plans = self.tb_plans(d)
            lost = bool(x < self.cfg.loss_prob)
            received.append(erase(d, "erasure") if lost else d)
            n = len(plans)
            stats.append(self._stats(d, plans, [1] * n, [lost] * n, [int(lost)] * n))
            if lost and n == 0:
                stats[-1].delivered = False
        return self._result(received, stats)


class NrLink(Link):
    """The exact 5G NR link (see :mod:`channel.phy`).

    TBs of equal size (across all descriptions of the call) are simulated as one batch,
    batches in order of first appearance, so the draws depend only on the input.
    """

    name = "nr"

    def __init__(self, cfg, *, decoder=None, fault=None):
        super().__init__(cfg)
        from channel.phy import NrPhy

        self.phy = NrPhy(cfg, decoder, fault=fault)

    def transmit(self, descriptions, rng):
        layout = [self._split(len(d.data)) for d in descriptions]
        groups: dict[int, list[tuple[int, int, int]]] = {}  # TB size: (description, TB, offset)
        for di, (sizes, _) in enumerate(layout):
            pos = 0
            for ti, n in enumerate(sizes):
                groups.setdefault(n, []).append((di, ti, pos))
                pos += n
        out: list[list] = [[None] * len(sizes) for sizes, _ in layout]
        for n, members in groups.items():
            raw = b"".join(descriptions[di].data[pos : pos + n] for di, _, pos in members)
            payload = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(len(members), -1), axis=1)
            batch = self.phy.run(payload, rng)
            dec = batch.decoded_payload()
            # whole-batch bookkeeping (the per-TB Python loop only unpacks results)
            oks = batch.tb_ok.tolist()
            wrongs = (batch.tb_ok & (dec != payload).any(axis=1)).tolist()
            rounds = batch.rounds.tolist()
            fails = batch.tb_fail.sum(axis=1).tolist()
            data = np.packbits(dec, axis=1)
            for j, (di, ti, _) in enumerate(members):
                out[di][ti] = (data[j].tobytes(), rounds[j], oks[j], fails[j], wrongs[j])
        received, stats = [], []
        for d, (_, plans), res in zip(descriptions, layout, out):
            lost = [not r[2] for r in res]
            undetected = sum(r[4] for r in res)
            if undetected:
                log.warning(
                    "nr link: %d TB(s) of %s/%d passed the CRC with wrong bits",
                    undetected,
                    d.image_id,
                    d.index,
                )
            st = self._stats(d, plans, [r[1] for r in res], lost, [r[3] for r in res], undetected)
            stats.append(st)
            if st.delivered:  # as replace(d, data=...), without its per-field machinery
                data = b"".join(r[0] for r in res)
                received.append(
                    Description(d.image_id, d.index, d.count, data, d.original_hw, d.ledger, d.meta)
                )
            else:
                received.append(erase(d, "crc"))
        return self._result(received, stats)


def completion_times(stats: list[LinkStats], cfg) -> list[float]:
    """When each description of one image completes, in seconds from the image's start:
    cumulative airtime, or cumulative latency plus the mean M/D/1 wait at ``cfg.load``."""
    if cfg.deadline_kind == "airtime":
        t, out = 0.0, []
        for s in stats:
            t += s.airtime_s
            out.append(t)
        return out
    service = sum(s.airtime_s for s in stats)
    t = cfg.load * service / (2 * (1 - cfg.load)) if cfg.load > 0 else 0.0
    out = []
    for s in stats:
        t += s.latency_s
        out.append(t)
    return out


class DeadlineLink:
    """A link whose descriptions completing after ``cfg.deadline_ms`` are lost
    (``Erasure`` reason ``deadline``, ``LinkStats.deadline_missed``); the ledger still
    counts what was sent (an edge does not know in advance that it will be late)."""

    def __init__(self, inner: Link):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def transmit(self, descriptions, rng):
        res = self.inner.transmit(descriptions, rng)
        limit = self.inner.cfg.deadline_ms * 1e-3
        for i, t in enumerate(completion_times(res.stats, self.inner.cfg)):
            if t > limit + 1e-12:
                res.stats[i].deadline_missed = True
                if res.stats[i].delivered:
                    res.stats[i].delivered = False
                    res.received[i] = erase(descriptions[i], "deadline")
        return res


def build_link(cfg) -> Link:
    """The link of ``cfg.link`` (``ideal``, ``erasure``, ``nr``, ``nr-table`` or ``pusch``)."""
    from channel.table_link import NrTableLink

    def pusch(cfg):
        from channel.pusch import PuschLink

        return PuschLink(cfg)

    kinds = {
        "ideal": IdealLink,
        "erasure": ErasureLink,
        "nr": NrLink,
        "nr-table": NrTableLink,
        "pusch": pusch,
    }
    try:
        cls = kinds[cfg.link]
        if getattr(cfg, "deadline_ms", 0) > 0:
            return DeadlineLink(cls(cfg))
    except KeyError:
        from semcom.errors import ConfigError

        raise ConfigError(
            "channel.link", f"unknown link {cfg.link!r}; use one of {', '.join(kinds)}"
        ) from None
    return cls(cfg)
