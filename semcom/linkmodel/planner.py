"""Channel-aware budgets: given the SNR and a deadline, the edge's choice of token budget,
quantiser bits, descriptions and MCS that maximises the expected accuracy.

The model is the link abstraction's (BLER tables, the link's framing and airtime):

- an option ``(budget, quantiser, descriptions D, MCS)`` sends ``D`` descriptions of
  ``desc_bytes`` bytes each (measured by the caller for the edge method), each split into
  TBs of at most ``tb_bits``, coded at the MCS; a description's airtime is its TBs'
  resource elements over the carrier's per-slot REs, times the slot;
- ``deadline_kind: airtime``: the descriptions go on air in order and only the first
  ``k_fit`` finish within the deadline (retransmissions counted with their expected
  number); ``latency``: each description takes whole slots, plus the mean M/D/1 wait at
  ``load``;
- each description that is sent in time arrives with probability ``p = prod_TB (1 - P_TB)``
  (``P_TB`` from the BLER table after the configured HARQ rounds), independently;
- the accuracy with ``j`` of ``D`` descriptions received is the calibration's accuracy
  at ``budget * j / D`` tokens and the option's quantiser (multiple descriptions split the
  tokens evenly; the calibration is measured on an ideal link, interpolated linearly in
  tokens), so the expected accuracy is ``sum_j Binom(j; k_fit, p) acc(budget j / D)``.

The planner imports nothing of the edge: the caller (the application layer) gives the
description sizes and the accuracy calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from semcom.errors import ConfigError
from semcom.linkmodel.mcs import Mcs
from semcom.linkmodel.segmentation import segment, split_bytes


@dataclass(frozen=True)
class Choice:
    budget: int
    quant: object  # the quantiser, as the calibration names it (e.g. "codebook", "scalar8")
    descriptions: int
    mcs: Mcs


@dataclass(frozen=True)
class Plan:
    choice: Choice
    expected_accuracy: float
    p_description: float  # P(a description sent in time arrives)
    k_fit: int  # descriptions that finish within the deadline
    desc_airtime_s: float
    miss_fraction: float  # descriptions that miss the deadline (1 - k_fit / D)


def _desc_cost(cfg, table, nbytes: int, m: Mcs) -> tuple[float, float, float]:
    """(P(description arrives), expected airtime s, expected latency s) at MCS ``m``."""
    re_slot = cfg.n_rb * 12 * cfg.symbols_per_slot
    slot_s = 1e-3 * 15 / cfg.scs_khz
    p_ok, air, lat = 1.0, 0.0, 0.0
    for tb in split_bytes(nbytes, cfg.tb_bits):
        s = segment(8 * tb, m.code_rate, cfg.tb_crc)
        e = m.qm * math.ceil(round(s.k_prime / (m.code_rate * m.qm), 9))
        symbols = s.num_cbs * e // m.qm
        p = table.fail_probs(
            s.k_prime, m.code_rate, m.modulation, cfg.fading_key, cfg.esno_db, cfg.harq, cfg.rounds
        )
        tb_fail = 1.0 - (1.0 - p) ** s.num_cbs  # [rounds]: TB not passed after r
        rounds = 1.0 + float(np.sum(tb_fail[:-1]))  # expected transmissions
        p_ok *= 1.0 - float(tb_fail[-1])
        air += rounds * symbols / re_slot * slot_s
        lat += rounds * math.ceil(symbols / re_slot) * slot_s
        lat += (rounds - 1.0) * cfg.harq_rtt_slots * slot_s
    return p_ok, air, lat


def evaluate(
    cfg,
    table,
    choice: Choice,
    desc_bytes: Callable[[Choice], int],
    accuracy: Callable[[float, int], float],
    *,
    partial: bool = True,
) -> Plan:
    """The expected accuracy of one choice (see the module docstring). ``partial=False``:
    a choice whose descriptions do not all meet the deadline is credited with the
    accuracy of nothing received (no use of the optimistic partial-receipt model)."""
    D = choice.descriptions
    try:
        p, air, lat = _desc_cost(cfg, table, desc_bytes(choice), choice.mcs)
    except ConfigError:  # the SNR is below this MCS's curves: it fails there
        p, air, lat = 0.0, 0.0, 0.0
    per = air if cfg.deadline_kind == "airtime" else lat
    if cfg.deadline_ms <= 0:
        k_fit = D
    else:
        wait = 0.0
        if cfg.deadline_kind == "latency" and cfg.load > 0:
            wait = cfg.load * D * air / (2 * (1 - cfg.load))
        budget_s = cfg.deadline_ms * 1e-3 - wait
        k_fit = D if per <= 0 else max(0, min(D, int(math.floor(budget_s / per + 1e-9))))
    acc = 0.0
    if not partial and k_fit < D:
        return Plan(choice, accuracy(0.0, choice.quant), p, k_fit, per, 1 - k_fit / D)
    for j in range(k_fit + 1):
        w = math.comb(k_fit, j) * p**j * (1 - p) ** (k_fit - j)
        acc += w * accuracy(choice.budget * j / D, choice.quant)
    return Plan(choice, acc, p, k_fit, per, 1 - k_fit / D)


def best_plan(cfg, table, choices, desc_bytes, accuracy, *, partial: bool = False) -> list[Plan]:
    """Every choice evaluated, best expected accuracy first (ties: less airtime).

    ``partial=False`` (default): a choice whose descriptions do not all finish within
    the deadline counts as nothing received. The accuracy model of a partial
    receipt of multiple descriptions (``budget * j / D`` tokens as good as a budget of
    that size) is optimistic: an MDC subset of a larger selection is not the best
    ``j / D`` of the tokens (measured in docs/channel.md)."""
    plans = [evaluate(cfg, table, c, desc_bytes, accuracy, partial=partial) for c in choices]
    return sorted(plans, key=lambda q: (-q.expected_accuracy, q.desc_airtime_s * q.k_fit))


class Calibration:
    """Accuracy versus tokens received, per quantiser, from measured points
    ``[(tokens, quant, accuracy), ...]`` (ideal link); linear in tokens between points;
    0 tokens has the accuracy ``floor`` (what the cloud answers from nothing, e.g. the
    measured accuracy of a run whose descriptions are all lost) unless measured; above the
    largest point: the largest point's accuracy."""

    def __init__(self, points, floor: float = 0.0):
        self.by_quant: dict[object, tuple[np.ndarray, np.ndarray]] = {}
        rows: dict[object, dict[float, float]] = {}
        for t, q, a in points:
            rows.setdefault(q, {})[float(t)] = float(a)
        for q, d in rows.items():
            d.setdefault(0.0, float(floor))
            ts = np.array(sorted(d))
            self.by_quant[q] = (ts, np.array([d[t] for t in ts]))
        if not self.by_quant:
            raise ConfigError("calibration", "no (tokens, quantiser, accuracy) points")

    def __call__(self, tokens: float, quant) -> float:
        if quant not in self.by_quant:
            raise ConfigError(
                "calibration", f"no points for quantiser {quant!r}; it has {list(self.by_quant)}"
            )
        ts, acc = self.by_quant[quant]
        return float(np.interp(tokens, ts, acc))
