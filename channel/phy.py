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

import contextlib
import functools
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from channel.channels import awgn_llrs
from channel.channels import transmit as channel_transmit
from channel.crc import crc_attach, crc_check
from channel.decoders import LLR_CLIP, make_decoder
from channel.framing import TbPlan, plan_tb
from channel.modulation import demodulate, modulate

IR_RVS = (0, 2, 3, 1)  # redundancy version sequence of IR-HARQ


_CHUNK = 1 << 15  # AWGN fast path: coded bits per block of rows (cache-sized temporaries)
_WORK_MAX = 1 << 25  # bytes: the decoder's working copy is kept between calls up to this


def _unique_idx(idx: np.ndarray) -> bool:
    """No repetition in the rate-matching map (E within the circular buffer)."""
    return bool(np.unique(idx).size == idx.size)


class RmMap(NamedTuple):
    """One rate-matching map and what the link derives from it, once (:func:`_rm_map`).

    :param idx: [E] int64, mother-code position of each coded bit (read-only).
    :param unique: no repetition (E within the circular buffer).
    :param covered: [n_cols] bool, base columns the map reads (read-only).
    :param runs: the map as contiguous runs per interleaver lane (:func:`_lane_runs`).
    """

    idx: np.ndarray
    unique: bool
    covered: np.ndarray
    runs: tuple | None


@functools.lru_cache(maxsize=1024)
def _rm_map(code, e: int, rv: int, qm: int) -> RmMap:
    """The map of ``code`` for ``E``, redundancy version and ``Q_m``, computed once."""
    idx = code.rm_indices(e, rv, qm)
    idx.setflags(write=False)
    cov = code.covered_cols(idx)
    cov.setflags(write=False)
    return RmMap(idx, _unique_idx(idx), cov, _runs_of(idx, qm))


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


def _runs_of(idx: np.ndarray, qm: int) -> tuple | None:
    return _lane_runs(np.ascontiguousarray(idx, np.int64).tobytes(), qm)


_UNSET = object()


def _add_cols(acc: np.ndarray, idx: np.ndarray, vals: np.ndarray, qm: int, runs=_UNSET) -> None:
    """``acc[:, idx] += vals`` for a map without repetition, by slices where the map is a
    few contiguous runs per lane (5.4.2.2's interleaver over the circular buffer): the
    same sums, without the fancy-index round trip. ``runs``: the map's, if known."""
    runs = _runs_of(idx, qm) if runs is _UNSET else runs
    if runs is None:
        acc[:, idx] += vals
        return
    for q, a, b, lo, hi in runs:
        acc[:, lo:hi] += vals[:, q + a * qm : q + b * qm : qm]


def _take_cols(src: np.ndarray, m: RmMap, qm: int) -> np.ndarray:
    """``src[:, m.idx]`` (a new array), by slices over the map's runs like :func:`_add_cols`."""
    if m.runs is None:
        return src[:, m.idx]
    out = np.empty((src.shape[0], m.idx.size), src.dtype)
    for q, a, b, lo, hi in m.runs:
        out[:, q + a * qm : q + b * qm : qm] = src[:, lo:hi]
    return out


def _combine(acc: np.ndarray, rows, m: RmMap, llr: np.ndarray, qm: int):
    """``acc[rows][:, m.idx] += llr`` written back to ``acc`` (every copy added where the
    map repeats); ``rows`` is a slice (worked on in place) or an index array."""
    sub = acc[rows]
    if m.unique:
        _add_cols(sub, m.idx, llr, qm, m.runs)
    else:  # repetition beyond the circular buffer: add every copy
        np.add.at(sub, (slice(None), m.idx), llr)
    if not isinstance(rows, slice):
        acc[rows] = sub


class _Workspace:
    """A float32 buffer kept between calls for the decoder's working copy of the LLRs, so
    that batch after batch reuses memory instead of faulting in fresh pages; one user at
    a time (a nested caller, or a request over ``_WORK_MAX`` bytes, gets None). One per
    thread (:func:`_workspace`), shared by every link of the thread, so the memory kept is
    at most ``_WORK_MAX`` per thread however many links a process holds."""

    def __init__(self):
        self._buf = np.empty(0, np.float32)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def rows(self, n: int, width: int):
        """``[n, width]`` float32, C-contiguous, uninitialised (or None)."""
        size = n * width
        if 4 * size > _WORK_MAX or not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            if self._buf.size < size:
                self._buf = np.empty(size, np.float32)
            yield self._buf[:size].reshape(n, width)
        finally:
            self._lock.release()


_local = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = _Workspace()
    return ws


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
        qm = self.qm
        m = _rm_map(code, p.e, rv, qm)
        batch.covered |= m.covered
        rows = (pend[:, None] * C + np.arange(C)).ravel()
        full = pend.size == batch.size
        if self.cfg.fading == "awgn" and qm <= 2:
            # bit-wise LLRs, a block of rows at a time: the noise is drawn in the same
            # order as by one call, with temporaries that stay in cache
            step = max(1, _CHUNK // p.e)
            for lo in range(0, rows.size, step):
                sel = slice(lo, lo + step) if full else rows[lo : lo + step]
                llr = awgn_llrs(_take_cols(batch.cw[sel], m, qm), qm, self.n0, rng)
                np.clip(llr, -LLR_CLIP, LLR_CLIP, out=llr)
                _combine(batch.llr, sel, m, llr, qm)
        else:
            coded = _take_cols(batch.cw if full else batch.cw[rows], m, qm)
            if self.cfg.fading == "awgn":  # real-valued float32 fast path
                llr = awgn_llrs(coded, qm, self.n0, rng)
            else:
                x = modulate(coded, qm)
                z, nv = channel_transmit(
                    x, self.n0, self.cfg.fading, rng, rician_k_db=self.cfg.rician_k_db
                )
                llr = demodulate(z, nv, qm)
            np.clip(llr, -LLR_CLIP, LLR_CLIP, out=llr)
            _combine(batch.llr, slice(None) if full else rows, m, llr, qm)
        batch.rounds[pend] = r + 1
        dec = rows[~batch.cb_ok[rows]]
        if dec.size:
            rows_ = code.active_rows(batch.covered)
            if getattr(self.decoder, "name", "") in ("fast", "fixed"):  # copy is scratch
                with _workspace().rows(dec.size, code.n) as work:
                    llr = batch.llr.take(dec, axis=0, out=work, mode="clip")
                    res = self.decoder(code, llr, rows_, overwrite=True)
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
