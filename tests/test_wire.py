"""The msgpack wire codec and the control envelope, on their own (no processes)."""
import threading

import msgpack
import numpy as np
import pytest

import zmq

from neurox.runtime import (CONTROL_MAX_BYTES, ControlClient, ControlError, FrameError, Reply, answer, handle_request,
                            pack, unpack, unpack_map, vector_bytes, vector_from)

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
    (pack({"op": "ping", 3: 1}), "bad_request"),
    (pack({"op": "terminate_child", "id": 5}), "bad_request"), (pack({"op": "terminate_child", "id": "x"}), "not_found"),
    (pack({"op": "lookup", "key": "missing"}), "bad_request"),
])
def test_every_bad_request_gets_an_error_reply(body, error):
    reply = answer(body, handlers())
    assert reply["ok"] is False and reply["error"] == error and isinstance(reply["detail"], str)


def test_a_refused_request_still_echoes_its_id():
    assert answer(pack({"rid": 4}), handlers()) == {"ok": False, "error": "bad_request",
                                                    "detail": "a request needs a string 'op'", "rid": 4}
    assert answer(pack({"op": "terminate_child", "id": 5, "rid": [1, "x"]}), handlers())["rid"] == [1, "x"]


def answering(endpoint: str, replies: list[list[dict]]) -> threading.Thread:
    """A ROUTER at ``endpoint`` that answers each request with the next of ``replies``: one or more
    maps, each sent with the request's rid unless it has its own."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.bind(endpoint)

    def serve():
        try:
            for reply in replies:
                assert sock.poll(5000)
                frames = sock.recv_multipart()
                for one in reply:
                    sock.send_multipart([*frames[:-1], pack({"rid": unpack(frames[-1])["rid"], **one})])
        finally:
            sock.close()
    thread = threading.Thread(target=serve)
    thread.start()
    return thread


def test_the_client_takes_a_reply_by_its_fields_and_refuses_a_map_that_is_not_one(tmp_path):
    endpoint = f"ipc://{tmp_path}/ctl"
    server = answering(endpoint, [[{"ok": True, "result": {"a": [1, b"x"]}}], [{"ok": False, "error": "not_found"}],
                                  [{"ok": "yes", "result": 1}], [{"ok": False, "error": 7, "detail": "d"}],
                                  [{"ok": True, "result": "late one", "rid": -1}, {"ok": True}]])
    with ControlClient(zmq.Context.instance(), endpoint, 5.0) as client:
        assert client.call("x") == {"a": [1, b"x"]}
        with pytest.raises(ControlError) as info:
            client.call("x")
        assert (info.value.error, info.value.detail) == ("not_found", "")
        for key in ("ok", "error"):
            with pytest.raises(FrameError) as refused:
                client.call("x")
            assert refused.value.kind == "wrong_type" and key in refused.value.detail, refused.value.detail
        assert client.call("x", timeout=1.0) is None, "the answer to another request is skipped, not taken"
    server.join(5)
    assert not server.is_alive()


def test_unknown_op_lists_the_known_ones():
    assert answer(pack({"op": "x"}), handlers())["detail"].endswith("known: lookup, ping, terminate_child")


def test_router_envelopes_are_kept_and_bare_messages_ignored():
    reply = handle_request([b"identity", b"", pack({"op": "ping", "rid": 1})], handlers())
    assert reply[:2] == [b"identity", b""] and unpack(reply[2])["result"] == "pong"
    assert handle_request([pack({"op": "ping"})], handlers()) == []
