"""The msgpack wire codec and the control envelope, on their own (no processes)."""
import threading

import msgpack
import numpy as np
import pytest

from neurox.runtime import CONTROL_MAX_BYTES, FrameError, Reply, answer, pack, unpack, unpack_map, vector_bytes, vector_from
from neurox.runtime._control import handle_request

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("value", [
    {"op": "ping", "rid": 7}, [1, -2, 3.5, None, True, False], "text ✓", b"\x00\xff raw", 2 ** 63 - 1,
    {"nested": {"list": [{"a": b"x"}], "empty": {}}, 3: "int keys are allowed"},
])
def test_values_round_trip(value):
    assert unpack(pack(value)) == value


def test_bin_and_str_stay_distinct():
    assert unpack(pack({"s": "abc", "b": b"abc"})) == {"s": "abc", "b": b"abc"}


def test_objects_are_refused_never_pickled():
    with pytest.raises(TypeError):
        pack({"op": object()})


def test_an_oversized_frame_is_refused_before_it_is_parsed():
    with pytest.raises(FrameError) as info:
        unpack(b"\xc1" * 101, max_bytes=100)  # garbage, but the size is what is checked first
    assert info.value.kind == "oversized" and "101" in info.value.detail


@pytest.mark.parametrize("frame,what", [
    (b"\xc1", "a reserved byte"),
    (pack({"op": "ping"})[:-1], "truncated"),
    (pack({"op": "ping"}) + b"\x00", "trailing bytes"),
    (b"\x91" * 5000 + b"\xc0", "nested too deep"),
    (b"\xc6\xff\xff\xff\xff" + b"x" * 10, "a bin longer than the frame"),
    (b"\xdd\xff\xff\xff\xff", "an array longer than the frame"),
    (b"", "empty"),
])
def test_malformed_frames_are_refused(frame, what):
    with pytest.raises(FrameError) as info:
        unpack(frame)
    assert info.value.kind == "malformed", what


@pytest.mark.parametrize("value", [[1, 2], "op", 5, None])
def test_a_map_is_required_where_a_map_is_expected(value):
    with pytest.raises(FrameError) as info:
        unpack_map(pack(value))
    assert info.value.kind == "wrong_type"


def test_frame_errors_are_value_errors_with_a_kind_and_detail():
    error = FrameError("malformed", "why")
    assert isinstance(error, ValueError) and (error.kind, error.detail) == ("malformed", "why")
    assert str(error) == "malformed: why"


def test_each_thread_packs_with_its_own_packer():
    results = {}

    def work(n: int) -> None:
        results[n] = all(unpack(pack({"n": n, "i": i})) == {"n": n, "i": i} for i in range(2000))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: True for n in range(4)}


def test_pack_is_plain_msgpack():
    assert msgpack.unpackb(pack({"a": [1, b"b"]}), raw=False) == {"a": [1, b"b"]}


def test_vectors_travel_as_little_endian_float32_rows():
    rows = np.arange(6, dtype=np.float64).reshape(2, 3)
    data = vector_bytes(rows)
    assert data == np.arange(6, dtype="<f4").tobytes()
    assert np.array_equal(vector_from(data, 3), rows.astype(np.float32))
    assert vector_from(data, 2).shape == (3, 2)


@pytest.mark.parametrize("data,width,kind", [
    (b"\x00" * 10, 3, "wrong_shape"), (b"", 3, "wrong_shape"), (b"\x00" * 12, 0, "wrong_shape"),
    ([0.0, 1.0], 2, "wrong_type"), ("abcd", 1, "wrong_type"),
])
def test_vectors_of_the_wrong_size_or_type_are_refused(data, width, kind):
    with pytest.raises(FrameError) as info:
        vector_from(data, width)
    assert info.value.kind == kind


# -- the control envelope -------------------------------------------------------------------------
def handlers():
    def needs_id(request):
        if not isinstance(request.get("id"), str):
            raise Reply("bad_request", "'id' must be a string")
        if request["id"] != "w":
            raise Reply("not_found", f"no child {request['id']!r}")
        return "ok"

    return {"ping": lambda r: "pong", "terminate_child": needs_id, "lookup": lambda r: {"a": 1}[r["key"]]}


def test_a_reply_carries_the_result_and_echoes_the_request_id():
    assert answer(pack({"op": "ping", "rid": 9}), handlers()) == {"ok": True, "result": "pong", "rid": 9}
    assert answer(pack({"op": "ping"}), handlers()) == {"ok": True, "result": "pong"}


@pytest.mark.parametrize("body,error", [
    (b"\xc1garbage", "malformed"), (pack({"op": "ping"}) + b"x", "malformed"),
    (pack(["op", "ping"]), "wrong_type"), (pack({"rid": 1}), "bad_request"), (pack({"op": 5}), "bad_request"),
    (pack({"op": "reboot"}), "unknown_op"), (b"\x00" * (CONTROL_MAX_BYTES + 1), "oversized"),
    (pack({"op": "terminate_child", "id": 5}), "bad_request"), (pack({"op": "terminate_child", "id": "x"}), "not_found"),
    (pack({"op": "lookup", "key": "missing"}), "bad_request"),
])
def test_every_bad_request_gets_an_error_reply(body, error):
    reply = answer(body, handlers())
    assert reply["ok"] is False and reply["error"] == error and isinstance(reply["detail"], str)


def test_unknown_op_lists_the_known_ones():
    assert answer(pack({"op": "x"}), handlers())["detail"].endswith("known: lookup, ping, terminate_child")


def test_router_envelopes_are_kept_and_bare_messages_ignored():
    reply = handle_request([b"identity", b"", pack({"op": "ping", "rid": 1})], handlers())
    assert reply[:2] == [b"identity", b""] and unpack(reply[2])["result"] == "pong"
    assert handle_request([pack({"op": "ping"})], handlers()) == []
