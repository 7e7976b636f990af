"""Classic image codecs (Pillow JPEG / WebP) as byte-level stages.

Two ways to send an image, ``edge.image.headers``:

- ``file``: each description carries a standalone file (markers and tables included),
  the comparison most papers report. JPEG with per-image optimised Huffman tables;
  4:2:0 subsampling.
- ``shared`` (the default): what is constant for a stream is agreed once, in the stream
  setup (:mod:`semcom.stages.setup`), as the token path agrees its codebook. JPEG is
  sent as an abbreviated datastream (ISO/IEC 10918-1 allows tables to be given once for
  many images): the setup holds the header of the stream's quality (SOI, JFIF, the
  quantisation and Annex K Huffman tables, frame and scan headers, the image size
  patched in per image); each image sends one bit, then either its entropy-coded scan
  under the shared tables or its own optimised Huffman tables and the scan under them,
  whichever is shorter. WebP is sent without its RIFF container and the VP8 key frame's
  start code and size (both rebuilt from the setup and the image size): the frame tag
  and the partitions.

The bytes come last in a description (after its envelope) and are read as the rest.

>>> import numpy as np
>>> img = np.zeros((32, 48, 3), np.uint8)
>>> codec = PillowCodec("jpeg", quality=75)
>>> p = codec.encode(img)
>>> p.ledger.total() == 8 * len(p.data) == p.ledger.total("payload")
True
>>> codec.decode(p.data).shape
(32, 48, 3)
>>> shared = PillowCodec("jpeg", 75, headers="shared", template=jpeg_template(75))
>>> len(shared.encode(img, hw=(32, 48)).data) < len(p.data) / 2
True
>>> shared.decode(shared.encode(img, hw=(32, 48)).data, hw=(32, 48)).shape
(32, 48, 3)
"""

from __future__ import annotations

import io

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages.bits import BitReader, BitWriter

FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}
HEADERS = ("shared", "file")
VP8_START = b"\x9d\x01\x2a"


def _pillow(image: np.ndarray, fmt: str, quality: int, *, optimize: bool = True) -> bytes:
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    kwargs = {"quality": quality}
    if fmt == "jpeg":
        kwargs.update(optimize=optimize, subsampling=2)
    else:
        kwargs.update(method=6)
    Image.fromarray(image).save(buf, format=FORMATS[fmt], **kwargs)
    return buf.getvalue()


class _Parts(io.RawIOBase):
    """A read-only file over byte buffers laid end to end, without joining them: a
    received file (or a stream header + a received scan) is decoded in place, not copied
    first (a cloud receiving large images holds each once)."""

    def __init__(self, parts):
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._ends = np.cumsum([len(p) for p in self._parts]).tolist()
        self._size = self._ends[-1] if self._ends else 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def readinto(self, buf) -> int:
        out = memoryview(buf).cast("B")
        n = 0
        start = 0
        for part, end in zip(self._parts, self._ends):
            if n >= len(out) or self._pos >= self._size:
                break
            if self._pos < end:
                lo = self._pos - start
                take = min(len(part) - lo, len(out) - n)
                out[n : n + take] = part[lo : lo + take]
                n += take
                self._pos += take
            start = end
        return n


def _open(data, fmt: str) -> np.ndarray:
    """Decode a file given as bytes, or as a list of buffers to read end to end."""
    from PIL import Image, UnidentifiedImageError

    parts = data if isinstance(data, list) else [data]
    try:
        with Image.open(io.BufferedReader(_Parts(parts))) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise WireFormatError(f"{fmt} bytes do not decode: {exc}") from None


