"""The supervision tree with real processes: start order, shutdown, restarts, intensity, links, admin API."""
import os
import signal
import time

import psutil
import pytest
import zmq
from _opsutil import wait_until

from neurox.runtime import ControlClient, ControlError, pack, unpack_map
from neurox.supervisor_tree import SupervisorClient, Tree, TreeError, control_endpoint, root_args, supervisor_spec


def worker(child_id, restart="permanent", shutdown=2000, **args):
    return {"id": child_id, "start": ["workers:serve", args], "restart": restart, "shutdown": shutdown}


def alive_named(name: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name"]):
        try:
            if p.info["name"] == name and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def events(tree: Tree, prefix: str = "") -> list[dict]:
    client = ControlClient(zmq.Context.instance(), tree.events_control, 5.0)
    try:
        return client.call("recent_events", limit=2000, prefix=prefix)
    finally:
        client.close()


def pid_of(client: SupervisorClient, child_id: str):
    return next((c["pid"] for c in client.which_children() if c["id"] == child_id), "missing")


@pytest.mark.timeout(60)
def test_children_start_in_order_and_stop_in_reverse(no_stray_processes):
    with Tree(root_args([supervisor_spec("mid", [worker("a"), worker("b"), worker("c")])])) as tree:
        root = SupervisorClient(tree.control)
        started = [e["id"] for e in events(tree, "child_started") if e["source"] == "root/mid"]
        assert started == ["a", "b", "c"]
        root.terminate_child("mid")
        stopped = [e["id"] for e in events(tree, "child_terminated") if e["source"] == "root/mid"]
        assert stopped == ["c", "b", "a"]
        assert pid_of(root, "mid") == "undefined"
        root.close()


@pytest.mark.timeout(60)
def test_a_failed_start_rolls_back_and_leaves_no_orphan(no_stray_processes):
    tree = Tree(root_args([worker("first"), worker("broken", fail_start=True), worker("never")]))
    with pytest.raises(TreeError, match="root exited while starting"):
        tree.start()
    assert not alive_named("nx:first") and not alive_named("nx:never")


def exit_child(client: SupervisorClient, child_id: str, how: str) -> None:
    pid = pid_of(client, child_id)
    endpoint = next(c["control"] for c in client.which_children() if c["id"] == child_id)
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
        return
    code = {"normal": 0, "shutdown": 64, "crash": 3}[how]
    client = ControlClient(zmq.Context.instance(), endpoint, 5.0)
    client.call("exit", code=code)
    client.close()


MATRIX = [(restart, how) for restart in ("permanent", "transient", "temporary")
          for how in ("normal", "shutdown", "crash", "sigkill")]


@pytest.mark.timeout(90)
def test_the_restart_matrix(no_stray_processes):
    children = [worker(f"{restart}-{how}", restart) for restart, how in MATRIX]
    with Tree(root_args(children, intensity=100, period=5)) as tree:
        root = SupervisorClient(tree.control)
        before = {c["id"]: c["pid"] for c in root.which_children()}
        for restart, how in MATRIX:
            exit_child(root, f"{restart}-{how}", how)
        expected_restarts = {f"{r}-{h}" for r, h in MATRIX if r == "permanent" or (r == "transient" and h in ("crash", "sigkill"))}
        wait_until(lambda: len([e for e in events(tree, "child_exited")]) >= len(MATRIX))
        wait_until(lambda: {e["id"] for e in events(tree, "child_restarted")} >= expected_restarts)
        # every exit is handled (restarted or not) before the supervisor answers the next call
        after = {c["id"]: c["pid"] for c in root.which_children()}
        for restart, how in MATRIX:
            child = f"{restart}-{how}"
            if child in expected_restarts:
                assert isinstance(after[child], int) and after[child] != before[child], child
            elif restart == "temporary":
                assert child not in after, f"{child}: a temporary child is forgotten once it exits"
            else:
                assert after[child] == "undefined", f"{child}: kept, not running"
        reasons = {e["id"]: e["reason"]["kind"] for e in events(tree, "child_exited")}
        assert reasons["permanent-normal"] == "normal" and reasons["permanent-shutdown"] == "shutdown"
        assert reasons["permanent-crash"] == "crash" and reasons["permanent-sigkill"] == "crash"
        root.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy,restarted,removed", [
    ("one_for_all", {"a", "b", "d"}, {"c"}),
    ("rest_for_one", {"b", "d"}, {"c"}),
    ("one_for_one", {"b"}, set()),
])
def test_strategies_restart_exactly_the_right_set(strategy, restarted, removed, no_stray_processes):
    children = [worker("a"), worker("b"), worker("c", "temporary"), worker("d")]
    with Tree(root_args(children, strategy=strategy, intensity=10)) as tree:
        root = SupervisorClient(tree.control)
        before = {c["id"]: c["pid"] for c in root.which_children()}
        os.kill(before["b"], signal.SIGKILL)
        wait_until(lambda: isinstance(pid_of(root, "b"), int) and pid_of(root, "b") != before["b"])
        # the supervisor applies a strategy's whole plan before it answers the next call
        after = {c["id"]: c["pid"] for c in root.which_children()}
        assert {c for c in after if after[c] != before[c]} == restarted
        assert set(before) - set(after) == removed
        if strategy != "one_for_one":
            stopped = [e["id"] for e in events(tree, "child_terminated")]
            assert stopped == sorted(restarted - {"b"} | removed, key=lambda c: "dcba".index(c)), "reverse order"
        root.close()


