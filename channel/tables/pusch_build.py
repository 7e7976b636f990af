"""BLER tables measured on the PUSCH link (``semcom bler-table build --link pusch``): the
38.901 channels (TDL, CDL; AWGN too) that the single-carrier link does not have.

One curve per (MCS setting, channel, block size): single-code-block TBs (the TB size of
38.214 for an allocation of ``n_prb`` PRBs, ``n_prb`` chosen so that the TB size is nearest
to each target of ``tb_targets`` without segmentation), sent one slot each through
:class:`channel.pusch.PuschLink` with the configured estimation and decoder. The entry's
``k_prime`` is the TB size plus its CRC (CRC16 up to 3824 bits, 38.212), so the lookups of
:mod:`semcom.linkmodel.bler` interpolate in ``K'`` as for the single-carrier tables; the
channel key is ``ChannelConfig.fading_key`` (e.g. ``tdl-a/100ns/3kmh``). Under frequency-
selective fading the code blocks of one TB are not independent; the table link treats
them as independent (the same abstraction as for block fading), which is exact for the
single-code-block TBs measured here.

Per curve: Es/N0 from below the Shannon limit of the setting up in ``step`` dB, each point
``blocks`` TBs, until the BLER falls below ``min_bler`` (or a point has no error); the
first point is moved down until it fails (almost) always. HARQ: ``none`` only. Resumable:
the file is rewritten after every curve, and a new build on it skips the curves it has.
Runs on the GPU when there is one (Sionna's tensors; the fast decoder stays on the CPU).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from channel.tables.build import dumps_table, shannon_esno_db
from semcom.errors import ConfigError
from semcom.linkmodel.bler import SCHEMA, clear_cache

TB_TARGETS = (320, 3800)


def _n_prb_for(link, mcs: int, target: int, n_max: int) -> list[int]:
    """PRB counts by the distance of their TB size to ``target`` (single code block)."""
    cands = []
    for n in range(1, n_max + 1):
        link.n_prb = n
        tbs = int(link.pusch_config(mcs).tb_size)
        if tbs > 3800:  # K' <= 3816: base graph 2 for Sionna's encoder at every rate
            break
        cands.append((abs(tbs - target), n))
    return [n for _, n in sorted(cands)]


def build_pusch_entry(
    base_cfg,
    mcs_table: int,
    mcs: int,
    target: int,
    *,
    blocks: int = 60,
    step: float = 2.0,
    min_bler: float = 3e-2,
    seed: int = 0,
) -> dict:
    from channel.pusch import PuschLink
    from semcom.linkmodel.mcs import mcs_entry
    from semcom.seeding import rng as derive_rng

    m = mcs_entry(mcs_table, mcs)
    cfg = dataclasses.replace(base_cfg, mcs=mcs, mcs_table=mcs_table, snr_db=0.0)
    link = PuschLink(dataclasses.replace(cfg, mcs=9, mcs_table=1, pusch_prb=8))
    link.cfg = cfg
    ch = None
    for n_prb in _n_prb_for(link, mcs, target, cfg.n_rb):
        link.n_prb = n_prb
        link._chains.clear()
        try:  # Sionna's encoder refuses rates above 0.95 after TB-size quantisation
            ch = link.chain(mcs)
            break
        except ValueError:
            continue
    if ch is None:
        raise ValueError(f"no PRB count codes MCS {mcs_table}/{mcs} near {target} bits")
    k_prime = ch.tbs + (16 if ch.tbs <= 3824 else 24)
    key = (mcs_table, mcs, target, cfg.fading_key)
    rng = derive_rng(seed, "bler-table-pusch", *key)

    def point(esno: float) -> tuple[int, int]:
        link.n0 = 10 ** (-esno / 10)
        bits = rng.integers(0, 2, (blocks, ch.tbs), dtype=np.uint8)
        _, ok = link._send(ch, bits, int(rng.integers(2**31 - 1)))
        return blocks, int((~ok).sum())

    s = round(shannon_esno_db(m.code_rate, m.qm) - 1.0, 2)
    for _ in range(10):
        b, f = point(s)
        if f >= 0.98 * b:
            break
        s = round(s - 3.0, 2)
    snrs, nb, nf = [s], [b], [f]
    while s < 45:
        s = round(s + step, 2)
        b, f = point(s)
        snrs.append(s)
        nb.append(b)
        nf.append(f)
        if f == 0 or f / b < min_bler:
            break
    return {
        "payload_bits": ch.tbs,
        "k_prime": k_prime,
        "bg": int(1 if ch.tx._tb_encoder.ldpc_encoder._bg == "bg1" else 2),
        "z": int(ch.tx._tb_encoder.ldpc_encoder.z),
        "e": int(ch.coded_bits),
        "n_prb": n_prb,
        "mcs": [mcs_table, mcs],
        "code_rate": m.code_rate,
        "modulation": m.modulation,
        "fading": cfg.fading_key,
        "esno_db": snrs,
        "blocks": nb,
        "fail": {"none": [nf]},
    }


def build_pusch_table(
    base_cfg,
    channels: list[dict],
    *,
    out: str | Path,
    mcs_tables=(1, 2),
    tb_targets=TB_TARGETS,
    progress: bool = False,
    **kw,
) -> dict:
    """Every MCS of ``mcs_tables`` (rate >= 1/5, Sionna's limit) over each channel of
    ``channels`` (``ChannelConfig`` overrides: fading, delay_spread_ns, speed_kmh) and
    each TB size target; written to ``out`` after every curve, resuming what it holds."""
    from semcom import __version__
    from semcom.config.channel import PUSCH_RATE_MIN
    from semcom.linkmodel.mcs import mcs_list
    from semcom.provenance import provenance

    out = Path(out)
    conf = {
        "link": "pusch",
        "decoder": base_cfg.decoder,
        "iterations": base_cfg.iterations,
        "minsum_scale": base_cfg.minsum_scale,
        "early_stop": base_cfg.early_stop,
        "channel_estimation": base_cfg.channel_estimation,
        "tb_crc": "38.212",
        "harq_max_rounds": 1,
        "blocks_per_point": kw.get("blocks", 60),
        "snr_step_db": kw.get("step", 2.0),
        "min_bler": kw.get("min_bler", 3e-2),
        "seed": kw.get("seed", 0),
        "scs_khz": base_cfg.scs_khz,
        "carrier_ghz": base_cfg.carrier_ghz,
    }
    entries: list[dict] = []
    build_s = 0.0
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("schema") != SCHEMA or old.get("config") != conf:
            raise ConfigError(
                "", f"{out} exists with other settings ({old.get('config')}); this build: {conf}"
            )
        entries, build_s = old["entries"], float(old.get("build_s") or 0)
    have = {(tuple(e["mcs"]), e["fading"], e.get("target")) for e in entries}
    jobs = []
    for ch in channels:
        cfg = dataclasses.replace(base_cfg, **ch)
        seen = set()
        for t in mcs_tables:
            for m in mcs_list(t):
                if m.code_rate < PUSCH_RATE_MIN or (m.code_rate, m.qm) in seen:
                    continue
                seen.add((m.code_rate, m.qm))
                for target in tb_targets:
                    if ((t, m.index), cfg.fading_key, target) not in have:
                        jobs.append((cfg, t, m.index, target))
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="bler-table pusch", unit="curve", file=sys.stderr)
    t0 = time.perf_counter()
    table: dict = {}
    for cfg, t, mcs, target in jobs:
        e = build_pusch_entry(cfg, t, mcs, target, **kw)
        e["target"] = target
        entries.append(e)
        table = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": conf,
            "grid": {
                "mcs_tables": list(mcs_tables),
                "tb_targets": list(tb_targets),
                "fading": sorted({x["fading"] for x in entries}),
                "harq": ["none"],
            },
            "entries": entries,
            "build_s": round(build_s + time.perf_counter() - t0, 1),
            "semcom_version": __version__,
            "provenance": provenance(),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(dumps_table(table))
        tmp.replace(out)
        clear_cache()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return table or json.loads(out.read_text())
