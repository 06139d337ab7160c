"""MessengerIn's request reader: the one-call way for plain requests means what the general way means."""
import math

import msgpack
import numpy as np
import pytest

from neurox.ext._requests import RequestError, RequestReader
from neurox.ext._text import TextEncoder

WIDTH = 4
VEC = [0.5, -1, 2.25, 3]


def _body(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _outcome(read, body: bytes):
    """What a read gives, comparable: the request's values, or the error with its message id."""
    try:
        ask = read(body)
    except RequestError as exc:
        return ("refused", exc.error, exc.detail, repr(exc.message_id))
    return ("ok", repr(ask.message_id), ask.row.dtype.str, ask.row.shape, ask.row.tobytes(), ask.targets, ask.learn,
            repr(ask.timeout_ms))


class CountingReader(RequestReader):
    """A reader that counts the requests it read the general way."""

    general = 0

    def read_map(self, body):
        self.general += 1
        return super().read_map(body)


PLAIN = [
    {"message_hash_id": 1, "vector": VEC},
    {"message_hash_id": "a", "vector": VEC, "target": 2},
    {"message_hash_id": 3, "vector": VEC, "target": 1, "learn": False},
    {"message_hash_id": 4, "vector": VEC, "timeout_ms": 250},
    {"message_hash_id": 5, "vector": VEC, "timeout_ms": 0.5, "other": {"ignored": [1, 2]}},
    {"message_hash_id": 6, "vector": np.asarray(VEC, "<f4").tobytes()},
    {"message_hash_id": 7, "text": "hello world"},
    {"message_hash_id": 8, "text": "hello", "encoding": "hashing"},
    {"message_hash_id": 12, "vector": [3e38, 3e38, 3e38, 3e38]},  # finite, though their float32 sum is not
    {"message_hash_id": 13, "vector": [1, 2]},
    {"message_hash_id": 14, "vector": b"\x00" * 6},
    {"message_hash_id": 15, "vector": b"\x00" * 8},
    {"message_hash_id": 16, "vector": VEC, "target": 3},
    {"message_hash_id": 17, "vector": VEC, "learn": True},
    {"message_hash_id": 18, "vector": VEC, "timeout_ms": -5},
    {"message_hash_id": 19},
    {"message_hash_id": 20, "text": "hi", "encoding": "ebcdic"},
    {"message_hash_id": 2**64 - 1, "vector": VEC},
    {"message_hash_id": 21, "vector": VEC, "x": msgpack.ExtType(3, b"ab")},  # an ignored key may hold anything
]
GENERAL = [
    {"message_hash_id": 9, "vector": [1e39, 0, 0, 0]},  # too large for float32: non_finite
    {"message_hash_id": 10, "vector": [float("nan"), 0, 0, 0]},
    {"message_hash_id": 11, "vector": [float("inf"), float("-inf"), 0, 0]},
    {"vector": VEC},
    {"message_hash_id": None, "vector": VEC},
    {"message_hash_id": True, "vector": VEC},
    {"message_hash_id": [1], "vector": VEC},
    {"message_hash_id": 1.5, "vector": VEC},
    {"message_hash_id": 100, "vector": ["x", 1, 2, 3]},
    {"message_hash_id": 101, "vector": [True, 1, 2, 3]},
    {"message_hash_id": 102, "vector": "AAAAAAAAAAAAAAAAAAAAAA=="},
    {"message_hash_id": 103, "vector": VEC, "target": 1.0},
    {"message_hash_id": 104, "vector": VEC, "target": True},
    {"message_hash_id": 105, "vector": VEC, "target": "2"},
    {"message_hash_id": 106, "vector": VEC, "learn": 1},
    {"message_hash_id": 107, "vector": VEC, "timeout_ms": "soon"},
    {"message_hash_id": 108, "vector": VEC, "timeout_ms": True},
    {"message_hash_id": 109, "vector": VEC, "timeout_ms": None},
    {"message_hash_id": 110, "text": 5},
    {"message_hash_id": 111, "text": "hi", "encoding": 7},
    {"message_hash_id": 112, "vector": VEC, 5: "not a str key"},
]


def _bodies(requests):
    return [_body(r) for r in requests]


RAW = [b"\xc1\xff not msgpack", _body(["not", "a", "map"]), _body({"message_hash_id": 1, "vector": VEC}) + b"\x00",
       _body({"message_hash_id": 1, "vector": [0.0] * 3000}), b"",
       b"\x82" + _body("message_hash_id") + _body(1) + _body("message_hash_id") + _body(2)]  # the last of a key


@pytest.mark.timeout(10)
@pytest.mark.parametrize("classes", [3, None])
def test_the_one_call_way_and_the_general_way_read_every_request_alike(classes):
    reader = CountingReader(WIDTH, classes, 3, TextEncoder(), max_bytes=4096)
    extra = [{"message_hash_id": 30, "vector": VEC, "target": [1, 2, 3]},
             {"message_hash_id": 31, "vector": VEC, "target": [1, float("nan"), 3]},
             {"message_hash_id": 32, "vector": VEC, "target": [1, 2]}]
    bodies = _bodies(PLAIN + GENERAL + extra) + RAW
    outcomes = []
    for body in bodies:
        one, general = _outcome(reader.read, body), _outcome(reader.read_map, body)
        assert one == general, (msgpack.unpackb(body, strict_map_key=False) if len(body) < 200 else body[:20])
        outcomes.append(one)
    reader.general = 0
    for body in _bodies(PLAIN + extra):
        _outcome(reader.read, body)
    assert reader.general == 0, "a plain request goes the one-call way"
    for body in _bodies(GENERAL) + RAW[:-1]:
        _outcome(reader.read, body)
    assert reader.general == len(GENERAL) + len(RAW) - 1, "anything else the general way"
    by_id = {o[1]: o for o in outcomes if o[0] == "ok"}
    assert by_id["1"][4] == np.asarray(VEC, "<f4").tobytes() and by_id["1"][5:] == (None, False, "UNSET")
    refused = [o for o in outcomes if o[0] == "refused"]
    assert ("refused", "non_finite") in {o[:2] for o in refused}
    assert {o[1] for o in refused} <= {"bad_input", "non_finite", "malformed", "oversized", "wrong_type"}
    assert by_id["12"][0] == "ok", "large finite values are not refused"
    if classes is not None:
        assert by_id["'a'"][5:7] == ([2], True)
        assert _outcome(reader.read, _body(PLAIN[12]))[1:3] == ("bad_input", "'target' must be a class index 0..2")
    else:
        assert by_id["30"][5:7] == ([[1.0, 2.0, 3.0]], True)


@pytest.mark.timeout(10)
def test_an_error_names_the_request_when_it_could_be_read():
    reader = RequestReader(WIDTH, 3, 3, TextEncoder(), max_bytes=4096)
    for request, error, message_id in [({"message_hash_id": "q", "vector": [1, 2]}, "bad_input", "q"),
                                       ({"message_hash_id": [1], "vector": VEC}, "bad_input", [1]),
                                       ({"message_hash_id": 5, "vector": [math.nan] * 4}, "non_finite", 5)]:
        with pytest.raises(RequestError) as caught:
            reader.read(_body(request))
        assert (caught.value.error, caught.value.message_id) == (error, message_id)
    with pytest.raises(RequestError) as caught:
        reader.read(b"\xc1")
    assert (caught.value.error, caught.value.message_id) == ("malformed", None)