@pytest.mark.timeout(60)
def test_intensity_tolerates_n_restarts_and_gives_up_at_n_plus_one(no_stray_processes):
    with Tree(root_args([worker("w")], intensity=3, period=10)) as tree:
        root = SupervisorClient(tree.control)
        for n in range(3):
            pid = pid_of(root, "w")
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: isinstance(pid_of(root, "w"), int) and pid_of(root, "w") != pid)
        assert tree.alive
        os.kill(pid_of(root, "w"), signal.SIGKILL)
        reason = tree.wait(10)
        assert reason is not None and reason.kind == "shutdown", "the supervisor gave up with reason shutdown"
        root.close()
    assert not alive_named("nx:w")


@pytest.mark.timeout(60)
def test_a_nested_tree_escalates_to_its_root_and_stops_cleanly(no_stray_processes):
    leaf = supervisor_spec("leaf", [worker("crasher", exit_after_s=0.05, exit_code=3)], intensity=2, period=10)
    middle = supervisor_spec("middle", [worker("bystander"), leaf], intensity=1, period=10)
    with Tree(root_args([middle, worker("other")], intensity=1, period=10)) as tree:
        reason = tree.wait(30)
        assert reason is not None and reason.kind == "shutdown"
        exceeded = {e["source"] for e in events(tree, "intensity_exceeded")}
        assert {"root/middle/leaf", "root/middle", "root"} <= exceeded
    for name in ("nx:crasher", "nx:bystander", "nx:other", "nx:leaf", "nx:middle"):
        assert not alive_named(name)


@pytest.mark.timeout(60)
def test_shutdown_kills_a_child_that_ignores_sigterm_after_its_timeout_and_brutal_kill_at_once(no_stray_processes):
    children = [worker("stubborn", shutdown=500, ignore_sigterm=True), worker("brute", shutdown="brutal_kill")]
    with Tree(root_args(children)) as tree:
        root = SupervisorClient(tree.control)
        started = time.monotonic()
        root.terminate_child("stubborn")
        took = time.monotonic() - started
        assert 0.45 <= took < 3.0, took
        assert any(e["id"] == "stubborn" for e in events(tree, "shutdown_timeout"))
        started = time.monotonic()
        root.terminate_child("brute")
        assert time.monotonic() - started < 0.5
        reasons = {e["id"]: e["reason"] for e in events(tree, "child_terminated")}
        assert reasons["stubborn"]["signal"] == signal.SIGKILL and reasons["brute"]["signal"] == signal.SIGKILL
        root.close()