# -- JPEG abbreviated datastreams ----------------------------------------------------------
def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """``[(marker, segment bytes)]`` up to and including SOS, then ``(0, scan)`` (the
    entropy-coded data without the EOI marker)."""
    if data[:2] != b"\xff\xd8":
        raise WireFormatError("not a JPEG file (no SOI)")
    out = [(0xD8, data[:2])]
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise WireFormatError(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        seg = data[i : i + 2 + length]
        out.append((marker, seg))
        i += 2 + length
        if marker == 0xDA:
            if data[-2:] != b"\xff\xd9":
                raise WireFormatError("JPEG file does not end with EOI")
            out.append((0, data[i:-2]))
            return out
    raise WireFormatError("JPEG file has no scan")


def _sof_size(seg: bytes) -> tuple[int, int]:
    return int.from_bytes(seg[5:7], "big"), int.from_bytes(seg[7:9], "big")


def _patch_sof(seg: bytes, hw: tuple[int, int]) -> bytes:
    h, w = hw
    return seg[:5] + int(h).to_bytes(2, "big") + int(w).to_bytes(2, "big") + seg[9:]


def jpeg_template(quality: int) -> bytes:
    """The header of a JPEG of ``quality`` with the Annex K Huffman tables, image size
    zeroed: what a ``shared`` stream agrees once."""
    data = _pillow(np.zeros((16, 16, 3), np.uint8), "jpeg", quality, optimize=False)
    segs = jpeg_segments(data)
    return b"".join(_patch_sof(s, (0, 0)) if m == 0xC0 else s for m, s in segs if m)


def _template_parts(template: bytes):
    """(segments before SOF, SOF, the tables after SOF, the SOS segment) of a template."""
    segs = jpeg_segments(template + b"\xff\xd9")[:-1]
    i = next(k for k, (m, _) in enumerate(segs) if m == 0xC0)
    pre = b"".join(x for _, x in segs[:i])
    tables = b"".join(x for m, x in segs[i + 1 :] if m != 0xDA)
    sos = next(x for m, x in segs if m == 0xDA)
    nodht = b"".join(x for m, x in segs[i + 1 :] if m not in (0xDA, 0xC4))
    return pre, segs[i][1], tables, nodht, sos


class PillowCodec(Stage):
    """JPEG or WebP through Pillow; the ledger name is the format.

    :param fmt: ``jpeg`` or ``webp``
    :param quality: 1..100
    :param headers: ``file`` (a standalone file) or ``shared`` (see the module docstring)
    :param template: ``shared`` JPEG: the stream's header (:func:`jpeg_template`)
    :input x: ``uint8 [H, W, 3]`` RGB; ``hw`` (``shared``) its size
    :output: ``uint8 [H, W, 3]`` RGB

    >>> import numpy as np
    >>> webp = PillowCodec("webp", 20, headers="shared")
    >>> p = webp.encode(np.full((16, 16, 3), 90, np.uint8), hw=(16, 16))
    >>> webp.decode(p.data, hw=(16, 16)).shape, p.data[:4] != b"RIFF"
    ((16, 16, 3), True)
    """

    def __init__(self, fmt: str, quality: int, *, headers: str = "file", template: bytes = b""):
        if fmt not in FORMATS:
            raise ValueError(f"unknown image format {fmt!r}; use one of {sorted(FORMATS)}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {quality}")
        if headers not in HEADERS:
            raise ValueError(f"unknown headers mode {headers!r}; use one of {HEADERS}")
        self.fmt, self.quality, self.headers = fmt, quality, headers
        self.name = fmt
        self.what = f"{fmt} bytes"
        self.template = template
        if headers == "shared" and fmt == "jpeg":
            if not template:
                raise ValueError("a shared-header JPEG stream needs its template")
            self._pre, self._sof, self._tables, self._nodht, self._sos = _template_parts(template)

    # -- edge --------------------------------------------------------------------------
    def write(self, w: BitWriter, x: np.ndarray, /, *, hw=None) -> int:
        start = w.nbits
        if self.headers == "file":
            w.write_bytes(_pillow(x, self.fmt, self.quality), self.name, "payload")
        elif self.fmt == "jpeg":
            std = jpeg_segments(_pillow(x, "jpeg", self.quality, optimize=False))
            opt = jpeg_segments(_pillow(x, "jpeg", self.quality, optimize=True))
            head = b"".join(_patch_sof(s, (0, 0)) if m == 0xC0 else s for m, s in std if m)
            if head != self.template:
                raise ValueError("the image's JPEG header differs from the stream's template")
            std_scan = std[-1][1]
            opt_dht = b"".join(s for m, s in opt if m == 0xC4)
            opt_scan = opt[-1][1]
            if len(opt_dht) + len(opt_scan) < len(std_scan):
                w.write(1, 1, self.name, "header")
                w.write_varint(len(opt_dht), self.name, "side_info")
                w.write_bytes(opt_dht, self.name, "side_info")
                w.write_bytes(opt_scan, self.name, "payload")
            else:
                w.write(0, 1, self.name, "header")
                w.write_bytes(std_scan, self.name, "payload")
        else:
            data = _pillow(x, "webp", self.quality)
            if data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8 " or data[23:26] != VP8_START:
                raise ValueError("Pillow wrote a WebP that is not a simple lossy VP8 file")
            size = int.from_bytes(data[16:20], "little")
            frame = data[20 : 20 + size]
            w.write_bytes(frame[:3] + frame[10:], self.name, "payload")
        return w.nbits - start

    # -- cloud -------------------------------------------------------------------------
    def read(self, r: BitReader, /, *, hw=None) -> np.ndarray:
        if self.headers == "file":
            return _open(r.read_view(r.remaining // 8, f"{self.fmt} file"), self.fmt)
        if hw is None:
            raise ValueError("a shared-header stream needs the image size")
        h, w = (int(v) for v in hw)
        if self.fmt == "jpeg":
            optimized = r.read(1, "JPEG table flag")
            if optimized:
                n = r.read_varint("JPEG table bytes")
                dht = r.read_bytes(n, "JPEG Huffman tables")
            scan = r.read_view(r.remaining // 8, "JPEG scan")
            tables = self._nodht + dht if optimized else self._tables
            sof = _patch_sof(self._sof, (h, w))
            return _open([self._pre + sof + tables + self._sos, scan, b"\xff\xd9"], "jpeg")
        frame = r.read_bytes(r.remaining // 8, "WebP frame")
        if len(frame) < 3:
            raise WireFormatError("WebP frame too short")
        vp8 = frame[:3] + VP8_START + w.to_bytes(2, "little") + h.to_bytes(2, "little") + frame[3:]
        pad = b"\x00" if len(vp8) % 2 else b""
        riff = b"WEBP" + b"VP8 " + len(vp8).to_bytes(4, "little") + vp8 + pad
        return _open(b"RIFF" + len(riff).to_bytes(4, "little") + riff, "webp")
