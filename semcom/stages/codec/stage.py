"""The neural codec as a stage: real bitstreams of a trained codec at one rate point.

:meth:`NeuralCodec.write` runs the analysis transform and the entropy coder (rANS) and
writes the wire body: a versioned header, the lengths of the entropy-coded strings, and
the strings. :meth:`NeuralCodec.read_latent` entropy-decodes the quantised latent
``y_hat`` (what the transform-neck consumes, no pixel synthesis) and
:meth:`NeuralCodec.read` also runs the synthesis transform (decode-then-VLM baselines).

Wire body (after the envelope), version 1::

    byte 0   codec wire version (4 bits) | architecture code (4 bits)
    byte 1   rate point 1..15 (4 bits)   | variant (4 bits: 0 base, 2 d2, 3 d3)
    byte 2   weights tag (8 bits of the weights' SHA-256: catches edge/cloud mismatch)
    varint   length of each entropy-coded string but the last
    bytes    the strings (y strings..., z string), concatenated

Ledger (stage ``codec-<arch>``): strings -> ``payload`` (CompressAI's "actual bpp"), the
length varints -> ``side_info``, bytes 0-2 -> ``header``. Latent and hyper-latent shapes
are not sent: they follow from the original H x W in the envelope.

Cross-process determinism (STYLE 7.5, CompressAI #279/#309): the entropy-parameter path
(hyper-synthesis ``h_s``, context models, CDF index building) runs in float64 on the
CPU with one thread and deterministic algorithms, on both ends (:func:`coding_mode`), and
the factorized prior's CDF tables are stored with the weights rather than recomputed.
Edge and cloud then compute bit-identical indexes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.codec.arch import (
    ARCH_CODES,
    downsampling,
    latent_shape,
    n_strings,
    pad_image,
    to_tensor,
    to_uint8,
)

if TYPE_CHECKING:
    from semcom.stages.codec.weights import CodecSpec

WIRE_VERSION = 1
ARCH_NAMES = {v: k for k, v in ARCH_CODES.items()}
VARIANT_CODES = {"base": 0, "d2": 2, "d3": 3}
VARIANT_NAMES = {v: k for k, v in VARIANT_CODES.items()}
MAX_RATE_POINTS = 15
HEADER_BYTES = 3


@contextlib.contextmanager
def coding_mode():
    """The numerics of the entropy-parameter path, identical on edge and cloud: float64
    default dtype, one intra-op thread, deterministic algorithms, no autograd."""
    import torch

    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    det = torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.set_default_dtype(torch.float64)
        torch.use_deterministic_algorithms(True)
        with torch.no_grad():
            yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class CodecHeader:
    """Bytes 0-2 of the wire body (see the module docstring)."""

    arch: str
    rate_point: int
    variant: str
    tag: int
    version: int = WIRE_VERSION

    def write(self, w: BitWriter, stage: str) -> None:
        w.write(self.version, 4, stage, "header")
        w.write(ARCH_CODES[self.arch], 4, stage, "header")
        w.write(self.rate_point, 4, stage, "header")
        w.write(VARIANT_CODES[self.variant], 4, stage, "header")
        w.write(self.tag & 0xFF, 8, stage, "header")

    @classmethod
    def read(cls, r: BitReader) -> CodecHeader:
        if r.remaining < 8 * HEADER_BYTES:
            raise WireFormatError(f"codec body too short for its header ({r.remaining // 8} bytes)")
        version, code = r.read(4, "codec wire version"), r.read(4, "codec architecture")
        if version != WIRE_VERSION:
            raise WireFormatError(
                f"unsupported codec wire version {version} (this is {WIRE_VERSION})"
            )
        if code not in ARCH_NAMES:
            raise WireFormatError(f"unknown codec architecture code {code}")
        rp, vc = r.read(4, "rate point"), r.read(4, "variant")
        if vc not in VARIANT_NAMES or rp == 0:
            raise WireFormatError(f"bad codec rate point / variant byte {(rp << 4) | vc:#04x}")
        return cls(ARCH_NAMES[code], rp, VARIANT_NAMES[vc], r.read(8, "weights tag"))


class NeuralCodec(Stage):
    """A trained variable-rate codec at one rate point (``rate_point`` 1 = lowest rate).

    :param model: a :class:`~semcom.stages.codec.gained.GainedCodec` (weights loaded, CDF
        tables built: :func:`~semcom.stages.codec.weights.load_codec` or ``finalize``)
    :param rate_point: 1..K
    :param variant: ``base``, ``d2`` or ``d3`` (sent, checked by the cloud)
    :param tag: the weights tag (sent, checked by the cloud)
    :input x: ``uint8 [H, W, 3]`` RGB
    :context hw: (``read``, ``read_latent``) the original ``(H, W)``, from the envelope
    :output: ``read``: ``uint8 [H, W, 3]``; ``read_latent``: ``float32 [1, M, h, w]`` (the
        common latent domain, ``h, w = H / 16, W / 16`` after padding)

    ``write`` also puts in :attr:`BitWriter.meta <semcom.stages.bits.BitWriter.meta>`
    (so in ``encode(x).meta``): ``est_bits`` (-log2 likelihoods), ``latent`` (the
    encoder's ``y_hat``, equal to what ``read_latent`` returns) and ``strings``.

    >>> import numpy as np, torch
    >>> from semcom.stages.codec.gained import GainedCodec
    >>> from semcom.stages.codec.weights import finalize
    >>> _ = torch.manual_seed(0); model = GainedCodec("factorized", 8, 16, rates=2)
    >>> finalize(model)
    >>> codec = NeuralCodec(model, rate_point=2)
    >>> p = codec.encode(np.full((32, 32, 3), 90, np.uint8))
    >>> cats = p.ledger.by_category()  # one string (factorized): no lengths to send
    >>> p.ledger.total() == 8 * len(p.data), cats["header"], cats["side_info"]
    (True, 24, 0)
    >>> cats["payload"] == 8 * len(p.meta["strings"][0])
    True
    >>> bool((codec.decode_latent(p.data, (32, 32)) == p.meta["latent"]).all())
    True
    >>> codec.decode(p.data, (32, 32)).shape
    (32, 32, 3)
    """

    what = "codec bitstream"

    def __init__(
        self,
        model,
        rate_point: int,
        variant: str = "base",
        tag: int = 0,
        spec: CodecSpec | None = None,
    ):
        if not 1 <= rate_point <= min(MAX_RATE_POINTS, model.K):
            raise ValueError(f"rate point must be in [1, {model.K}], got {rate_point}")
        self.model = model.eval()
        self.arch = model.arch
        self.rate_point, self.variant, self.tag = rate_point, variant, tag
        self.k = rate_point - 1
        self.spec = spec
        self.name = f"codec-{self.arch}"

    @property
    def M(self) -> int:
        return self.model.M

    @property
    def coder(self):
        """A float64 copy of the model for the entropy-coding path (shared per model)."""
        c = getattr(self.model, "_coder64", None)
        if c is None:
            import copy

            c = copy.deepcopy(self.model).double().eval()
            object.__setattr__(self.model, "_coder64", c)
        return c

    @property
    def header(self) -> CodecHeader:
        return CodecHeader(self.arch, self.rate_point, self.variant, self.tag)

    def analysis(self, image: np.ndarray):
        """Gained latent y_k = g_a(x) * gain[k] (float32) of one image."""
        import torch

        x = pad_image(to_tensor(image), downsampling(self.arch))
        with torch.no_grad():
            return self.model.g_a(x) * self.model._g("gain", self.k)

    # -- edge -----------------------------------------------------------------------------
    def write(self, w: BitWriter, x: np.ndarray, /) -> int:
        y = self.analysis(x)
        with coding_mode():
            strings, latent = self.coder.compress_latent(y.double(), self.k)
            est = self.coder.estimate_bits(y.double(), self.k)
        start = w.nbits
        self.header.write(w, self.name)
        for s in strings[:-1]:
            w.write_varint(len(s), self.name, "side_info")
        for s in strings:
            w.write_bytes(s, self.name, "payload")
        w.meta.update(est_bits=est, latent=latent.float(), strings=strings)
        return w.nbits - start

    # -- cloud ----------------------------------------------------------------------------
    def read_strings(self, r: BitReader) -> list[bytes]:
        """The header (checked against this codec) and the entropy-coded strings."""
        head = CodecHeader.read(r)
        mine = self.header
        if (head.arch, head.rate_point, head.variant) != (mine.arch, mine.rate_point, mine.variant):
            raise WireFormatError(
                f"bitstream is {head.arch} rate point {head.rate_point} "
                f"({head.variant}); this cloud decodes {mine.arch} rate "
                f"point {mine.rate_point} ({mine.variant})"
            )
        if head.tag != mine.tag:
            raise WireFormatError(
                f"codec weights differ between edge and cloud (tag "
                f"{head.tag:#04x} != {mine.tag:#04x})"
            )
        lengths = [
            r.read_varint("string length")
            for _ in range(n_strings(self.arch, len(self.model.groups)) - 1)
        ]
        if 8 * sum(lengths) > r.remaining:
            raise WireFormatError("codec bitstream truncated")
        strings = [r.read_bytes(n, "entropy-coded string") for n in lengths]
        strings.append(r.read_bytes(r.remaining // 8, "entropy-coded string"))
        return strings

    def read_latent(self, r: BitReader, /, *, hw: tuple[int, int]):
        """Entropy-decode the latent (float32 [1, M, h, w], common domain), no g_s."""
        strings = self.read_strings(r)
        with coding_mode():
            try:
                lat = self.coder.decompress_latent(strings, self.k, latent_shape(self.arch, *hw))
            except (RuntimeError, ValueError, IndexError) as exc:
                raise WireFormatError(f"codec bitstream does not decode: {exc}") from None
        return lat.float()

    def read(self, r: BitReader, /, *, hw: tuple[int, int]) -> np.ndarray:
        return self.synthesize(self.read_latent(r, hw=hw), hw)

    def synthesize(self, latent, hw: tuple[int, int]) -> np.ndarray:
        """x_hat = g_s(latent), cropped to H x W, as uint8 [H, W, 3]."""
        import torch

        with torch.no_grad():
            x_hat = self.model.g_s(latent.float())
        h, w = hw
        return to_uint8(x_hat[..., :h, :w])[0]

    # -- bytes ----------------------------------------------------------------------------
    def decode(self, data: bytes, hw: tuple[int, int]) -> np.ndarray:
        """Pixels ``uint8 [H, W, 3]`` of a wire body (:meth:`read` through bytes)."""
        return super().decode(data, hw=hw)

    def decode_latent(self, data: bytes, hw: tuple[int, int]):
        """The latent ``float32 [1, M, h, w]`` of a wire body (:meth:`read_latent`)."""
        r = BitReader(bytes(data), what=self.what)
        lat = self.read_latent(r, hw=hw)
        r.end()
        return lat
