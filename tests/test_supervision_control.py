"""Bad frames on the control and event sockets: each gets its error reply or is counted, nothing crashes."""
import pytest
import zmq
from workers import spec

from neurox.runtime import CONTROL_MAX_BYTES, ControlClient, ControlError, pack, unpack_map
from neurox.runtime._sockets import MAX_MESSAGE_BYTES
from neurox.supervisor_tree import SupervisorClient, Tree, root_args

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]

BAD_REQUESTS = [
    (b"\xc1garbage", "malformed"),
    (pack({"op": "ping"}) + b"trailing", "malformed"),
    (b"\x91" * 5000 + b"\xc0", "malformed"),
    (pack([1, 2]), "wrong_type"),
    (pack({"rid": 1}), "bad_request"),
    (pack({"op": 7}), "bad_request"),
    (pack({"op": "reboot"}), "unknown_op"),
    (b"\x00" * (CONTROL_MAX_BYTES + 1), "oversized"),
    (pack({"op": "terminate_child"}), "bad_request"),
    (pack({"op": "terminate_child", "id": 5}), "bad_request"),
    (pack({"op": "restart_child", "id": ["w"]}), "bad_request"),
    (pack({"op": "start_child", "spec": {"id": "x"}}), "bad_child_spec"),
    (pack({"op": "start_child", "spec": "x"}), "bad_child_spec"),
    (pack({"op": "start_child"}), "bad_child_spec"),
]


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def ask(sock: zmq.Socket, body: bytes) -> dict:
    sock.send_multipart([b"", body])
    assert sock.poll(5000), "no reply"
    return unpack_map(sock.recv_multipart()[-1])


def test_every_bad_control_request_gets_an_error_reply_and_the_supervisor_carries_on():
    with Tree(root_args([spec("w")])) as tree:
        root = SupervisorClient(tree.control)
        pid = root.status()["pid"]
        sock = dealer(tree.control)
        for body, error in BAD_REQUESTS:
            reply = ask(sock, body)
            assert (reply["ok"], reply["error"]) == (False, error), (body[:40], reply)
        assert ask(sock, pack({"op": "ping", "rid": "r-1"})) == {"ok": True, "result": "pong", "rid": "r-1"}
        sock.close()
        status = root.status()
        assert status["pid"] == pid and tree.alive, "the same supervisor process answers"
        assert status["bad_frames"] == 11  # all but the three refused by the admin API itself
        assert set(status["bad_frames_by_kind"]) == {"control:malformed", "control:wrong_type", "control:bad_request",
                                                     "control:unknown_op", "control:oversized"}
        assert [r["id"] for r in root.which_children()] == ["w"], "no bad request changed anything"
        root.close()


def test_a_message_beyond_the_transport_cap_is_dropped_with_its_connection():
    with Tree(root_args([spec("w")])) as tree:
        sock = dealer(tree.control)
        sock.send_multipart([b"", b"\x00" * (MAX_MESSAGE_BYTES + 1)])
        assert not sock.poll(300), "no reply: ZeroMQ disconnected the sender before buffering it"
        sock.close()
        root = SupervisorClient(tree.control)
        assert root.ping() == "pong"
        root.close()


def test_a_req_client_works_too():
    with Tree(root_args([spec("w")])) as tree:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(tree.control)
        sock.send(pack({"op": "count_children"}))
        assert sock.poll(5000)
        assert unpack_map(sock.recv())["result"]["specs"] == 1
        sock.close()


def test_the_event_bus_counts_bad_events_and_answers_bad_queries(watch):
    with Tree(root_args([spec("w")])) as tree:
        events = watch(tree)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(tree.events_sink)
        for frame in (b"\xc1", pack([1]), pack({"no": "name"}), b"\x00" * (300 * 1024)):
            push.send(frame)
        push.send(pack({"event": "after_the_garbage", "t": 0.0, "source": "tests"}))
        events.wait_for("after_the_garbage")
        push.close()
        bus = ControlClient(zmq.Context.instance(), tree.events_control, 5.0)
        status = bus.call("status")
        assert status["bad_frames"] == 4
        assert set(status["bad_frames_by_kind"]) == {"malformed", "wrong_type", "oversized"}
        for bad in ({"limit": -1}, {"limit": "all"}, {"prefix": 5}):
            with pytest.raises(ControlError) as info:
                bus.call("recent_events", **bad)
            assert info.value.error == "bad_request"
        assert [e["event"] for e in bus.call("recent_events", prefix="after_")] == ["after_the_garbage"]
        assert bus.call("recent_events", limit=0) == []
        bus.close()
