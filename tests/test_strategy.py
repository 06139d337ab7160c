"""The supervisor's decisions as pure functions, and the exit reasons they decide on (no processes)."""
import os
import signal

import pytest

from neurox.runtime import EXIT_SHUTDOWN, EXIT_START_FAILED, ExitReason, reason_from_status, reason_from_wait_status
from neurox.supervisor_tree import (intensity_exceeded, record_restart, restart_plan, root_args, should_restart,
                                    supervisor_spec)

pytestmark = pytest.mark.timeout(10)

ORDER = ["a", "b", "c", "d"]
ALL_PERMANENT = dict.fromkeys(ORDER, "permanent")


@pytest.mark.parametrize("restart,reason,expected", [
    ("permanent", "normal", True), ("permanent", "shutdown", True), ("permanent", "crash", True),
    ("transient", "normal", False), ("transient", "shutdown", False), ("transient", "crash", True),
    ("temporary", "normal", False), ("temporary", "shutdown", False), ("temporary", "crash", False),
])
def test_should_restart_follows_otp(restart, reason, expected):
    assert should_restart(restart, reason) is expected


# -- intensity ---------------------------------------------------------------------------------------
def test_the_defaults_are_elixirs():
    args = root_args([])
    assert (args["strategy"], args["intensity"], args["period"]) == ("one_for_one", 3, 5.0)


def test_restarts_inside_the_period_are_kept_and_older_ones_dropped():
    restarts = ()
    for now in (0.0, 1.0, 2.0):
        restarts = record_restart(restarts, now, period=5.0)
    assert restarts == (0.0, 1.0, 2.0)
    assert record_restart(restarts, 6.5, 5.0) == (2.0, 6.5)
    assert record_restart((0.0,), 5.0, 5.0) == (5.0,), "a restart exactly one period old is outside it"


def test_n_restarts_are_tolerated_and_the_next_one_is_too_many():
    restarts = ()
    for now in range(3):
        restarts = record_restart(restarts, float(now), 5.0)
        assert not intensity_exceeded(restarts, 3)
    assert intensity_exceeded(record_restart(restarts, 3.0, 5.0), 3)
    assert not intensity_exceeded(record_restart(restarts, 5.5, 5.0), 3), "the first two left the period"


def test_intensity_zero_allows_no_restart():
    assert intensity_exceeded(record_restart((), 10.0, 5.0), 0)


# -- strategies --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["one_for_one", "simple_one_for_one"])
def test_one_for_one_restarts_only_the_dead(strategy):
    plan = restart_plan(strategy, "b", ORDER, ALL_PERMANENT, {"a", "c", "d"})
    assert (plan.stop, plan.remove, plan.start) == ((), (), ("b",))


def test_one_for_all_stops_the_others_in_reverse_and_starts_all_in_order():
    plan = restart_plan("one_for_all", "b", ORDER, ALL_PERMANENT, {"a", "c", "d"})
    assert (plan.stop, plan.remove, plan.start) == (("d", "c", "a"), (), ("a", "b", "c", "d"))


def test_one_for_all_removes_temporary_bystanders_instead_of_restarting_them():
    types = {"a": "temporary", "b": "permanent", "c": "temporary", "d": "transient"}
    plan = restart_plan("one_for_all", "b", ORDER, types, {"a", "c", "d"})
    assert plan.stop == ("d", "c", "a") and plan.remove == ("a", "c") and plan.start == ("b", "d")


def test_stopped_bystanders_are_not_stopped_again_but_started_again_as_in_otp():
    """OTP's one_for_all restarts every kept child, also one that was not running (e.g. a transient
    that had exited normally): terminate_children marks them all undefined, start_children starts them."""
    types = {"a": "permanent", "b": "permanent", "c": "transient", "d": "permanent"}
    plan = restart_plan("one_for_all", "b", ORDER, types, {"a", "d"})
    assert plan.stop == ("d", "a") and plan.start == ("a", "b", "c", "d")


