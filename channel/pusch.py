"""The uplink as 5G NR PUSCH on Sionna (``link: pusch``).

Each transport block fills one slot of a PUSCH allocation, built from Sionna's NR blocks:
``CarrierConfig`` (numerology, ``n_rb`` PRBs of ``bandwidth_mhz`` at ``scs_khz``),
``PUSCHConfig`` (``pusch_prb`` PRBs, 14 symbols, one layer, DMRS type 1 with one
additional position, MCS of TS 38.214 table ``mcs_table``, TB size per 38.214 from
Sionna's helpers), ``PUSCHTransmitter`` (TB CRC, segmentation, LDPC, rate matching,
scrambling, QAM, resource-grid mapping with DMRS), the channel (AWGN, or a 38.901 TDL
or CDL model with ``delay_spread_ns`` and ``speed_kmh`` through ``OFDMChannel``, noise
of variance ``N0 = 10^(-Es/N0 / 10)`` per resource element with the channel normalised to
unit average gain over the fading, not per slot), and ``PUSCHReceiver`` (perfect CSI or LS estimation on the DMRS with
linear interpolation, LMMSE detection, layer demapping, TB decoding).

Decoding: ``decoder: fast`` puts semcom's layered min-sum LDPC decoder (the C kernel of
:mod:`channel.decoders`) inside Sionna's ``TBDecoder`` in place of its ``LDPC5GDecoder``
(:class:`FastTBDecoder`: same descrambling, code-block de-interleaving, CRC checks; the
rate recovery maps each code block's LLRs into the mother code with semcom's 38.212 rate
matching, bit-exact with Sionna's encoder). ``decoder: sionna`` keeps Sionna's decoder.
Only CRCs decide: a TB whose CRC fails is lost.

A description of ``D`` bytes becomes ``ceil(8 D / TBS)`` TBs, the last padded with zeros
to the TB size (counted as ``pad_bits``). Ledger per TB transmission: the coded bits of
the allocation (``num_coded_bits``), every resource element of the allocation as a
channel use (data and DMRS), one slot of airtime scaled by ``pusch_prb / n_rb``; latency in
whole slots per round plus ``harq_rtt_slots`` between rounds. HARQ on PUSCH is Chase
combining only (Sionna's TB encoder sends redundancy version 0): a failed TB is sent again
and the LLRs of all its transmissions are added before decoding.

Randomness: payload-independent noise and channel draws come from Sionna's generators,
seeded from the ``rng`` passed to :meth:`PuschLink.transmit`, so a sample's result
depends on its stream alone. torch and Sionna load when the link is built; the GPU is used
when one is present (``SEMCOM_DEVICE`` overrides).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from channel.link import Link, LinkStats
from semcom.types import erase, replace


def device() -> str:
    import torch

    return os.environ.get("SEMCOM_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def pusch_mcs(cfg) -> int:
    """The MCS index of a pusch config: ``cfg.mcs``, or the MCS of ``mcs_table`` whose
    modulation and code rate (within the table tolerance) are the configured ones."""
    from semcom.linkmodel.bler import RATE_TOL
    from semcom.linkmodel.mcs import mcs_list

    if isinstance(cfg.mcs, int):
        return cfg.mcs
    for m in mcs_list(cfg.mcs_table):
        if m.modulation == cfg.modulation and abs(m.code_rate - cfg.code_rate) <= RATE_TOL:
            return m.index
    raise ValueError(
        f"no MCS of table {cfg.mcs_table} has {cfg.modulation} at rate {cfg.code_rate:.4f}"
    )


class FastTBDecoder:
    """Sionna's ``TBDecoder`` with semcom's fast LDPC decoder in place of its BP decoder.

    Built from the transmitter's ``TBEncoder``; returns ``(bits, tb_crc_status)`` like
    ``TBDecoder`` and, with :meth:`decode_llr`, works on accumulated LLRs (HARQ).
    """

    def __new__(cls, encoder, iterations=20, alpha=0.7, early_stop=True, decoder="fast"):
        import torch
        from sionna.phy.nr import TBDecoder

        from channel.decoders import LLR_CLIP, make_decoder
        from channel.ldpc import LdpcCode

        class _Fast(torch.nn.Module):
            """LDPC5GDecoder's interface: [..., C, n] Sionna LLRs (log P(1)/P(0)) of the
            rate-matched code blocks -> [..., C, k] hard information bits."""

            def __init__(self, enc):
                super().__init__()
                bg = 1 if enc._bg == "bg1" else 2
                self.code = LdpcCode.build(bg, enc.k, enc.k)
                if self.code.z != enc.z or self.code.k != enc._k_ldpc:
                    raise ValueError(
                        f"LDPC code mismatch with Sionna's encoder (Z {self.code.z} vs "
                        f"{enc.z}, K {self.code.k} vs {enc._k_ldpc})"
                    )
                self.idx = self.code.rm_indices(enc.n, 0, 1)
                self.rows = self.code.active_rows(self.code.covered_cols(self.idx))
                self.repeats = np.unique(self.idx).size != self.idx.size
                self.dec = make_decoder(decoder, iterations, alpha=alpha, early_stop=early_stop)

            def forward(self, llr_cb):
                shape = llr_cb.shape
                x = -llr_cb.detach().reshape(-1, shape[-1]).cpu().numpy().astype(np.float32)
                code = self.code
                L = np.zeros((x.shape[0], code.n), np.float32)
                L[:, code.k_prime : code.k] = LLR_CLIP
                x = np.clip(x, -LLR_CLIP, LLR_CLIP)
                if self.repeats:
                    np.add.at(L, (slice(None), self.idx), x)
                else:
                    L[:, self.idx] += x
                bits = self.dec(code, L, self.rows).bits
                out = torch.from_numpy(bits.astype(np.float32)).to(llr_cb.device)
                return out.reshape(*shape[:-1], code.k_prime)

        dec = TBDecoder(encoder, num_bp_iter=1)
        dec._decoder = _Fast(encoder.ldpc_encoder)
        return dec


@dataclass
class _Chain:
    mcs: int
    tbs: int
    coded_bits: int
    res: int  # resource elements of the allocation (data + DMRS)
    tx: object
    rx: object
    rx_llr: object  # receiver without TB decoding (LLRs), for HARQ combining
    dec: object  # TB decoder
    channel: object | None


class PuschLink(Link):
    """5G NR PUSCH through Sionna (see the module docstring)."""

    name = "pusch"
    batch = 64  # slots per Sionna call

    def __init__(self, cfg):
        super().__init__(cfg)
        import sionna.phy

        self.device = device()
        sionna.phy.config.device = self.device
        self.n_prb = cfg.pusch_prb or cfg.n_rb
        self.n0 = 0.0 if math.isinf(cfg.esno_db) else 10 ** (-cfg.esno_db / 10)
        self._chains: dict[int, _Chain] = {}
        self.selector = None
        if cfg.mcs == "auto":
            from semcom.config.channel import PUSCH_RATE_MIN
            from semcom.linkmodel.adapt import McsSelector
            from semcom.linkmodel.bler import BlerTable

            sel = McsSelector(BlerTable.load(cfg.table or None), cfg)
            sel.candidates = [m for m in sel.candidates if m.code_rate >= PUSCH_RATE_MIN]
            self.selector = sel
        else:
            try:
                self.chain(pusch_mcs(cfg))
            except ValueError as exc:  # Sionna's encoder: no repetition beyond the mother code
                from semcom.errors import ConfigError

                raise ConfigError(
                    "channel.mcs",
                    f"Sionna's PUSCH cannot code MCS {pusch_mcs(cfg)} (rate {cfg.code_rate:.3f}) "
                    f"on {self.n_prb} PRBs: {exc} Use fewer PRBs (channel.pusch_prb), "
                    "another MCS, or the nr link",
                ) from None

    # ---- one configuration per MCS -----------------------------------------------------
    def pusch_config(self, mcs: int):
        from sionna.phy.nr import PUSCHConfig

        c = self.cfg
        pc = PUSCHConfig()
        pc.carrier.subcarrier_spacing = c.scs_khz
        pc.carrier.n_size_grid = c.n_rb
        pc.n_size_bwp = self.n_prb
        pc.tb.mcs_table = c.mcs_table
        pc.tb.mcs_index = mcs
        pc.dmrs.additional_position = 1
        pc.symbol_allocation = [0, c.symbols_per_slot]
        return pc

    def chain(self, mcs: int) -> _Chain:
        ch = self._chains.get(mcs)
        if ch is not None:
            return ch
        from sionna.phy.nr import PUSCHReceiver, PUSCHTransmitter

        c = self.cfg
        pc = self.pusch_config(mcs)
        tx = PUSCHTransmitter(pc, return_bits=False)
        est = "perfect" if c.channel_estimation == "perfect" else None
        if c.decoder in ("fast", "fixed"):
            dec = FastTBDecoder(
                tx._tb_encoder, c.iterations, c.minsum_scale, c.early_stop, c.decoder
            )
        else:
            from sionna.phy.nr import TBDecoder

            dec = TBDecoder(tx._tb_encoder, num_bp_iter=c.iterations)
        rx = PUSCHReceiver(tx, channel_estimator=est, tb_decoder=dec, return_tb_crc_status=True)
        rx_llr = PUSCHReceiver(tx, channel_estimator=est, tb_decoder=_Identity())
        ch = _Chain(
            mcs,
            int(pc.tb_size),
            int(pc.num_coded_bits),
            self.n_prb * 12 * c.symbols_per_slot,
            tx,
            rx,
            rx_llr,
            dec,
            self._channel(tx.resource_grid),
        )
        self._chains[mcs] = ch
        return ch

    def _channel(self, rg):
        c = self.cfg
        if c.fading == "awgn":
            return None
        from sionna.phy.channel import OFDMChannel

        v = c.speed_kmh / 3.6
        fc = c.carrier_ghz * 1e9
        model = c.fading.split("-")[1].upper()
        if c.fading.startswith("tdl"):
            from sionna.phy.channel.tr38901 import TDL

            cm = TDL(model, c.delay_spread_ns * 1e-9, fc, min_speed=v, max_speed=v)
        else:
            from sionna.phy.channel.tr38901 import CDL, Antenna

            ut = Antenna("single", "V", "omni", fc)
            bs = Antenna("single", "V", "omni", fc)
            cm = CDL(
                model, c.delay_spread_ns * 1e-9, fc, ut, bs, "uplink", min_speed=v, max_speed=v
            )
        # normalize_channel=False: the 38.901 power-delay profiles have unit average power;
        # normalising each slot would remove the fading of the slot (outage)
        return OFDMChannel(cm, rg, add_awgn=True, normalize_channel=False, return_channel=True)

    # ---- slots -------------------------------------------------------------------------
    def _send(self, ch: _Chain, bits: np.ndarray, seed: int, *, llr_only: bool = False):
        """One transmission of TBs ``bits`` [T, TBS] -> (decoded [T, TBS], crc [T]) or, with
        ``llr_only``, the receiver's LLRs [T, coded_bits] (Sionna sign)."""
        import sionna.phy
        import torch

        sionna.phy.config.seed = seed
        outs = []
        no = torch.tensor(max(self.n0, 1e-12), device=self.device)
        with torch.no_grad():
            for s in range(0, bits.shape[0], self.batch):
                b = torch.tensor(bits[s : s + self.batch, None, :], dtype=torch.float32)
                x = ch.tx(b.to(self.device))
                if ch.channel is None:
                    y = x + _noise(x, self.n0)
                    h = torch.ones(
                        (x.shape[0], 1, 1, 1, 1, x.shape[-2], x.shape[-1]),
                        dtype=x.dtype,
                        device=x.device,
                    )
                else:
                    y, h = ch.channel(x, no)
                args = (y, no, h) if self.cfg.channel_estimation == "perfect" else (y, no)
                outs.append((ch.rx_llr if llr_only else ch.rx)(*args))
        if llr_only:
            return torch.cat([o.reshape(o.shape[0], -1) for o in outs]).cpu().numpy()
        bh = torch.cat([o[0].reshape(o[0].shape[0], -1) for o in outs]).cpu().numpy()
        crc = torch.cat([o[1].reshape(-1) for o in outs]).cpu().numpy()
        return bh.astype(np.uint8), crc.astype(bool)

    def _run_tbs(self, ch: _Chain, bits: np.ndarray, rng: np.random.Generator):
        """All HARQ rounds of TBs ``bits`` -> (decoded, ok [T], rounds [T], fails [T])."""
        import torch

        T, R = bits.shape[0], self.cfg.rounds
        seed = int(rng.integers(2**31 - 1))
        if R == 1:
            dec, ok = self._send(ch, bits, seed)
            return dec, ok, np.ones(T, np.int64), (~ok).astype(np.int64)
        llr = np.zeros((T, ch.coded_bits), np.float32)
        ok = np.zeros(T, bool)
        dec = np.zeros_like(bits)
        rounds = np.zeros(T, np.int64)
        for r in range(R):
            pend = np.flatnonzero(~ok)
            if not pend.size:
                break
            llr[pend] += self._send(ch, bits[pend], seed + 7919 * r, llr_only=True)
            rounds[pend] = r + 1
            with torch.no_grad():
                bh, crc = ch.dec(torch.tensor(llr[pend][:, None, :], device=self.device))
            d = bh.reshape(pend.size, -1).cpu().numpy().astype(np.uint8)
            good = crc.reshape(-1).cpu().numpy().astype(bool)
            dec[pend[good]] = d[good]
            ok[pend[good]] = True
        return dec, ok, rounds, rounds - ok

    # ---- the link ----------------------------------------------------------------------
    def transmit(self, descriptions, rng):
        from semcom.linkmodel.adapt import Olla

        c = self.cfg
        olla = Olla(c.olla_step_db, c.bler_target)
        groups: dict[int, list[int]] = {}
        mcs_of: list[int] = []
        out: dict[int, tuple] = {}
        for di, d in enumerate(descriptions):
            if self.selector is None:
                mcs = pusch_mcs(c)
                groups.setdefault(mcs, []).append(di)
                mcs_of.append(mcs)
                continue
            # link adaptation: one MCS per description (its TBs in consecutive slots),
            # the outer loop updated by every TB's first-transmission ACK/NACK
            tbs0 = self.chain(self.selector.candidates[0].index).tbs
            m = self.selector.choose(min(8 * len(d.data), tbs0), c.esno_db - olla.offset_db)
            mcs_of.append(m.index)
            out[di] = self._describe(self.chain(m.index), [d], rng)[0]
            for first_ok in out[di][5]:
                olla.update(bool(first_ok))
        for mcs, members in groups.items():
            res = self._describe(self.chain(mcs), [descriptions[i] for i in members], rng)
            out.update(zip(members, res))
        received, stats = [], []
        for di, d in enumerate(descriptions):
            data, ok, st, *_ = out[di]
            st.mcs = mcs_of[di]
            stats.append(st)
            received.append(replace(d, data=data) if ok else erase(d, "crc"))
        return self._result(received, stats)

    def _describe(self, ch: _Chain, descs, rng):
        """TBs of ``descs`` through ``ch`` -> per description (bytes, delivered, stats,
        tb_ok, rounds, first-transmission ACKs)."""
        tbs = ch.tbs
        spans, rows = [], []
        for d in descs:
            bits = np.unpackbits(np.frombuffer(d.data, np.uint8))
            n = -(-bits.size // tbs) if bits.size else 0
            padded = np.zeros(n * tbs, np.uint8)
            padded[: bits.size] = bits
            spans.append((len(rows), n, n * tbs - bits.size))
            rows.extend(padded.reshape(n, tbs))
        allbits = np.array(rows, np.uint8).reshape(-1, tbs)
        if allbits.shape[0]:
            dec, ok, rounds, fails = self._run_tbs(ch, allbits, rng)
        else:
            dec = allbits
            ok = np.zeros(0, bool)
            rounds = fails = np.zeros(0, np.int64)
        first_ack = (rounds == 1) & ok
        res = []
        num = self.numerology
        share = self.n_prb / self.cfg.n_rb
        for d, (s, n, pad) in zip(descs, spans):
            r, o = rounds[s : s + n], ok[s : s + n]
            max_r = int(r.max()) if n else 0
            slots = sum(int((r > k).sum()) for k in range(max_r))
            lat = (slots + max(max_r - 1, 0) * self.cfg.harq_rtt_slots) * num.slot_s
            st = LinkStats(
                info_bits=8 * len(d.data),
                coded_bits=int(ch.coded_bits * r.sum()),
                channel_uses=int(ch.res * r.sum()),
                airtime_s=float(r.sum()) * num.slot_s * share,
                blocks=int(r.sum()),
                block_errors=int(fails[s : s + n].sum()),
                rounds=max_r,
                delivered=bool(o.all()),
                latency_s=lat,
                tbs=n,
                tbs_lost=int((~o).sum()),
                code_blocks=n * ch.dec._tb_encoder.num_cbs if hasattr(ch.dec, "_tb_encoder") else n,
                pad_bits=pad,
            )
            ok_d = bool(o.all())
            data = np.packbits(dec[s : s + n].reshape(-1)[: 8 * len(d.data)]).tobytes()
            res.append((data, ok_d, st, o, r, first_ack[s : s + n]))
        return res


class _Identity:
    """A TB "decoder" that returns its LLRs (for HARQ combining outside the receiver)."""

    def __call__(self, llr):
        return llr, None


def _noise(x, n0: float):
    import torch

    if n0 <= 0:
        return torch.zeros_like(x)
    s = math.sqrt(n0 / 2)
    import sionna.phy

    g = sionna.phy.config.torch_rng(str(x.device))
    re = torch.randn(x.shape, generator=g, device=x.device) * s
    im = torch.randn(x.shape, generator=g, device=x.device) * s
    return torch.complex(re, im).to(x.dtype)