@pytest.mark.timeout(60)
def test_the_admin_api_and_its_errors(tmp_path, no_stray_processes):
    marker = str(tmp_path / "started-once")
    children = [worker("w"), worker("flaky", fail_after_first_start=marker)]
    with Tree(root_args(children, intensity=10_000, period=1)) as tree:
        root = SupervisorClient(tree.control)
        assert root.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
        with pytest.raises(ControlError) as info:
            root.start_child(worker("w"))
        assert info.value.error == "already_started"
        with pytest.raises(ControlError) as info:
            root.restart_child("w")
        assert info.value.error == "running"
        with pytest.raises(ControlError) as info:
            root.delete_child("w")
        assert info.value.error == "running"
        for op in (root.terminate_child, root.restart_child, root.delete_child):
            with pytest.raises(ControlError) as info:
                op("nobody")
            assert info.value.error == "not_found"
        assert root.terminate_child("w") == "ok"
        with pytest.raises(ControlError) as info:
            root.start_child(worker("w"))
        assert info.value.error == "already_present"
        assert isinstance(root.restart_child("w")["pid"], int)
        root.terminate_child("w")
        assert root.delete_child("w") == "ok" and "w" not in [c["id"] for c in root.which_children()]
        assert isinstance(root.start_child(worker("fresh"))["pid"], int)
        # a restart loop: flaky's restarts keep failing; calls made meanwhile get their answers
        os.kill(pid_of(root, "flaky"), signal.SIGKILL)
        wait_until(lambda: pid_of(root, "flaky") == "restarting")
        for op in (root.restart_child, root.delete_child):
            with pytest.raises(ControlError) as info:
                op("flaky")
            assert info.value.error == "restarting"
        assert root.terminate_child("flaky") == "ok"  # stops the loop, keeps the spec
        assert pid_of(root, "flaky") == "undefined"
        root.close()


@pytest.mark.timeout(60)
def test_a_dynamic_supervisor(no_stray_processes):
    template = worker("job", restart="temporary")
    with Tree(root_args([], strategy="simple_one_for_one", template=template)) as tree:
        root = SupervisorClient(tree.control)
        started = [root.start_child(args={"n": i}) for i in range(3)]
        assert [s["id"] for s in started] == ["job-1", "job-2", "job-3"]
        with pytest.raises(ControlError) as info:
            root.restart_child("job-1")
        assert info.value.error == "simple_one_for_one"
        with pytest.raises(ControlError) as info:
            root.delete_child("job-1")
        assert info.value.error == "simple_one_for_one"
        assert root.terminate_child("job-2") == "ok"
        assert [c["id"] for c in root.which_children()] == ["job-1", "job-3"]
        root.close()
    assert not alive_named("nx:job-1")


@pytest.mark.timeout(60)
def test_sigkill_a_mid_level_supervisor_takes_its_subtree_and_its_parent_restarts_it(no_stray_processes):
    middle = supervisor_spec("middle", [worker("x"), supervisor_spec("deeper", [worker("y"), worker("z")])])
    with Tree(root_args([middle])) as tree:
        root = SupervisorClient(tree.control)
        old = {p.info["name"]: p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("nx:x", "nx:y", "nx:z", "nx:deeper")}
        assert len(old) == 4
        middle_pid = pid_of(root, "middle")
        os.kill(middle_pid, signal.SIGKILL)
        wait_until(lambda: isinstance(pid_of(root, "middle"), int) and pid_of(root, "middle") != middle_pid)
        for pid in old.values():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        new = SupervisorClient(control_endpoint(tree.run_dir, "root/middle"))
        assert [c["id"] for c in new.which_children()] == ["x", "deeper"]
        assert all(isinstance(c["pid"], int) and c["pid"] not in old.values() for c in new.which_children())
        new.close()
        root.close()


@pytest.mark.timeout(60)
def test_malformed_and_oversized_control_frames_get_error_replies(no_stray_processes):
    with Tree(root_args([worker("w")])) as tree:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(tree.control)
        cases = [(b"\xc1garbage", "malformed"), (pack([1, 2]), "wrong_type"), (pack({"op": 7}), "bad_request"),
                 (pack({"op": "reboot"}), "unknown_op"), (b"\x00" * (2 * 1024 * 1024), "oversized"),
                 (pack({"op": "terminate_child", "id": 5}), "bad_request"),
                 (pack({"op": "start_child", "spec": {"id": "x"}}), "bad_child_spec")]
        for frame, error in cases:
            sock.send_multipart([b"", frame])
            assert sock.poll(5000)
            reply = unpack_map(sock.recv_multipart()[-1])
            assert not reply["ok"] and reply["error"] == error, (error, reply)
        sock.close()
        root = SupervisorClient(tree.control)
        assert root.ping() == "pong" and root.status()["bad_frames"] >= 5
        root.close()
