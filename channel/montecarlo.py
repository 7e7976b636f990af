"""Monte-Carlo error-rate runner with statistical stopping rules (after Sionna's ``sim_ber``).

:func:`sim_bler` runs ``mc_fun(batch_size, snr_db, rng) -> counts`` repeatedly per SNR
point until the point has ``target_block_errors`` block errors or ``max_blocks`` blocks,
then moves on. ``early_stop`` ends the sweep at the first point without any block error
(higher SNRs are marked ``skipped``); ``target_bler`` ends it once a point's BLER falls
below it. Each point draws from its own generator, ``seeding.rng(seed, "ber", i)``, so a
point's result does not depend on the points simulated before it. A Ctrl-C keeps the
finished points and marks the rest ``interrupted``.

``counts`` is a mapping of additive counters; ``blocks`` and ``block_errors`` are
required, ``bits`` and ``bit_errors`` optional, anything else (numbers or numpy arrays) is
summed along.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semcom.seeding import rng as derive_rng


@dataclass
class PointResult:
    """Counters of one SNR point (``extra`` holds the additional counters summed)."""

    snr_db: float
    blocks: int = 0
    block_errors: int = 0
    bits: int = 0
    bit_errors: int = 0
    runtime_s: float = 0.0
    status: str = "not run"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bler(self) -> float | None:
        return self.block_errors / self.blocks if self.blocks else None

    @property
    def ber(self) -> float | None:
        return self.bit_errors / self.bits if self.bits else None

    def to_dict(self) -> dict:
        out = {
            "snr_db": self.snr_db,
            "blocks": self.blocks,
            "block_errors": self.block_errors,
            "bits": self.bits,
            "bit_errors": self.bit_errors,
            "bler": self.bler,
            "ber": self.ber,
            "runtime_s": round(self.runtime_s, 4),
            "status": self.status,
        }
        for k, v in self.extra.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out


def sim_bler(
    mc_fun: Callable[[int, float, np.random.Generator], Mapping[str, Any]],
    snrs_db: Sequence[float],
    *,
    batch_size: int,
    max_blocks: int,
    target_block_errors: int | None = 100,
    target_bler: float | None = None,
    early_stop: bool = True,
    seed: int = 0,
    progress: bool = False,
    label: str = "",
    callback: Callable[[int, PointResult], None] | None = None,
) -> list[PointResult]:
    """Simulate every SNR point (see the module docstring for the stopping rules).

    :param mc_fun: ``(batch_size, snr_db, rng) -> counts`` for one batch.
    :param snrs_db: the SNR points, in the order to simulate (ascending for early stop).
    :param batch_size: blocks per call of ``mc_fun`` (the last call of a point may be
        smaller so that a point never exceeds ``max_blocks``).
    :param max_blocks: blocks per point at most.
    :param target_block_errors: stop a point at this many block errors (None: never).
    :param target_bler: stop the sweep after the first point with a lower BLER.
    :param early_stop: stop the sweep after the first point without block errors.
    :param seed: run seed; point ``i`` uses ``semcom.seeding.rng(seed, "ber", i)``.
    :param progress: show a tqdm progress bar on stderr (blocks of the current point).
    :param callback: called as ``callback(i, result)`` after each point.
    :output results: one :class:`PointResult` per SNR point, in input order.
    """
    if batch_size < 1 or max_blocks < 1:
        raise ValueError("batch_size and max_blocks must be >= 1")
    results = [PointResult(float(s)) for s in snrs_db]
    stop_reason = None
    for i, res in enumerate(results):
        if stop_reason is not None:
            res.status = stop_reason
            continue
        rng = derive_rng(seed, "ber", i)
        bar = _bar(progress, max_blocks, f"{label}{res.snr_db:g} dB")
        t0 = time.perf_counter()
        try:
            while res.blocks < max_blocks and (
                target_block_errors is None or res.block_errors < target_block_errors
            ):
                n = min(batch_size, max_blocks - res.blocks)
                counts = mc_fun(n, res.snr_db, rng)
                _add(res, counts)
                if bar is not None:
                    bar.update(int(counts["blocks"]))
                    bar.set_postfix(errors=res.block_errors, refresh=False)
        except KeyboardInterrupt:
            res.runtime_s = time.perf_counter() - t0
            res.status = "interrupted"
            stop_reason = "interrupted"
            if bar is not None:
                bar.close()
            continue
        if bar is not None:
            bar.close()
        res.runtime_s = time.perf_counter() - t0
        res.status = (
            "reached target block errors"
            if target_block_errors is not None and res.block_errors >= target_block_errors
            else "reached max blocks"
        )
        if callback is not None:
            callback(i, res)
        if early_stop and res.block_errors == 0:
            stop_reason = "skipped (error-free point before)"
        elif target_bler is not None and res.bler is not None and res.bler < target_bler:
            stop_reason = "skipped (target BLER reached)"
    return results


def _add(res: PointResult, counts: Mapping[str, Any]) -> None:
    res.blocks += int(counts["blocks"])
    res.block_errors += int(counts["block_errors"])
    res.bits += int(counts.get("bits", 0))
    res.bit_errors += int(counts.get("bit_errors", 0))
    for k, v in counts.items():
        if k in ("blocks", "block_errors", "bits", "bit_errors"):
            continue
        res.extra[k] = (
            res.extra[k] + v
            if k in res.extra
            else (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
        )


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit="blk", file=sys.stderr, leave=False, dynamic_ncols=True
    )


def format_table(
    results: Sequence[PointResult],
    *,
    snr_label: str = "EbNo [dB]",
    other: Sequence[float] | None = None,
    other_label: str = "EsNo [dB]",
) -> str:
    """The per-point status table (one line per SNR point)."""
    head = (
        f"{snr_label:>9} | {other_label:>9} | {'BER':>10} | {'BLER':>10} | "
        f"{'bit errors':>11} | {'num bits':>12} | {'block errors':>12} | "
        f"{'num blocks':>10} | {'runtime [s]':>11} | status"
    )
    lines = [head, "-" * len(head)]
    for j, r in enumerate(results):
        o = f"{other[j]:9.2f}" if other is not None else " " * 9
        ber = f"{r.ber:10.4e}" if r.ber is not None else f"{'-':>10}"
        bler = f"{r.bler:10.4e}" if r.bler is not None else f"{'-':>10}"
        lines.append(
            f"{r.snr_db:9.2f} | {o} | {ber} | {bler} | {r.bit_errors:11d} | "
            f"{r.bits:12d} | {r.block_errors:12d} | {r.blocks:10d} | "
            f"{r.runtime_s:11.1f} | {r.status}"
        )
    return "\n".join(lines)
