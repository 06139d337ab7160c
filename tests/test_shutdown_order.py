"""OTP's shutdown order for subtrees (issue 21): each child by its own rule, children in reverse start order,
SIGKILL only for brutal_kill or when a child's own time is up -- grandchildren included."""
import os
import signal
import time

import pytest
from workers import spec

from neurox.supervisor_tree import SupervisorClient, Tree, TreeError, root_args, supervisor_spec
from neurox.supervisor_tree._shutdown import KILL_WAIT_S, StopRule, shutdown_order, stop_rule

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_stray_processes")]


def test_each_rule_decides_the_signal_and_the_kill():
    assert stop_rule("brutal_kill") == StopRule(signal.SIGKILL, None)
    assert stop_rule("infinity") == StopRule(signal.SIGTERM, None)
    assert stop_rule(2500) == StopRule(signal.SIGTERM, 2.5)
    assert stop_rule(0) == StopRule(signal.SIGTERM, 0.0)
    assert stop_rule(2500).deadline(100.0) == 102.5
    assert stop_rule("infinity").deadline(100.0) is None
    assert stop_rule("brutal_kill").deadline(100.0) == 100.0 + KILL_WAIT_S


def test_running_children_stop_last_started_first():
    assert shutdown_order(["a", "b", "c", "d"], {"a", "c", "d"}) == ["d", "c", "a"]
    assert shutdown_order(["a", "b"], set()) == []


def _markers(directory) -> set[str]:
    return set(os.listdir(directory))


def test_a_subtree_stops_leaf_by_leaf_each_by_its_own_rule(tmp_path, watch):
    """terminate_child of a supervisor: its children in reverse order, the stubborn one SIGTERMed and
    killed only when its own 400 ms are up, the clean one asked politely after that."""
    mid = supervisor_spec("mid", [spec("clean", marker_dir=str(tmp_path), stop_delay_s=0.2),
                                  spec("stubborn", shutdown=400, ignore_sigterm=True)])
    with Tree(root_args([mid])) as tree:
        events = watch(tree)
        root = SupervisorClient(tree.control)
        started = time.monotonic()
        assert root.terminate_child("mid") == "ok"
        took = time.monotonic() - started
        root.close()
        stopped = events.wait_for("child_terminated", count=2, source="root/mid")
        [timeout] = events.named("shutdown_timeout")
    assert [e["id"] for e in stopped] == ["stubborn", "clean"], "reverse start order"
    assert stopped[0]["reason"] == {"kind": "crash", "code": None, "signal": signal.SIGKILL}
    assert stopped[1]["reason"] == {"kind": "shutdown", "code": 64, "signal": None}
    assert (timeout["id"], timeout["timeout_ms"], timeout["source"]) == ("stubborn", 400, "root/mid")
    assert "root.mid.clean.stopped" in _markers(tmp_path), "the clean child was asked, not killed"
    assert 0.4 + 0.2 <= took < 5, "one after the other: the stubborn child's 400 ms, then the clean one's stop"


def test_a_rolled_back_start_stops_grandchildren_politely(tmp_path):
    """A concurrent start that fails rolls back a supervisor forked before the failure by its rule
    (SIGTERM), so that supervisor stops its own children politely -- not SIGKILL for the subtree."""
    mid = supervisor_spec("mid", [spec("clean", marker_dir=str(tmp_path))])
    tree = Tree(root_args([spec("slow", start_delay_s=30), mid], start_concurrently=True, start_timeout_s=1.0))
    with pytest.raises(TreeError, match="root exited while starting"):
        tree.start()
    tree.stop()
    assert _markers(tmp_path) == {"root.mid.clean.started", "root.mid.clean.stopped"}
