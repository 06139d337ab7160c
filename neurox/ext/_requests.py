"""MessengerIn's request bodies read and checked (docs/protocol.md, "MessengerIn").

A request is one msgpack map. Nearly every one comes as a well-typed map, which :class:`RequestReader`
decodes in one C call into :class:`PlainAsk` (msgspec) and checks with a few C-level calls: MessengerIn
reads one per request on its hot path, and a dict decoded first, converted, then checked key by key
cost it several times as much. Anything that does not decode so -- oversized, not msgpack, not a map, a key
of the wrong type, an ``encoding`` not a string -- takes the general way (:meth:`RequestReader.read_map`),
which finds what is wrong and says it: the errors and what a request means are the same either way.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from ..runtime import FrameError, unpack_map
from ._samples import InputError, decode_body, encode_text
from ._text import TextEncoder

_F4 = np.dtype("<f4")


class AskRequest(msgspec.Struct):
    """A MessengerIn request body (docs/protocol.md, "MessengerIn"); keys it does not name are MessengerIn's
    own (``timeout_ms``) or ignored."""

    message_hash_id: str | int
    vector: list[float] | bytes | UnsetType = UNSET
    text: str | UnsetType = UNSET
    encoding: Any = None
    target: int | list[float] | None = None
    learn: bool | UnsetType = UNSET


F32_MAX = float(np.finfo(np.float32).max)
Float32 = Annotated[float, msgspec.Meta(ge=-F32_MAX, le=F32_MAX)]
"""A number that is a finite float32 (NaN fails both bounds)."""


class PlainAsk(msgspec.Struct):
    """A request as nearly all come: :class:`AskRequest`'s keys with only types that can pass its checks
    (``encoding`` a string, a vector's numbers finite float32), and ``timeout_ms`` a number (its range is
    MessengerIn's to check)."""

    message_hash_id: str | int
    vector: list[Float32] | bytes | UnsetType = UNSET
    text: str | UnsetType = UNSET
    encoding: str | None = None
    target: int | list[float] | None = None
    learn: bool | UnsetType = UNSET
    timeout_ms: int | float | UnsetType = UNSET


class Ask(NamedTuple):
    """A request read and checked."""

    message_id: str | int
    row: np.ndarray
    """1 x width float32, finite."""
    targets: list | None
    learn: bool
    timeout_ms: object
    """As the request gave it (UNSET if not): MessengerIn checks it after a repeat is answered."""


class RequestError(InputError):
    """A request refused; ``message_id``: its message_hash_id as far as it could be read (None if not)."""

    def __init__(self, error: str, detail: str, message_id=None):
        super().__init__(error, detail)
        self.message_id = message_id


class RequestReader:
    """Reads MessengerIn's request bodies for a network: ``width`` inputs, ``classes`` classes at the end
    (None: a regression of ``outputs`` values), ``text`` its text encoder; bodies over ``max_bytes``
    are refused (``oversized``)."""

    def __init__(self, width: int, classes: int | None, outputs: int, text: TextEncoder | None, max_bytes: int):
        self.width, self.classes, self.outputs, self.text, self.max_bytes = width, classes, outputs, text, max_bytes
        self.target_refusal = (f"'target' must be a class index 0..{classes - 1}" if classes is not None else
                               f"'target' must be a list of {outputs} numbers")
        self.refusals = {"message_hash_id": "a request needs a 'message_hash_id' (string or integer)",
                         "vector": "'vector' must be a list of numbers or float32 bytes", "text": "'text' must be a string",
                         "target": self.target_refusal, "learn": "'learn' must be true or false"}
        self._plain = msgspec.msgpack.Decoder(PlainAsk).decode

    def read(self, body: bytes) -> Ask:
        """The request in ``body``, or RequestError (``malformed``, ``oversized``, ``wrong_type``,
        ``bad_input``, ``non_finite``) saying what is wrong."""
        if len(body) <= self.max_bytes:
            try:
                ask = self._plain(body)
            except msgspec.DecodeError:  # a ValidationError too: the general way says what it is
                pass
            else:
                return self._checked(ask, ask.timeout_ms)
        return self.read_map(body)

    def read_map(self, body: bytes) -> Ask:
        """:meth:`read` the general way: the body decoded into a map, then into :class:`AskRequest` (so
        that the first key that is wrong is the one named), then checked."""
        try:
            request = unpack_map(body, self.max_bytes)
        except FrameError as exc:
            raise RequestError(exc.kind, exc.detail) from None  # malformed, oversized or wrong_type (not a map)
        try:
            ask = decode_body(AskRequest, request, self.refusals)
        except InputError as exc:
            raise RequestError(exc.error, exc.detail, request.get("message_hash_id")) from None
        with np.errstate(over="ignore"):  # a number too large for float32 becomes an infinity, refused as such
            return self._checked(ask, request.get("timeout_ms", UNSET))

    def _checked(self, ask: AskRequest | PlainAsk, timeout_ms) -> Ask:
        """The values of a request whose types are right: its row (``width`` finite values), target, learn."""
        message_id, vector = ask.message_hash_id, ask.vector
        if type(vector) is bytes:
            if len(vector) % 4:
                raise RequestError("bad_input", "a binary vector is float32 bytes (a multiple of 4)", message_id)
            row = np.frombuffer(vector, dtype=_F4)
        elif vector is not UNSET:
            row = np.array(vector, dtype=np.float32)
        elif ask.text is not UNSET:
            try:
                row = encode_text(ask.text, ask.encoding, self.width, self.text)
            except InputError as exc:
                raise RequestError(exc.error, exc.detail, message_id) from None
        else:
            raise RequestError("bad_input", "a request needs 'vector' or 'text'", message_id)
        if vector is not UNSET:
            if row.size != self.width:
                raise RequestError("bad_input", f"wrong vector length: expected {self.width} values, got {row.size}",
                                   message_id)
            if not np.isfinite(row).all():  # the ndarray method: np.all's Python wrapper costs more than the check
                raise RequestError("non_finite", "the vector holds NaN or infinity (or a number too large for float32)",
                                   message_id)
        target = ask.target
        if target is not None:
            if self.classes is not None:
                if type(target) is not int or not 0 <= target < self.classes:
                    raise RequestError("bad_input", self.target_refusal, message_id)
            elif type(target) is not list or len(target) != self.outputs:
                raise RequestError("bad_input", self.target_refusal, message_id)
            elif not all(map(math.isfinite, target)):
                raise RequestError("non_finite", "the target holds NaN or infinity", message_id)
        learn = target is not None if ask.learn is UNSET else ask.learn
        if learn and target is None:
            raise RequestError("bad_input", "'learn' needs a 'target'", message_id)
        return Ask(message_id, row.reshape(1, self.width), None if target is None else [target], learn, timeout_ms)

