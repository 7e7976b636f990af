"""BLER tables: the exact link measured over a grid, and the lookups of the abstraction.

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

Lookup (:meth:`BlerTable.cb_fail_prob`): exact match on code rate, modulation and fading
(else a :class:`ConfigError` naming what the table has); for ``K'``, log-linear
interpolation of log10 BLER between the two nearest block sizes (``K'`` below the
smallest size uses the smallest size's curve: a documented clamp; above the largest is an
error); along the SNR, linear interpolation of log10 BLER between grid points (points
without errors count as ``0.1 / blocks`` when interpolating toward them, and as 0 beyond
them; below the first point the first value is used if it is >= 0.98, else it is an
error; above the last point with errors the last segment's slope is extended). Curves are
made non-increasing in SNR (running minimum) on load.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from semcom.errors import ConfigError

SCHEMA = "semcom.bler-table/1"
DEFAULT_TABLE = Path(__file__).with_name("tables") / "bler_default.json"
MODES = ("none", "ir", "chase")

# the shipped default grid (see docs/channel.md for the build command and its time)
DEFAULT_GRID = {
    "payload_bits": [32, 256, 1024, 3816],
    "code_rate": [1 / 2, 3 / 4],
    "modulation": ["qpsk", "16qam"],
    "fading": ["awgn", "rayleigh-block"],
    "harq": ["none", "ir", "chase"],
}
SNR_STEP = {
    "awgn": 0.25,
    "rayleigh-block": 3.0,
    "rayleigh-fast": 0.5,
    "rician-block": 2.0,
    "rician-fast": 0.5,
}
# per fading: (max_blocks, min_bler) when the builder is not told otherwise
LIMITS = {
    "awgn": (2000, 3e-3),
    "rayleigh-block": (1500, 1e-2),
    "rayleigh-fast": (2000, 3e-3),
    "rician-block": (1500, 1e-2),
    "rician-fast": (2000, 3e-3),
}
# first probe: this far above the Shannon limit (dB); then down in coarse steps
PROBE_UP = {
    "awgn": 3.0,
    "rayleigh-block": 0.0,
    "rayleigh-fast": 3.0,
    "rician-block": 3.0,
    "rician-fast": 3.0,
}
# points below the round-1 start for the HARQ rounds' curves: steps of this many dB down
# from the start until the last round of every HARQ mode fails (almost) always, at most
# HARQ_LOW_MAX points
HARQ_LOW_STEP = {
    "awgn": 0.5,
    "rayleigh-block": 3.0,
    "rayleigh-fast": 0.5,
    "rician-block": 2.0,
    "rician-fast": 0.5,
}
HARQ_LOW_MAX = 16
SNR_MAX = {
    "awgn": 30.0,
    "rayleigh-block": 45.0,
    "rayleigh-fast": 35.0,
    "rician-block": 40.0,
    "rician-fast": 35.0,
}


# ---- lookup ----------------------------------------------------------------------------
@dataclass
class Curve:
    esno_db: np.ndarray  # [S]
    blocks: np.ndarray  # [S]
    fail: dict[str, np.ndarray]  # mode -> [rounds, S] counts


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
        for e in data["entries"]:
            key = (round(float(e["code_rate"]), 6), e["modulation"], e["fading"])
            blocks = np.asarray(e["blocks"], float)
            fail = {}
            for m, v in e["fail"].items():
                f = np.minimum.accumulate(np.asarray(v, float), axis=0)  # over rounds
                bler = np.minimum.accumulate(f / np.maximum(blocks, 1), axis=1)  # over SNR
                fail[m] = bler * blocks  # counts of the monotone curve (0 stays 0)
            self._curves.setdefault(key, {})[int(e["k_prime"])] = Curve(
                np.asarray(e["esno_db"], float), blocks, fail
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> BlerTable:
        return _load(str(path or DEFAULT_TABLE))

    # -- what the table covers
    def keys(self) -> list[tuple]:
        return sorted(self._curves)

    def k_primes(self, code_rate: float, modulation: str, fading: str) -> list[int]:
        return sorted(self._family(code_rate, modulation, fading))

    def max_rounds(self, mode: str) -> int:
        rounds = [
            c.fail[mode].shape[0]
            for fam in self._curves.values()
            for c in fam.values()
            if mode in c.fail
        ]
        return min(rounds) if rounds else 0

    def _family(self, code_rate: float, modulation: str, fading: str) -> dict[int, Curve]:
        key = (round(float(code_rate), 6), modulation, fading)
        if key not in self._curves:
            have = self.keys()
            rates = sorted({k[0] for k in have})
            raise ConfigError(
                "channel",
                f"the BLER table {self.path} has no curves for "
                f"code_rate={code_rate:g}, modulation={modulation}, "
                f"fading={fading}; it has code rates {rates}, modulations "
                f"{sorted({k[1] for k in have})}, fadings "
                f"{sorted({k[2] for k in have})}. Build one with `semcom "
                f"bler-table build`",
            )
        return self._curves[key]

    def check_covers(self, cfg, max_k_prime: int) -> None:
        """Raise a ConfigError unless the table can serve ``cfg`` (a ChannelConfig)."""
        fam = self._family(cfg.code_rate, cfg.modulation, cfg.fading)
        ks = sorted(fam)
        if max_k_prime > ks[-1]:
            raise ConfigError(
                "channel.tb_bits",
                f"{cfg.tb_bits} gives code blocks of up to "
                f"{max_k_prime} bits, above the table's largest block "
                f"(K'={ks[-1]}, grid {ks}); lower channel.tb_bits or build a "
                "table with larger blocks",
            )
        mode = cfg.harq
        if mode not in next(iter(fam.values())).fail:
            raise ConfigError(
                "channel.harq",
                f"the BLER table {self.path} has no curves for "
                f"harq={mode!r}; it has {sorted(next(iter(fam.values())).fail)}",
            )
        have = next(iter(fam.values())).fail[mode].shape[0]
        if cfg.rounds > have:
            raise ConfigError(
                "channel.harq_max_rounds",
                f"{cfg.rounds} rounds, but the table has {have} for harq={mode!r}",
            )
        keys = ["decoder", "iterations", "minsum_scale", "early_stop"]
        if cfg.fading.startswith("rician"):
            keys.append("rician_k_db")
        for key in keys:
            want, got = getattr(cfg, key), self.config.get(key)
            if got is not None and want != got:
                raise ConfigError(
                    f"channel.{key}",
                    f"is {want!r} but the BLER table "
                    f"{self.path} was built with {key}={got!r}; build a table "
                    "for these settings or use the table's",
                )

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
        if k_prime > ks[-1]:
            raise ConfigError(
                "channel",
                f"code block of K'={k_prime} bits is above the table's "
                f"largest (nearest grid sizes {ks[-2:]})",
            )
        if k_prime <= ks[0]:
            return self._curve_value(fam[ks[0]], esno_db, mode, round_, ks[0])
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


@lru_cache(maxsize=8)
def _load(path: str) -> BlerTable:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("channel.table", f"BLER table not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError("channel.table", f"{p} is not valid JSON: {exc}") from None
    return BlerTable(data, str(p))


# ---- build -----------------------------------------------------------------------------
def shannon_esno_db(code_rate: float, qm: int) -> float:
    """Es/N0 where the Gaussian-input capacity equals the spectral efficiency R * Q_m."""
    return 10 * math.log10(2 ** (code_rate * qm) - 1)


def build_entry(
    payload_bits: int,
    code_rate: float,
    modulation: str,
    fading: str,
    *,
    modes=("none", "ir", "chase"),
    rounds: int = 4,
    decoder: str = "fast",
    iterations: int = 20,
    minsum_scale: float = 0.7,
    early_stop: bool = True,
    target_block_errors: int = 100,
    max_blocks: int | None = None,
    min_bler: float | None = None,
    batch_size: int = 200,
    seed: int = 0,
    rician_k_db: float = 6.0,
    snr_step: float | None = None,
    progress=None,
) -> dict:
    """Simulate one curve family with the exact link (a single-code-block TB of
    ``payload_bits`` with CRC24A). Returns the table entry (see the module docstring).

    SNR points: from a point where round 1 fails (almost) always (probes of 100 blocks
    stepping down from ``PROBE_UP`` dB above the Shannon limit), in steps of ``snr_step``
    until round-1 BLER < ``min_bler`` or a point has no error; plus a few coarse points
    below, in steps of ``HARQ_LOW_STEP`` dB until the last round of every HARQ
    mode fails (almost) always, for the HARQ rounds' curves. Per point: batches until
    ``target_block_errors`` round-1 failures or ``max_blocks`` code blocks; failed blocks
    continue with every HARQ mode in ``modes`` (independent noise per mode) up to
    ``rounds`` transmissions. ``max_blocks``/``min_bler`` default per fading (``LIMITS``).
    """
    from channel.phy import NrPhy
    from semcom.config.channel import ChannelConfig
    from semcom.seeding import rng as derive_rng

    step = snr_step or SNR_STEP[fading]
    max_blocks = max_blocks or LIMITS[fading][0]
    min_bler = min_bler or LIMITS[fading][1]
    base = ChannelConfig(
        link="nr",
        snr_db=0.0,
        code_rate=code_rate,
        modulation=modulation,
        fading=fading,
        rician_k_db=rician_k_db,
        decoder=decoder,
        iterations=iterations,
        minsum_scale=minsum_scale,
        early_stop=early_stop,
        tb_crc="crc24a",
        tb_bits=max(8, payload_bits),
    )
    qm = base.bits_per_symbol
    harq_modes = [m for m in modes if m != "none"]
    R = rounds if harq_modes else 1

    def run_point(esno: float, n_max: int, n_target: int, key: int, harq: bool = True):
        import dataclasses

        cfg = dataclasses.replace(base, snr_db=float(esno), snr_type="esno")
        phy = NrPhy(cfg, rounds=R)
        rng = derive_rng(seed, "bler-table", payload_bits, code_rate, modulation, fading, key)
        blocks, fail1 = 0, 0
        fails = {m: np.zeros(R, np.int64) for m in harq_modes}
        while blocks < n_max and fail1 < n_target:
            n = min(batch_size, n_max - blocks)
            u = rng.integers(0, 2, (n, payload_bits), dtype=np.uint8)
            batch = phy.start(u)
            phy.run_round(batch, 0, rng)
            f1 = batch.cb_fail_after[:, 0]
            blocks += n
            fail1 += int(f1.sum())
            failed = np.flatnonzero(~batch.tb_ok)
            for m in harq_modes if harq else ():
                fails[m][0] += int(f1.sum())
                if failed.size and R > 1:
                    sub = batch.subset(failed)
                    for r in range(1, R):  # a round with nothing pending just records
                        phy.run_round(sub, r, rng, harq=m)
                    fails[m][1:] += sub.cb_fail_after[:, 1:].sum(axis=0)
            if progress is not None:
                progress(n)
        return blocks, fail1, fails

    # find the start: step down from above the Shannon limit until round 1 nearly always
    # fails (probes of 100 blocks, no HARQ)
    coarse = max(step, 1.0)
    start = math.ceil((shannon_esno_db(code_rate, qm) + PROBE_UP[fading]) / step) * step
    for probe in range(60):
        b, f, _ = run_point(start, 100, 100, -1 - probe, harq=False)
        if f / b >= 0.98:
            break
        start -= coarse
    snrs, blocks_l, fail1_l = [], [], []
    fails_l = {m: [] for m in harq_modes}
    # HARQ curves need room below the round-1 waterfall: step down until the last round
    # of every mode fails (almost) always
    low = []
    if harq_modes and R > 1:
        for i in range(HARQ_LOW_MAX):
            s = start - (i + 1) * HARQ_LOW_STEP[fading]
            b, f, fr = run_point(s, max_blocks, target_block_errors, 1000 + i)
            low.append((round(s, 4), b, f, fr))
            if all(fr[m][R - 1] >= 0.98 * b for m in harq_modes):
                break
    for s, b, f, fr in low[::-1]:
        snrs.append(s)
        blocks_l.append(b)
        fail1_l.append(f)
        for m in harq_modes:
            fails_l[m].append(fr[m])
    s, i = start, 0
    while s <= SNR_MAX[fading] + 1e-9:
        b, f, fr = run_point(s, max_blocks, target_block_errors, i)
        snrs.append(round(s, 4))
        blocks_l.append(b)
        fail1_l.append(f)
        for m in harq_modes:
            fails_l[m].append(fr[m])
        if f == 0 or f / b < min_bler:
            break
        s += step
        i += 1
    from channel.framing import plan_tb

    plan = plan_tb(payload_bits, code_rate, qm, "crc24a")
    fail = {}
    if "none" in modes:
        fail["none"] = [fail1_l]
    for m in harq_modes:
        arr = np.array(fails_l[m]).T  # [R, S]
        fail[m] = arr.tolist()
    return {
        "payload_bits": payload_bits,
        "k_prime": plan.k_prime,
        "bg": plan.bg,
        "z": plan.code.z,
        "e": plan.e,
        "code_rate": code_rate,
        "modulation": modulation,
        "fading": fading,
        "esno_db": snrs,
        "blocks": blocks_l,
        "fail": fail,
    }


def _entry_key(e: dict) -> tuple:
    return (int(e["payload_bits"]), round(float(e["code_rate"]), 6), e["modulation"], e["fading"])


def build_table(
    grid: dict,
    *,
    out: str | Path,
    workers: int = 1,
    progress: bool = False,
    append: bool = False,
    **kw: Any,
) -> dict:
    """Build every entry of ``grid`` and write the table JSON to ``out``.

    ``append``: ``out`` is an existing table built with the same settings (decoder,
    iterations, limits, seed, HARQ modes and rounds, ...); only the grid's curves it lacks
    are simulated, and the result holds both (grid lists merged, build times summed)."""
    from channel.decoders import kernel_info
    from semcom import __version__
    from semcom.provenance import provenance

    old = None
    if append and Path(out).is_file():
        old = json.loads(Path(out).read_text())
        if old.get("schema") != SCHEMA:
            raise ConfigError("", f"--append: {out} is not a {SCHEMA} table")
    combos = [
        (a, r, m, f)
        for f in grid["fading"]
        for m in grid["modulation"]
        for r in grid["code_rate"]
        for a in grid["payload_bits"]
    ]
    if old is not None:
        have = {_entry_key(e) for e in old["entries"]}
        combos = [c for c in combos if (c[0], round(c[1], 6), c[2], c[3]) not in have]
    modes = tuple(grid.get("harq", MODES))
    cfg_keys = (
        "rounds",
        "decoder",
        "iterations",
        "minsum_scale",
        "early_stop",
        "target_block_errors",
        "max_blocks",
        "min_bler",
        "batch_size",
        "seed",
        "rician_k_db",
    )
    defaults = dict(
        rounds=4,
        decoder="fast",
        iterations=20,
        minsum_scale=0.7,
        early_stop=True,
        target_block_errors=100,
        max_blocks=None,
        min_bler=None,
        batch_size=200,
        seed=0,
        rician_k_db=6.0,
    )
    conf = {k: kw.get(k, defaults[k]) for k in cfg_keys}
    if conf["max_blocks"] is None or conf["min_bler"] is None:
        conf["limits_by_fading"] = {
            f: {
                "max_blocks": conf["max_blocks"] or LIMITS[f][0],
                "min_bler": conf["min_bler"] or LIMITS[f][1],
            }
            for f in grid["fading"]
        }
    conf["harq_max_rounds"] = conf.pop("rounds")
    conf["tb_crc"] = "crc24a"
    conf["kernel"] = kernel_info()
    if old is not None:
        skip = ("limits_by_fading", "kernel")  # the numpy twin gives the same results
        oc = {k: v for k, v in old["config"].items() if k not in skip}
        nc = {k: v for k, v in conf.items() if k not in skip}
        ol, nl = old["config"].get("limits_by_fading", {}), conf.get("limits_by_fading", {})
        if any(ol[f] != nl[f] for f in set(ol) & set(nl)):
            raise ConfigError("", f"--append: {out} has limits {ol}; this build {nl}")
        if oc != nc or set(old["grid"].get("harq", [])) != set(modes):
            raise ConfigError(
                "",
                f"--append: {out} was built with {oc}, harq "
                f"{old['grid'].get('harq')}; this build uses {nc}, harq "
                f"{list(modes)}",
            )
    t0 = time.perf_counter()
    entries: list[dict] = []
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(combos), desc="bler-table", unit="curve", file=sys.stderr)
    # the largest blocks first, so that workers finish together; entries keep grid order
    order = sorted(range(len(combos)), key=lambda i: -combos[i][0])
    args = [(*combos[i], modes, kw) for i in order]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            for entry in ex.map(_build_one, args):
                entries.append(entry)
                if bar is not None:
                    bar.update(1)
    else:
        for a in args:
            entries.append(_build_one(a))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    entries = [e for _, e in sorted(zip(order, entries))]
    build_s = round(time.perf_counter() - t0, 1)
    if old is not None:
        conf["limits_by_fading"] = {
            **old["config"].get("limits_by_fading", {}),
            **conf.get("limits_by_fading", {}),
        }
        merged = {}
        for k, v in grid.items():
            merged[k] = list(dict.fromkeys([*old["grid"].get(k, []), *v]))
        merged["snr_step_db"] = {
            **old["grid"].get("snr_step_db", {}),
            **{f: kw.get("snr_step") or SNR_STEP[f] for f in grid["fading"]},
        }
        grid_out = merged
        entries = old["entries"] + entries
        build_s = round(build_s + float(old.get("build_s") or 0), 1)
    else:
        grid_out = {
            **{k: list(v) for k, v in grid.items()},
            "snr_step_db": {f: kw.get("snr_step") or SNR_STEP[f] for f in grid["fading"]},
        }
    table = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "semcom_version": __version__,
        "config": conf,
        "grid": grid_out,
        "entries": entries,
        "build_s": build_s,
        "provenance": provenance(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(dumps_table(table))
    tmp.replace(out)
    _load.cache_clear()
    return table


def dumps_table(table: dict) -> str:
    """The table as JSON text: one line per entry (small, readable diffs)."""
    head = {k: v for k, v in table.items() if k != "entries"}
    text = json.dumps(head, indent=1)
    body = ",\n".join("  " + json.dumps(e, separators=(",", ":")) for e in table["entries"])
    return text[:-2] + ',\n "entries": [\n' + body + "\n ]\n}\n"


def _build_one(args) -> dict:
    a, r, m, f, modes, kw = args
    return build_entry(a, r, m, f, modes=modes, **kw)
