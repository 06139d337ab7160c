"""Images as input rows: decoding with Pillow, and cutting a byte stream of concatenated images apart.

Everything here is a pure function of its input, so the checks are tested without a network. A
file that is not an image, a truncated one, a decompression bomb or a format that is not allowed
becomes an :class:`~neurox.ext.InputError` (``bad_image`` or ``too_large``), never a crash.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ._samples import InputError

DEFAULT_FORMATS = ("PNG", "PPM", "JPEG", "BMP")
"""Pillow's format names; PPM covers the netpbm family: PBM, PGM and PPM."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NETPBM_MAGIC = re.compile(rb"P[456]\s")
HEADER_MAX = 1024
"""A netpbm header longer than this is not one."""


def known_formats() -> set[str]:
    Image.init()
    return set(Image.OPEN)


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes a row: ``size`` (width, height) pixels of ``mode`` (``L``: grey, one value a
    pixel; ``RGB``: three), scaled to [0, 1] (``unit``: value / max, ``minmax``: darkest 0, brightest 1),
    optionally inverted (dark ink on white paper becomes high values), row after row."""
    size: tuple[int, int]
    mode: str = "L"
    normalize: str = "unit"
    invert: bool = False
    formats: tuple[str, ...] = DEFAULT_FORMATS
    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 4096 * 4096

    @property
    def width(self) -> int:
        return self.size[0] * self.size[1] * (3 if self.mode == "RGB" else 1)


def image_size_for(width: int, mode: str) -> tuple[int, int] | None:
    """The square image that fills ``width`` values in ``mode``, or None if there is none."""
    channels = 3 if mode == "RGB" else 1
    if width % channels:
        return None
    side = int(round((width // channels) ** 0.5))
    return (side, side) if side * side * channels == width else None


def decode_image(data: bytes, spec: ImageSpec) -> np.ndarray:
    """One image file's bytes as a row of ``spec.width`` float32 values in [0, 1]."""
    if len(data) > spec.max_bytes:
        raise InputError("too_large", f"{len(data)} bytes is more than max_bytes ({spec.max_bytes})")
    try:
        with Image.open(io.BytesIO(data), formats=list(spec.formats)) as img:
            w, h = img.size
            if w * h > spec.max_pixels:
                raise InputError("too_large", f"{w}x{h} pixels is more than max_pixels ({spec.max_pixels})")
            img.load()
            values = _pixels(img, spec)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError("too_large", str(exc)) from None
    except Image.UnidentifiedImageError:
        raise InputError("bad_image", f"not a {'/'.join(spec.formats)} image") from None
    except Exception as exc:  # noqa: BLE001 -- Pillow's plugins raise many kinds on a crafted or damaged
        # file (OSError, SyntaxError, ValueError, struct.error, EOFError, ...); each is a bad image.
        raise InputError("bad_image", f"not a readable {'/'.join(spec.formats)} image "
                                      f"({type(exc).__name__}: {exc})") from None
    return _finish(values, spec)


def image_row(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """A decoded picture (a video frame) as a row of ``spec.width`` values, exactly as an image file's."""
    return _finish(_pixels(img, spec), spec)


def _finish(values: np.ndarray, spec: ImageSpec) -> np.ndarray:
    if spec.normalize == "minmax":
        low, high = float(values.min()), float(values.max())
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if spec.invert:
        values = 1.0 - values
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)


