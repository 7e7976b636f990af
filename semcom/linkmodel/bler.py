"""BLER tables: loading, coverage checks and lookups of the link abstraction.

The table is at the code-block level, which is what makes it exact for any transport
block: the ``nr`` link decodes code blocks independently (AWGN and fast fading are
independent per symbol, block fading is drawn per code block and transmission), so a TB
of ``C`` code blocks passes round ``r`` with probability ``prod (1 - p_cb(r))``.

An entry is one curve family: payload bits ``A`` of a single-code-block TB (so the code
block has ``K' = A + 24`` bits with CRC24A), code rate, modulation and fading, with for
every SNR point (Es/N0) the number of code blocks simulated and, per HARQ mode and round
``r``, how many were still not decoded after ``r`` transmissions (cumulative). Round 1
is shared by all modes (it is the same transmission); "none" has round 1 only.

Schema ``semcom.bler-table/1`` (JSON)::

    {"schema": "semcom.bler-table/1", "created": ISO time, "semcom_version": str,
     "config": {decoder, iterations, minsum_scale, early_stop, tb_crc, harq_max_rounds,
                target_block_errors, max_blocks, min_bler, batch_size, seed, rician_k_db,
                kernel, [limits_by_fading]},
     "grid": {"payload_bits": [...], "code_rate": [...], "modulation": [...],
              "fading": [...], "harq": [...], "snr_step_db": {fading: step}},
     "entries": [{"payload_bits", "k_prime", "bg", "z", "e", "code_rate", "modulation",
                  "fading", "esno_db": [S], "blocks": [S],
                  "fail": {"none": [[S]], "ir": [[S] x rounds], "chase": [...]}}],
     "build_s": float, "provenance": {...}}

Lookup (:meth:`BlerTable.cb_fail_prob`): modulation and fading must match; the code rate
matches the table's nearest rate for them within ``RATE_TOL`` (so 0.3333 finds a curve
built at 1/3, 0.514 the curve of MCS 7 at 526/1024), else a :class:`ConfigError` names
what the table has; for ``K'``, log-linear interpolation of log10 BLER between the two
nearest block sizes (``K'`` below the smallest size uses the smallest size's curve, and
up to ``K_ABOVE`` = 1.4 times the largest the largest's: documented clamps, the second
conservative since longer blocks have steeper waterfalls; further above is an error); along the SNR, linear interpolation of
log10 BLER between grid points (points without errors count as ``0.1 / blocks`` when
interpolating toward them, and as 0 beyond them; below the first point the first value is
used if it is >= 0.98, else it is an error; above the last point with errors the last
segment's slope is extended). Curves are made non-increasing in SNR (running minimum) on
load.

``table: ""`` means the shipped tables: every ``*.json`` under ``semcom/linkmodel/tables``
merged (they are built with the same decoder settings).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from semcom.errors import ConfigError
from semcom.linkmodel.segmentation import segment

SCHEMA = "semcom.bler-table/1"
TABLE_DIR = Path(__file__).with_name("tables")
DEFAULT_TABLE = TABLE_DIR / "bler_default.json"
MODES = ("none", "ir", "chase")
K_ABOVE = 1.4  # K' up to this factor above the largest tabulated block uses its curve
RATE_TOL = 0.005  # |R - R_table| that still matches a curve (adjacent MCS differ by >= 0.02)
DECODER_KEYS = ("decoder", "iterations", "minsum_scale", "early_stop")


@dataclass
class Curve:
    esno_db: np.ndarray  # [S]
    blocks: np.ndarray  # [S]
    fail: dict[str, np.ndarray]  # mode -> [rounds, S] counts


def shipped_tables() -> list[Path]:
    """The shipped table files, the default first."""
    rest = sorted(p for p in TABLE_DIR.glob("*.json") if p != DEFAULT_TABLE)
    return [DEFAULT_TABLE, *rest]


class BlerTable:
    """A loaded table (see the module docstring).

    :param data: the parsed JSON; :param path: where it came from (for messages).
    """

    def __init__(self, data: dict, path: str = "<memory>"):
        if data.get("schema") != SCHEMA:
            raise ConfigError(
                "channel.table",
                f"{path} is not a BLER table of schema {SCHEMA!r} (found {data.get('schema')!r})",
            )
        self.data = data
        self.path = str(path)
        self.config = data.get("config", {})
        self._curves: dict[tuple, dict[int, Curve]] = {}
        self._p_cache: dict[tuple, np.ndarray] = {}
        for e in data["entries"]:
            key = (round(float(e["code_rate"]), 6), e["modulation"], e["fading"])
            blocks = np.asarray(e["blocks"], float)
            fail = {}
            for m, v in e["fail"].items():
                f = np.minimum.accumulate(np.asarray(v, float), axis=0)  # over rounds
                bler = np.minimum.accumulate(f / np.maximum(blocks, 1), axis=1)  # over SNR
                fail[m] = bler * blocks  # counts of the monotone curve (0 stays 0)
            self._curves.setdefault(key, {}).setdefault(
                int(e["k_prime"]), Curve(np.asarray(e["esno_db"], float), blocks, fail)
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> BlerTable:
        """The table at ``path``, or (``None`` / ``""``) the shipped tables merged."""
        if path:
            p = Path(path)
            return _load(str(p), p.stat().st_mtime_ns if p.is_file() else 0)
        files = shipped_tables()
        return _load_merged(tuple((str(p), p.stat().st_mtime_ns) for p in files if p.is_file()))

    # -- what the table covers
    def keys(self) -> list[tuple]:
        return sorted(self._curves)

    def k_primes(self, code_rate: float, modulation: str, fading: str) -> list[int]:
        return sorted(self._family(code_rate, modulation, fading))

    def has(self, code_rate: float, modulation: str, fading: str) -> bool:
        return self._match_rate(code_rate, modulation, fading) is not None

    def max_rounds(self, mode: str) -> int:
        rounds = [
            c.fail[mode].shape[0]
            for fam in self._curves.values()
            for c in fam.values()
            if mode in c.fail
        ]
        return min(rounds) if rounds else 0

    def _match_rate(self, code_rate: float, modulation: str, fading: str) -> float | None:
        rates = [k[0] for k in self._curves if k[1] == modulation and k[2] == fading]
        if not rates:
            return None
        best = min(rates, key=lambda r: abs(r - code_rate))
        return best if abs(best - code_rate) <= RATE_TOL else None

    def _family(self, code_rate: float, modulation: str, fading: str) -> dict[int, Curve]:
        r = self._match_rate(code_rate, modulation, fading)
        if r is None:
            have = self.keys()
            rates = sorted(
                {round(k[0], 4) for k in have if k[1] == modulation and k[2] == fading}
            ) or sorted({round(k[0], 4) for k in have})
            raise ConfigError(
                "channel.code_rate",
                f"the BLER table {self.path} has no curves for "
                f"code_rate={code_rate:g}, modulation={modulation}, "
                f"fading={fading} (rates match within {RATE_TOL}); it has code rates "
                f"{rates}, modulations {sorted({k[1] for k in have})}, fadings "
                f"{sorted({k[2] for k in have})}. Use channel.mcs, or build one with "
                "`semcom bler-table build`",
            )
        return self._curves[(r, modulation, fading)]

    def check_covers(self, cfg, *, settings=None) -> None:
        """Raise a ConfigError unless the table can serve ``cfg`` (a ChannelConfig) at
        its SNR: curves for every ``(code_rate, modulation)`` in ``settings`` (default
        the config's own), block sizes up to the largest code block ``tb_bits`` makes,
        the HARQ mode and rounds, the decoder settings."""
        for key in DECODER_KEYS + (("rician_k_db",) if cfg.fading.startswith("rician") else ()):
            want, got = getattr(cfg, key), self.config.get(key)
            if got is not None and want != got:
                raise ConfigError(
                    f"channel.{key}",
                    f"is {want!r} but the BLER table "
                    f"{self.path} was built with {key}={got!r}; build a table "
                    "for these settings or use the table's",
                )
        settings = settings or [(cfg.code_rate, cfg.modulation)]
        for rate, mod in settings:
            fam = self._family(rate, mod, cfg.fading_key)
            ks = sorted(fam)
            k_max = segment(cfg.tb_bits, rate, cfg.tb_crc).k_prime
            if k_max > K_ABOVE * ks[-1]:
                raise ConfigError(
                    "channel.tb_bits",
                    f"{cfg.tb_bits} gives code blocks of up to "
                    f"{k_max} bits at rate {rate:.4f}, above the table's largest block "
                    f"(K'={ks[-1]}, grid {ks}); lower channel.tb_bits or build a "
                    "table with larger blocks",
                )
            mode = cfg.harq
            first = next(iter(fam.values()))
            if mode not in first.fail:
                raise ConfigError(
                    "channel.harq",
                    f"the BLER table {self.path} has no curves for "
                    f"harq={mode!r}; it has {sorted(first.fail)}",
                )
            have = first.fail[mode].shape[0]
            if cfg.rounds > have:
                raise ConfigError(
                    "channel.harq_max_rounds",
                    f"{cfg.rounds} rounds, but the table has {have} for harq={mode!r}",
                )
            if len(settings) == 1:  # a fixed setting: the SNR must be in range
                for k in {k_max, ks[0]}:
                    self.fail_probs(k, rate, mod, cfg.fading_key, cfg.esno_db, mode, cfg.rounds)

    def fail_probs(
        self,
        k_prime: int,
        code_rate: float,
        modulation: str,
        fading: str,
        esno_db: float,
        mode: str = "none",
        rounds: int = 1,
    ) -> np.ndarray:
        """[rounds] P(code block of ``K'`` not decoded after r = 1.. transmissions),
        non-increasing in r (cached)."""
        key = (k_prime, code_rate, modulation, fading, esno_db, mode, rounds)
        p = self._p_cache.get(key)
        if p is None:
            p = np.minimum.accumulate(
                np.asarray(
                    [
                        self.cb_fail_prob(k_prime, code_rate, modulation, fading, esno_db, mode, r)
                        for r in range(1, rounds + 1)
                    ]
                )
            )
            if len(self._p_cache) > 100_000:
                self._p_cache.clear()
            self._p_cache[key] = p
        return p

    def cb_fail_prob(
        self,
        k_prime: int,
        code_rate: float,
        modulation: str,
        fading: str,
        esno_db: float,
        mode: str = "none",
        round_: int = 1,
    ) -> float:
        """P(code block of ``K'`` bits not decoded after ``round_`` transmissions)."""
        fam = self._family(code_rate, modulation, fading)
        ks = sorted(fam)
        if k_prime > K_ABOVE * ks[-1]:
            raise ConfigError(
                "channel",
                f"code block of K'={k_prime} bits is above the table's "
                f"largest (nearest grid sizes {ks[-2:]})",
            )
        if k_prime <= ks[0]:
            return self._curve_value(fam[ks[0]], esno_db, mode, round_, ks[0])
        if k_prime >= ks[-1]:  # up to K_ABOVE x the largest: its curve (conservative)
            return self._curve_value(fam[ks[-1]], esno_db, mode, round_, ks[-1])
        hi = next(i for i, k in enumerate(ks) if k >= k_prime)
        if ks[hi] == k_prime:
            return self._curve_value(fam[k_prime], esno_db, mode, round_, k_prime)
        k0, k1 = ks[hi - 1], ks[hi]
        p0 = self._curve_value(fam[k0], esno_db, mode, round_, k0)
        p1 = self._curve_value(fam[k1], esno_db, mode, round_, k1)
        w = (math.log(k_prime) - math.log(k0)) / (math.log(k1) - math.log(k0))
        lp = (1 - w) * math.log10(max(p0, 1e-12)) + w * math.log10(max(p1, 1e-12))
        return 0.0 if lp < -11 else min(1.0, 10**lp)

    def _curve_value(self, c: Curve, esno: float, mode: str, round_: int, k: int) -> float:
        if mode not in c.fail:
            raise ConfigError("channel.harq", f"no {mode!r} curves in {self.path}")
        f = c.fail[mode]
        if not 1 <= round_ <= f.shape[0]:
            raise ConfigError(
                "channel.harq_max_rounds",
                f"round {round_} not in {self.path} (it has {f.shape[0]})",
            )
        return _interp(
            c.esno_db,
            f[round_ - 1],
            c.blocks,
            esno,
            what=f"K'={k}, harq={mode}, round {round_}",
            path=self.path,
        )


def _interp(
    snr: np.ndarray, fails: np.ndarray, blocks: np.ndarray, x: float, *, what: str, path: str
) -> float:
    valid = blocks > 0
    snr, fails, blocks = snr[valid], fails[valid], blocks[valid]
    bler = fails / blocks
    if x <= snr[0]:
        if x < snr[0] and bler[0] < 0.98:
            raise ConfigError(
                "channel.snr_db",
                f"Es/N0 = {x:.2f} dB is below the BLER table's "
                f"range for {what} (first point {snr[0]:.2f} dB with BLER "
                f"{bler[0]:.3g}; nearest grid points {list(np.round(snr[:2], 2))})"
                f" in {path}",
            )
        return float(bler[0])
    if x >= snr[-1]:
        if fails[-1] == 0:
            return 0.0
        pos = np.flatnonzero(fails > 0)
        if len(pos) >= 2 and snr[-1] > snr[-2]:
            slope = (math.log10(bler[-1]) - math.log10(max(bler[-2], 1e-300))) / (snr[-1] - snr[-2])
            slope = min(slope, 0.0)
            return float(10 ** (math.log10(bler[-1]) + slope * (x - snr[-1])))
        return float(bler[-1])
    i = int(np.searchsorted(snr, x, side="right")) - 1
    b0, b1 = bler[i], bler[i + 1]
    if b0 == 0:
        return 0.0
    if b1 == 0:
        b1 = 0.1 / blocks[i + 1]
        if b1 >= b0:
            return float(b0)
    w = (x - snr[i]) / (snr[i + 1] - snr[i])
    return float(10 ** ((1 - w) * math.log10(b0) + w * math.log10(b1)))


def _read(p: Path) -> dict:
    if not p.is_file():
        raise ConfigError("channel.table", f"BLER table not found: {p}")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError("channel.table", f"{p} is not valid JSON: {exc}") from None


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int = 0) -> BlerTable:
    return BlerTable(_read(Path(path)), path)


@lru_cache(maxsize=4)
def _load_merged(files: tuple[tuple[str, int], ...]) -> BlerTable:
    datas = [_read(Path(p)) for p, _ in files]
    if len(datas) == 1:
        return BlerTable(datas[0], files[0][0])
    head = datas[0]
    for d, (p, _) in zip(datas[1:], files[1:]):
        for k in DECODER_KEYS:
            if d.get("config", {}).get(k) != head.get("config", {}).get(k):
                raise ConfigError(
                    "channel.table",
                    f"shipped table {p} was built with {k}={d['config'].get(k)!r}, "
                    f"the default with {head['config'].get(k)!r}",
                )
    merged = dict(head, entries=[e for d in datas for e in d["entries"]])
    names = ", ".join(Path(p).name for p, _ in files)
    return BlerTable(merged, f"(the shipped tables {names})")


def clear_cache() -> None:
    _load.cache_clear()
    _load_merged.cache_clear()
