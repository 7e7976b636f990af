"""Images on disk: read lazily, one batch at a time, bounded in size, failures per file.

A dataset lists its image files (cheap: names only); nothing is decoded until a batch
needs it, and a decoded image is dropped again after its batch, so a run's memory is
bounded by ``run.batch_size`` decoded images whatever the folder's size.

- :class:`ImageFile`: one file. ``hw`` reads only the header (and the EXIF orientation),
  ``load()`` decodes it (cached until ``release()``), ``digest()`` is the SHA-256 of
  its bytes (cached by path, size and modification time).
- :class:`LazySample`: a :class:`~semcom.types.Sample` whose ``image`` is decoded from
  its :class:`ImageFile` on first use.
- :func:`read_batch`: decode a batch; the samples that cannot be read come back with
  their :class:`ImageReadError` (file and reason) instead of stopping the run.

Every format Pillow opens is read (``image_suffixes()``: JPEG, PNG, WebP, GIF (first
frame), TIFF, BMP, AVIF, JPEG 2000, ...): EXIF orientation is applied, transparency is
composited on white (as transformers' ``convert_rgb``), 16-bit and float images are
scaled to 8 bits. An image over ``max_pixels`` pixels (``data.max_pixels``) is refused
from its header, before any pixel is decoded. Written here rather than taken from a
data-loading library because the run needs per-file errors with reasons, the original
size without decoding, and content digests, which no loader gives together.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcom.errors import DataError
from semcom.types import Sample

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: about 300 MB decoded
# Pillow formats that only identify a file (stubs) or need an external program.
_NOT_READ = {"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS", "FITS"}
_ORIENTATION = 0x0112
_DIGESTS: dict[tuple, str] = {}


class ImageReadError(DataError):
    """An image file that cannot be used: ``file`` and ``reason`` say which and why."""

    def __init__(self, file: str | Path, reason: str):
        self.file = str(file)
        self.reason = reason
        super().__init__(f"cannot read image {self.file}: {reason}")


def image_suffixes() -> tuple[str, ...]:
    """File suffixes (lower case, with the dot) of every image format Pillow can decode."""
    from PIL import Image

    Image.init()
    return tuple(
        sorted(
            ext
            for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _NOT_READ
        )
    )


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in _suffix_set()


_SUFFIXES: frozenset[str] | None = None


def _suffix_set() -> frozenset[str]:
    global _SUFFIXES
    if _SUFFIXES is None:
        _SUFFIXES = frozenset(image_suffixes())
    return _SUFFIXES


def _open(path: Path, max_pixels: int):
    """The opened (not decoded) Pillow image; ImageReadError with the reason otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    bomb = Image.MAX_IMAGE_PIXELS  # Pillow refuses 2x this in open(): ours decides
    try:
        Image.MAX_IMAGE_PIXELS = max(int(max_pixels), bomb or 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"oversized: {exc}") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image Pillow can read (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"cannot open: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageReadError(
            path,
            f"oversized: {w} x {h} = {w * h:,} pixels > data.max_pixels = {max_pixels:,}",
        )
    if w == 0 or h == 0:
        im.close()
        raise ImageReadError(path, f"empty image ({w} x {h})")
    return im


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block: keep the image as stored
        return 1


def to_rgb(im) -> np.ndarray:
    """``uint8 [H, W, 3]`` of a Pillow image: first frame, EXIF orientation applied,
    alpha composited on white, 16-bit / 32-bit / float modes scaled to 8 bits."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im) or im
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0
        elif mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` into ``uint8 [H, W, 3]`` (RGB); :class:`ImageReadError` naming the
    file and the reason if it cannot be (missing, empty, unknown format, truncated,
    corrupt, over ``max_pixels``)."""
    path = Path(path)
    im = _open(path, max_pixels)
    try:
        im.load()
        return np.ascontiguousarray(to_rgb(im))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason or isinstance(exc, EOFError):
            reason = f"truncated or corrupt: {reason}"
        raise ImageReadError(path, reason) from None
    except MemoryError:
        raise ImageReadError(path, "out of memory while decoding") from None
    finally:
        im.close()


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, cached by (path, size, modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


@dataclass(eq=False)
class ImageFile:
    """One image file of a dataset: ``path`` on disk, ``rel`` its id (the path relative
    to the dataset's image root, extension included). Decoded on demand."""

    path: Path
    rel: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    _image: np.ndarray | None = field(default=None, repr=False)
    _hw: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) as the decoded image will have it, from the header (nothing decoded)."""
        if self._image is not None:
            return int(self._image.shape[0]), int(self._image.shape[1])
        if self._hw is None:
            im = _open(self.path, self.max_pixels)
            try:
                w, h = im.size
                self._hw = (w, h) if _orientation(im) in (5, 6, 7, 8) else (h, w)
            finally:
                im.close()
        return self._hw

    @property
    def loaded(self) -> bool:
        return self._image is not None

    def load(self) -> np.ndarray:
        if self._image is None:
            self._image = read_image(self.path, self.max_pixels)
            self._hw = (int(self._image.shape[0]), int(self._image.shape[1]))
        return self._image

    def release(self) -> None:
        self._image = None

    def digest(self) -> str:
        return file_digest(self.path)


class LazySample(Sample):
    """A :class:`Sample` whose ``image`` is decoded from ``source`` on first use (and
    dropped by :meth:`release`); ``hw`` reads only the header. ``meta['file']`` is the
    image's id within the dataset."""

    def __init__(self, sample_id: str, image_id: str, source: ImageFile, **kw: Any):
        self.source = source
        super().__init__(sample_id, image_id, None, **kw)
        self.meta.setdefault("file", source.rel)

    @property
    def image(self):
        return self.source.load()

    @image.setter
    def image(self, value) -> None:
        if value is not None:  # an explicit array replaces the file's pixels
            self.source._image = np.asarray(value, dtype=np.uint8)

    @property
    def hw(self) -> tuple[int, int]:
        return self.source.hw

    def release(self) -> None:
        self.source.release()

    def __repr__(self) -> str:  # never decodes the image
        return (
            f"LazySample({self.sample_id!r}, image_id={self.image_id!r}, "
            f"file={self.source.rel!r}, question={self.question!r})"
        )


def read_batch(samples) -> tuple[list, list[tuple[Any, ImageReadError]]]:
    """Decode the images of ``samples``: ``(readable samples, [(sample, error), ...])``
    in input order. Samples whose image is in memory already (the tiny world) pass."""
    ok, failed = [], []
    for s in samples:
        src = getattr(s, "source", None)
        if src is None:
            ok.append(s)
            continue
        try:
            src.load()
        except ImageReadError as exc:
            failed.append((s, exc))
        else:
            ok.append(s)
    return ok, failed


def with_header(samples) -> list:
    """The samples whose image size can be read from the header (all in-memory ones);
    the others fail, with their reason, when their batch is read."""
    out = []
    for s in samples:
        try:
            _ = s.hw  # reads the header only
        except ImageReadError:
            continue
        out.append(s)
    return out


def release(samples) -> None:
    """Drop the decoded images of ``samples`` (lazy samples only)."""
    for s in samples:
        if isinstance(s, LazySample):
            s.release()
