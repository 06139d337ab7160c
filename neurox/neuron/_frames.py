"""Data-plane frames between neurons (one msgpack array per ZeroMQ message; see docs/protocol.md).

* forward  ``[0, packet, src, data, learn, meta]`` -- outputs of ``src`` for packet ``packet``
* gradient ``[1, packet, src, data]`` -- dLoss/d(outputs of the receiver), from downstream ``src``
* output   ``[2, packet, src, data, meta, loss]`` -- the end neuron's outputs, to MessengerOut

``data`` is rows of float32 (little-endian) bytes; the receiver knows each link's width. ``meta``
is the origin's msgpack map, passed through untouched until the end of the network.
"""
from __future__ import annotations

import msgpack
import numpy as np

from ..runtime import FrameError, MAX_FRAME_BYTES, vector_from

FORWARD, GRADIENT, OUTPUT = 0, 1, 2
_SHAPES = {FORWARD: (int, str, bytes, bool, bytes), GRADIENT: (int, str, bytes)}


def decode(frame: bytes) -> list:
    """A forward or gradient frame as a list, or FrameError saying what is wrong with it."""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError("oversized", f"{len(frame)} bytes")
    try:
        message = msgpack.unpackb(frame, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise FrameError("malformed", f"{type(exc).__name__}") from None
    if not isinstance(message, list) or not message or message[0] not in _SHAPES:
        raise FrameError("wrong_type", "expected [kind, ...] with kind 0 (forward) or 1 (gradient)")
    types = _SHAPES[message[0]]
    if len(message) != len(types) + 1 or not all(isinstance(v, t) for v, t in zip(message[1:], types)):
        raise FrameError("wrong_type", f"fields of a kind-{message[0]} frame must be {[t.__name__ for t in types]}")
    return message


def rows_of(data: bytes, width: int) -> np.ndarray:
    """A writable array of rows (the compiled kernels take writable arrays only)."""
    return vector_from(data, width).copy()


def encode_forward(packet: int, src: str, y: np.ndarray, learn: bool, meta: bytes) -> bytes:
    return msgpack.packb([FORWARD, packet, src, y.tobytes(), learn, meta], use_bin_type=True)


def encode_gradient(packet: int, src: str, grad: np.ndarray) -> bytes:
    return msgpack.packb([GRADIENT, packet, src, np.ascontiguousarray(grad).tobytes()], use_bin_type=True)


def encode_output(packet: int, src: str, y: np.ndarray, meta: bytes, loss: float | None) -> bytes:
    return msgpack.packb([OUTPUT, packet, src, y.tobytes(), meta, loss], use_bin_type=True)
