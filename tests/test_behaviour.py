"""The process behaviour (neurox.runtime.Process), through a tiny kind of process run as a real process."""
import os

import pytest
import zmq
from behaviours import Echo

from neurox.runtime import ControlClient, ControlError, Process, Stop, call, pack
from neurox.supervisor_tree import SupervisorClient, Tree, control_endpoint, normalize_child_spec, root_args

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def echo(tmp_path, **args) -> dict:
    return Echo.child_spec("echo", {"inbox": f"ipc://{tmp_path}/echo.in", **args})


def test_child_spec_is_the_kinds_own():
    spec = normalize_child_spec(Echo.child_spec("e", {"inbox": "ipc:///x"}, restart="transient"))
    assert (spec.target, spec.args, spec.restart, spec.shutdown, spec.type) == \
        ("behaviours:run_echo", {"inbox": "ipc:///x"}, "transient", 1000, "worker")
    assert spec.modules == ("behaviours",)
    with pytest.raises(TypeError, match="overrides restart, shutdown, type or modules"):
        Echo.child_spec("e", {}, strategy="one_for_all")
    with pytest.raises(TypeError, match="no target"):
        Process.child_spec("p")
    with pytest.raises(ValueError, match="normal, shutdown or crash"):
        Stop("killed")


def test_calls_are_answered_and_bad_requests_counted(tmp_path):
    with Tree(root_args([echo(tmp_path)])) as tree:
        endpoint = control_endpoint(tree.run_dir, "root/echo")
        ctx = zmq.Context.instance()
        assert call(ctx, endpoint, "ping") == "pong"
        assert call(ctx, endpoint, "count") == 0
        with pytest.raises(ControlError) as refused:
            call(ctx, endpoint, "reject")
        assert (refused.value.error, refused.value.detail) == ("not_today", "refused on purpose")
        with pytest.raises(ControlError) as unknown:
            call(ctx, endpoint, "nope")
        assert unknown.value.error == "unknown_op" and "count" in unknown.value.detail
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send_multipart([b"", b"\xc1 not msgpack"])
        assert sock.poll(5000)
        assert b"malformed" in sock.recv_multipart()[-1]
        sock.close()
        assert call(ctx, endpoint, "ping") == "pong", "a bad request costs the process nothing"
        # every process answers metrics: a kind without counters of its own, with its bad frames
        assert call(ctx, endpoint, "metrics") == {"bad_frames": 2, "bad_frames_by_kind": {
            "control:unknown_op": 1, "control:malformed": 1}}


def test_frames_are_drained_by_count_in_order(tmp_path, watch):
    with Tree(root_args([echo(tmp_path, drain=4)])) as tree:
        events = watch(tree)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"ipc://{tmp_path}/echo.in")
        with ControlClient(zmq.Context.instance(), control_endpoint(tree.run_dir, "root/echo")) as client:
            client.call("ping")  # the process is in its loop: the frames below arrive while it polls
        for n in range(50):
            push.send(pack(n))
        batches = events.wait_for("batch", count=1)
        while batches[-1]["seen"] < 50:
            batches = events.wait_for("batch", count=len(batches) + 1)
        push.close()
    sizes = [b["size"] for b in batches]
    assert sum(sizes) == 50 and max(sizes) <= 4, sizes
    frames = [f for b in batches for f in b["frames"]]
    assert frames == [pack(n) for n in range(50)], "every frame, once, in order"


def test_the_timer_fires_at_its_deadlines(tmp_path, watch):
    with Tree(root_args([echo(tmp_path, tick_s=0.05)])) as tree:
        ticks = watch(tree).wait_for("tick", count=5, timeout=10)
    assert all(t["late_ms"] < 1000 for t in ticks)
    gaps = [b["t"] - a["t"] for a, b in zip(ticks, ticks[1:])]
    assert all(g >= 0.045 for g in gaps), gaps


def test_sigterm_is_a_polite_stop_with_reason_shutdown(tmp_path, watch):
    with Tree(root_args([echo(tmp_path)])) as tree:
        events = watch(tree)
        root = SupervisorClient(tree.control)
        root.terminate_child("echo")
        root.close()
        [terminated] = events.wait_for("terminated")
        [gone] = events.wait_for("child_terminated", id="echo")
    assert terminated["reason"] == {"kind": "shutdown", "code": 64, "signal": None}
    assert gone["reason"] == {"kind": "shutdown", "code": 64, "signal": None}


def test_an_exception_in_a_callback_is_a_crash_and_terminate_is_told(tmp_path, watch):
    with Tree(root_args([echo(tmp_path)])) as tree:
        events = watch(tree)
        with pytest.raises(ControlError, match="timeout"):
            call(zmq.Context.instance(), control_endpoint(tree.run_dir, "root/echo"), "fail", timeout=1.0)
        [terminated] = events.wait_for("terminated")
        [exited] = events.wait_for("child_exited", id="echo")
        events.wait_for("child_restarted", id="echo")
    assert terminated["reason"] == {"kind": "crash", "code": 1, "signal": None}
    assert exited["reason"] == {"kind": "crash", "code": 1, "signal": None}


@pytest.mark.parametrize("kind, code, restarted", [("normal", 0, False), ("shutdown", 64, False)])
def test_stop_ends_the_process_with_its_reason(tmp_path, watch, kind, code, restarted):
    with Tree(root_args([{**echo(tmp_path), "restart": "transient"}])) as tree:
        events = watch(tree)
        with pytest.raises(ControlError, match="timeout"):  # it stops instead of answering
            call(zmq.Context.instance(), control_endpoint(tree.run_dir, "root/echo"), "stop", timeout=1.0, kind=kind)
        [exited] = events.wait_for("child_exited", id="echo")
        [terminated] = events.named("terminated")
        root = SupervisorClient(tree.control)
        assert root.which_children()[0]["pid"] == "undefined", "transient: not restarted"
        root.close()
    assert exited["reason"] == {"kind": kind, "code": code, "signal": None}
    assert terminated["reason"]["kind"] == kind


@pytest.mark.parametrize("how, code", [("raise", 1), ("stop", 3)])
def test_a_failed_init_is_a_failed_start_without_terminate(tmp_path, watch, how, code):
    with Tree(root_args([])) as tree:
        events = watch(tree)
        root = SupervisorClient(tree.control)
        with pytest.raises(ControlError) as failed:
            root.start_child(echo(tmp_path, init=how))
        root.close()
        assert failed.value.error == "start_failed"
        assert f"exit code {code}" in failed.value.detail
        assert events.named("terminated") == []
        assert not os.path.exists(f"{tmp_path}/echo.in")
