"""Ordered start, rollback of a failed start, stop in reverse order, and each shutdown rule."""
import os
import signal
import time

import pytest
from workers import spec

from neurox.supervisor_tree import SupervisorClient, Tree, TreeError, root_args, supervisor_spec

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def markers(directory) -> dict[str, float]:
    """``{"root.a.started": monotonic time, ...}`` as the workers wrote them."""
    found = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            found[name] = float(f.read())
    return found


def test_children_start_in_order_and_stop_in_reverse(tmp_path, watch):
    def child(child_id):
        return spec(child_id, marker_dir=str(tmp_path), start_delay_s=0.05)

    tree = Tree(root_args([child("a"), supervisor_spec("mid", [child("x"), child("y")]), child("b")]))
    with tree:
        events = watch(tree)
        assert [e["id"] for e in events.named("child_started", source="root")] == ["a", "mid", "b"]
        assert [e["id"] for e in events.named("child_started", source="root/mid")] == ["x", "y"]
    started = markers(tmp_path)
    order = ["root.a", "root.mid.x", "root.mid.y", "root.b"]
    times = [started[f"{path}.started"] for path in order]
    assert all(later - earlier >= 0.05 for earlier, later in zip(times, times[1:])), \
        "each child starts once the one before it is ready"
    stops = sorted(order, key=lambda path: started[f"{path}.stopped"])
    assert stops == ["root.b", "root.mid.y", "root.mid.x", "root.a"]
    assert [e["id"] for e in events.named("child_terminated", source="root")] == ["b", "mid", "a"]
    assert [e["id"] for e in events.named("child_terminated", source="root/mid")] == ["y", "x"]
    assert tree.root_exit.kind == "shutdown"


def test_a_failed_start_rolls_back_in_reverse_and_leaves_no_orphan(tmp_path):
    def child(child_id, **args):
        return spec(child_id, marker_dir=str(tmp_path), **args)

    tree = Tree(root_args([child("first"), supervisor_spec("mid", [child("x"), child("broken", fail_start=True)]),
                           child("never")]))
    with pytest.raises(TreeError, match="root exited while starting: crash"):
        tree.start()
    seen = markers(tmp_path)
    assert set(seen) == {"root.first.started", "root.mid.x.started", "root.mid.x.stopped", "root.first.stopped"}
    assert seen["root.mid.x.stopped"] < seen["root.first.stopped"], "rolled back in reverse start order"
    tree.stop()


def test_a_concurrent_start_rolls_back_too():
    tree = Tree(root_args([spec("a"), spec("broken", fail_start=True), spec("c")], start_concurrently=True))
    with pytest.raises(TreeError, match="root exited while starting"):
        tree.start()


def test_a_child_not_ready_in_time_fails_the_start():
    tree = Tree(root_args([spec("slow", start_delay_s=30)], start_timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(TreeError):
        tree.start()
    assert time.monotonic() - started < 5


def stop_timed(tree: Tree, child_id: str, events) -> tuple[float, dict]:
    """terminate_child: how long it took and the child_terminated event."""
    root = SupervisorClient(tree.control)
    started = time.monotonic()
    assert root.terminate_child(child_id) == "ok"
    took = time.monotonic() - started
    root.close()
    return took, events.wait_for("child_terminated", id=child_id)[0]


def test_a_child_that_ignores_sigterm_is_killed_when_its_timeout_runs_out(watch):
    with Tree(root_args([spec("stubborn", shutdown=300, ignore_sigterm=True)])) as tree:
        events = watch(tree)
        took, terminated = stop_timed(tree, "stubborn", events)
        assert 0.3 <= took < 2.0
        assert terminated["reason"] == {"kind": "crash", "code": None, "signal": signal.SIGKILL}
        assert events.named("shutdown_timeout", id="stubborn")[0]["timeout_ms"] == 300


def test_brutal_kill_is_immediate_and_never_asks(tmp_path, watch):
    with Tree(root_args([spec("brute", shutdown="brutal_kill", marker_dir=str(tmp_path), stop_delay_s=1)])) as tree:
        events = watch(tree)
        took, terminated = stop_timed(tree, "brute", events)
        assert took < 0.5
        assert terminated["reason"]["signal"] == signal.SIGKILL
        assert "root.brute.stopped" not in markers(tmp_path), "no SIGTERM was sent"


@pytest.mark.parametrize("shutdown", [2000, "infinity"])
def test_a_polite_stop_is_awaited_within_the_timeout_or_forever(shutdown, watch):
    with Tree(root_args([spec("polite", shutdown=shutdown, stop_delay_s=0.4)])) as tree:
        events = watch(tree)
        took, terminated = stop_timed(tree, "polite", events)
        assert took >= 0.4
        assert terminated["reason"] == {"kind": "shutdown", "code": 64, "signal": None}
        assert not events.named("shutdown_timeout")


def test_stopping_the_tree_kills_a_stubborn_child_after_its_timeout():
    tree = Tree(root_args([spec("stubborn", shutdown=200, ignore_sigterm=True)])).start()
    started = time.monotonic()
    assert tree.stop().kind == "shutdown"
    assert 0.2 <= time.monotonic() - started < 5


def test_workers_started_together_stop_together_and_a_mixed_supervisor_keeps_the_reverse_order(tmp_path, watch):
    def child(child_id):
        return spec(child_id, marker_dir=str(tmp_path), stop_delay_s=0.4)

    layer = supervisor_spec("layer", [child(f"n{i}") for i in range(4)], start_concurrently=True)
    tree = Tree(root_args([child("first"), layer], start_concurrently=True)).start()
    events = watch(tree)
    started = time.monotonic()
    assert tree.stop().kind == "shutdown"
    took = time.monotonic() - started
    seen = markers(tmp_path)
    layer_stops = [seen[f"root.layer.n{i}.stopped"] for i in range(4)]
    assert max(layer_stops) - min(layer_stops) < 0.4, "the layer's four workers were asked to stop at once"
    assert seen["root.first.stopped"] > max(layer_stops), "the root stopped its children in reverse order"
    assert took < 6 * 0.4 - 0.2, "the four stops overlapped"
    assert [e["reason"]["kind"] for e in events.named("child_terminated", source="root/layer")] == ["shutdown"] * 4
