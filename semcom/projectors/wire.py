"""The projector description wire format (v1): compressed tokens after quantisation.

A description is the envelope (method ``projector``) followed by a bit-packed body,
zero-padded to a byte::

    envelope           4 bytes for 96x96 (semcom.stages.envelope)              header
    -- projector header (stage "projector", header) -----------------------------------
    version            4   = 1
    type               1   0 tokenpacker, 1 visualprism
    scale              2   s - 2 (s in 2, 3, 4): the cloud knows G = grid / s tokens
    quant              2   0 float16, 1 scalar
    entropy            1   payload arithmetic-coded (scalar only)
    scalar:  bits-1 4 | calibrated 1 (range of the projector file, nothing sent)
    model              32  first 32 bits of SHA-256("<LLaVA model id>:<projector id>")
    -- side info (stage "positions", side_info), only when count > 1 ------------------
    this description's share of the G*G compressed tokens   (semcom.stages.positions)
    -- quantiser side info / payload (stage "quant") ----------------------------------
    scalar with the image range: lo, hi per channel as float16; then the tokens of the
    share in raster order (semcom.stages.quant)
    -- padding (stage "pad", header): 0-7 zero bits ------------------------------------

The token count and dimension are not sent: the type, scale and model hash fix them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semcom.errors import WireFormatError
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.envelope import Envelope
from semcom.stages.positions import decode_subset, encode_subset
from semcom.stages.quant import Fp16Quantizer, ScalarQuantizer
from semcom.stages.tokens import id32
from semcom.types import RateLedger

VERSION = 1
TYPE_CODES = {"tokenpacker": 0, "visualprism": 1}
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}
STAGE = "projector"


def wire_model_id(model_id: str, projector_id: str) -> int:
    """32-bit check of (vision + language model, projector weights)."""
    return id32(f"{model_id}:{projector_id}")


@dataclass
class ProjectorHeader:
    type: str
    scale: int
    quant: int            # 0 float16, 1 scalar
    model: int
    entropy: bool = False
    qbits: int = 0
    calibrated: bool = False


@dataclass
class ProjectorDescription:
    """One parsed description: ``slots int64 [n]`` (raster indices of the G*G grid, sorted),
    ``tokens float32 [n, C]``."""

    envelope: Envelope
    header: ProjectorHeader
    slots: np.ndarray
    tokens: np.ndarray


def quantizer_for(header: ProjectorHeader, stats: dict | None = None):
    if header.quant == 0:
        return Fp16Quantizer()
    if header.calibrated:
        if stats is None:
            raise WireFormatError("description uses the projector's calibrated range and no "
                                  "projector statistics are loaded")
        return ScalarQuantizer(header.qbits, stats["lo"], stats["hi"], entropy=header.entropy)
    return ScalarQuantizer(header.qbits, entropy=header.entropy)


def encode(env: Envelope, header: ProjectorHeader, quantizer, *, num_tokens: int,
           slots: np.ndarray, tokens: np.ndarray) -> tuple[bytes, RateLedger]:
    """Bytes + ledger (``ledger.total() == 8 * len(bytes)``) of one description carrying
    ``tokens float32 [n, C]`` at ``slots`` (sorted raster indices in ``[0, num_tokens)``)."""
    slots = np.asarray(slots, np.int64)
    if len(slots) != len(tokens):
        raise ValueError("one token per slot")
    if len(slots) and (np.any(np.diff(slots) <= 0) or slots[0] < 0 or slots[-1] >= num_tokens):
        raise ValueError("slots must be sorted, distinct and in range")
    if env.count == 1 and len(slots) != num_tokens:
        raise ValueError("a single description carries every compressed token")
    w = BitWriter()
    w.write_bytes(env.pack(), "envelope", "header")
    h, c = STAGE, "header"
    w.write(VERSION, 4, h, c)
    w.write(TYPE_CODES[header.type], 1, h, c)
    w.write(header.scale - 2, 2, h, c)
    w.write(header.quant, 2, h, c)
    w.write(int(header.entropy), 1, h, c)
    if header.quant == 1:
        w.write(header.qbits - 1, 4, h, c)
        w.write(int(header.calibrated), 1, h, c)
    w.write(header.model, 32, h, c)
    if env.count > 1:
        encode_subset(w, slots, num_tokens, "positions", "side_info")
    if len(tokens):
        quantizer.encode(w, np.asarray(tokens, np.float32))
    return w.to_bytes(), w.ledger


def decode(data: bytes, *, dim: int, grid: int, model: int | None = None,
           expect: tuple[str, int] | None = None, stats: dict | None = None
           ) -> ProjectorDescription:
    """Parse one description. ``grid``: the model's patch grid (G = grid / scale);
    ``model``: this cloud's :func:`wire_model_id` (checked when given); ``expect``:
    the (type, scale) this cloud runs (checked when given); ``stats``: the projector's
    calibration (needed for the calibrated range)."""
    env, pos = Envelope.unpack(data)
    if env.method != "projector":
        raise WireFormatError(f"description carries method '{env.method}', not 'projector'")
    r = BitReader(data)
    r.pos = 8 * pos
    version = r.read(4, "projector header version")
    if version != VERSION:
        raise WireFormatError(f"unsupported projector header version {version} (this is {VERSION})")
    tcode = r.read(1, "projector type")
    scale = r.read(2, "projector scale") + 2
    quant = r.read(2, "quant type")
    if scale not in (2, 3, 4):
        raise WireFormatError(f"bad projector scale {scale}")
    if quant not in (0, 1):
        raise WireFormatError(f"unknown projector quantiser code {quant} (0 float16, 1 scalar)")
    entropy = bool(r.read(1, "entropy flag"))
    qbits, calibrated = 0, False
    if quant == 1:
        qbits = r.read(4, "scalar bits") + 1
        calibrated = bool(r.read(1, "calibrated flag"))
    elif entropy:
        raise WireFormatError("float16 tokens cannot be entropy-coded")
    head = ProjectorHeader(TYPE_NAMES[tcode], scale, quant, r.read(32, "model id"), entropy,
                           qbits, calibrated)
    if expect is not None and (head.type, head.scale) != tuple(expect):
        raise WireFormatError(f"description is {head.type} s={head.scale}; this cloud runs "
                              f"{expect[0]} s={expect[1]}")
    if model is not None and head.model != model:
        raise WireFormatError(f"model mismatch: description was made with model+projector "
                              f"{head.model:08x}, this cloud runs {model:08x}")
    if grid % scale:
        raise WireFormatError(f"scale {scale} does not divide the patch grid {grid}")
    Q = (grid // scale) ** 2
    slots = decode_subset(r, Q) if env.count > 1 else np.arange(Q, dtype=np.int64)
    q = quantizer_for(head, stats)
    tokens = q.decode(r, len(slots), dim) if len(slots) else np.zeros((0, dim), np.float32)
    if not getattr(q, "entropy", False) and r.remaining >= 8:
        raise WireFormatError(f"{r.remaining // 8} trailing bytes after the projector payload")
    if not getattr(q, "entropy", False) and r.remaining and np.any(r.rest()):
        raise WireFormatError("non-zero padding after the projector payload")
    return ProjectorDescription(env, head, slots, tokens)


__all__ = ["VERSION", "ProjectorHeader", "ProjectorDescription", "encode", "decode",
           "wire_model_id", "quantizer_for"]
