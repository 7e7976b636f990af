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
:class:`ProjectorWire` is the stage that writes and reads a :class:`ProjectorDescription`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.envelope import ENVELOPE, Envelope
from semcom.stages.mdc import MDC
from semcom.stages.quant import Fp16Quantizer, Quantizer, ScalarQuantizer

VERSION = 1
TYPE_CODES = {"tokenpacker": 0, "visualprism": 1}
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}
STAGE = "projector"


def wire_model_id(model_id: str, projector_id: str) -> int:
    """32-bit check of (vision + language model, projector weights)."""
    return int(hashlib.sha256(f"{model_id}:{projector_id}".encode()).hexdigest()[:8], 16)


@dataclass
class ProjectorHeader:
    type: str
    scale: int
    quant: int  # 0 float16, 1 scalar
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


def quantizer_for(header: ProjectorHeader, stats: dict | None = None) -> Quantizer:
    """The quantiser a header describes (``stats``: the projector file's calibration)."""
    if header.quant == 0:
        return Fp16Quantizer()
    if header.calibrated:
        if stats is None:
            raise WireFormatError(
                "description uses the projector's calibrated range and no "
                "projector statistics are loaded"
            )
        return ScalarQuantizer(header.qbits, stats["lo"], stats["hi"], entropy=header.entropy)
    return ScalarQuantizer(header.qbits, entropy=header.entropy)


class ProjectorWire(Stage):
    """One projector description: envelope, projector header, share, quantised tokens.

    :param dim: the compressed tokens' width ``C`` (the vision width; not sent)
    :param grid: the model's patch grid (``G = grid / scale`` per side)
    :param model: this cloud's :func:`wire_model_id` (``read`` checks it when given)
    :param expect: the (type, scale) this cloud runs (checked when given)
    :param stats: the projector's calibration (``lo``, ``hi``; the calibrated range)
    :input x: :class:`ProjectorDescription`, ``slots`` sorted raster indices of the
        ``G * G`` grid (all of them when the envelope's count is 1)
    :output: :class:`ProjectorDescription`

    >>> import numpy as np
    >>> h = ProjectorHeader("tokenpacker", 2, quant=0, model=wire_model_id("llava", "p"))
    >>> x = ProjectorDescription(Envelope("projector", 0, 1, 96, 96), h,
    ...                          np.arange(4), np.full((4, 2), 0.5, np.float32))
    >>> p = ProjectorWire(2, grid=4).encode(x); len(p.data), p.ledger.total("payload")
    (26, 128)
    >>> ProjectorWire(2, grid=4, expect=("tokenpacker", 2)).decode(p.data).tokens.shape
    (4, 2)
    """

    name = STAGE
    what = "projector description"

    def __init__(
        self,
        dim: int,
        *,
        grid: int,
        model: int | None = None,
        expect: tuple[str, int] | None = None,
        stats: dict | None = None,
    ):
        self.dim, self.grid, self.model, self.expect, self.stats = dim, grid, model, expect, stats

    def num_tokens(self, scale: int) -> int:
        """``G * G`` compressed tokens at downsampling factor ``scale``."""
        if self.grid % scale:
            raise WireFormatError(f"scale {scale} does not divide the patch grid {self.grid}")
        return (self.grid // scale) ** 2

    def write(self, w: BitWriter, x: ProjectorDescription, /) -> int:
        env, header = x.envelope, x.header
        num_tokens = self.num_tokens(header.scale)
        slots, tokens = np.asarray(x.slots, np.int64), x.tokens
        if len(slots) != len(tokens):
            raise ValueError("one token per slot")
        if len(slots) and (np.any(np.diff(slots) <= 0) or slots[0] < 0 or slots[-1] >= num_tokens):
            raise ValueError("slots must be sorted, distinct and in range")
        if env.count == 1 and len(slots) != num_tokens:
            raise ValueError("a single description carries every compressed token")
        start = w.nbits
        ENVELOPE.write(w, env)
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
        MDC(env.count).write(w, slots, n=num_tokens)
        if len(tokens):
            quantizer_for(header, self.stats).write(w, np.asarray(tokens, np.float32))
        return w.nbits - start

    def read(self, r: BitReader, /) -> ProjectorDescription:
        env = ENVELOPE.read(r)
        if env.method != "projector":
            raise WireFormatError(f"description carries method '{env.method}', not 'projector'")
        version = r.read(4, "projector header version")
        if version != VERSION:
            raise WireFormatError(
                f"unsupported projector header version {version} (this is {VERSION})"
            )
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
        head = ProjectorHeader(
            TYPE_NAMES[tcode], scale, quant, r.read(32, "model id"), entropy, qbits, calibrated
        )
        if self.expect is not None and (head.type, head.scale) != tuple(self.expect):
            raise WireFormatError(
                f"description is {head.type} s={head.scale}; this cloud runs "
                f"{self.expect[0]} s={self.expect[1]}"
            )
        if self.model is not None and head.model != self.model:
            raise WireFormatError(
                f"model mismatch: description was made with model+projector "
                f"{head.model:08x}, this cloud runs {self.model:08x}"
            )
        slots = MDC(env.count).read(r, n=self.num_tokens(scale))
        if len(slots):
            tokens = quantizer_for(head, self.stats).read(r, n=len(slots), dim=self.dim)
        else:
            tokens = np.zeros((0, self.dim), np.float32)
        return ProjectorDescription(env, head, slots, tokens)


__all__ = [
    "VERSION",
    "ProjectorHeader",
    "ProjectorDescription",
    "ProjectorWire",
    "wire_model_id",
    "quantizer_for",
]
