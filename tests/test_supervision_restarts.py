"""Restarts with real processes: the restart matrix, the strategies, intensity and escalation."""
import os
import signal

import pytest
import zmq
from _opsutil import wait_until
from conftest import leaves_no_process
from workers import spec

from neurox.runtime import ControlClient
from neurox.supervisor_tree import SupervisorClient, Tree, root_args, supervisor_spec

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def pids(client: SupervisorClient) -> dict:
    return {row["id"]: row["pid"] for row in client.which_children()}


def end(client: SupervisorClient, child_id: str, how: str) -> None:
    """End a running child: it exits with code 0, 64 or 3, or it is SIGKILLed."""
    row = next(r for r in client.which_children() if r["id"] == child_id)
    if how == "sigkill":
        os.kill(row["pid"], signal.SIGKILL)
        return
    worker = ControlClient(zmq.Context.instance(), row["control"], 5.0)
    worker.call("exit", code={"normal": 0, "shutdown": 64, "crash": 3}[how])
    worker.close()


@pytest.fixture(scope="module")
def matrix_tree():
    """One tree for the whole matrix: each case adds its own child (the tree's processes are checked
    for leftovers when the module is done, each case's child when the case is)."""
    with leaves_no_process(), Tree(root_args([], intensity=1000, period=1)) as tree:
        yield tree


EXPECTED = {  # (restart, how the child ended) -> restarted?
    ("permanent", "normal"): True, ("permanent", "shutdown"): True, ("permanent", "crash"): True,
    ("permanent", "sigkill"): True,
    ("transient", "normal"): False, ("transient", "shutdown"): False, ("transient", "crash"): True,
    ("transient", "sigkill"): True,
    ("temporary", "normal"): False, ("temporary", "shutdown"): False, ("temporary", "crash"): False,
    ("temporary", "sigkill"): False,
}


@pytest.mark.parametrize("restart,how", list(EXPECTED))
def test_the_restart_matrix(matrix_tree, watch, restart, how):
    child_id = f"{restart}-{how}"
    root = SupervisorClient(matrix_tree.control)
    events = watch(matrix_tree)
    old_pid = root.start_child(spec(child_id, restart))["pid"]
    end(root, child_id, how)
    exited = events.wait_for("child_exited", id=child_id)[0]
    assert exited["reason"]["kind"] == {"normal": "normal", "shutdown": "shutdown"}.get(how, "crash")
    if how == "sigkill":
        assert exited["reason"]["signal"] == signal.SIGKILL
    now = pids(root)  # the supervisor handled the exit before it reads this request
    if EXPECTED[restart, how]:
        assert isinstance(now[child_id], int) and now[child_id] != old_pid
        assert events.wait_for("child_restarted", id=child_id)[0]["pid"] == now[child_id]
        root.terminate_child(child_id)
    elif restart == "temporary":
        assert child_id not in now, "a temporary child is forgotten once it exits"
    else:
        assert now[child_id] == "undefined", "kept, not running"
        assert not events.named("child_restarted", id=child_id)
    if child_id in now:
        root.delete_child(child_id)
    root.close()


@pytest.mark.parametrize("strategy,restarted,removed,stopped", [
    ("one_for_one", {"b"}, set(), []),
    ("one_for_all", {"a", "b", "d"}, {"c"}, ["d", "c", "a"]),
    ("rest_for_one", {"b", "d"}, {"c"}, ["d", "c"]),
])
def test_strategies_restart_exactly_the_right_set(watch, strategy, restarted, removed, stopped):
    children = [spec("a"), spec("b"), spec("c", "temporary"), spec("d")]
    with Tree(root_args(children, strategy=strategy, intensity=10)) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        before = pids(root)
        os.kill(before["b"], signal.SIGKILL)
        for child_id in sorted(restarted):
            events.wait_for("child_restarted", id=child_id)
        after = pids(root)
        assert {c for c in after if after[c] != before[c]} == restarted
        assert set(before) - set(after) == removed, "a temporary bystander is removed, not restarted"
        assert [e["id"] for e in events.named("child_terminated")] == stopped, "reverse start order"
        assert [e["id"] for e in events.named("child_restarted")] == [c for c in "abcd" if c in restarted]
        assert {e["id"]: e["info"]["after"] for e in events.named("child_restarted")} == {
            c: "crash" if c == "b" else None for c in restarted}, "only the crashed one is told it replaces a crash"
        root.close()


