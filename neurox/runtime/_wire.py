"""The msgpack wire codec: every frame NeuroX sends is one msgpack value (never pickle).

Decoding is defensive: a frame larger than the limit, truncated, with trailing bytes, or nested
too deep is rejected with a :class:`FrameError` naming what was wrong, so a receiver can answer
or count the bad frame and carry on. Vectors travel as raw little-endian float32 bytes.
"""
from __future__ import annotations

import threading

import msgpack

MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Default upper bound on one frame; a larger frame is rejected before it is parsed."""


class FrameError(ValueError):
    """A frame that cannot be accepted; ``kind`` is a short machine-readable category."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


_local = threading.local()


def pack(value) -> bytes:
    """Encode one value as a msgpack frame.

    Each thread reuses one Packer: ``msgpack.packb`` allocates a fresh 1 MiB buffer per call, which
    costs far more than the encoding of a small frame.
    """
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(value)


def unpack(frame: bytes, max_bytes: int = MAX_FRAME_BYTES):
    """Decode one msgpack frame, raising FrameError for anything malformed or oversized."""
    if len(frame) > max_bytes:
        raise FrameError("oversized", f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except msgpack.ExtraData:
        raise FrameError("malformed", "trailing bytes after one msgpack value") from None
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise FrameError("malformed", f"not a msgpack value ({type(exc).__name__}: {exc})") from None


def unpack_map(frame: bytes, max_bytes: int = MAX_FRAME_BYTES) -> dict:
    """Decode a frame that must hold a msgpack map (every request and event is one)."""
    value = unpack(frame, max_bytes)
    if not isinstance(value, dict):
        raise FrameError("wrong_type", f"expected a map, got {type(value).__name__}")
    return value


def vector_bytes(array: np.ndarray) -> bytes:
    """A float32 array as the raw little-endian bytes carried on the wire."""
    import numpy as np  # here, not at the top: a tool that never touches a vector starts without numpy
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def vector_from(data: bytes, width: int) -> np.ndarray:
    """Rows of ``width`` float32 values from raw bytes; FrameError if the length does not fit."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FrameError("wrong_type", f"vector data must be bin, got {type(data).__name__}")
    if width <= 0 or len(data) == 0 or len(data) % (4 * width):
        raise FrameError("wrong_shape", f"{len(data)} bytes is not a whole number of rows of {width} float32")
    import numpy as np
    return np.frombuffer(data, dtype="<f4").reshape(-1, width)
