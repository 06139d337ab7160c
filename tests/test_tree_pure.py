"""The supervisor's decisions and child specs, on their own (no processes)."""
import pytest

from neurox.runtime import EXIT_SHUTDOWN, reason_from_status
from neurox.supervisor_tree import (ChildSpecError, intensity_exceeded, normalize_child_spec, record_restart,
                                    restart_plan, should_restart)

pytestmark = pytest.mark.timeout(10)
START = ["tests.workers:serve", {}]


@pytest.mark.parametrize("restart,reason,expected", [
    ("permanent", "normal", True), ("permanent", "shutdown", True), ("permanent", "crash", True),
    ("transient", "normal", False), ("transient", "shutdown", False), ("transient", "crash", True),
    ("temporary", "normal", False), ("temporary", "shutdown", False), ("temporary", "crash", False)])
def test_should_restart_follows_otp(restart, reason, expected):
    assert should_restart(restart, reason) is expected


def test_exit_reasons_from_codes_and_signals():
    assert reason_from_status(0, None).kind == "normal"
    assert reason_from_status(EXIT_SHUTDOWN, None).kind == "shutdown"
    assert reason_from_status(None, 15).kind == "shutdown"
    assert reason_from_status(None, 9).kind == "crash" and reason_from_status(3, None).kind == "crash"
    assert "SIGKILL" in reason_from_status(None, 9).describe()


def test_restart_intensity_window():
    restarts = ()
    for t in (0.0, 1.0, 2.0):
        restarts = record_restart(restarts, t, period=5.0)
    assert not intensity_exceeded(restarts, 3)
    assert intensity_exceeded(record_restart(restarts, 3.0, 5.0), 3)
    # old restarts fall out of the period
    assert record_restart(restarts, 6.5, 5.0) == (2.0, 6.5)
    assert intensity_exceeded(record_restart((), 10.0, 5.0), 0), "intensity 0 allows no restart"


ORDER = ["a", "b", "c", "d"]


def test_one_for_one_restarts_only_the_dead():
    plan = restart_plan("one_for_one", "b", ORDER, dict.fromkeys(ORDER, "permanent"), {"a", "c", "d"})
    assert (plan.stop, plan.remove, plan.start) == ((), (), ("b",))


def test_one_for_all_stops_the_rest_in_reverse_and_starts_all_in_order_without_temporaries():
    types = {"a": "permanent", "b": "permanent", "c": "temporary", "d": "transient"}
    plan = restart_plan("one_for_all", "b", ORDER, types, {"a", "c", "d"})
    assert plan.stop == ("d", "c", "a")
    assert plan.remove == ("c",)
    assert plan.start == ("a", "b", "d")


def test_rest_for_one_concerns_only_the_children_started_after():
    types = {"a": "permanent", "b": "permanent", "c": "temporary", "d": "permanent"}
    plan = restart_plan("rest_for_one", "b", ORDER, types, {"a", "c", "d"})
    assert plan.stop == ("d", "c") and plan.remove == ("c",) and plan.start == ("b", "d")
    last = restart_plan("rest_for_one", "d", ORDER, dict.fromkeys(ORDER, "permanent"), {"a", "b", "c"})
    assert (last.stop, last.start) == ((), ("d",))


def test_child_spec_defaults_follow_otp():
    worker = normalize_child_spec({"id": "w", "start": START})
    assert (worker.restart, worker.shutdown, worker.type) == ("permanent", 5000, "worker")
    supervisor = normalize_child_spec({"id": "s", "start": START, "type": "supervisor"})
    assert supervisor.shutdown == "infinity"
    assert normalize_child_spec(worker) is worker


@pytest.mark.parametrize("spec,message", [
    ("w", "a child spec is a map"),
    ({"start": START}, "'id' must be"),
    ({"id": "a/b", "start": START}, "'id' must be"),
    ({"id": "w"}, "'start' must be"),
    ({"id": "w", "start": ["no_colon", {}]}, "'start' must be"),
    ({"id": "w", "start": START, "restart": "sometimes"}, "'restart' must be"),
    ({"id": "w", "start": START, "shutdown": -1}, "'shutdown' must be"),
    ({"id": "w", "start": START, "shutdown": True}, "'shutdown' must be"),
    ({"id": "w", "start": START, "type": "daemon"}, "'type' must be"),
    ({"id": "w", "start": START, "colour": "red"}, "unknown keys"),
])
def test_bad_child_specs_get_errors_listing_the_accepted_forms(spec, message):
    with pytest.raises(ChildSpecError, match=message) as info:
        normalize_child_spec(spec)
    assert "only id and start are required" in str(info.value) and "got" in str(info.value)


def test_a_supervisor_child_may_take_its_own_start_timeout_once_per_child():
    from neurox.supervisor_tree._strategy import start_bound_s

    worker = normalize_child_spec({"id": "w", "start": START})
    layer = normalize_child_spec({"id": "l", "type": "supervisor", "start": [
        "neurox.supervisor_tree._supervisor:run_supervisor",
        {"children": [{"id": f"n{i}", "start": START} for i in range(100)], "start_timeout_s": 2.0}]})
    empty = normalize_child_spec({"id": "e", "type": "supervisor", "start": [
        "neurox.supervisor_tree._supervisor:run_supervisor", {}]})
    assert start_bound_s(worker, 30.0) == 30.0
    assert start_bound_s(layer, 30.0) == 200.0
    assert start_bound_s(empty, 30.0) == 30.0


@pytest.mark.parametrize("strategy,together,types,expected", [
    ("simple_one_for_one", False, ["worker"], True), ("one_for_one", True, ["worker", "worker"], True),
    ("one_for_one", False, ["worker", "worker"], False), ("one_for_one", True, ["worker", "supervisor"], False)])
def test_which_supervisors_stop_their_children_at_once(strategy, together, types, expected):
    from neurox.supervisor_tree._shutdown import stops_concurrently

    assert stops_concurrently(strategy, together, types) is expected