def test_one_for_all_starts_again_a_kept_child_that_was_not_running(watch):
    """As OTP does: every kept child is started again, also a transient one that had ended normally."""
    with Tree(root_args([spec("a"), spec("quiet", "transient"), spec("b")], strategy="one_for_all")) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        end(root, "quiet", "normal")
        events.wait_for("child_exited", id="quiet")
        assert pids(root)["quiet"] == "undefined"
        os.kill(pids(root)["b"], signal.SIGKILL)
        events.wait_for("child_restarted", id="b")
        assert all(isinstance(pid, int) for pid in pids(root).values())
        root.close()


def test_intensity_tolerates_n_restarts_and_gives_up_at_n_plus_one(watch):
    with Tree(root_args([spec("w"), spec("bystander")], intensity=2, period=30)) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        for n in range(1, 3):
            os.kill(pids(root)["w"], signal.SIGKILL)
            events.wait_for("child_restarted", count=n, id="w")
        assert tree.alive and not events.named("intensity_exceeded")
        os.kill(pids(root)["w"], signal.SIGKILL)
        reason = tree.wait(10)
        assert reason is not None and reason.kind == "shutdown", "it gave up with reason shutdown"
        assert events.wait_for("intensity_exceeded")[0]["restarts"] == 3
        assert events.wait_for("supervisor_shutdown", source="root")[0]["reason"] == "reached_max_restart_intensity"
        assert [e["id"] for e in events.named("child_terminated", source="root")] == ["bystander"]
        root.close()


def test_restarts_older_than_the_period_no_longer_count(watch):
    with Tree(root_args([spec("w")], intensity=1, period=0.4)) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        for n in range(1, 4):
            os.kill(pids(root)["w"], signal.SIGKILL)
            events.wait_for("child_restarted", count=n, id="w")
            wait_until(lambda: root.status()["restarts_in_period"] == 0, 5, "the restart to leave the period")
        assert tree.alive
        root.close()


def test_a_nested_tree_escalates_to_its_root_and_stops_cleanly(watch):
    leaf = supervisor_spec("leaf", [spec("crasher", exit_after_s=0.05, exit_code=3)], intensity=1, period=30)
    middle = supervisor_spec("middle", [spec("bystander"), leaf], intensity=1, period=30)
    with Tree(root_args([middle, spec("other")], intensity=1, period=30)) as tree:
        events = watch(tree)
        reason = tree.wait(20)
        assert reason is not None and reason.kind == "shutdown"
        events.wait_for("supervisor_shutdown", source="root")
        exceeded = [e["source"] for e in events.named("intensity_exceeded")]
        assert set(exceeded) == {"root/middle/leaf", "root/middle", "root"} and exceeded[-1] == "root"
        assert events.named("child_exited", source="root", id="middle")[0]["reason"]["kind"] == "shutdown"


def test_a_failing_restart_loop_counts_against_the_intensity(tmp_path, watch):
    flaky = spec("flaky", fail_after_first_start=str(tmp_path / "started-once"))
    with Tree(root_args([flaky], intensity=5, period=30)) as tree:
        events = watch(tree)
        root = SupervisorClient(tree.control)
        os.kill(pids(root)["flaky"], signal.SIGKILL)
        root.close()
        reason = tree.wait(20)
        assert reason is not None and reason.kind == "shutdown"
        assert len(events.wait_for("start_failed", id="flaky", count=5)) == 5


def test_a_transient_supervisor_that_gives_up_is_not_restarted(watch):
    fragile = supervisor_spec("fragile", [spec("w")], intensity=0, restart="transient")
    with Tree(root_args([fragile, spec("other")])) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        inner = SupervisorClient(next(r["control"] for r in root.which_children() if r["id"] == "fragile"))
        os.kill(pids(inner)["w"], signal.SIGKILL)
        assert events.wait_for("child_exited", id="fragile")[0]["reason"]["kind"] == "shutdown"
        assert pids(root)["fragile"] == "undefined" and isinstance(pids(root)["other"], int)
        inner.close()
        root.close()