def _pixels(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The pixels resized to ``spec.size`` in ``spec.mode``, in [0, 1] (before normalisation)."""
    if img.mode == "F" or img.mode.startswith("I"):
        # 16- and 32-bit greys (a PGM with maxval above 255 opens as I, scaled to 0..65535): keep the depth
        grey = np.asarray(img, dtype=np.float32)
        grey = grey / 65535.0 if img.mode != "F" else grey
        img, scale = Image.fromarray(np.clip(grey, 0.0, 1.0).astype(np.float32)), 1.0
    else:
        img, scale = img.convert(spec.mode), 255.0
    shrinking = spec.size[0] <= img.size[0] and spec.size[1] <= img.size[1]
    img = img.resize(spec.size, Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    values = np.asarray(img, dtype=np.float32) / scale
    if spec.mode == "RGB" and values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)
    return values


class ImageSplitter:
    """Cuts a byte stream of concatenated PNG and binary netpbm (P4/P5/P6) images into one image each.

    :meth:`feed` takes the next bytes; :meth:`next` returns one complete image's bytes at a time, or an
    InputError: ``bad_stream`` for bytes that are not the start of an image (one error per run of them;
    they are skipped up to the next PNG signature or netpbm magic), ``bad_image`` or ``too_large`` for
    an image whose header is wrong or declares more than ``max_bytes`` / ``max_pixels``. It is
    pulled, not pushed, so a reader takes images only as fast as it can use them.
    """

    def __init__(self, max_bytes: int = 16 * 1024 * 1024, max_pixels: int = 4096 * 4096):
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self.buffer = bytearray()
        self._skipping = False
        """The bytes at the head are a run of garbage already reported."""

    def feed(self, data: bytes) -> None:
        """Append the next bytes of the stream."""
        self.buffer += data

    def next(self) -> bytes | InputError | None:
        """The next complete image's bytes, an InputError for bytes that start none, or None: wait for more."""
        while True:
            stripped = len(self.buffer) - len(self.buffer.lstrip())
            del self.buffer[:stripped]  # whitespace between images
            if not self.buffer:
                return None
            try:
                end = self._image_end()
            except InputError as exc:
                reported, self._skipping = self._skipping, not self._resync()
                if not reported:
                    return exc
                if self._skipping:
                    return None  # nothing that may start an image yet
                continue
            self._skipping = False
            if end is None:
                return None  # the rest of this image has not come yet
            image = bytes(self.buffer[:end])
            del self.buffer[:end]
            return image

    def clear(self) -> None:
        """Drop what is held (the stream ended inside an image)."""
        self.buffer.clear()
        self._skipping = False

    def pending(self) -> int:
        """Bytes held for an image that has not come to its end."""
        return len(self.buffer)

    def _image_end(self) -> int | None:
        buf = self.buffer
        if buf.startswith(PNG_SIGNATURE[:len(buf)]) and len(buf) < len(PNG_SIGNATURE):
            return None
        if buf.startswith(PNG_SIGNATURE):
            return self._png_end()
        if buf[:1] == b"P" and len(buf) < 3:
            return None
        if NETPBM_MAGIC.match(buf):
            return self._netpbm_end()
        raise InputError("bad_stream", f"the stream holds bytes that start no PNG or binary PGM/PPM/PBM image "
                                      f"({bytes(buf[:8])!r}...)")

    def _png_end(self) -> int | None:
        at = len(PNG_SIGNATURE)
        while True:
            if len(self.buffer) < at + 8:
                return None
            length = int.from_bytes(self.buffer[at:at + 4], "big")
            kind = bytes(self.buffer[at + 4:at + 8])
            at += 12 + length
            if at > self.max_bytes:
                raise InputError("too_large", f"a PNG in the stream is larger than max_bytes ({self.max_bytes})")
            if kind == b"IEND":
                return at if len(self.buffer) >= at else None

    def _netpbm_end(self) -> int | None:
        head = bytes(self.buffer[:HEADER_MAX])
        magic = head[:2]
        fields = 3 if magic == b"P4" else 4
        tokens: list[bytes] = []
        at = 0
        while len(tokens) < fields:
            while at < len(head) and (head[at:at + 1].isspace() or head[at:at + 1] == b"#"):
                if head[at:at + 1] == b"#":  # a comment runs to the end of its line
                    newline = head.find(b"\n", at)
                    if newline < 0:
                        return self._header_incomplete()
                    at = newline
                at += 1
            start = at
            while at < len(head) and not head[at:at + 1].isspace():
                at += 1
            if at >= len(head):
                return self._header_incomplete()
            tokens.append(head[start:at])
        at += 1  # the single whitespace before the pixels
        try:
            w, h = int(tokens[1]), int(tokens[2])
            maxval = int(tokens[3]) if fields == 4 else 1
        except ValueError:
            raise InputError("bad_image", f"a netpbm header with a field that is not a number: {tokens!r}") from None
        if w <= 0 or h <= 0 or not 0 < maxval < 65536:
            raise InputError("bad_image", f"a netpbm header of {w}x{h} pixels, maxval {maxval}")
        if w * h > self.max_pixels:
            raise InputError("too_large", f"{w}x{h} pixels is more than max_pixels ({self.max_pixels})")
        depth = 2 if maxval > 255 else 1
        size = (w + 7) // 8 * h if magic == b"P4" else w * h * depth * (3 if magic == b"P6" else 1)
        end = at + size
        if end > self.max_bytes:
            raise InputError("too_large", f"a {w}x{h} image is larger than max_bytes ({self.max_bytes})")
        return end if len(self.buffer) >= end else None

    def _header_incomplete(self) -> None:
        if len(self.buffer) >= HEADER_MAX:
            raise InputError("bad_image", f"a netpbm header longer than {HEADER_MAX} bytes")
        return None

    def _resync(self) -> bool:
        """Drop bytes up to the next thing that may start an image, True; or, if there is none, all but a
        tail that may be the start of one cut in two, False."""
        buf = bytes(self.buffer)
        starts = [i for i in (buf.find(PNG_SIGNATURE, 1),) if i > 0]
        magic = NETPBM_MAGIC.search(buf, 1)
        if magic:
            starts.append(magic.start())
        if starts:
            del self.buffer[:min(starts)]
            return True
        del self.buffer[:max(1, len(buf) - len(PNG_SIGNATURE) + 1)]
        return False
