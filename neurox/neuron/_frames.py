"""Data-plane frames between neurons (one msgpack array per ZeroMQ message; see docs/protocol.md).

Every frame carries a bundle of one or more packets, so that a busy neuron sends one message per
link for everything it computed in one go, while a quiet one sends a bundle of one:

* forward  ``[0, src, packets, rows, data, learn, metas]`` -- outputs of ``src``
* gradient ``[1, src, packets, rows, data]`` -- dLoss/d(outputs of the receiver), from downstream ``src``
* output   ``[2, src, packets, rows, data, metas, losses]`` -- the end neuron's outputs, to MessengerOut

``packets`` (ints), ``rows`` (ints), ``learn`` (bools), ``metas`` (bins) and ``losses`` (floats or nil)
are parallel lists, one entry per packet; ``data`` is all their rows of float32 (little-endian),
packet after packet. The receiver knows each link's width. A ``meta`` is the origin's msgpack map,
passed through untouched until the end of the network.
"""
from __future__ import annotations

import msgpack
import numpy as np

from ..runtime import MAX_FRAME_BYTES, FrameError, pack, vector_from

FORWARD, GRADIENT, OUTPUT = 0, 1, 2
_FIELDS = {FORWARD: (str, list, list, bytes, list, list), GRADIENT: (str, list, list, bytes),
           OUTPUT: (str, list, list, bytes, list, list)}


def decode(frame: bytes, kinds: tuple[int, ...] = (FORWARD, GRADIENT)) -> list:
    """A frame of one of ``kinds`` as a list, or FrameError saying what is wrong with it."""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError("oversized", f"{len(frame)} bytes")
    try:
        message = msgpack.unpackb(frame, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise FrameError("malformed", type(exc).__name__) from None
    if type(message) is not list or not message or message[0] not in kinds:
        raise FrameError("wrong_type", f"expected [kind, ...] with kind in {kinds}")
    types = _FIELDS[message[0]]
    if len(message) != len(types) + 1 or not all(isinstance(v, t) for v, t in zip(message[1:], types)):
        raise FrameError("wrong_type", f"a kind-{message[0]} frame is {[t.__name__ for t in types]}")
    count = len(message[2])
    if len(message[3]) != count or any(len(lst) != count for lst in message[5:]):
        raise FrameError("wrong_shape", "the per-packet lists differ in length")
    return message


def split_rows(data: bytes, rows: list, width: int) -> list[np.ndarray]:
    """The packets' row blocks (writable: the compiled kernels take writable arrays only)."""
    return _split(vector_from(data, width), rows, width)


def split_finite_rows(data: bytes, rows: list, width: int) -> tuple[list[np.ndarray], list[int]]:
    """:func:`split_rows`, and the indexes of the packets holding a value that is not finite (nan, inf):
    one check over the whole frame, per packet only when it fails."""
    whole = vector_from(data, width)
    blocks = _split(whole, rows, width)
    if np.isfinite(whole).all():
        return blocks, []
    return blocks, [i for i, block in enumerate(blocks) if not np.isfinite(block).all()]


def _split(block: np.ndarray, rows: list, width: int) -> list[np.ndarray]:
    if set(map(type, rows)) != {int} or sum(rows) != block.shape[0] or min(rows) <= 0:
        raise FrameError("wrong_shape", f"rows {rows[:8]} do not add up to {block.shape[0]} rows of {width}")
    block = block.copy()
    if len(rows) == 1:
        return [block]
    return slices(block, rows)


def slices(block: np.ndarray, rows: list[int]) -> list[np.ndarray]:
    """``block`` cut into consecutive views of ``rows`` rows each (``np.split`` costs a few microseconds a
    piece more: a neuron cuts every bundle it gets)."""
    out, at = [], 0
    for count in rows:
        out.append(block[at:at + count])
        at += count
    return out


def encode_forward(src: str, packets: list, ys: list[np.ndarray], learn: list, metas: list) -> bytes:
    return pack([FORWARD, src, packets, [y.shape[0] for y in ys], _join(ys), learn, metas])


def encode_gradient(src: str, packets: list, grads: list[np.ndarray]) -> bytes:
    return pack([GRADIENT, src, packets, [g.shape[0] for g in grads], _join(grads)])


def encode_output(src: str, packets: list, ys: list[np.ndarray], metas: list, losses: list) -> bytes:
    return pack([OUTPUT, src, packets, [y.shape[0] for y in ys], _join(ys), metas, losses])


def _join(arrays: list[np.ndarray]) -> bytes:
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0], dtype="<f4").tobytes()
    return np.concatenate(arrays).astype("<f4", copy=False).tobytes()


def array_to_wire(array: np.ndarray) -> dict:
    """An array as control requests and the neuron's DB carry it: ``{"shape": [...], "data": <float32 LE>}``."""
    return {"shape": list(array.shape), "data": np.ascontiguousarray(array, "<f4").tobytes()}


def array_from_wire(value: dict) -> np.ndarray:
    """The float32 array of an :func:`array_to_wire` map (a copy); KeyError, TypeError or ValueError
    when it is not one."""
    return np.frombuffer(value["data"], dtype="<f4").reshape(value["shape"]).astype(np.float32)
