"""The exact link's physical layer: transport blocks through CRC, LDPC, QAM, channel,
demapping, HARQ combining, decoding and CRC checks (numpy + the decoder backend).

:class:`NrPhy` runs batches of same-size TBs (:class:`TbBatch`): ``start`` encodes,
``run_round`` sends the still-failing TBs once more (redundancy version of the round),
accumulates their LLRs in the mother-code buffer, decodes the code blocks not yet
decoded, and checks CRCs. A code block that passed its CRC keeps its bits; a TB passes
when its CRC holds over the decoded payload. Nothing is compared with the transmitted
bits to decide success: only CRCs (``undetected`` counts CRC passes with wrong bits, for
the record).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from channel.channels import awgn_llrs
from channel.channels import transmit as channel_transmit
from channel.crc import crc_attach, crc_check
from channel.decoders import LLR_CLIP, make_decoder
from channel.framing import TbPlan, plan_tb
from channel.modulation import demodulate, modulate

IR_RVS = (0, 2, 3, 1)  # redundancy version sequence of IR-HARQ


def _unique_idx(idx: np.ndarray) -> bool:
    """No repetition in the rate-matching map (E within the circular buffer)."""
    return bool(np.unique(idx).size == idx.size)


@functools.lru_cache(maxsize=256)
def _lane_runs(key: bytes, qm: int) -> tuple | None:
    """A rate-matching map (``idx`` as bytes) as contiguous runs per interleaver lane:
    ``(lane, first, stop, col_lo, col_hi)`` with ``idx[lane::qm][first:stop] ==
    range(col_lo, col_hi)``; None when it breaks into more than ``4 * qm`` runs."""
    idx = np.frombuffer(key, np.int64)
    runs = []
    for q in range(qm):
        lane = idx[q::qm]
        if lane.size == 0:
            continue
        cuts = [0, *(np.flatnonzero(np.diff(lane) != 1) + 1).tolist(), lane.size]
        for a, b in zip(cuts[:-1], cuts[1:]):
            runs.append((q, a, b, int(lane[a]), int(lane[a]) + b - a))
    return tuple(runs) if len(runs) <= 4 * qm else None


def _add_cols(acc: np.ndarray, idx: np.ndarray, vals: np.ndarray, qm: int) -> None:
    """``acc[:, idx] += vals`` for a map without repetition, by slices where the map is a
    few contiguous runs per lane (5.4.2.2's interleaver over the circular buffer): the
    same sums, without the fancy-index round trip."""
    runs = _lane_runs(np.ascontiguousarray(idx, np.int64).tobytes(), qm)
    if runs is None:
        acc[:, idx] += vals
        return
    for q, a, b, lo, hi in runs:
        acc[:, lo:hi] += vals[:, q + a * qm : q + b * qm : qm]


@dataclass
class TbBatch:
    """State of ``T`` transport blocks of one plan during HARQ (arrays over TBs/CBs).

    :ivar payload: [T, A] uint8 transmitted payload bits.
    :ivar cw: [T*C, N] uint8 mother codewords.
    :ivar llr: [T*C, N] float32 combined LLRs.
    :ivar cb_ok: [T*C] bool, CB decoded and its CRC passed.
    :ivar cb_bits: [T*C, K'] uint8 decoded CB bits (valid where ``cb_ok``, else the last
        failed attempt).
    :ivar tb_ok: [T] bool, TB CRC passed.
    :ivar rounds: [T] int, transmissions so far.
    :ivar tb_fail: [T, R] bool, TB failed (CRC) after round r (False once passed).
    :ivar cb_fail_after: [T*C, R] bool, CB not yet decoded after round r.
    :ivar covered: [n_cols] bool, base columns received so far (per batch: every TB of
        a batch gets the same redundancy versions in the same rounds).
    """

    plan: TbPlan
    payload: np.ndarray
    cw: np.ndarray
    llr: np.ndarray
    cb_ok: np.ndarray
    cb_bits: np.ndarray
    tb_ok: np.ndarray
    rounds: np.ndarray
    tb_fail: np.ndarray
    cb_fail_after: np.ndarray
    covered: np.ndarray
    iterations: np.ndarray
    decodes: np.ndarray
    rvs: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.payload.shape[0]

    def subset(self, tbs: np.ndarray) -> TbBatch:
        """A copy holding only TBs ``tbs`` (e.g. to continue failed TBs two ways)."""
        C = self.plan.num_cbs
        cbs = (np.asarray(tbs)[:, None] * C + np.arange(C)).ravel()
        return TbBatch(
            self.plan,
            self.payload[tbs].copy(),
            self.cw[cbs].copy(),
            self.llr[cbs].copy(),
            self.cb_ok[cbs].copy(),
            self.cb_bits[cbs].copy(),
            self.tb_ok[tbs].copy(),
            self.rounds[tbs].copy(),
            self.tb_fail[tbs].copy(),
            self.cb_fail_after[cbs].copy(),
            self.covered.copy(),
            self.iterations[cbs].copy(),
            self.decodes[cbs].copy(),
            list(self.rvs),
        )

    def decoded_payload(self) -> np.ndarray:
        """[T, A] uint8: the receiver's payload bits (meaningful where ``tb_ok``)."""
        p = self.plan
        T, C = self.size, p.num_cbs
        if C == 1:
            tb = self.cb_bits
        else:
            tb = self.cb_bits[:, : p.k_prime - 24].reshape(T, -1)
        return tb[:, : p.payload_bits]


class NrPhy:
    """The physical layer of the exact NR link for one channel configuration.

    :param cfg: :class:`semcom.config.channel.ChannelConfig`.
    :param decoder: a decoder backend (default from ``cfg.decoder``).
    :param rounds: maximum transmissions per TB (default ``cfg.rounds``).
    :param fault: optional ``fault(bits [n, K'] uint8, round) -> bits``, applied to the
        decoder output before the CRC check (fault injection in tests).
    """

    def __init__(self, cfg, decoder=None, *, rounds: int | None = None, fault=None):
        self.cfg = cfg
        self.qm = cfg.bits_per_symbol
        self.code_rate = cfg.code_rate
        self.esno_db = cfg.esno_db
        self.n0 = 0.0 if np.isposinf(self.esno_db) else 10 ** (-self.esno_db / 10)
        self.decoder = decoder or make_decoder(
            cfg.decoder, cfg.iterations, alpha=cfg.minsum_scale, early_stop=cfg.early_stop
        )
        self.rounds = cfg.rounds if rounds is None else int(rounds)
        self.harq = cfg.harq
        self.fault = fault

    def plan(self, payload_bits: int) -> TbPlan:
        return plan_tb(payload_bits, self.code_rate, self.qm, self.cfg.tb_crc)

    def rv(self, r: int, harq: str | None = None) -> int:
        harq = self.harq if harq is None else harq
        return IR_RVS[r % 4] if harq == "ir" else 0

    # ---- batches -----------------------------------------------------------------------
    def start(self, payload: np.ndarray) -> TbBatch:
        """Encode ``payload`` ([T, A] uint8, one plan) into a fresh batch."""
        payload = np.asarray(payload, dtype=np.uint8)
        T, A = payload.shape
        p = self.plan(A)
        code = p.code
        C, R = p.num_cbs, max(self.rounds, 1)
        tb = np.concatenate([payload, np.zeros((T, p.pad_bits), np.uint8)], axis=1)
        tb = crc_attach(tb, p.tb_crc)
        cbs = crc_attach(tb.reshape(T * C, -1), "CRC24B") if C > 1 else tb
        if self.rounds > 1:  # retransmissions may read any redundancy version
            cw = code.encode(cbs)
        else:  # one transmission, redundancy version 0: the columns it reads are enough
            upto = int(code.rm_indices(p.e, 0, self.qm).max()) // code.z + 1
            cw = code.encode(cbs, upto_col=upto)
        llr = np.zeros((T * C, code.n), np.float32)
        llr[:, code.k_prime : code.k] = LLR_CLIP  # filler bits are known zeros
        return TbBatch(
            p,
            payload,
            cw,
            llr,
            np.zeros(T * C, bool),
            np.zeros((T * C, code.k_prime), np.uint8),
            np.zeros(T, bool),
            np.zeros(T, np.int64),
            np.zeros((T, R), bool),
            np.ones((T * C, R), bool),
            np.zeros(code.n_cols, bool),
            np.zeros(T * C, np.int64),
            np.zeros(T * C, np.int64),
        )

    def run_round(
        self, batch: TbBatch, r: int, rng: np.random.Generator, *, harq: str | None = None
    ) -> np.ndarray:
        """Transmission ``r`` (0-based) of the TBs of ``batch`` not yet passed.

        :output sent: [t] int, the TBs transmitted in this round.
        """
        p, code = batch.plan, batch.plan.code
        C = p.num_cbs
        pend = np.flatnonzero(~batch.tb_ok)
        if pend.size == 0:
            if r < batch.tb_fail.shape[1]:
                batch.cb_fail_after[:, r] = ~batch.cb_ok
            return pend
        rv = self.rv(r, harq)
        batch.rvs.append(rv)
        idx = code.rm_indices(p.e, rv, self.qm)
        batch.covered |= code.covered_cols(idx)
        rows = (pend[:, None] * C + np.arange(C)).ravel()
        full = pend.size == batch.size
        coded = (batch.cw if full else batch.cw[rows])[:, idx]
        if self.cfg.fading == "awgn":  # real-valued float32 fast path
            llr = awgn_llrs(coded, self.qm, self.n0, rng)
        else:
            x = modulate(coded, self.qm)
            z, nv = channel_transmit(
                x, self.n0, self.cfg.fading, rng, rician_k_db=self.cfg.rician_k_db
            )
            llr = demodulate(z, nv, self.qm)
        np.clip(llr, -LLR_CLIP, LLR_CLIP, out=llr)
        unique = _unique_idx(idx)
        if unique and full:
            _add_cols(batch.llr, idx, llr, self.qm)
        elif unique:
            sub = batch.llr[rows]
            _add_cols(sub, idx, llr, self.qm)
            batch.llr[rows] = sub
        else:  # repetition beyond the circular buffer: add every copy
            sub = batch.llr[rows]
            np.add.at(sub, (slice(None), idx), llr)
            batch.llr[rows] = sub
        batch.rounds[pend] = r + 1
        dec = rows[~batch.cb_ok[rows]]
        if dec.size:
            rows_ = code.active_rows(batch.covered)
            if getattr(self.decoder, "name", "") == "fast":  # the gathered copy is scratch
                res = self.decoder(code, batch.llr[dec], rows_, overwrite=True)
            else:
                res = self.decoder(code, batch.llr[dec], rows_)
            bits = res.bits if self.fault is None else self.fault(res.bits.copy(), r)
            batch.iterations[dec] += res.iterations
            batch.decodes[dec] += 1
            good = crc_check(bits, p.cb_crc if C > 1 else p.tb_crc)
            batch.cb_ok[dec[good]] = True
            batch.cb_bits[dec] = bits  # the last attempt where the CRC failed
        if C == 1:
            batch.tb_ok[pend] = batch.cb_ok[pend]
        else:
            done = pend[batch.cb_ok[rows].reshape(-1, C).all(axis=1)]
            if done.size:
                cbr = (done[:, None] * C + np.arange(C)).ravel()
                tb = batch.cb_bits[cbr][:, : p.k_prime - 24].reshape(done.size, -1)
                ok = crc_check(tb, p.tb_crc)
                batch.tb_ok[done[ok]] = True
                bad = done[~ok]  # CB CRCs passed but the TB CRC did not: decode again
                if bad.size:
                    batch.cb_ok[(bad[:, None] * C + np.arange(C)).ravel()] = False
        if r < batch.tb_fail.shape[1]:
            batch.tb_fail[pend, r] = ~batch.tb_ok[pend]
            batch.cb_fail_after[:, r] = ~batch.cb_ok
        return pend

    def run(self, payload: np.ndarray, rng: np.random.Generator) -> TbBatch:
        """All HARQ rounds for a batch of same-size TBs ([T, A] uint8)."""
        batch = self.start(payload)
        for r in range(self.rounds):  # a round with nothing pending only records
            self.run_round(batch, r, rng)
        return batch


class CodeBlockSim:
    """One LDPC code block of ``k`` information bits sent as ``n`` coded bits, as in
    Sionna's coding tutorials: no CRC; a block error is any wrong information bit.

    Encoding and rate matching follow 38.212 (base graph from ``k`` and ``k/n``, RV 0,
    bit interleaver for ``qm`` > 1); channel and demapping as in the link.

    :param k: information bits; :param n: coded bits (a multiple of ``qm``).
    :param qm: bits per symbol; :param fading: see :mod:`channel.channels`.
    :param decoder: a decoder backend (``channel.decoders``).

    :input batch: blocks to simulate; :input esno_db: Es/N0; :input rng: generator.
    :output counts: ``{blocks, block_errors, bits, bit_errors, iterations}``.
    """

    def __init__(
        self,
        k: int,
        n: int,
        qm: int,
        fading: str,
        decoder,
        *,
        rician_k_db: float = 6.0,
        bg: int | None = None,
    ):
        from channel.ldpc import LdpcCode

        if n % qm:
            raise ValueError(f"n={n} must be a multiple of the bits per symbol ({qm})")
        self.k, self.n, self.qm = k, n, qm
        self.code = LdpcCode.for_block(k, k / n, bg)
        self.idx = self.code.rm_indices(n, 0, qm)
        self.rows = self.code.active_rows(self.code.covered_cols(self.idx))
        self.repeats = np.unique(self.idx).size != self.idx.size
        self.fading, self.decoder, self.rician_k_db = fading, decoder, rician_k_db

    def __call__(self, batch: int, esno_db: float, rng: np.random.Generator) -> dict:
        code = self.code
        u = rng.integers(0, 2, (batch, self.k), dtype=np.uint8)
        cw = code.encode(u)
        x = modulate(cw[:, self.idx], self.qm)
        n0 = 0.0 if np.isposinf(esno_db) else 10 ** (-esno_db / 10)
        z, nv = channel_transmit(x, n0, self.fading, rng, rician_k_db=self.rician_k_db)
        llr_rx = np.clip(demodulate(z, nv, self.qm), -LLR_CLIP, LLR_CLIP)
        llr = np.zeros((batch, code.n), np.float32)
        llr[:, code.k_prime : code.k] = LLR_CLIP
        if self.repeats:
            np.add.at(llr, (slice(None), self.idx), llr_rx)
        else:
            llr[:, self.idx] += llr_rx
        res = self.decoder(code, llr, self.rows)
        err = res.bits != u
        return {
            "blocks": batch,
            "block_errors": int(err.any(axis=1).sum()),
            "bits": batch * self.k,
            "bit_errors": int(err.sum()),
            "iterations": int(res.iterations.sum()),
        }
