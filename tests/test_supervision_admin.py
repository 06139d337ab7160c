"""The administration API with every error atom, during a restart loop too, and the dynamic supervisor."""
import os
import signal
import time

import pytest
from workers import spec

from neurox.runtime import ControlError
from neurox.supervisor_tree import SupervisorClient, Tree, root_args, supervisor_spec

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def pids(client: SupervisorClient) -> dict:
    return {row["id"]: row["pid"] for row in client.which_children()}


def refused(call, *args, **kwargs) -> str:
    """The error atom ``call`` is refused with."""
    with pytest.raises(ControlError) as info:
        call(*args, **kwargs)
    return info.value.error


@pytest.fixture
def tree():
    with Tree(root_args([spec("w"), supervisor_spec("sup", [spec("inner")])], intensity=10_000, period=1)) as tree:
        yield tree


@pytest.fixture
def root(tree):
    client = SupervisorClient(tree.control)
    yield client
    client.close()


def test_which_children_and_count_children(root):
    rows = root.which_children()
    assert [(r["id"], r["type"], r["modules"], r["restart"]) for r in rows] == [
        ("w", "worker", ["workers"], "permanent"),
        ("sup", "supervisor", ["neurox.supervisor_tree._supervisor"], "permanent")]
    assert all(isinstance(r["pid"], int) and r["control"].startswith("ipc://") for r in rows)
    assert root.count_children() == {"specs": 2, "active": 2, "supervisors": 1, "workers": 1}
    root.terminate_child("w")
    assert pids(root)["w"] == "undefined"
    assert root.count_children() == {"specs": 2, "active": 1, "supervisors": 1, "workers": 1}


def test_start_child(root, tmp_path):
    assert refused(root.start_child, spec("w")) == "already_started"
    root.terminate_child("w")
    assert refused(root.start_child, spec("w")) == "already_present"
    started = root.start_child(spec("fresh", "temporary"))
    assert started["id"] == "fresh" and pids(root)["fresh"] == started["pid"]
    assert list(pids(root)) == ["w", "sup", "fresh"], "a started child goes last in the start order"
    assert refused(root.start_child, spec("broken", fail_start=True)) == "start_failed"
    assert "broken" not in pids(root), "a spec whose child failed to start is not kept"
    assert isinstance(root.start_child(spec("broken"))["pid"], int)


def test_terminate_child(root, watch, tree):
    events = watch(tree)
    assert root.terminate_child("w") == "ok" and pids(root)["w"] == "undefined"
    assert root.terminate_child("w") == "ok", "terminating a stopped child is fine, as in OTP"
    assert root.terminate_child("sup") == "ok"
    assert [e["id"] for e in events.wait_for("child_terminated", count=3)] == ["w", "inner", "sup"]
    root.start_child(spec("temp", "temporary"))
    root.terminate_child("temp")
    assert "temp" not in pids(root), "a temporary child's spec goes with it"
    assert refused(root.terminate_child, "nobody") == "not_found"


def test_restart_child(root, tmp_path):
    assert refused(root.restart_child, "w") == "running"
    assert refused(root.restart_child, "nobody") == "not_found"
    old = pids(root)["w"]
    root.terminate_child("w")
    restarted = root.restart_child("w")
    assert restarted["id"] == "w" and restarted["pid"] not in (old, None) and pids(root)["w"] == restarted["pid"]
    blocker = tmp_path / "blocked"
    root.start_child(spec("blockable", fail_when_exists=str(blocker)))
    root.terminate_child("blockable")
    blocker.touch()
    assert refused(root.restart_child, "blockable") == "start_failed"
    assert pids(root)["blockable"] == "undefined"


def test_delete_child(root):
    assert refused(root.delete_child, "w") == "running"
    assert refused(root.delete_child, "nobody") == "not_found"
    root.terminate_child("w")
    assert root.delete_child("w") == "ok" and "w" not in pids(root)
    assert refused(root.restart_child, "w") == "not_found"
    assert root.start_child(spec("w"))["id"] == "w", "a deleted id may be used again"


