"""Classic image codecs (Pillow JPEG / WebP) as a reversible stage.

>>> import numpy as np
>>> codec = PillowCodec("jpeg", quality=75)
>>> img = np.zeros((32, 48, 3), np.uint8)
>>> p = codec.encode(img)
>>> codec.decode(p).shape
(32, 48, 3)
"""

from __future__ import annotations

import io

import numpy as np

from semcom.errors import WireFormatError
from semcom.types import Payload, RateLedger

FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}


class PillowCodec:
    """JPEG or WebP through Pillow.

    :input image: ``uint8 [H, W, 3]`` RGB
    :output decode: ``uint8 [H, W, 3]`` RGB

    The whole file (markers and tables included) is the payload: that is what a JPEG
    or WebP receiver needs. ``optimize`` Huffman tables for JPEG; 4:2:0 subsampling.
    """

    def __init__(self, fmt: str, quality: int):
        if fmt not in FORMATS:
            raise ValueError(f"unknown image format {fmt!r}; use one of {sorted(FORMATS)}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {quality}")
        self.fmt, self.quality = fmt, quality
        self.name = fmt

    def encode(self, image: np.ndarray) -> Payload:
        from PIL import Image

        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
        buf = io.BytesIO()
        kwargs = {"quality": self.quality}
        if self.fmt == "jpeg":
            kwargs.update(optimize=True, subsampling=2)
        else:
            kwargs.update(method=6)
        Image.fromarray(image).save(buf, format=FORMATS[self.fmt], **kwargs)
        data = buf.getvalue()
        return Payload(data=data, ledger=RateLedger().add(self.name, "payload", 8 * len(data)))

    def decode(self, payload: Payload | bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        data = payload.data if isinstance(payload, Payload) else payload
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise WireFormatError(f"{self.fmt} bytes do not decode: {exc}") from None
