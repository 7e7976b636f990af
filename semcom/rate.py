"""Rate definitions, in one place. Pixels are always the original image's H x W.

========================  ================================================================
``bpp_payload``           payload bits / pixels: entropy-coded bytes or token index/value
                          bits, what a codec paper calls "actual bpp"
``bpp_wire``              (payload + side info + headers) bits / pixels: every byte the edge
                          sends (kept-token positions, quantiser parameters, MDC and stage
                          headers), the stream setup included. The default x-axis.
``bpp_setup``             the stream setup's bits / pixels of the run: what the edge sends
                          once per stream (connection) instead of in every description
                          (model and codebook ids, agreed settings, JPEG tables); part of
                          ``bpp_wire``, reported on its own as well
``cpp``                   channel uses per pixel: coded symbols on the air (after CRC, LDPC,
                          rate matching, modulation, and every HARQ round) / pixels
``bpp_channel``           coded bits / pixels
``bpp_est``               estimated bits (-log2 likelihoods) / pixels; neural codecs only,
                          reported beside ``bpp_payload`` and never mixed with it
========================  ================================================================

Aggregates over a set of transmissions: the **pooled** value (sum of bits over the sum
of pixels, the primary column, e.g. ``bpp_wire``) and the **per-image mean** (mean of the
per-transmission values, suffix ``_mean``). The setup is sent once for all of them: the
pooled ``bpp_wire`` adds its bits once, the per-image mean gives each transmission an
equal share of it.

>>> a = SampleRate(pixels=100, payload_bits=50, side_info_bits=10, header_bits=20)
>>> b = SampleRate(pixels=300, payload_bits=150, side_info_bits=0, header_bits=30)
>>> agg = aggregate([a, b])
>>> agg["bpp_wire"], agg["bpp_wire_mean"]   # 260/400, mean(0.8, 0.6)
(0.65, 0.7)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from semcom.types import RateLedger


@dataclass
class SampleRate:
    """Bits of one transmission (one image, or one image-question pair)."""

    pixels: int
    payload_bits: int = 0
    side_info_bits: int = 0
    header_bits: int = 0
    coded_bits: int = 0
    channel_uses: int = 0
    est_bits: float | None = None
    airtime_s: float = 0.0

    def __post_init__(self):
        if self.pixels <= 0:
            raise ValueError(f"pixels must be > 0 (the original H x W), got {self.pixels}")

    @classmethod
    def from_ledger(cls, ledger: RateLedger, pixels: int, **link) -> SampleRate:
        cats = ledger.by_category()
        return cls(
            pixels=pixels,
            payload_bits=cats["payload"],
            side_info_bits=cats["side_info"],
            header_bits=cats["header"],
            **link,
        )

    @property
    def wire_bits(self) -> int:
        return self.payload_bits + self.side_info_bits + self.header_bits

    @property
    def bpp_payload(self) -> float:
        return self.payload_bits / self.pixels

    @property
    def bpp_wire(self) -> float:
        return self.wire_bits / self.pixels

    @property
    def bpp_channel(self) -> float:
        return self.coded_bits / self.pixels

    @property
    def cpp(self) -> float:
        return self.channel_uses / self.pixels

    @property
    def bpp_est(self) -> float | None:
        return None if self.est_bits is None else self.est_bits / self.pixels

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(
            wire_bits=self.wire_bits,
            bpp_payload=self.bpp_payload,
            bpp_wire=self.bpp_wire,
            bpp_channel=self.bpp_channel,
            cpp=self.cpp,
            bpp_est=self.bpp_est,
        )
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> SampleRate:
        keys = (
            "pixels",
            "payload_bits",
            "side_info_bits",
            "header_bits",
            "coded_bits",
            "channel_uses",
            "est_bits",
            "airtime_s",
        )
        return cls(**{k: data[k] for k in keys if k in data})


_POOLED = {  # column -> (numerator attribute, pixels)
    "bpp_payload": "payload_bits",
    "bpp_wire": "wire_bits",
    "bpp_channel": "coded_bits",
    "cpp": "channel_uses",
}


def aggregate(rates: Iterable[SampleRate], setup_bits: int = 0) -> dict[str, float | int | None]:
    """Pooled and per-image-mean rates of a set of transmissions that shared one stream
    setup of ``setup_bits`` bits.

    >>> r = [SampleRate(pixels=100, payload_bits=60), SampleRate(pixels=100, payload_bits=20)]
    >>> a = aggregate(r, setup_bits=40)
    >>> a["bpp_wire"], a["bpp_setup"], a["bpp_payload"], a["bits_setup"]
    (0.6, 0.2, 0.4, 40)
    """
    rates = list(rates)
    if not rates:
        raise ValueError("no transmissions to aggregate")
    if setup_bits < 0:
        raise ValueError(f"setup_bits must be >= 0, got {setup_bits}")
    n = len(rates)
    pixels = sum(r.pixels for r in rates)
    out: dict[str, float | int | None] = {"transmissions": n, "pixels": pixels}
    for col, attr in _POOLED.items():
        out[col] = sum(getattr(r, attr) for r in rates) / pixels
        out[f"{col}_mean"] = sum(getattr(r, col) for r in rates) / n
    out["bits_setup"] = int(setup_bits)
    out["bpp_setup"] = setup_bits / pixels
    out["bpp_wire"] = (sum(r.wire_bits for r in rates) + setup_bits) / pixels
    out["bpp_wire_mean"] = sum((r.wire_bits + setup_bits / n) / r.pixels for r in rates) / n
    if all(r.est_bits is not None for r in rates):
        out["bpp_est"] = sum(r.est_bits for r in rates) / pixels  # type: ignore[misc]
        out["bpp_est_mean"] = sum(r.bpp_est for r in rates) / len(rates)  # type: ignore[misc]
    else:
        out["bpp_est"] = out["bpp_est_mean"] = None
    for attr in ("payload_bits", "side_info_bits", "header_bits", "coded_bits", "channel_uses"):
        out[f"{attr}_per_tx"] = sum(getattr(r, attr) for r in rates) / len(rates)
    out["wire_bits_per_tx"] = (sum(r.wire_bits for r in rates) + setup_bits) / n
    out["airtime_s_per_tx"] = sum(r.airtime_s for r in rates) / len(rates)
    return out
