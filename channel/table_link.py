"""The abstracted NR link (``nr-table``): the exact link's transport blocks, code blocks,
HARQ rounds and accounting, with each code block's fate drawn from a BLER table.

Vectorised over descriptions, TBs and code blocks (numpy; no Python loop per TB): per
code block one uniform ``u`` is drawn (descriptions, TBs, CBs in order); the block is
still not decoded after round ``r`` iff ``u < p_r``, with ``p_r`` the table's probability
of failing ``r`` transmissions (non-increasing in ``r``). So a TB fails round ``r`` iff the
smallest ``u`` of its code blocks is below ``p_r``, and passes in the first round where
it is not. :meth:`NrTableLink.outcomes` gives these arrays without building per-description
objects (the sweeps' and the planner's bulk path); :meth:`NrTableLink.transmit` wraps them.

``mcs: auto`` chooses an MCS per TB with :class:`semcom.linkmodel.adapt.McsSelector` at
the SNR minus the outer loop's offset; the offset follows each TB's first-transmission
ACK/NACK (:class:`semcom.linkmodel.adapt.Olla`, one loop per :meth:`transmit` call, so a
sample's result still depends on its own random stream alone). That path runs TB by TB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from channel.framing import plan_tb
from channel.link import Link
from semcom.linkmodel.segmentation import split_bytes
from semcom.types import erase


@dataclass
class Outcomes:
    """Arrays over the descriptions of one call (see :class:`channel.link.LinkStats`)."""

    info_bits: np.ndarray
    coded_bits: np.ndarray
    channel_uses: np.ndarray
    latency_slots: np.ndarray
    blocks: np.ndarray
    block_errors: np.ndarray
    rounds: np.ndarray
    delivered: np.ndarray
    tbs: np.ndarray
    tbs_lost: np.ndarray
    code_blocks: np.ndarray
    pad_bits: np.ndarray
    mcs: np.ndarray  # MCS index of the description's first TB (-1: no MCS set)


class NrTableLink(Link):
    """The NR link with code-block outcomes drawn from a BLER table (see the module
    docstring). :param table: a :class:`semcom.linkmodel.bler.BlerTable` (default: the
    configured one)."""

    name = "nr-table"

    def __init__(self, cfg, table=None):
        super().__init__(cfg)
        from semcom.linkmodel.bler import BlerTable

        self.table = table or BlerTable.load(cfg.table or None)
        self.table.check_covers(cfg, settings=cfg.adaptation_settings(self.table))
        self._by_size: dict[int, tuple] = {}
        self.selector = None
        if cfg.mcs == "auto":
            from semcom.linkmodel.adapt import McsSelector

            self.selector = McsSelector(self.table, cfg)

    def fail_probs(self, k_prime: int, code_rate=None, modulation=None) -> np.ndarray:
        """[rounds] P(code block of ``K'`` not decoded after r = 1.. transmissions)."""
        c = self.cfg
        return self.table.fail_probs(
            k_prime,
            c.code_rate if code_rate is None else code_rate,
            c.modulation if modulation is None else modulation,
            c.fading_key,
            c.esno_db,
            c.harq,
            c.rounds,
        )

    def _size_info(self, nbytes: int) -> tuple:
        """(num_cbs, coded_bits, symbols, pad_bits, probs[R]) of a TB of ``nbytes``."""
        info = self._by_size.get(nbytes)
        if info is None:
            p = self.plan(8 * nbytes)
            info = (p.num_cbs, p.coded_bits, p.symbols, p.pad_bits, self.fail_probs(p.k_prime))
            self._by_size[nbytes] = info
        return info

    # ---- the vectorised path (a fixed setting) -----------------------------------------
    def outcomes(self, sizes, rng: np.random.Generator) -> Outcomes:
        """Fates of descriptions of ``sizes`` bytes (one ``rng.random`` call for all
        their code blocks)."""
        sizes = np.asarray(sizes, np.int64)
        D, R = sizes.size, self.cfg.rounds
        per = self.cfg.tb_bits // 8
        n_tb = -(-sizes // per)  # 0 for empty descriptions
        T = int(n_tb.sum())
        owner = np.repeat(np.arange(D), n_tb)
        first = np.cumsum(n_tb) - n_tb
        j = np.arange(T) - first[owner]
        base, extra = np.divmod(sizes[owner], np.maximum(n_tb[owner], 1))
        tb_bytes = base + (j < extra)
        uniq, inv = np.unique(tb_bytes, return_inverse=True)
        infos = [self._size_info(int(b)) for b in uniq]
        ncb = np.array([i[0] for i in infos], np.int64)[inv]
        coded = np.array([i[1] for i in infos], np.int64)[inv]
        syms = np.array([i[2] for i in infos], np.int64)[inv]
        pad = np.array([i[3] for i in infos], np.int64)[inv]
        probs = np.array([i[4] for i in infos], float).reshape(len(infos), R)[inv]  # [T, R]
        u = rng.random(int(ncb.sum()))
        if T:
            umin = np.minimum.reduceat(u, np.cumsum(ncb) - ncb)
            fail = umin[:, None] < probs  # [T, R]
        else:
            fail = np.zeros((0, R), bool)
        lost = fail.all(axis=1)
        rounds = np.where(lost, R, np.argmin(fail, axis=1) + 1)
        errs = np.where(lost, R, rounds - 1)

        def per_desc(x, how=np.add):
            out = np.zeros(D, x.dtype)
            has = n_tb > 0
            if T:
                out[has] = how.reduceat(x, first[has])
            return out

        num = self.numerology
        slots = np.zeros(D, np.int64)
        for k in range(R):
            s_k = per_desc(syms * (rounds > k))
            slots += -(-s_k // num.re_per_slot)
        max_r = per_desc(rounds, np.maximum)
        return Outcomes(
            info_bits=8 * sizes,
            coded_bits=per_desc(coded * rounds),
            channel_uses=per_desc(syms * rounds),
            latency_slots=slots + np.maximum(max_r - 1, 0) * self.cfg.harq_rtt_slots,
            blocks=per_desc(rounds),
            block_errors=per_desc(errs),
            rounds=max_r,
            delivered=per_desc(lost.astype(np.int64)) == 0,
            tbs=n_tb,
            tbs_lost=per_desc(lost.astype(np.int64)),
            code_blocks=per_desc(ncb),
            pad_bits=per_desc(pad),
            mcs=np.full(D, -1 if self.cfg.mcs is None else int(self.cfg.mcs), np.int64),
        )

    def transmit(self, descriptions, rng):
        from channel.link import LinkStats

        if self.selector is not None:
            return self._transmit_auto(descriptions, rng)
        o = self.outcomes([len(d.data) for d in descriptions], rng)
        num = self.numerology
        received, stats = [], []
        cols = zip(
            o.info_bits.tolist(),
            o.coded_bits.tolist(),
            o.channel_uses.tolist(),
            o.blocks.tolist(),
            o.block_errors.tolist(),
            o.rounds.tolist(),
            o.delivered.tolist(),
            o.latency_slots.tolist(),
            o.tbs.tolist(),
            o.tbs_lost.tolist(),
            o.code_blocks.tolist(),
            o.pad_bits.tolist(),
        )
        mcs = None if self.cfg.mcs is None else int(self.cfg.mcs)
        for d, (ib, cb, cu, bl, be, ro, ok, ls, tb, tl, nc, pb) in zip(descriptions, cols):
            stats.append(
                LinkStats(
                    ib,
                    cb,
                    cu,
                    num.airtime_s(cu),
                    bl,
                    be,
                    ro,
                    ok,
                    ls * num.slot_s,
                    tb,
                    tl,
                    nc,
                    pb,
                    0,
                    mcs,
                )  # fmt: skip
            )
            received.append(d if ok else erase(d, "crc"))
        return self._result(received, stats)

    # ---- link adaptation, TB by TB -----------------------------------------------------
    def _transmit_auto(self, descriptions, rng):
        from semcom.linkmodel.adapt import Olla

        c = self.cfg
        olla = Olla(c.olla_step_db, c.bler_target)
        R = c.rounds
        received, stats = [], []
        for d in descriptions:
            plans, rounds, lost, fails, first_mcs = [], [], [], [], None
            for nbytes in split_bytes(len(d.data), c.tb_bits):
                m = self.selector.choose(8 * nbytes, c.esno_db - olla.offset_db)
                first_mcs = m.index if first_mcs is None else first_mcs
                p = plan_tb(8 * nbytes, m.code_rate, m.qm, c.tb_crc)
                probs = self.fail_probs(p.k_prime, m.code_rate, m.modulation)
                umin = rng.random(p.num_cbs).min()
                tb_fail = umin < probs
                r = R if tb_fail.all() else int(np.argmin(tb_fail)) + 1
                plans.append(p)
                rounds.append(r)
                lost.append(bool(tb_fail.all()))
                fails.append(int(tb_fail[:r].sum()))
                olla.update(not bool(tb_fail[0]))
            st = self._stats(d, plans, rounds, lost, fails)
            st.mcs = first_mcs
            stats.append(st)
            received.append(d if st.delivered else erase(d, "crc"))
        return self._result(received, stats)
