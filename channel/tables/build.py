"""Building BLER tables: the exact link measured over a grid of (payload, code rate,
modulation, fading), written as ``semcom.bler-table/1`` JSON (schema and lookups:
:mod:`semcom.linkmodel.bler`).

The build is resumable: the table file is rewritten (atomically) after every curve, and a
build with ``append=True`` (``semcom bler-table build --append`` / ``--resume``) on the
same file simulates only the curves it lacks.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from semcom.errors import ConfigError
from semcom.linkmodel.bler import MODES, SCHEMA, clear_cache

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
    pairs = grid.get("settings") or [(r, m) for m in grid["modulation"] for r in grid["code_rate"]]
    combos = [(a, r, m, f) for f in grid["fading"] for r, m in pairs for a in grid["payload_bits"]]
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
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(combos), desc="bler-table", unit="curve", file=sys.stderr)
    # the largest blocks first, so that workers finish together; entries keep grid order
    order = sorted(range(len(combos)), key=lambda i: -combos[i][0])
    args = [(*combos[i], modes, kw) for i in order]
    done: list[tuple[int, dict]] = []

    def write() -> dict:
        entries = [e for _, e in sorted(done, key=lambda x: x[0])]
        build_s = round(time.perf_counter() - t0, 1)
        if old is not None:
            lim = {**old["config"].get("limits_by_fading", {}), **conf.get("limits_by_fading", {})}
            if lim:
                conf["limits_by_fading"] = lim
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
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(dumps_table(table))
        tmp.replace(path)  # atomic: an interrupted build leaves the last complete file
        clear_cache()
        return table

    def finished(i: int, entry: dict) -> None:
        done.append((order[i], entry))
        write()  # resumable: every finished curve is on disk
        if bar is not None:
            bar.update(1)

    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            for i, entry in enumerate(ex.map(_build_one, args)):
                finished(i, entry)
    else:
        for i, a in enumerate(args):
            finished(i, _build_one(a))
    if bar is not None:
        bar.close()
    return write()


def dumps_table(table: dict) -> str:
    """The table as JSON text: one line per entry (small, readable diffs)."""
    head = {k: v for k, v in table.items() if k != "entries"}
    text = json.dumps(head, indent=1)
    body = ",\n".join("  " + json.dumps(e, separators=(",", ":")) for e in table["entries"])
    return text[:-2] + ',\n "entries": [\n' + body + "\n ]\n}\n"


def _build_one(args) -> dict:
    a, r, m, f, modes, kw = args
    return build_entry(a, r, m, f, modes=modes, **kw)
