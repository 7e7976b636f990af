"""The token description wire format (v1): one function to write it, one to read it.

A description is the envelope followed by a bit-packed body, zero-padded to a byte::

    envelope            4 bytes for 96x96 (semcom.stages.envelope)              header
    -- token header (stage "tokens", header) ------------------------------------------
    version             4   = 1
    quant               2   0 none (float16), 1 scalar, 2 codebook
    entropy             1   payload arithmetic-coded (per description: the edge sends
                            the shorter of the coded and the fixed-width payload)
    cls                 1   this description carries the CLS token
    union               1   side info holds the kept set of all descriptions
    grid_h, grid_w      8+8 patch grid (P = grid_h * grid_w)
    model               32  first 32 bits of SHA-256(model_id) of the edge encoder
    extras              8   position-less (merged, global) tokens E in the kept set
    scalar:   bits-1 4 | calibrated 1 | [codebook 32 if calibrated]
    codebook: bits-1 4 | metric 2 (l2, cosine, ip) | codebook 32 (first 32 bits of its hash)
    -- side info (stage "positions", side_info) ---------------------------------------
    union mode:  kept patch positions, a subset of P            (bitmap or combinatorial)
                 this description's share, a subset of the kept slots (k + E), when D > 1
    own mode:    this description's patch positions, a subset of P
                 this description's extras, a subset of E       (when E > 0)
    -- quantiser side info (stage "quant", side_info) ---------------------------------
    scalar with the image range: lo, hi per channel as float16 (32 D bits)
    -- payload (stage "quant", payload) ----------------------------------------------
    CLS (if carried), then this description's tokens in slot order (patches in raster
    order, then extras): float16 values / scalar levels / codebook indices, fixed width
    or one arithmetic code (then it runs to the end of the description)
    -- padding (stage "pad", header): 0-7 zero bits ------------------------------------

*Slots* number the kept tokens' places: patch ``p`` is slot ``p``, extra ``e`` is slot
``P + e``. The token dimension is not sent: the model hash fixes it (and the codebook's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from semcom.errors import WireFormatError
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.envelope import Envelope
from semcom.stages.positions import decode_subset, encode_subset
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer, VQQuantizer
from semcom.types import RateLedger

VERSION = 1
METRIC_CODES = {"l2": 0, "cosine": 1, "ip": 2}
METRIC_NAMES = {v: k for k, v in METRIC_CODES.items()}
QUANT_NAMES = {0: "none", 1: "scalar", 2: "codebook"}
MAX_EXTRAS = 255


def id32(text: str) -> int:
    """First 32 bits of SHA-256 of ``text`` (the model check in the header)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


@dataclass
class TokenHeader:
    quant: int
    entropy: bool
    cls: bool
    union: bool
    grid: tuple[int, int]
    model: int
    extras: int
    qbits: int = 0
    calibrated: bool = False
    metric: str = "l2"
    codebook: int = 0

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def same_image(self, other: TokenHeader) -> bool:
        """Fields every description of one transmission must share (not ``cls``, nor
        ``entropy``: the edge sends each description arithmetic-coded or fixed-width,
        whichever is shorter)."""
        a, b = vars(self).copy(), vars(other).copy()
        for key in ("cls", "entropy"):
            a.pop(key), b.pop(key)
        return a == b


@dataclass
class TokenDescription:
    """One description, parsed. ``slots int64 [n]`` sorted; ``tokens float32 [n, D]``."""

    envelope: Envelope
    header: TokenHeader
    kept: np.ndarray | None  # union mode: kept patch positions (int64, sorted)
    slots: np.ndarray
    tokens: np.ndarray
    cls: np.ndarray | None  # float32 [D]


def quantizer_for(header: TokenHeader, codebook=None):
    """The quantiser a header describes (the codebook is the caller's, hash-checked here)."""
    if header.quant == 0:
        return Fp16Quantizer()
    if header.quant == 1 and not header.calibrated:
        return ScalarQuantizer(header.qbits, entropy=header.entropy)
    if codebook is None:
        raise WireFormatError("description needs a codebook and this cloud has none configured "
                              f"(codebook {header.codebook:08x})")
    if codebook.id32 != header.codebook:
        raise WireFormatError(f"codebook mismatch: description was coded with codebook "
                              f"{header.codebook:08x}, this cloud has {codebook.id32:08x}")
    if header.quant == 1:
        return ScalarQuantizer(header.qbits, codebook.lo, codebook.hi, entropy=header.entropy)
    if codebook.bits != header.qbits or codebook.metric != header.metric:
        raise WireFormatError(f"codebook mismatch: description has {header.qbits}-bit "
                              f"{header.metric} indices, the codebook is {codebook.bits}-bit "
                              f"{codebook.metric}")
    return VQQuantizer(codebook, entropy=header.entropy)