def test_calls_during_a_restart_loop(root, watch, tree, tmp_path):
    blocker = tmp_path / "blocked"
    root.start_child(spec("flaky", fail_when_exists=str(blocker)))
    events = watch(tree)
    blocker.touch()
    os.kill(pids(root)["flaky"], signal.SIGKILL)
    events.wait_for("start_failed", id="flaky")
    assert pids(root)["flaky"] == "restarting"
    assert root.count_children()["active"] == 2
    started = time.monotonic()
    assert root.ping() == "pong"
    assert time.monotonic() - started < 1.0, "the control socket is served between attempts"
    assert refused(root.restart_child, "flaky") == "restarting"
    assert refused(root.delete_child, "flaky") == "restarting"
    assert refused(root.start_child, spec("flaky")) == "already_present"
    assert root.terminate_child("flaky") == "ok", "ends the loop and keeps the spec"
    assert pids(root)["flaky"] == "undefined"
    # The supervisor's events reach the bus in the order it emits them: once the start of a marker
    # child is seen, so is every failure emitted before the loop ended.
    root.start_child(spec("marker", "temporary"))
    events.wait_for("child_started", id="marker")
    failures = len(events.named("start_failed", id="flaky"))
    restarts = len(events.named("child_restarted", id="flaky"))
    root.terminate_child("marker")  # the supervisor's loop turns (its timers run) between the two calls
    events.wait_for("child_terminated", id="marker")
    assert len(events.named("start_failed", id="flaky")) == failures, "no attempt after the loop was ended"
    blocker.unlink()
    assert isinstance(root.restart_child("flaky")["pid"], int)
    root.start_child(spec("marker", "temporary"))
    events.wait_for("child_started", id="marker", count=2)
    assert len(events.named("child_restarted", id="flaky")) == restarts + 1, "started once: by restart_child"


def test_a_restart_loop_ends_by_itself_once_the_child_can_start(root, watch, tree, tmp_path):
    blocker = tmp_path / "blocked"
    root.start_child(spec("flaky", fail_when_exists=str(blocker)))
    events = watch(tree)
    blocker.touch()
    os.kill(pids(root)["flaky"], signal.SIGKILL)
    events.wait_for("start_failed", id="flaky", count=3)
    blocker.unlink()
    restarted = events.wait_for("child_restarted", id="flaky")[0]
    assert pids(root)["flaky"] == restarted["pid"]


def test_the_dynamic_supervisor(watch, tmp_path):
    template = spec("job", "permanent", marker_dir=str(tmp_path), stop_delay_s=0.4, base="template")
    with Tree(root_args([], strategy="simple_one_for_one", template=template, intensity=10)) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        started = [root.start_child(args={"n": n}) for n in range(3)]
        assert [s["id"] for s in started] == ["job-1", "job-2", "job-3"]
        given = events.wait_for("child_started", id="job-3")[0]["info"]["args"]
        assert (given["base"], given["n"]) == ("template", 2), "start_child's args are merged into the template's"
        assert refused(root.restart_child, "job-1") == "simple_one_for_one"
        assert refused(root.delete_child, "job-1") == "simple_one_for_one"
        os.kill(started[0]["pid"], signal.SIGKILL)
        restarted = events.wait_for("child_restarted", id="job-1")[0]
        assert pids(root)["job-1"] == restarted["pid"], "restarted under the same id"
        assert root.terminate_child("job-2") == "ok"
        assert list(pids(root)) == ["job-1", "job-3"], "a dynamic child's spec goes when it is terminated"
        assert refused(root.terminate_child, "job-2") == "not_found"
        assert root.start_child(args={})["id"] == "job-4", "ids are never reused"
        root.close()
    asked = sorted(float((tmp_path / f"root.{job}.stopped").read_text()) for job in ("job-1", "job-3", "job-4"))
    assert asked[-1] - asked[0] < 0.3, "children taking 0.4 s each to stop were all asked at once"


def test_dynamic_children_that_are_not_restarted_are_removed(watch):
    with Tree(root_args([], strategy="simple_one_for_one", template=spec("job", "transient"))) as tree:
        root = SupervisorClient(tree.control)
        events = watch(tree)
        first = root.start_child()
        root.start_child()
        os.kill(first["pid"], signal.SIGTERM)  # reason shutdown: a transient child is not restarted
        events.wait_for("child_exited", id="job-1")
        assert list(pids(root)) == ["job-2"]
        root.close()
