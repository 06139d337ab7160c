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

from math import isfinite

import msgpack
import numpy as np

from ..runtime import MAX_FRAME_BYTES, FrameError, pack, vector_from

FORWARD, GRADIENT, OUTPUT = 0, 1, 2
_unpackb, _sum, _F4 = msgpack.unpackb, np.add.reduce, np.dtype("<f4")
_FIELDS = {FORWARD: (str, list, list, bytes, list, list), GRADIENT: (str, list, list, bytes),
           OUTPUT: (str, list, list, bytes, list, list)}


def decode(frame: bytes, kinds: tuple[int, ...] = (FORWARD, GRADIENT)) -> list:
    """A frame of one of ``kinds`` as a list, or FrameError saying what is wrong with it. (Every check is a
    C-level call: a neuron decodes every frame it gets, and a generator per check cost it microseconds.)"""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError("oversized", f"{len(frame)} bytes")
    try:
        message = _unpackb(frame, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise FrameError("malformed", type(exc).__name__) from None
    if type(message) is not list or not message or message[0] not in kinds:
        raise FrameError("wrong_type", f"expected [kind, ...] with kind in {kinds}")
    types = _FIELDS[message[0]]
    if len(message) != len(types) + 1 or not all(map(isinstance, message[1:], types)):
        raise FrameError("wrong_type", f"a kind-{message[0]} frame is {[t.__name__ for t in types]}")
    count = len(message[2])
    if len(message[3]) != count or (len(message) > 5 and (len(message[5]) != count or len(message[6]) != count)):
        raise FrameError("wrong_shape", "the per-packet lists differ in length")
    return message


def split_rows(data: bytes, rows: list, width: int) -> list[np.ndarray]:
    """The packets' row blocks (writable: the compiled kernels take writable arrays only)."""
    return slices(rows_block(data, rows, width), rows)


def rows_block(data: bytes, rows: list, width: int) -> np.ndarray:
    """All the packets' rows as one writable block, once ``rows`` is checked against it."""
    block = vector_from(data, width)
    _check_rows(block, rows, width)
    return block.copy()


def finite_rows_block(data: bytes, rows: list, width: int) -> tuple[np.ndarray, list[int]]:
    """:func:`rows_block`, and the indexes of the packets holding a value that is not finite (nan, inf):
    one check over the whole frame (its sum is finite only if every value is), per packet when it fails."""
    block = rows_block(data, rows, width)
    if isfinite(_sum(block, None)):
        return block, []
    return block, [i for i, part in enumerate(slices(block, rows)) if not np.isfinite(part).all()]


def _check_rows(block: np.ndarray, rows: list, width: int) -> None:
    one = len(rows) == 1  # a bundle of one (the usual case when idle): no set, no second pass over the list
    if not (type(rows[0]) is int and 0 < rows[0] == block.shape[0] if one else
            rows and set(map(type, rows)) == {int} and sum(rows) == block.shape[0] and min(rows) > 0):
        raise FrameError("wrong_shape", f"rows {rows[:8]} do not add up to {block.shape[0]} rows of {width}")


def slices(block: np.ndarray, rows: list[int]) -> list[np.ndarray]:
    """``block`` cut into consecutive views of ``rows`` rows each (``np.split`` costs a few microseconds a
    piece more: a neuron cuts every bundle it gets)."""
    out, at = [], 0
    for count in rows:
        out.append(block[at:at + count])
        at += count
    return out


def encode_forward(src: str, packets: list, ys: list[np.ndarray], learn: list, metas: list) -> bytes:
    return encode_forward_block(src, packets, [y.shape[0] for y in ys], ys[0] if len(ys) == 1 else np.concatenate(ys),
                                learn, metas)


def encode_forward_block(src: str, packets: list, rows: list, block: np.ndarray, learn: list, metas: list) -> bytes:
    """A forward frame of packets whose rows (``rows`` each) are stacked in ``block``."""
    return pack([FORWARD, src, packets, rows, _float32_bytes(block), learn, metas])


def encode_gradient(src: str, packets: list, rows: list, block: np.ndarray) -> bytes:
    """A gradient frame of packets whose rows (``rows`` each) are stacked in ``block``."""
    return pack([GRADIENT, src, packets, rows, _float32_bytes(block)])


def encode_output(src: str, packets: list, rows: list, block: np.ndarray, metas: list, losses: list) -> bytes:
    """An output frame (to MessengerOut) of packets whose rows (``rows`` each) are stacked in ``block``."""
    return pack([OUTPUT, src, packets, rows, _float32_bytes(block), metas, losses])


def _float32_bytes(array: np.ndarray) -> bytes:
    """``tobytes`` copies in C order whatever the layout (a column slice too): only the type may need a cast."""
    return array.tobytes() if array.dtype is _F4 else array.astype(_F4).tobytes()


def array_to_wire(array: np.ndarray) -> dict:
    """An array as control requests and the neuron's DB carry it: ``{"shape": [...], "data": <float32 LE>}``."""
    return {"shape": list(array.shape), "data": np.ascontiguousarray(array, "<f4").tobytes()}


def array_from_wire(value: dict) -> np.ndarray:
    """The float32 array of an :func:`array_to_wire` map (a copy); KeyError, TypeError or ValueError
    when it is not one."""
    return np.frombuffer(value["data"], dtype="<f4").reshape(value["shape"]).astype(np.float32)