def encode_description(env: Envelope, header: TokenHeader, quantizer, *, kept: np.ndarray,
                       slots: np.ndarray, tokens: np.ndarray, cls: np.ndarray | None
                       ) -> tuple[bytes, RateLedger]:
    """Bytes of one description and its ledger (``ledger.total() == 8 * len(bytes)``).

    ``kept``: all kept patch positions (sorted); ``slots``: this description's slots
    (sorted); ``tokens float32 [len(slots), D]`` in slot order; ``cls float32 [D]`` or None.
    """
    P, E = header.num_patches, header.extras
    if not 0 <= E <= MAX_EXTRAS:
        raise ValueError(f"at most {MAX_EXTRAS} extra tokens, got {E}")
    if len(slots) != len(tokens):
        raise ValueError("one token per slot")
    if (cls is not None) != header.cls:
        raise ValueError("header.cls must say whether a CLS token is carried")
    w = BitWriter()
    w.write_bytes(env.pack(), "envelope", "header")
    _write_header(w, header)
    slots = np.asarray(slots, np.int64)
    if header.union:
        encode_subset(w, kept, P, "positions", "side_info")
        if env.count > 1:
            universe = np.concatenate([np.asarray(kept, np.int64), P + np.arange(E)])
            share = np.searchsorted(universe, slots)
            if len(slots) and not np.array_equal(universe[np.minimum(share, len(universe) - 1)],
                                                 slots):
                raise ValueError("description slots must be kept slots")
            encode_subset(w, share, len(universe), "positions", "side_info")
    else:
        encode_subset(w, slots[slots < P], P, "positions", "side_info")
        if E:
            encode_subset(w, slots[slots >= P] - P, E, "positions", "side_info")
    values = tokens if cls is None else np.concatenate([cls[None, :], tokens], 0)
    quantizer.encode(w, np.asarray(values, np.float32))
    data = w.to_bytes()
    return data, w.ledger


def _write_header(w: BitWriter, h: TokenHeader) -> None:
    s, c = "tokens", "header"
    w.write(VERSION, 4, s, c)
    w.write(h.quant, 2, s, c)
    w.write(int(h.entropy), 1, s, c)
    w.write(int(h.cls), 1, s, c)
    w.write(int(h.union), 1, s, c)
    w.write(h.grid[0], 8, s, c)
    w.write(h.grid[1], 8, s, c)
    w.write(h.model, 32, s, c)
    w.write(h.extras, 8, s, c)
    if h.quant == 1:
        w.write(h.qbits - 1, 4, s, c)
        w.write(int(h.calibrated), 1, s, c)
        if h.calibrated:
            w.write(h.codebook, 32, s, c)
    elif h.quant == 2:
        w.write(h.qbits - 1, 4, s, c)
        w.write(METRIC_CODES[h.metric], 2, s, c)
        w.write(h.codebook, 32, s, c)


def read_header(r: BitReader) -> TokenHeader:
    version = r.read(4, "token header version")
    if version != VERSION:
        raise WireFormatError(f"unsupported token header version {version} (this is {VERSION})")
    quant = r.read(2, "quant type")
    if quant not in QUANT_NAMES:
        raise WireFormatError(f"unknown quantiser code {quant}")
    h = TokenHeader(quant=quant, entropy=bool(r.read(1)), cls=bool(r.read(1)),
                    union=bool(r.read(1)), grid=(r.read(8, "grid"), r.read(8, "grid")),
                    model=r.read(32, "model id"), extras=r.read(8, "extras"))
    if h.grid[0] == 0 or h.grid[1] == 0:
        raise WireFormatError(f"bad patch grid {h.grid}")
    if quant == 0 and h.entropy:
        raise WireFormatError("float16 tokens cannot be entropy-coded")
    if quant == 1:
        h.qbits = r.read(4, "scalar bits") + 1
        h.calibrated = bool(r.read(1))
        if h.calibrated:
            h.codebook = r.read(32, "codebook id")
    elif quant == 2:
        h.qbits = r.read(4, "codebook bits") + 1
        code = r.read(2, "metric")
        if code not in METRIC_NAMES:
            raise WireFormatError(f"unknown codebook metric code {code}")
        h.metric = METRIC_NAMES[code]
        h.codebook = r.read(32, "codebook id")
    return h


def decode_description(data: bytes, *, dim: int, model: int | None = None, grid=None,
                       codebook=None) -> TokenDescription:
    """Parse one description (the inverse of :func:`encode_description`).

    ``model``: the cloud encoder's :func:`id32` (checked when given); ``grid``: its patch
    grid (checked when given); ``codebook``: the cloud's codebook, needed for VQ and the
    calibrated scalar range. Every inconsistency raises WireFormatError naming it.
    """
    env, pos = Envelope.unpack(data)
    if env.method != "tokens":
        raise WireFormatError(f"description carries method '{env.method}', not 'tokens'")
    r = BitReader(data)
    r.pos = 8 * pos
    h = read_header(r)
    if model is not None and h.model != model:
        raise WireFormatError(f"model mismatch: description was made by vision encoder "
                              f"{h.model:08x}, this cloud runs {model:08x}")
    if grid is not None and tuple(h.grid) != tuple(grid):
        raise WireFormatError(f"patch grid {h.grid} does not match the model's {tuple(grid)}")
    P, E = h.num_patches, h.extras
    kept = None
    if h.union:
        kept = decode_subset(r, P)
        universe = np.concatenate([kept, P + np.arange(E)])
        if env.count > 1:
            share = decode_subset(r, len(universe))
            slots = universe[share]
        else:
            slots = universe
    else:
        patches = decode_subset(r, P)
        extras = decode_subset(r, E) + P if E else np.zeros(0, np.int64)
        slots = np.concatenate([patches, extras])
    quantizer = quantizer_for(h, codebook)
    n = len(slots) + int(h.cls)
    values = quantizer.decode(r, n, dim)
    if not getattr(quantizer, "entropy", False) and r.remaining >= 8:
        raise WireFormatError(f"{r.remaining // 8} trailing bytes after the token payload")
    if r.remaining and np.any(r.rest()):
        raise WireFormatError("non-zero padding after the token payload")
    cls = values[0] if h.cls else None
    return TokenDescription(env, h, kept, slots, values[int(h.cls):], cls)