def test_rest_for_one_concerns_only_the_children_started_after_the_dead_one():
    types = {"a": "permanent", "b": "permanent", "c": "temporary", "d": "permanent"}
    plan = restart_plan("rest_for_one", "b", ORDER, types, {"a", "c", "d"})
    assert (plan.stop, plan.remove, plan.start) == (("d", "c"), ("c",), ("b", "d"))


def test_rest_for_one_at_either_end():
    first = restart_plan("rest_for_one", "a", ORDER, ALL_PERMANENT, {"b", "c", "d"})
    assert (first.stop, first.start) == (("d", "c", "b"), ("a", "b", "c", "d"))
    last = restart_plan("rest_for_one", "d", ORDER, ALL_PERMANENT, {"a", "b", "c"})
    assert (last.stop, last.start) == ((), ("d",))


def test_a_lone_child_under_one_for_all_is_simply_restarted():
    plan = restart_plan("one_for_all", "a", ["a"], {"a": "permanent"}, set())
    assert (plan.stop, plan.remove, plan.start) == ((), (), ("a",))


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown strategy 'one_for_some'"):
        restart_plan("one_for_some", "a", ORDER, ALL_PERMANENT, set())


@pytest.mark.parametrize("flags,message", [
    (("one_for_some", 3, 5), "strategy must be one of"), (("one_for_one", -1, 5), "intensity"),
    (("one_for_one", True, 5), "intensity"), (("one_for_one", 1.5, 5), "intensity"),
    (("one_for_one", 3, 0), "period"), (("one_for_one", 3, "5"), "period"),
])
def test_bad_supervisor_flags_are_refused_where_the_spec_is_made(flags, message):
    with pytest.raises(ValueError, match=message):
        supervisor_spec("sup", [], *flags)


TEMPLATE = {"id": "job", "start": ["workers:serve", {}]}


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"])
def test_good_supervisor_flags_reach_the_supervisor_as_given(strategy):
    template = TEMPLATE if strategy == "simple_one_for_one" else None
    spec = supervisor_spec("sup", [], strategy, 0, 0.5, template=template)
    assert (spec.type, spec.id) == ("supervisor", "sup")
    assert (spec.args["strategy"], spec.args["intensity"], spec.args["period"]) == (strategy, 0, 0.5)
    assert ("template" in spec.args) is (strategy == "simple_one_for_one")


# -- exit reasons ------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,sig,kind", [
    (0, None, "normal"), (EXIT_SHUTDOWN, None, "shutdown"), (None, signal.SIGTERM, "shutdown"),
    (1, None, "crash"), (3, None, "crash"), (EXIT_START_FAILED, None, "crash"),
    (None, signal.SIGKILL, "crash"), (None, signal.SIGSEGV, "crash"), (None, signal.SIGINT, "crash"),
])
def test_exit_codes_and_signals_map_to_otp_reasons(code, sig, kind):
    reason = reason_from_status(code, sig)
    assert reason.kind == kind and reason.abnormal is (kind == "crash")
    assert ExitReason.from_wire(reason.to_wire()) == reason


def test_raw_wait_statuses_are_read_like_the_kernel_writes_them():
    assert reason_from_wait_status(3 << 8) == ExitReason("crash", code=3)
    assert reason_from_wait_status(EXIT_SHUTDOWN << 8) == ExitReason("shutdown", code=EXIT_SHUTDOWN)
    assert reason_from_wait_status(signal.SIGKILL) == ExitReason("crash", signal=signal.SIGKILL)
    assert os.WIFSIGNALED(signal.SIGTERM) and reason_from_wait_status(signal.SIGTERM).kind == "shutdown"


def test_reasons_describe_themselves():
    assert reason_from_status(None, signal.SIGKILL).describe() == "crash (signal SIGKILL)"
    assert reason_from_status(3, None).describe() == "crash (exit code 3)"
    assert reason_from_status(0, None).describe() == "normal"
